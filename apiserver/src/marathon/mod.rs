//! Marathon's v2 REST API, wire-compatible, on the same records the native API writes.

mod apps;
mod error;
mod events;
mod misc;
mod query;
pub mod subscriptions;
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
        .route("/v2/tasks", get(misc::tasks))
        .route("/v2/tasks/delete", post(misc::delete_tasks))
        .route("/v2/deployments", get(misc::deployments))
        .route("/v2/deployments/{id}", delete(misc::cancel_deployment))
        .route("/v2/groups", get(misc::groups).post(misc::create_group))
        .route(
            "/v2/groups/{*path}",
            get(misc::group)
                .put(misc::put_group)
                .delete(misc::delete_group),
        )
        .route("/v2/queue", get(misc::queue))
        .route("/v2/queue/{*path}", delete(misc::reset_delay))
        .route("/v2/info", get(misc::info))
        .route("/v2/leader", get(misc::leader_info))
        .route("/v2/events", get(events::stream))
        .route(
            "/v2/eventSubscriptions",
            get(subscriptions::list)
                .post(subscriptions::subscribe)
                .delete(subscriptions::unsubscribe),
        )
        .route("/metrics", get(misc::metrics))
}
