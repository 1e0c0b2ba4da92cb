//! `/v2/tasks`, `/v2/deployments`, `/v2/queue`, `/v2/groups`, `/v2/info`, `/v2/leader`, `/metrics`.

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use pacer_crd::deployment::DeploymentAction;
use pacer_crd::marathon::task_to_marathon;
use pacer_crd::plan::Change;
use pacer_crd::{AppId, Record, Task, TaskState};
use serde_json::{Value, json};

use super::MarathonError;
use super::apps::{json_body, kill_tasks, name_of};
use super::query::Params;
use super::view::{Snapshot, apply_all, by_group, deployment_result};
use crate::ApiState;
use crate::apply::{self, path_of};

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

pub async fn deployments(State(s): State<ApiState>) -> Result<Json<Value>> {
    let snapshot = Snapshot::read(&s).await?;
    Ok(Json(Value::Array(
        snapshot
            .deployments
            .iter()
            .map(|d| snapshot.deployment_json(d))
            .collect(),
    )))
}

/// `DELETE /v2/deployments/{id}`: with `force=true` stop where it is (202); otherwise roll the
/// app back to the version before the deployment (a new deployment).
pub async fn cancel_deployment(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let params = Params::parse(q.as_deref());
    let deployment =
        s.deployments.get(&id).await?.ok_or_else(|| {
            MarathonError::NotFound(format!("DeploymentPlan {id} does not exist"))
        })?;
    let cancelled = pacer_crd::DeploymentStatus {
        phase: pacer_crd::deployment::DeploymentPhase::Superseded,
        message: Some("cancelled".into()),
        ..deployment.status.clone().unwrap_or_default()
    };
    s.deployments.update_status(&id, cancelled).await?;
    if params.flag("force") {
        return Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response());
    }
    let name = deployment.spec.app_id.clone();
    let versions = s.versions.list(&format!("{name}/")).await?.items;
    let Some(previous) = versions.iter().rev().nth(1) else {
        return Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response());
    };
    let mut app = s.apps.get(&name).await?.ok_or_else(|| {
        MarathonError::NotFound(format!("App '{}' does not exist", path_of(&name)))
    })?;
    app.spec = previous.spec.app.clone();
    let result = apply::apply(&s, app, false).await?;
    Ok(Json(deployment_result(
        &result.object.last_change(),
        result.deployment.as_deref(),
    ))
    .into_response())
}

pub async fn queue(State(s): State<ApiState>) -> Result<Json<Value>> {
    let snapshot = Snapshot::read(&s).await?;
    let items: Vec<Value> = snapshot
        .apps
        .iter()
        .filter_map(|app| {
            let status = app.status.clone().unwrap_or_default();
            let delayed = status.launch_delayed_until.clone();
            if status.tasks_pending == 0 && delayed.is_none() {
                return None;
            }
            let left = delayed.as_deref().and_then(|d| d.parse::<pacer_crd::meta::jiff::Timestamp>().ok())
                .map(|until| until.duration_since(pacer_crd::meta::jiff::Timestamp::now()).as_secs().max(0))
                .unwrap_or(0);
            Some(json!({
                "count": status.tasks_pending,
                "delay": {"timeLeftSeconds": left, "overdue": left == 0},
                "since": app.last_change(),
                "app": snapshot.app_json(app, false),
                "processedOffersSummary": offers_summary(&snapshot, app, status.placement.as_ref()),
                "lastUnusedOffers": status.placement.iter().flat_map(|p| p.nodes.iter().map(|n| json!({
                    "offer": {"id": format!("{}.{}", n.node, app.spec.role), "agentId": n.node, "hostname": n.node},
                    "reason": [n.reason],
                    "timestamp": p.at.clone().unwrap_or_else(|| app.last_change()),
                }))).collect::<Vec<_>>(),
            }))
        })
        .collect();
    Ok(Json(json!({"queue": items})))
}

/// Marathon's offer funnel, in its order: each offer is counted as processed by every step it
/// reaches and declined by the first that refuses it (reasons Pacer never gives stay at 0).
const FUNNEL: [&str; 10] = [
    "UnfulfilledRole",
    "UnfulfilledConstraint",
    "NoCorrespondingReservationFound",
    "AgentMaintenance",
    "InsufficientCpus",
    "InsufficientMemory",
    "InsufficientDisk",
    "InsufficientGpus",
    "InsufficientPorts",
    "DeclinedScarceResources",
];

/// Marathon's per-reason counts of the last placement attempt: every node's offer was
/// processed; those rejected are declined, counted under the first reason that rejected them.
/// `lastUnusedOfferAt` is when the reasons were first seen, `lastUsedOfferAt` when the app's
/// newest task was placed (both left out when there is none).
fn offers_summary(
    snapshot: &Snapshot,
    app: &pacer_crd::App,
    report: Option<&pacer_crd::app::PlacementReport>,
) -> Value {
    let Some(report) = report else {
        return json!({"processedOffersCount": 0, "unusedOffersCount": 0, "rejectSummaryLastOffers": [], "rejectSummaryLaunchAttempt": []});
    };
    let last_used = snapshot
        .tasks_of(app.metadata.name.as_deref().unwrap_or_default())
        .filter_map(|t| t.metadata.creation_timestamp.as_ref())
        .max_by_key(|t| t.0)
        .map(|t| pacer_runtime::timestamp(t.0));
    let mut left = report.nodes_considered;
    let reasons: Vec<Value> = FUNNEL
        .iter()
        .map(|&reason| {
            let declined = report.rejected.get(reason).copied().unwrap_or(0);
            let entry = json!({"reason": reason, "declined": declined, "processed": left});
            left -= declined;
            entry
        })
        .collect();
    let unused: i64 = report.rejected.values().sum();
    let mut summary = json!({
        "processedOffersCount": report.nodes_considered,
        "unusedOffersCount": unused,
        "rejectSummaryLastOffers": reasons,
        "rejectSummaryLaunchAttempt": reasons,
    });
    if let Some(at) = &report.at {
        summary["lastUnusedOfferAt"] = json!(at);
    }
    if let Some(at) = last_used {
        summary["lastUsedOfferAt"] = json!(at);
    }
    summary
}

/// `DELETE /v2/queue/{id}/delay`: launch the next instance without waiting out the backoff.
pub async fn reset_delay(
    State(s): State<ApiState>,
    Path(path): Path<String>,
) -> Result<StatusCode> {
    let id = path
        .strip_suffix("/delay")
        .ok_or_else(|| MarathonError::NotFound(format!("no DELETE on /v2/queue/{path}")))?;
    let name = name_of(id)?;
    let found = s.apps.modify(&name, |app| {
        let status = app.status.get_or_insert_with(Default::default);
        let changed = status.launch_delayed_until.is_some() || status.consecutive_failures > 0;
        status.launch_delayed_until = None;
        status.consecutive_failures = 0;
        changed
    });
    match found.await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(e) if e.is_not_found() => Err(MarathonError::NotFound(format!(
            "Application {} not found in tasks queue.",
            path_of(&name)
        ))),
        Err(e) => Err(e.into()),
    }
}

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
