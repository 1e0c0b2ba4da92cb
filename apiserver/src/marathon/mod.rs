//! Marathon's v2 REST API, wire-compatible, on the same records the native API writes.

mod apps;
mod deployments;
mod error;
mod events;
mod groups;
mod info;
mod metrics;
mod query;
mod queue;
pub mod subscriptions;
mod tasks;
mod view;

use axum::http::Method;

pub use error::MarathonError;

use crate::access::{Need, Routes, Target};
use crate::auth::Role;

/// Marathon's routes and what each needs: reading is `read`; changing apps, tasks, groups,
/// deployments and the launch queue is `write` (on the apps named, for scoped tokens);
/// subscribing the server to call a URL is `admin`.
pub fn routes() -> Routes {
    use Method as M;
    const APP: Target = Target::AppPath("path");
    let write_app = Need::of(Role::Write, APP);
    let write_body = Need::of(Role::Write, Target::Body);
    Routes::new()
        .on(M::GET, "/v2/apps", Need::READ, apps::list)
        .on(M::POST, "/v2/apps", write_body, apps::create)
        .on(M::PUT, "/v2/apps", write_body, apps::update_many)
        .on(M::PATCH, "/v2/apps", write_body, apps::update_many)
        .on(
            M::GET,
            "/v2/apps/{*path}",
            Need::of(Role::Read, APP),
            apps::get,
        )
        .on(M::PUT, "/v2/apps/{*path}", write_app, apps::replace)
        .on(M::PATCH, "/v2/apps/{*path}", write_app, apps::update)
        .on(M::DELETE, "/v2/apps/{*path}", write_app, apps::delete)
        .on(M::POST, "/v2/apps/{*path}", write_app, apps::restart)
        .on(M::GET, "/v2/tasks", Need::READ, tasks::tasks)
        .on(
            M::POST,
            "/v2/tasks/delete",
            Need::WRITE,
            tasks::delete_tasks,
        )
        .on(
            M::GET,
            "/v2/deployments",
            Need::READ,
            deployments::deployments,
        )
        .on(
            M::DELETE,
            "/v2/deployments/{id}",
            Need::WRITE,
            deployments::cancel_deployment,
        )
        .on(M::GET, "/v2/groups", Need::READ, groups::groups)
        .on(M::POST, "/v2/groups", write_body, groups::create_group)
        .on(
            M::GET,
            "/v2/groups/{*path}",
            Need::of(Role::Read, APP),
            groups::group,
        )
        .on(M::PUT, "/v2/groups/{*path}", write_app, groups::put_group)
        .on(
            M::DELETE,
            "/v2/groups/{*path}",
            write_app,
            groups::delete_group,
        )
        .on(M::GET, "/v2/queue", Need::READ, queue::queue)
        .on(
            M::DELETE,
            "/v2/queue/{*path}",
            write_app,
            queue::reset_delay,
        )
        .on(M::GET, "/v2/info", Need::READ, info::info)
        .on(M::GET, "/v2/leader", Need::READ, info::leader_info)
        .on(M::GET, "/v2/events", Need::READ, events::stream)
        .on(
            M::GET,
            "/v2/eventSubscriptions",
            Need::READ,
            subscriptions::list,
        )
        .on(
            M::POST,
            "/v2/eventSubscriptions",
            Need::ADMIN,
            subscriptions::subscribe,
        )
        .on(
            M::DELETE,
            "/v2/eventSubscriptions",
            Need::ADMIN,
            subscriptions::unsubscribe,
        )
        .on(M::GET, "/metrics", Need::READ, metrics::metrics)
        .on(M::GET, "/ping", Need::PUBLIC, info::ping)
}
