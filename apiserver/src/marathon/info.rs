//! `/v2/info`, `/v2/leader` and `/ping`: who this server is and who leads.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::ApiState;

/// Who leads the control plane (the elected replica's address); before any election has been
/// won, this server's own address as the client reached it.
async fn leader(s: &ApiState, headers: &HeaderMap) -> (String, bool) {
    match pacer_runtime::election::leader(s.apps.client()).await {
        Some(leader) => {
            let elected = leader == s.identity;
            (leader, elected)
        }
        None => (
            headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1:8080")
                .to_string(),
            false,
        ),
    }
}

pub async fn info(State(s): State<ApiState>, headers: HeaderMap) -> Json<Value> {
    let (leader, elected) = leader(&s, &headers).await;
    let (hostname, port) = leader
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.parse::<u16>().unwrap_or(8080)))
        .unwrap_or((leader.clone(), 8080));
    Json(json!({
        "name": "marathon",
        "version": "1.5.0",
        "buildref": concat!("pacer-", env!("CARGO_PKG_VERSION")),
        "elected": elected,
        "leader": leader,
        "frameworkId": "pacer",
        "marathon_config": {"hostname": hostname, "master": "etcd", "framework_name": "pacer", "ha": true, "checkpoint": true,
                            "local_port_min": 10000, "local_port_max": 20000, "mesos_role": "*", "task_launch_timeout": 300000},
        "zookeeper_config": {"zk": "etcd"},
        "http_config": {"http_port": port},
    }))
}

pub async fn leader_info(State(s): State<ApiState>, headers: HeaderMap) -> Json<Value> {
    Json(json!({"leader": leader(&s, &headers).await.0}))
}

/// `GET /ping`: Marathon's liveness check.
pub async fn ping() -> &'static str {
    "pong"
}
