//! `/v2/tasks`: the live tasks of every app, and killing tasks by id.

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use pacer_crd::marathon::task_to_marathon;
use pacer_crd::{Task, TaskState};
use serde_json::{Value, json};

use super::MarathonError;
use super::apps::{json_body, kill_tasks};
use super::query::Params;
use super::view::Snapshot;
use crate::ApiState;

type Result<T> = std::result::Result<T, MarathonError>;

pub async fn tasks(State(s): State<ApiState>, RawQuery(q): RawQuery) -> Result<Json<Value>> {
    let params = Params::parse(q.as_deref());
    let wanted: Vec<TaskState> = params
        .all("status")
        .iter()
        .filter_map(|st| match st.to_ascii_lowercase().as_str() {
            "running" => Some(TaskState::Running),
            "staging" => Some(TaskState::Staging),
            _ => None,
        })
        .collect();
    let snapshot = Snapshot::read(&s).await?;
    let tasks: Vec<Value> = snapshot
        .tasks
        .iter()
        .filter(|t| !t.state().is_terminal() && (wanted.is_empty() || wanted.contains(&t.state())))
        .map(task_to_marathon)
        .collect();
    Ok(Json(json!({"tasks": tasks})))
}

/// `POST /v2/tasks/delete {"ids": [...]}`.
pub async fn delete_tasks(
    State(s): State<ApiState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response> {
    let body = json_body(&body)?;
    let ids: BTreeSet<&str> = body["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let snapshot = Snapshot::read(&s).await?;
    let doomed: Vec<&Task> = snapshot
        .tasks
        .iter()
        .filter(|t| t.metadata.name.as_deref().is_some_and(|n| ids.contains(n)))
        .collect();
    kill_tasks(&s, &doomed, &Params::parse(q.as_deref())).await
}
