//! `/v2/apps`: list, create, read, update (PUT/PATCH, bulk), delete, restart, tasks, versions.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pacer_crd::marathon::{app_from_marathon, app_to_marathon, task_to_marathon};
use pacer_crd::{App, AppId, AppSpec, Record, Task};
use serde_json::{Map, Value, json};

use super::MarathonError;
use super::query::Params;
use super::view::{Snapshot, apply_all, deployment_result, last_result};
use crate::ApiState;
use crate::apply::{self, ApplyResult, path_of};

type Result<T> = std::result::Result<T, MarathonError>;

/// Parses a request body; malformed JSON is a 400, as in Marathon.
pub fn json_body(body: &Bytes) -> Result<Value> {
    serde_json::from_slice(body)
        .map_err(|e| MarathonError::BadRequest(format!("Invalid JSON: {e}")))
}

/// The record name of a Marathon id from a URL; one that is not an id is a plain 400.
pub fn name_of(raw: &str) -> Result<String> {
    AppId::parse(raw)
        .map(|id| id.name())
        .map_err(|e| MarathonError::BadPath(format!("Invalid id in the path: {e}")))
}

/// The record name of a Marathon id from a request body: one that is not an id is a 422 at
/// `path`.
pub fn name_in_body(raw: &str, path: &str) -> Result<String> {
    AppId::parse(raw)
        .map(|id| id.name())
        .map_err(|e| MarathonError::field(path, e))
}

fn not_found(name: &str) -> MarathonError {
    MarathonError::NotFound(format!("App '{}' does not exist", path_of(name)))
}

pub async fn list(State(s): State<ApiState>, RawQuery(q): RawQuery) -> Result<Json<Value>> {
    let params = Params::parse(q.as_deref());
    let snapshot = Snapshot::read(&s).await?;
    let embed = params.embeds();
    let apps: Vec<Value> = snapshot
        .apps
        .iter()
        .filter(|a| matches_filters(a, &params))
        .map(|a| snapshot.app_embedded(a, &embed))
        .collect();
    Ok(Json(json!({"apps": apps})))
}

/// Marathon's `id` and `cmd` substring filters and `label` selectors (`k`, `k==v`, `k!=v`).
fn matches_filters(app: &App, params: &Params) -> bool {
    let path = path_of(app.metadata.name.as_deref().unwrap_or_default());
    let id_ok = params.get("id").is_none_or(|id| path.contains(id));
    let cmd_ok = params
        .get("cmd")
        .is_none_or(|c| app.spec.cmd.as_deref().is_some_and(|cmd| cmd.contains(c)));
    let label_ok = params.get("label").is_none_or(|selector| {
        selector.split(',').all(|term| {
            let labels = &app.spec.labels;
            if let Some((k, v)) = term.split_once("!=") {
                labels.get(k.trim()).map(String::as_str) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==") {
                labels.get(k.trim()).map(String::as_str) == Some(v.trim())
            } else {
                labels.contains_key(term.trim())
            }
        })
    });
    id_ok && cmd_ok && label_ok
}

/// `POST /v2/apps`: 201 with the normalized app, `Location` and `Marathon-Deployment-Id`.
pub async fn create(State(s): State<ApiState>, body: Bytes) -> Result<Response> {
    let (id, spec) = app_from_marathon(&json_body(&body)?, None).map_err(MarathonError::Invalid)?;
    let result = apply::apply(&s, App::new(&id.name(), spec), true)
        .await
        .map_err(|e| match e {
            crate::ApiError::AlreadyExists(_) => {
                MarathonError::Conflict(format!("An app with id [{}] already exists.", id.path()))
            }
            other => other.into(),
        })?;
    created(&result)
}

fn created(result: &ApplyResult) -> Result<Response> {
    let deployment = result.deployment.clone().unwrap_or_default();
    let mut body = app_to_marathon(
        &result.object,
        &pacer_crd::marathon::AppRuntime {
            deployments: vec![deployment.clone()],
            ..Default::default()
        },
    );
    body["tasks"] = json!([]);
    let mut headers = HeaderMap::new();
    let location = format!("/v2/apps{}", path_of(&result.object.key()));
    headers.insert(
        "location",
        HeaderValue::from_str(&location).unwrap_or(HeaderValue::from_static("/v2/apps")),
    );
    headers.insert(
        "marathon-deployment-id",
        HeaderValue::from_str(&deployment).unwrap_or(HeaderValue::from_static("")),
    );
    Ok((StatusCode::CREATED, headers, Json(body)).into_response())
}

/// What a `/v2/apps/...` path names.
enum Target<'a> {
    App(&'a str),
    Group(&'a str),
    Tasks(&'a str),
    Task(&'a str, &'a str),
    Restart(&'a str),
    Versions(&'a str),
    Version(&'a str, &'a str),
}

fn target(path: &str) -> Target<'_> {
    let path = path.trim_end_matches('/');
    if let Some(group) = path.strip_suffix("/*") {
        return Target::Group(group);
    }
    if let Some(app) = path.strip_suffix("/restart") {
        return Target::Restart(app);
    }
    if let Some(app) = path.strip_suffix("/tasks") {
        return Target::Tasks(app);
    }
    if let Some(app) = path.strip_suffix("/versions") {
        return Target::Versions(app);
    }
    if let Some((app, task)) = path.rsplit_once("/tasks/") {
        return Target::Task(app, task);
    }
    if let Some((app, version)) = path.rsplit_once("/versions/") {
        return Target::Version(app, version);
    }
    Target::App(path)
}

pub async fn get(
    State(s): State<ApiState>,
    Path(path): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let snapshot = Snapshot::read(&s).await?;
    let params = Params::parse(q.as_deref());
    let out = match target(&path) {
        Target::App(id) => app_json(&snapshot, id, &params)?,
        Target::Group(group) => group_apps_json(&snapshot, group, &params)?,
        Target::Tasks(id) => tasks_json(&snapshot, id)?,
        Target::Versions(id) => versions_json(&s, &snapshot, id).await?,
        Target::Version(id, version) => version_json(&s, id, version).await?,
        Target::Task(..) | Target::Restart(_) => {
            return Err(MarathonError::NotFound(format!(
                "no GET on /v2/apps/{path}"
            )));
        }
    };
    Ok(Json(out).into_response())
}

/// `GET /v2/apps/{id}`.
fn app_json(snapshot: &Snapshot, id: &str, params: &Params) -> Result<Value> {
    let name = name_of(id)?;
    let app = snapshot.app(&name).ok_or_else(|| not_found(&name))?;
    // A single app always carries its tasks, as in Marathon.
    let embed = [params.embeds(), vec!["tasks"]].concat();
    Ok(json!({"app": snapshot.app_embedded(app, &embed)}))
}

/// `GET /v2/apps/{group}/*`: the apps under a group.
fn group_apps_json(snapshot: &Snapshot, group: &str, params: &Params) -> Result<Value> {
    let prefix = format!("{}_", name_of(group)?);
    let embed = params.embeds();
    let apps: Vec<Value> = snapshot
        .apps
        .iter()
        .filter(|a| a.key().starts_with(&prefix))
        .map(|a| snapshot.app_embedded(a, &embed))
        .collect();
    Ok(json!({"apps": apps}))
}

/// `GET /v2/apps/{id}/tasks`: its live tasks.
fn tasks_json(snapshot: &Snapshot, id: &str) -> Result<Value> {
    let name = name_of(id)?;
    snapshot.app(&name).ok_or_else(|| not_found(&name))?;
    let tasks: Vec<Value> = snapshot
        .live_tasks(&name)
        .into_iter()
        .map(task_to_marathon)
        .collect();
    Ok(json!({"tasks": tasks}))
}

/// `GET /v2/apps/{id}/versions`: newest first.
async fn versions_json(s: &ApiState, snapshot: &Snapshot, id: &str) -> Result<Value> {
    let name = name_of(id)?;
    snapshot.app(&name).ok_or_else(|| not_found(&name))?;
    let mut versions: Vec<String> = s
        .versions
        .list(&format!("{name}/"))
        .await?
        .items
        .into_iter()
        .map(|v| v.spec.version)
        .collect();
    versions.reverse();
    Ok(json!({"versions": versions}))
}

/// `GET /v2/apps/{id}/versions/{version}`: the app as it was then.
async fn version_json(s: &ApiState, id: &str, version: &str) -> Result<Value> {
    let name = name_of(id)?;
    let spec = stored_version(s, &name, version).await?;
    let mut app = App::new(&name, spec);
    app.metadata.annotations = Some(
        [(
            pacer_crd::app::VERSION_ANNOTATION.to_string(),
            version.to_string(),
        )]
        .into(),
    );
    Ok(pacer_crd::marathon::app_to_marathon(
        &app,
        &Default::default(),
    ))
}

async fn stored_version(s: &ApiState, name: &str, version: &str) -> Result<AppSpec> {
    if version.parse::<pacer_crd::meta::jiff::Timestamp>().is_err() {
        return Err(MarathonError::Unprocessable(format!(
            "Invalid timestamp provided '{version}'. Expecting ISO-8601 datetime string."
        )));
    }
    let stored = s.versions.get(&format!("{name}/{version}")).await?;
    stored
        .map(|v| v.spec.app)
        .ok_or_else(|| MarathonError::NotFound(format!("App '{}' does not exist", path_of(name))))
}

/// Refuses a write to an app that running deployments hold, unless forced.
fn check_lock(snapshot: &Snapshot, name: &str, params: &Params) -> Result<()> {
    let holding = snapshot.deployments_of(name);
    if holding.is_empty() || params.flag("force") {
        Ok(())
    } else {
        Err(MarathonError::Locked(holding))
    }
}

/// `PUT` and `PATCH /v2/apps/{id}`: create or update (partial by default, as Marathon 1.x),
/// `{"version": v}` rolls back; `POST /v2/apps/{id}/restart` restarts.
pub async fn update(
    State(s): State<ApiState>,
    Path(path): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response> {
    update_one(
        &s,
        &path,
        &Params::parse(q.as_deref()),
        &json_body(&body)?,
        true,
    )
    .await
}

pub async fn replace(
    State(s): State<ApiState>,
    Path(path): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response> {
    let params = Params::parse(q.as_deref());
    let partial = params.flag_or("partialUpdate", true);
    update_one(&s, &path, &params, &json_body(&body)?, partial).await
}

pub async fn restart(
    State(s): State<ApiState>,
    Path(path): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let Target::Restart(id) = target(&path) else {
        return Err(MarathonError::NotFound(format!(
            "no POST on /v2/apps/{path}"
        )));
    };
    let name = name_of(id)?;
    let snapshot = Snapshot::read(&s).await?;
    snapshot.app(&name).ok_or_else(|| not_found(&name))?;
    check_lock(&snapshot, &name, &Params::parse(q.as_deref()))?;
    let result = apply::restart(&s, &name).await?;
    Ok(Json(deployment_result(
        &result.object.last_change(),
        result.deployment.as_deref(),
    ))
    .into_response())
}

async fn update_one(
    s: &ApiState,
    path: &str,
    params: &Params,
    body: &Value,
    partial: bool,
) -> Result<Response> {
    let Target::App(id) = target(path) else {
        return Err(MarathonError::NotFound(format!(
            "no update on /v2/apps/{path}"
        )));
    };
    let name = name_of(id)?;
    let snapshot = Snapshot::read(s).await?;
    let existing = snapshot.app(&name).cloned();
    if existing.is_some() {
        check_lock(&snapshot, &name, params)?;
    }
    let desired = desired_app(s, &name, existing.as_ref(), body, partial).await?;
    let result = apply::apply(s, desired, false).await?;
    if result.result == apply::Applied::Created {
        return created(&result);
    }
    Ok(Json(deployment_result(
        &result.object.last_change(),
        result.deployment.as_deref(),
    ))
    .into_response())
}

/// The app a PUT or PATCH asks for: a rollback, a partial update merged onto the current
/// definition, or a whole new definition.
async fn desired_app(
    s: &ApiState,
    name: &str,
    existing: Option<&App>,
    body: &Value,
    partial: bool,
) -> Result<App> {
    let fields = body
        .as_object()
        .ok_or_else(|| MarathonError::BadRequest("an app update must be a JSON object".into()))?;
    if let (Some(version), Some(current), 1) = (
        fields.get("version").and_then(Value::as_str),
        existing,
        fields.len(),
    ) {
        let mut app = current.clone();
        app.spec = stored_version(s, name, version).await?;
        return Ok(app);
    }
    let mut merged: Map<String, Value> = match (existing, partial) {
        (Some(current), true) => app_to_marathon(current, &Default::default())
            .as_object()
            .cloned()
            .unwrap_or_default(),
        _ => Map::new(),
    };
    merged.extend(fields.clone());
    merged.insert("id".into(), json!(path_of(name)));
    let (_, spec) =
        app_from_marathon(&Value::Object(merged), None).map_err(MarathonError::Invalid)?;
    let mut app = existing
        .cloned()
        .unwrap_or_else(|| App::new(name, spec.clone()));
    app.spec = spec;
    Ok(app)
}

/// `PUT` and `PATCH /v2/apps`: several apps at once; all are checked before any is written.
pub async fn update_many(
    State(s): State<ApiState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response> {
    let params = Params::parse(q.as_deref());
    let body = json_body(&body)?;
    let items = body
        .as_array()
        .ok_or_else(|| MarathonError::BadRequest("expected a JSON array of apps".into()))?;
    let snapshot = Snapshot::read(&s).await?;
    let mut desired = Vec::new();
    for item in items {
        let id = item
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| MarathonError::field("/id", "is required"))?;
        let name = name_in_body(id, "/id")?;
        let existing = snapshot.app(&name);
        if existing.is_some() {
            check_lock(&snapshot, &name, &params)?;
        }
        desired.push(desired_app(&s, &name, existing, item, true).await?);
    }
    // One plan, as a group write: dependencies first, a cycle refused.
    let plan = super::groups::plan_of(&snapshot, &desired)?;
    super::groups::in_plan_order(&mut desired, plan);
    Ok(Json(apply_all(&s, desired).await?).into_response())
}

/// `DELETE /v2/apps/{id}`, `/tasks` and `/tasks/{taskId}`.
pub async fn delete(
    State(s): State<ApiState>,
    Path(path): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let params = Params::parse(q.as_deref());
    let snapshot = Snapshot::read(&s).await?;
    match target(&path) {
        Target::App(id) => {
            let name = name_of(id)?;
            snapshot.app(&name).ok_or_else(|| not_found(&name))?;
            check_lock(&snapshot, &name, &params)?;
            let app = apply::delete(&s, &name).await?;
            let deployment = s
                .deployments
                .list("")
                .await?
                .items
                .into_iter()
                .rev()
                .find(|d| d.spec.app_id == name)
                .and_then(|d| d.metadata.name);
            Ok(Json(deployment_result(&app.last_change(), deployment.as_deref())).into_response())
        }
        Target::Tasks(id) => {
            let name = name_of(id)?;
            snapshot.app(&name).ok_or_else(|| not_found(&name))?;
            let host = params.get("host");
            let doomed: Vec<&Task> = snapshot
                .tasks_of(&name)
                .filter(|t| !t.state().is_terminal())
                .filter(|t| {
                    host.is_none_or(|h| {
                        t.status.as_ref().and_then(|st| st.host.as_deref()) == Some(h)
                    })
                })
                .collect();
            kill_tasks(&s, &doomed, &params).await
        }
        Target::Task(id, task_id) => {
            let name = name_of(id)?;
            let task = snapshot
                .tasks_of(&name)
                .find(|t| t.metadata.name.as_deref() == Some(task_id))
                .ok_or_else(|| {
                    MarathonError::NotFound(format!("Task '{task_id}' does not exist"))
                })?;
            let response = kill_tasks(&s, &[task], &params).await?;
            if params.flag("scale") {
                return Ok(response);
            }
            Ok(Json(json!({"task": task_to_marathon(task)})).into_response())
        }
        _ => Err(MarathonError::NotFound(format!(
            "no DELETE on /v2/apps/{path}"
        ))),
    }
}

/// Kills tasks; with `scale=true` the apps shrink by as many (a deployment), otherwise they are replaced.
pub async fn kill_tasks(s: &ApiState, tasks: &[&Task], params: &Params) -> Result<Response> {
    if params.flag("scale") {
        let mut last = None;
        let mut apps: Vec<&str> = tasks.iter().map(|t| t.spec.app_id.as_str()).collect();
        apps.sort_unstable();
        apps.dedup();
        for name in apps {
            let keys: Vec<String> = tasks
                .iter()
                .filter(|t| t.spec.app_id == name)
                .map(|t| t.key())
                .collect();
            last = Some(apply::scale_and_kill(s, name, &keys).await?);
        }
        return Ok(Json(last_result(last.as_ref())).into_response());
    }
    mark_killed(s, tasks.iter().copied()).await?;
    let out: Vec<Value> = tasks.iter().map(|t| task_to_marathon(t)).collect();
    Ok(Json(json!({"tasks": out})).into_response())
}

async fn mark_killed<'a>(s: &ApiState, tasks: impl Iterator<Item = &'a Task>) -> Result<()> {
    for task in tasks {
        match s
            .tasks
            .modify(&task.key(), |t| !std::mem::replace(&mut t.spec.kill, true))
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
