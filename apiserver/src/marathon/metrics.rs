//! `/metrics`: apps, tasks by state and running deployments in Prometheus text format.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::MarathonError;
use super::view::Snapshot;
use crate::ApiState;

type Result<T> = std::result::Result<T, MarathonError>;

/// Prometheus text: apps, tasks by state, running deployments.
pub async fn metrics(State(s): State<ApiState>) -> Result<Response> {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    let snapshot = Snapshot::read(&s).await?;
    let mut registry = prometheus_client::registry::Registry::default();
    let apps = Gauge::<i64>::default();
    apps.set(snapshot.apps.len() as i64);
    registry.register("pacer_apps", "Apps defined", apps);
    let tasks = Family::<Vec<(String, String)>, Gauge<i64>>::default();
    for task in &snapshot.tasks {
        tasks
            .get_or_create(&vec![("state".into(), task.state().as_str().into())])
            .inc();
    }
    registry.register("pacer_tasks", "Tasks by state", tasks);
    let deployments = Gauge::<i64>::default();
    deployments.set(snapshot.deployments.len() as i64);
    registry.register(
        "pacer_deployments_running",
        "Deployments in progress",
        deployments,
    );
    let mut text = String::new();
    encode(&mut text, &registry).map_err(|e| MarathonError::BadRequest(e.to_string()))?;
    Ok(([("content-type", "text/plain; version=0.0.4")], text).into_response())
}
