//! Handlers of the native API: list, get, watch, apply, create, scale, delete, task logs.

use std::collections::HashMap;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use pacer_crd::{AppId, Manifest, Record};
use pacer_runtime::Api;
use pacer_runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::access::{Need, Routes, Target};
use crate::apply::{self, find_task};
use crate::auth::Role;
use crate::{ApiError, ApiState};

/// The native API's app, task, node, offer and deployment routes (records.rs has the rest).
pub fn routes() -> Routes {
    use Method as M;
    const APP: Target = Target::AppPath("name");
    let write_app = Need::of(Role::Write, APP);
    Routes::under(PREFIX)
        .on(M::GET, "/apps", Need::READ, list_apps)
        .on(
            M::POST,
            "/apps",
            Need::of(Role::Write, Target::Body),
            create_app,
        )
        .on(M::GET, "/apps/{name}", Need::of(Role::Read, APP), get_app)
        .on(M::PUT, "/apps/{name}", write_app, apply_app)
        .on(M::DELETE, "/apps/{name}", write_app, delete_app)
        .on(M::PUT, "/apps/{name}/scale", write_app, scale_app)
        .on(M::GET, "/tasks", Need::READ, list_tasks)
        .on(M::GET, "/tasks/{name}", Need::READ, get_task)
        .on(M::GET, "/tasks/{name}/logs", Need::WRITE, task_logs)
        .readable("/nodes", |s| s.nodes.clone())
        .listed("/offers", |s| s.offers.clone())
        .readable("/deployments", |s| s.deployments.clone())
}

impl Routes {
    /// `GET <path>`: the records of one kind to readers, as a list or (`?watch=true`) a watch.
    pub(crate) fn listed<K: Record>(self, path: &str, api: fn(&ApiState) -> Api<K>) -> Routes {
        self.on(
            Method::GET,
            path,
            Need::READ,
            move |s: State<ApiState>, q: Query<ListQuery>| list(api(&s.0), q.0),
        )
    }

    /// [`Routes::listed`] and `GET <path>/{name}`: one record by name.
    pub(crate) fn readable<K: Record>(self, path: &str, api: fn(&ApiState) -> Api<K>) -> Routes {
        self.listed(path, api).on(
            Method::GET,
            &format!("{path}/{{name}}"),
            Need::READ,
            move |s: State<ApiState>, p: Path<String>| get_one(api(&s.0), p.0),
        )
    }
}

/// Where the native API lives.
pub const PREFIX: &str = "/apis/pacer.io/v1";

#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    watch: Option<String>,
}

/// `{"kind": "AppList", "items": [...]}`, or with `?watch=true` a stream of JSON lines
/// `{"type": "ADDED|MODIFIED|DELETED", "object": ...}` starting with everything that exists.
pub(crate) async fn list<K: Record>(api: Api<K>, query: ListQuery) -> Result<Response, ApiError> {
    if query
        .watch
        .as_deref()
        .is_some_and(|w| w.eq_ignore_ascii_case("true") || w == "1")
    {
        return Ok(watch(api));
    }
    let list = api.list("").await?;
    let kind = format!("{}List", K::kind(&()));
    let body = json!({"apiVersion": pacer_crd::API_VERSION, "kind": kind, "metadata": {"resourceVersion": list.revision.to_string()}, "items": list.items});
    Ok(Json(body).into_response())
}

fn watch<K: Record>(api: Api<K>) -> Response {
    let token = CancellationToken::new();
    let guard = token.clone().drop_guard();
    let rx = watcher::watch(api, "", token);
    let lines = rx.into_stream().flat_map(move |event| {
        let _alive = &guard;
        let lines: Vec<Value> = match event {
            Event::Restarted(all) => all
                .into_iter()
                .map(|o| json!({"type": "ADDED", "object": o}))
                .collect(),
            Event::Applied(o) => vec![json!({"type": "MODIFIED", "object": o})],
            Event::Deleted(o) => vec![json!({"type": "DELETED", "object": o})],
            // Not sent by a watch of previous values.
            Event::Removed { .. } => vec![],
        };
        futures::stream::iter(
            lines
                .into_iter()
                .map(|l| Ok::<_, std::convert::Infallible>(format!("{l}\n"))),
        )
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(lines))
        .unwrap_or_default()
}

pub(crate) async fn get_one<K: Record>(api: Api<K>, name: String) -> Result<Json<K>, ApiError> {
    let kind = K::kind(&()).into_owned();
    api.get(&name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("{kind} '{name}' does not exist")))
}

/// An app name from a URL: the record name or a Marathon path.
fn app_name(raw: &str) -> Result<String, ApiError> {
    AppId::parse(raw)
        .map(|id| id.name())
        .map_err(ApiError::BadRequest)
}

async fn list_apps(
    State(s): State<ApiState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    list(s.apps, q).await
}

async fn get_app(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = app_name(&name)?;
    let app = s
        .apps
        .get(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("App '{name}' does not exist")))?;
    Ok(Json(app).into_response())
}

/// Parses and validates a manifest body; bad input changes nothing.
fn manifest(body: &Bytes) -> Result<pacer_crd::App, ApiError> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    match Manifest::from_value(doc).map_err(ApiError::Invalid)? {
        Manifest::App(app) => Ok(app),
        other => Err(crate::records::wrong_kind(&other, "App")),
    }
}

/// `?plan=ID`: the apply is a step of one write of several apps (`pacer apply -f DIR`), in which
/// an app waits for the apps it depends on.
#[derive(Debug, Default, serde::Deserialize)]
struct ApplyQuery {
    #[serde(default)]
    plan: Option<String>,
}

async fn apply_app(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Query(query): Query<ApplyQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = app_name(&name)?;
    let app = manifest(&body)?;
    if app.metadata.name.as_deref() != Some(name.as_str()) {
        return Err(ApiError::field(
            "metadata.name",
            format!("does not match the URL ('{name}')"),
        ));
    }
    let result = apply::apply_in_plan(&s, app, false, query.plan.as_deref()).await?;
    let status = if result.result == apply::Applied::Created {
        axum::http::StatusCode::CREATED
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, Json(result)).into_response())
}

async fn create_app(State(s): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    let app = manifest(&body)?;
    let result = apply::apply(&s, app, true).await?;
    Ok((axum::http::StatusCode::CREATED, Json(result)).into_response())
}

async fn delete_app(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let app = apply::delete(&s, &app_name(&name)?).await?;
    Ok(Json(app).into_response())
}

#[derive(serde::Deserialize)]
struct Scale {
    instances: i64,
}

async fn scale_app(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let scale: Scale = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"instances\": N}}: {e}")))?;
    let result = apply::scale(&s, &app_name(&name)?, scale.instances).await?;
    Ok(Json(result).into_response())
}

async fn list_tasks(
    State(s): State<ApiState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    list(s.tasks, q).await
}

async fn get_task(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(find_task(&s.tasks, &name).await?).into_response())
}

/// Where the agent at `address` (a node's registered address) serves a task's logs, built from
/// parts: the task name is one encoded path segment and the count a query pair, so neither can
/// take the request anywhere else.
fn agent_logs_url(address: &str, task: &str, tail: u32) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(address)
        .map_err(|e| format!("its address '{address}' is not a URL: {e}"))?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none();
    if !plain {
        return Err(format!(
            "its address '{address}' is not a plain http(s) address"
        ));
    }
    url.path_segments_mut()
        .map_err(|()| format!("its address '{address}' cannot take a path"))?
        .pop_if_empty()
        .extend(["v1", "tasks", task, "logs"]);
    url.query_pairs_mut().append_pair("tail", &tail.to_string());
    Ok(url)
}

/// Task logs come from the agent of the task's node.
async fn task_logs(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let task = find_task(&s.tasks, &name).await?;
    let node = s.nodes.get(&task.spec.node).await?.ok_or_else(|| {
        ApiError::BadGateway(format!(
            "node '{}' of task '{name}' is not registered",
            task.spec.node
        ))
    })?;
    let tail = match q.get("tail") {
        None => 100,
        Some(t) => t.parse().map_err(|_| {
            ApiError::field("tail", format!("must be a count of lines (got '{t}')"))
        })?,
    };
    let url = agent_logs_url(&node.spec.address, &name, tail).map_err(|why| {
        ApiError::BadGateway(format!("node '{}' of task '{name}': {why}", task.spec.node))
    })?;
    let resp = s
        .http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| ApiError::BadGateway(format!("agent at {url}: {e}")))?;
    let status = axum::http::StatusCode::from_u16(resp.status().as_u16())
        .unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
    let text = resp
        .text()
        .await
        .map_err(|e| ApiError::BadGateway(e.to_string()))?;
    Ok((status, text).into_response())
}

#[cfg(test)]
mod tests {
    use super::agent_logs_url;

    #[test]
    fn the_log_url_goes_to_the_agent_and_nowhere_else() {
        let url = agent_logs_url("http://10.0.0.7:8081", "web.1", 20).unwrap();
        assert_eq!(
            url.as_str(),
            "http://10.0.0.7:8081/v1/tasks/web.1/logs?tail=20"
        );
        // A name cannot climb out of its segment or start a query of its own.
        let url = agent_logs_url("http://10.0.0.7:8081/", "../../x?y=1#z", 5).unwrap();
        assert_eq!(url.host_str(), Some("10.0.0.7"));
        assert_eq!(url.path(), "/v1/tasks/..%2F..%2Fx%3Fy=1%23z/logs");
        assert_eq!(url.query(), Some("tail=5"));
        for address in [
            "file:///etc/passwd",
            "http://user:pw@10.0.0.7/",
            "not a url",
            "http://h/?a=1",
        ] {
            assert!(agent_logs_url(address, "web.1", 5).is_err(), "{address}");
        }
    }
}
