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

use axum::Router;
use axum::routing::{delete, get, post};

pub use error::MarathonError;

use crate::ApiState;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/v2/apps",
            get(apps::list)
                .post(apps::create)
                .put(apps::update_many)
                .patch(apps::update_many),
        )
        .route(
            "/v2/apps/{*path}",
            get(apps::get)
                .put(apps::replace)
                .patch(apps::update)
                .delete(apps::delete)
                .post(apps::restart),
        )
        .route("/v2/tasks", get(tasks::tasks))
        .route("/v2/tasks/delete", post(tasks::delete_tasks))
        .route("/v2/deployments", get(deployments::deployments))
        .route(
            "/v2/deployments/{id}",
            delete(deployments::cancel_deployment),
        )
        .route("/v2/groups", get(groups::groups).post(groups::create_group))
        .route(
            "/v2/groups/{*path}",
            get(groups::group)
                .put(groups::put_group)
                .delete(groups::delete_group),
        )
        .route("/v2/queue", get(queue::queue))
        .route("/v2/queue/{*path}", delete(queue::reset_delay))
        .route("/v2/info", get(info::info))
        .route("/v2/leader", get(info::leader_info))
        .route("/v2/events", get(events::stream))
        .route(
            "/v2/eventSubscriptions",
            get(subscriptions::list)
                .post(subscriptions::subscribe)
                .delete(subscriptions::unsubscribe),
        )
        .route("/metrics", get(metrics::metrics))
        .route("/ping", get(info::ping))
}
