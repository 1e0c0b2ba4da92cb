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

pub async fn serve(
    listener: tokio::net::TcpListener,
    runners: Runners,
    tls: Option<crate::AgentTls>,
    token: CancellationToken,
) {
    let app = Router::new()
        .route("/v1/tasks/{name}/logs", get(logs))
        .route("/ping", get(|| async { "pong" }))
        .with_state(AgentState { runners });
    let Some(tls) = tls else {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
        return;
    };
    let config = match pacer_runtime::tls::server_config(&tls.cert, &tls.key, Some(&tls.client_ca))
    {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "the agent endpoint's TLS configuration: logs cannot be served");
            return;
        }
    };
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        token.cancelled().await;
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    let served = match listener.into_std() {
        Ok(listener) => axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(std::sync::Arc::new(config)),
        ),
        Err(e) => Err(e),
    };
    match served {
        Ok(server) => {
            let _ = server.handle(handle).serve(app.into_make_service()).await;
        }
        Err(e) => tracing::error!(error = %e, "the agent endpoint cannot serve"),
    }
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
