//! The agent's HTTP endpoint: task logs, read where the task runs.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::Runners;

#[derive(Clone)]
struct AgentState {
    runners: Runners,
}

pub async fn serve(listener: tokio::net::TcpListener, runners: Runners, token: CancellationToken) {
    let app = Router::new()
        .route("/v1/tasks/{name}/logs", get(logs))
        .route("/ping", get(|| async { "pong" }))
        .with_state(AgentState { runners });
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(token.cancelled_owned())
        .await;
}

async fn logs(
    State(state): State<AgentState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, String) {
    let tail = q.get("tail").and_then(|t| t.parse().ok()).unwrap_or(100);
    let found = {
        let runners = state.runners.lock().expect("runners lock");
        runners
            .get(&name)
            .map(|r| (r.handle.clone(), r.driver.clone()))
    };
    let Some((slot, driver)) = found else {
        return (
            StatusCode::NOT_FOUND,
            format!("task '{name}' does not run on this node\n"),
        );
    };
    let Some(handle) = slot.lock().await.clone() else {
        return (
            StatusCode::CONFLICT,
            format!("task '{name}' has not started yet\n"),
        );
    };
    match driver.logs(&handle, tail).await {
        Ok(text) => (StatusCode::OK, text),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}
