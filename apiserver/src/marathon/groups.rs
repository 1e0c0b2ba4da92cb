//! `/v2/groups`: the group tree derived from app ids, group writes (apps, `scaleBy`, `dryRun`)
//! in dependency order, and deleting a group's apps.

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pacer_crd::deployment::DeploymentAction;
use pacer_crd::plan::Change;
use pacer_crd::{AppId, Record};
use serde_json::{Value, json};

use super::MarathonError;
use super::apps::json_body;
use super::query::Params;
use super::view::{Snapshot, apply_all, by_group, deployment_result};
use crate::ApiState;
use crate::apply::{self, path_of};

type Result<T> = std::result::Result<T, MarathonError>;

/// The group tree Marathon shows, derived from app ids.
fn group_json(snapshot: &Snapshot, id: &str) -> Value {
    let groups = by_group(&snapshot.apps);
    let apps: Vec<Value> = groups
        .get(id)
        .map(|apps| apps.iter().map(|a| snapshot.app_json(a, false)).collect())
        .unwrap_or_default();
    let prefix = if id == "/" {
        "/".to_string()
    } else {
        format!("{id}/")
    };
    let children: BTreeSet<String> = groups
        .keys()
        .filter_map(|g| {
            g.strip_prefix(&prefix)
                .filter(|rest| !rest.is_empty())
                .map(|rest| format!("{prefix}{}", rest.split('/').next().unwrap_or_default()))
        })
        .collect();
    let sub: Vec<Value> = children
        .iter()
        .map(|child| group_json(snapshot, child))
        .collect();
    let version = snapshot
        .apps
        .iter()
        .map(|a| a.last_change())
        .max()
        .unwrap_or_default();
    json!({"id": id, "apps": apps, "groups": sub, "pods": [], "dependencies": [], "version": version})
}

/// A group's absolute path (`/` for the root).
fn parse_group(raw: &str) -> std::result::Result<String, String> {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        Ok("/".into())
    } else {
        AppId::parse(trimmed).map(|i| i.path())
    }
}

/// A group id from the URL: one that is not an id is a plain 400.
fn group_path(raw: &str) -> Result<String> {
    parse_group(raw).map_err(|e| MarathonError::BadPath(format!("Invalid id in the path: {e}")))
}

/// A group id from a request body: one that is not an id is a 422 at `path`.
fn group_path_in_body(raw: &str, path: &str) -> Result<String> {
    parse_group(raw).map_err(|e| MarathonError::field(path, e))
}

pub async fn groups(State(s): State<ApiState>) -> Result<Json<Value>> {
    Ok(Json(group_json(&Snapshot::read(&s).await?, "/")))
}

pub async fn group(State(s): State<ApiState>, Path(path): Path<String>) -> Result<Json<Value>> {
    let id = group_path(&path)?;
    let snapshot = Snapshot::read(&s).await?;
    let exists = id == "/"
        || snapshot
            .apps
            .iter()
            .any(|a| path_of(&a.key()).starts_with(&format!("{id}/")));
    if !exists {
        return Err(MarathonError::NotFound(format!(
            "Group '{id}' does not exist"
        )));
    }
    Ok(Json(group_json(&snapshot, &id)))
}

/// `POST /v2/groups` and `PUT /v2/groups/{id}`: apps of a group (ids relative to it), or
/// `scaleBy`; `dryRun` answers the plan without changing anything.
pub async fn update_group(
    State(s): State<ApiState>,
    path: Option<Path<String>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response> {
    let params = Params::parse(q.as_deref());
    let body = json_body(&body)?;
    let id = match (&path, body.get("id").and_then(Value::as_str)) {
        (Some(Path(p)), _) => group_path(p)?,
        (None, Some(id)) => group_path_in_body(id, "/id")?,
        (None, None) => return Err(MarathonError::BadRequest("a group needs an id".into())),
    };
    let snapshot = Snapshot::read(&s).await?;
    let mut desired = Vec::new();
    if let Some(factor) = scale_factor(&body)? {
        for app in snapshot
            .apps
            .iter()
            .filter(|a| path_of(&a.key()).starts_with(&format!("{id}/")))
        {
            let mut scaled = app.clone();
            scaled.spec.instances = (app.spec.instances as f64 * factor).ceil() as i64;
            desired.push(scaled);
        }
    }
    for (app_id, spec) in group_apps(&body, &id, "")? {
        let mut record = snapshot
            .app(&app_id.name())
            .cloned()
            .unwrap_or_else(|| pacer_crd::App::new(&app_id.name(), spec.clone()));
        record.spec = spec;
        desired.push(record);
    }
    let plan = plan_of(&snapshot, &desired)?;
    if params.flag("dryRun") {
        let steps: Vec<Value> = plan
            .iter()
            .map(|step| json!({"actions": step.iter().map(|(action, app)| json!({"action": format!("{action:?}"), "app": app})).collect::<Vec<_>>()}))
            .collect();
        return Ok(Json(json!({"steps": steps})).into_response());
    }
    in_plan_order(&mut desired, plan);
    let result = apply_all(&s, desired).await?;
    let status = if path.is_none() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(result)).into_response())
}

/// A group write's `scaleBy`: a number >= 0 (Play JSON's code when it is not a number).
fn scale_factor(body: &Value) -> Result<Option<f64>> {
    let invalid = |reason: &str| MarathonError::field("/scaleBy", reason);
    match body.get("scaleBy") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            None => Err(invalid("error.expected.jsnumber")),
            Some(f) if !(f.is_finite() && f >= 0.0) => Err(invalid("must be >= 0")),
            Some(f) => Ok(Some(f)),
        },
    }
}

/// The apps of a group definition and of the groups nested in it, with ids (and dependencies)
/// relative to the group that holds them made absolute. The first problem is the answer, with
/// its path in the definition (`/groups(0)/apps(0)/id`), as Marathon answers.
fn group_apps(group: &Value, id: &str, at: &str) -> Result<Vec<(AppId, pacer_crd::AppSpec)>> {
    let mut found = Vec::new();
    for (i, app) in group["apps"].as_array().into_iter().flatten().enumerate() {
        let here = format!("{at}/apps({i})");
        let mut app = app.clone();
        app["id"] = json!(member_id(&app, id, &here)?);
        let converted = pacer_crd::marathon::app_from_marathon(&app, None).map_err(|e| {
            let inside =
                e.0.into_iter()
                    .map(|f| pacer_crd::FieldError::new(format!("{here}{}", f.path), f.reason))
                    .collect();
            MarathonError::Invalid(pacer_crd::FieldErrors(inside))
        })?;
        found.push(converted);
    }
    for (i, sub) in group["groups"].as_array().into_iter().flatten().enumerate() {
        let here = format!("{at}/groups({i})");
        let sub_id = group_path_in_body(&member_id(sub, id, &here)?, &format!("{here}/id"))?;
        found.extend(group_apps(sub, &sub_id, &here)?);
    }
    Ok(found)
}

/// The absolute id of an app or group inside group `id`; one without an id is refused with
/// Play JSON's words.
fn member_id(member: &Value, id: &str, here: &str) -> Result<String> {
    let Some(raw) = member.get("id").and_then(Value::as_str) else {
        let shown = serde_json::to_string(member).unwrap_or_default();
        return Err(MarathonError::field(
            format!("{here}/id"),
            format!("'id' is undefined on object: {shown}"),
        ));
    };
    Ok(if raw.starts_with('/') {
        raw.to_string()
    } else {
        format!("{}/{raw}", id.trim_end_matches('/'))
    })
}

/// Sorts a write's apps in plan order: what others depend on first.
pub(super) fn in_plan_order(
    desired: &mut [pacer_crd::App],
    plan: Vec<Vec<(DeploymentAction, String)>>,
) {
    let order: Vec<String> = plan.into_iter().flatten().map(|(_, app)| app).collect();
    desired.sort_by_key(|a| order.iter().position(|p| *p == path_of(&a.key())));
}

/// The deployment plan of a write of several apps; a dependency cycle is invalid input.
pub(super) fn plan_of(
    snapshot: &Snapshot,
    desired: &[pacer_crd::App],
) -> Result<Vec<Vec<(DeploymentAction, String)>>> {
    let changes: Vec<Change> = desired
        .iter()
        .map(|app| {
            let action = match snapshot.app(&app.key()) {
                None => DeploymentAction::StartApplication,
                Some(current) if current.config() == app.config() => {
                    DeploymentAction::ScaleApplication
                }
                Some(_) => DeploymentAction::RestartApplication,
            };
            Change {
                app: path_of(&app.key()),
                action,
                dependencies: app.spec.dependencies.clone(),
            }
        })
        .collect();
    pacer_crd::plan::steps(&changes).map_err(|e| MarathonError::field("/dependencies", e))
}

pub async fn create_group(
    state: State<ApiState>,
    query: RawQuery,
    body: Bytes,
) -> Result<Response> {
    update_group(state, None, query, body).await
}

pub async fn put_group(
    state: State<ApiState>,
    path: Path<String>,
    query: RawQuery,
    body: Bytes,
) -> Result<Response> {
    update_group(state, Some(path), query, body).await
}

pub async fn delete_group(
    State(s): State<ApiState>,
    Path(path): Path<String>,
) -> Result<Json<Value>> {
    let id = group_path(&path)?;
    let snapshot = Snapshot::read(&s).await?;
    let members: Vec<String> = snapshot
        .apps
        .iter()
        .map(|a| a.key())
        .filter(|k| path_of(k).starts_with(&format!("{id}/")))
        .collect();
    if members.is_empty() {
        return Err(MarathonError::NotFound(format!(
            "Group '{id}' does not exist"
        )));
    }
    let mut last = None;
    for name in members {
        last = Some(apply::delete(&s, &name).await?);
    }
    let version = last.map(|a| a.last_change()).unwrap_or_default();
    Ok(Json(deployment_result(&version, None)))
}
