//! Marathon's app JSON: input of any era normalized to an AppSpec (1.5+ form), and an App
//! written back with only the keys Marathon emits. No I/O.

use serde_json::{Map, Value, json};

use crate::App;
use crate::app::{AppSpec, SCALED_ANNOTATION, VERSION_ANNOTATION};
use crate::error::{FieldError, FieldErrors};
use crate::id::AppId;
use crate::id::path_of;
use crate::task::Task;
use k8s_openapi::jiff;

/// Read-only keys of Marathon's responses, and keys Pacer accepts but does not model yet.
/// A response posted back as a request (as Marathon's own clients do) is accepted.
const DROPPED: [&str; 20] = [
    "id",
    "version",
    "versionInfo",
    "tasks",
    "tasksStaged",
    "tasksRunning",
    "tasksHealthy",
    "tasksUnhealthy",
    "deployments",
    "lastTaskFailure",
    "taskStats",
    "readinessCheckResults",
    "executor",
    "fetch",
    "uris",
    "storeUrls",
    "secrets",
    "residency",
    "gpus",
    "ipAddress",
];

/// Converts a Marathon app definition, in any era's form, into an id and a normalized spec.
/// `path_id` is the id from the URL, used when the body has none. Problems carry Marathon's
/// JSON-pointer paths (`/container/docker/image`).
pub fn app_from_marathon(
    body: &Value,
    path_id: Option<&str>,
) -> Result<(AppId, AppSpec), FieldErrors> {
    let Some(input) = body.as_object() else {
        return Err(one("/", "an app definition must be a JSON object"));
    };
    let raw_id = input
        .get("id")
        .and_then(Value::as_str)
        .or(path_id)
        .ok_or_else(|| one("/id", "is required"))?;
    let id = AppId::parse(raw_id).map_err(|e| one("/id", &e))?;
    let mut app = input.clone();
    upgrade_legacy(&mut app)?;
    app.retain(|k, _| !DROPPED.contains(&k.as_str()));
    let mut spec: AppSpec = serde_path_to_error::deserialize(Value::Object(app)).map_err(|e| {
        let path = marathon_path(&e.path().to_string());
        let reason = e.into_inner().to_string();
        let reason = play_json_code(&reason).map_or(reason, str::to_string);
        FieldErrors(vec![FieldError::new(path, reason)])
    })?;
    spec.normalize();
    let problems: Vec<FieldError> = spec
        .validate()
        .into_iter()
        .map(|e| FieldError::new(marathon_path(&e.path), e.reason))
        .collect();
    FieldErrors(problems).into_result()?;
    // Dependencies may be relative to the app's group; they are stored absolute.
    let mut resolved = Vec::new();
    for (i, dep) in spec.dependencies.iter().enumerate() {
        let path = id
            .resolve(dep)
            .map_err(|e| one(&format!("/dependencies({i})"), &e))?;
        resolved.push(path.path());
    }
    spec.dependencies = resolved;
    Ok((id, spec))
}

fn one(path: &str, reason: &str) -> FieldErrors {
    FieldErrors(vec![FieldError::new(path, reason)])
}

/// `spec.container.portMappings[0].hostPort` -> `/container/portMappings(0)/hostPort`.
pub fn marathon_path(path: &str) -> String {
    let trimmed = path.strip_prefix("spec.").unwrap_or(path);
    if trimmed == "." || trimmed.is_empty() {
        return "/".into();
    }
    format!(
        "/{}",
        trimmed
            .replace('.', "/")
            .replace('[', "(")
            .replace(']', ")")
    )
}

/// The error code Play JSON (Marathon's JSON library) gives a value of the wrong type, which
/// clients compare byte for byte (`error.expected.jsnumber`); None for other problems.
fn play_json_code(serde_reason: &str) -> Option<&'static str> {
    if serde_reason.starts_with("unknown variant") {
        return Some(ENUM_LITERAL);
    }
    let expected = serde_reason
        .strip_prefix("invalid type: ")?
        .split(", expected ")
        .nth(1)?;
    let code = match expected {
        "f64" | "f32" | "i64" | "i32" | "u64" | "u32" | "u16" | "u8" | "a number" => {
            "error.expected.jsnumber"
        }
        "a string" => "error.expected.jsstring",
        "a boolean" => "error.expected.jsboolean",
        "a sequence" => "error.expected.jsarray",
        _ if expected.starts_with("a map") || expected.starts_with("struct") => {
            "error.expected.jsobject"
        }
        _ => return None,
    };
    Some(code)
}

/// Play JSON's answer to a value outside an enumeration.
const ENUM_LITERAL: &str = "error.unknown.enum.literal";

/// Whether a problem is one Play JSON finds while reading (Marathon's "Invalid JSON"), rather
/// than one of validation ("Object is not valid").
pub fn is_json_error(reason: &str) -> bool {
    reason.starts_with("error.") || reason.contains(" is undefined on object: ")
}

/// Rewrites pre-1.5 forms into the 1.5+ layout, as Marathon did on input.
fn upgrade_legacy(app: &mut Map<String, Value>) -> Result<(), FieldErrors> {
    if let Some(ports) = app.remove("ports")
        && !app.contains_key("portDefinitions")
    {
        let defs: Vec<Value> = ports
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| json!({"port": p}))
            .collect();
        app.insert("portDefinitions".into(), Value::Array(defs));
    }
    if let Some(network) = app
        .get("ipAddress")
        .and_then(|ip| ip.get("networkName"))
        .cloned()
    {
        app.entry("networks")
            .or_insert_with(|| json!([{"mode": "container", "name": network}]));
    }
    let Some(container) = app.get_mut("container").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let docker = container.get_mut("docker").and_then(Value::as_object_mut);
    let (network, mappings) = match docker {
        Some(d) => (d.remove("network"), d.remove("portMappings")),
        None => (None, None),
    };
    if let Some(mappings) = mappings.filter(|m| !m.is_null()) {
        container.entry("portMappings").or_insert(mappings);
    }
    let networks = match network.as_ref().filter(|n| !n.is_null()) {
        None => None,
        Some(Value::String(n)) if n == "BRIDGE" => Some(json!([{"mode": "container/bridge"}])),
        Some(Value::String(n)) if n == "USER" => Some(json!([{"mode": "container"}])),
        Some(Value::String(n)) if n == "HOST" || n == "NONE" => Some(json!([{"mode": "host"}])),
        Some(Value::String(_)) => return Err(one("/container/docker/network", ENUM_LITERAL)),
        Some(_) => {
            return Err(one("/container/docker/network", "error.expected.jsstring"));
        }
    };
    if let Some(networks) = networks {
        app.entry("networks").or_insert(networks);
    }
    Ok(())
}

/// Status counts and links an app response carries besides its definition.
#[derive(Debug, Clone, Default)]
pub struct AppRuntime {
    pub tasks_staged: i64,
    pub tasks_running: i64,
    pub tasks_healthy: i64,
    pub tasks_unhealthy: i64,
    pub deployments: Vec<String>,
}

/// An App as Marathon's `GET /v2/apps/{id}` shows it: the definition with every default,
/// `id`, `version`, `versionInfo`, counts and running deployments.
pub fn app_to_marathon(app: &App, runtime: &AppRuntime) -> Value {
    let mut out = match serde_json::to_value(&app.spec) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let id = AppId::parse(app.metadata.name.as_deref().unwrap_or_default())
        .map(|i| i.path())
        .unwrap_or_default();
    let annotations = app.metadata.annotations.clone().unwrap_or_default();
    let version = annotations
        .get(VERSION_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let scaled = annotations
        .get(SCALED_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| version.clone());
    // `role` arrived with Marathon 1.9; the default role is left out so that clients and
    // schemas of earlier versions see the shapes they know.
    if app.spec.role == "*" {
        out.remove("role");
    }
    out.insert("id".into(), json!(id));
    out.insert("executor".into(), json!(""));
    out.insert("gpus".into(), json!(0));
    out.insert("fetch".into(), json!([]));
    out.insert("version".into(), json!(app.last_change()));
    out.insert(
        "versionInfo".into(),
        json!({"lastScalingAt": scaled, "lastConfigChangeAt": version}),
    );
    out.insert("tasksStaged".into(), json!(runtime.tasks_staged));
    out.insert("tasksRunning".into(), json!(runtime.tasks_running));
    out.insert("tasksHealthy".into(), json!(runtime.tasks_healthy));
    out.insert("tasksUnhealthy".into(), json!(runtime.tasks_unhealthy));
    out.insert(
        "deployments".into(),
        Value::Array(
            runtime
                .deployments
                .iter()
                .map(|d| json!({"id": d}))
                .collect(),
        ),
    );
    if let Some(failure) = app
        .status
        .as_ref()
        .and_then(|s| s.last_task_failure.as_ref())
    {
        out.insert(
            "lastTaskFailure".into(),
            json!({"appId": id, "host": "", "message": failure.message, "state": failure.state,
                   "taskId": failure.task_id, "timestamp": failure.timestamp, "version": failure.version}),
        );
    }
    out.values_mut().for_each(whole_numbers);
    Value::Object(out)
}

/// Marathon's `healthCheckResults` of a task.
fn health_results(task: &Task, status: &crate::TaskStatus) -> Vec<Value> {
    let id = task.metadata.name.clone().unwrap_or_default();
    status
        .health
        .iter()
        .map(|h| {
            json!({"alive": h.alive, "consecutiveFailures": h.consecutive_failures, "firstSuccess": h.first_success,
                   "lastSuccess": h.last_success, "lastFailure": h.last_failure, "lastFailureCause": h.last_failure_cause,
                   "taskId": id, "instanceId": id})
        })
        .collect()
}

/// Writes whole floats as integers (`10`, not `10.0`), as Marathon does.
fn whole_numbers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n
                .as_f64()
                .filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15)
            {
                *v = json!(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// A task as Marathon shows it (`id` = `app_path.uuid`).
pub fn task_to_marathon(task: &Task) -> Value {
    let status = task.status.clone().unwrap_or_default();
    let app_id = path_of(&task.spec.app_id);
    let service_ports: Vec<i64> = task
        .spec
        .app
        .container
        .as_ref()
        .map(|c| c.port_mappings.iter().map(|m| m.service_port).collect())
        .unwrap_or_default();
    let host = status.host.clone().unwrap_or_default();
    let mut out = json!({
        "id": task.metadata.name,
        "appId": app_id,
        "host": host,
        "ports": task.spec.host_ports,
        "servicePorts": service_ports,
        "slaveId": task.spec.node,
        "state": task.state().as_str(),
        "version": task.spec.app_version,
        "stagedAt": status.staged_at,
        "startedAt": status.started_at,
        "ipAddresses": [{"ipAddress": host, "protocol": "IPv4"}],
        "healthCheckResults": health_results(task, &status),
    });
    if status.started_at.is_none() {
        out.as_object_mut().map(|m| m.remove("startedAt"));
    }
    out
}

/// Marathon's `taskStats` of an app's live tasks at `now`: counts and life times of those
/// started after the last scaling, of the current and of older versions, and of all; a group
/// without tasks is left out, as `lifeTime` is when none has started. Computed from the tasks
/// a response reads anyway: nothing is kept for it.
pub fn task_stats(app: &App, tasks: &[&Task], now: jiff::Timestamp) -> Value {
    let scaled_at = app
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SCALED_ANNOTATION))
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let started = |t: &Task| {
        let status = t.status.as_ref()?;
        status
            .started_at
            .as_deref()
            .or(status.staged_at.as_deref())?
            .parse::<jiff::Timestamp>()
            .ok()
    };
    let after_scaling: Vec<&Task> = tasks
        .iter()
        .copied()
        .filter(|t| scaled_at.is_none_or(|at| started(t).is_some_and(|s| s >= at)))
        .collect();
    let (latest, outdated): (Vec<&Task>, Vec<&Task>) = tasks
        .iter()
        .partition(|t| t.spec.app_version == app.version());
    let mut out = Map::new();
    for (key, group) in [
        ("startedAfterLastScaling", after_scaling.as_slice()),
        ("withLatestConfig", latest.as_slice()),
        ("withOutdatedConfig", outdated.as_slice()),
        ("totalSummary", tasks),
    ] {
        if !group.is_empty() {
            out.insert(key.into(), json!({"stats": stats_of(group, now)}));
        }
    }
    Value::Object(out)
}

fn stats_of(tasks: &[&Task], now: jiff::Timestamp) -> Value {
    use crate::task::TaskState;
    let checked = |t: &&&Task| !t.spec.app.health_checks.is_empty();
    let count = |keep: &dyn Fn(&Task) -> bool| tasks.iter().filter(|t| keep(t)).count();
    let counts = json!({
        "staged": count(&|t| matches!(t.state(), TaskState::Staging | TaskState::Starting)),
        "running": count(&|t| t.state() == TaskState::Running),
        "healthy": tasks.iter().filter(checked).filter(|t| t.is_healthy()).count(),
        "unhealthy": tasks.iter().filter(checked)
            .filter(|t| t.state() == TaskState::Running && !t.is_healthy()).count(),
    });
    let mut lives: Vec<f64> = tasks
        .iter()
        .filter_map(|t| {
            t.status
                .as_ref()?
                .started_at
                .as_deref()?
                .parse::<jiff::Timestamp>()
                .ok()
        })
        .map(|started| now.duration_since(started).as_secs_f64().max(0.0))
        .collect();
    let mut stats = json!({"counts": counts});
    if !lives.is_empty() {
        lives.sort_by(f64::total_cmp);
        let n = lives.len();
        let median = if n % 2 == 1 {
            lives[n / 2]
        } else {
            (lives[n / 2 - 1] + lives[n / 2]) / 2.0
        };
        let average = lives.iter().sum::<f64>() / n as f64;
        stats["lifeTime"] = json!({"averageSeconds": average, "medianSeconds": median});
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(v: Value) -> Result<(AppId, AppSpec), FieldErrors> {
        app_from_marathon(&v, None)
    }

    #[test]
    fn legacy_docker_network_and_port_mappings_move_to_1_5_form() {
        let (id, spec) = convert(json!({
            "id": "/webserver", "cmd": "httpd", "uris": [],
            "container": {"type": "DOCKER", "docker": {"image": "busybox", "network": "BRIDGE",
                "portMappings": [{"containerPort": 8080, "hostPort": 0, "servicePort": 9000, "protocol": "tcp"}]}}
        }))
        .unwrap();
        assert_eq!(id.path(), "/webserver");
        let container = spec.container.unwrap();
        assert_eq!(container.port_mappings[0].service_port, 9000);
        assert_eq!(spec.networks[0].mode, crate::app::NetworkMode::Bridge);
    }

    #[test]
    fn an_app_gets_one_port_by_default_and_an_empty_list_means_none() {
        let (_, spec) = convert(json!({"id": "a", "cmd": "httpd -p $PORT0"})).unwrap();
        let ports: Vec<(i64, &str, Option<&str>)> = spec
            .port_definitions
            .iter()
            .map(|p| (p.port, p.protocol.as_str(), p.name.as_deref()))
            .collect();
        assert_eq!(ports, vec![(0, "tcp", Some("default"))]);
        assert_eq!(spec.requested_host_ports(), vec![0]);
        let (_, none) = convert(json!({"id": "a", "cmd": "x", "portDefinitions": []})).unwrap();
        assert!(none.port_definitions.is_empty());
        let (_, legacy) = convert(json!({"id": "a", "cmd": "x", "ports": []})).unwrap();
        assert!(legacy.port_definitions.is_empty());
        // On a bridge network the ports are the port mappings; the default one is dropped.
        let (_, bridge) = convert(
            json!({"id": "a", "cmd": "x", "networks": [{"mode": "container/bridge"}],
            "container": {"docker": {"image": "i"}, "portMappings": [{"containerPort": 80}]}}),
        )
        .unwrap();
        assert!(bridge.port_definitions.is_empty());
        assert_eq!(bridge.declared_ports().len(), 1);
    }

    #[test]
    fn task_stats_count_and_time_each_group_of_tasks() {
        use crate::task::TaskState;
        let now: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let mut app = App::test("web");
        let annotations = [
            (
                VERSION_ANNOTATION.to_string(),
                "2026-12-01T09:00:00Z".to_string(),
            ),
            (
                SCALED_ANNOTATION.to_string(),
                "2026-12-01T09:30:00Z".to_string(),
            ),
        ];
        app.metadata.annotations = Some(annotations.into());
        let task = |state, started: Option<&str>, version: &str| {
            let mut t = Task::test(&app, "n1", state);
            t.spec.app_version = version.into();
            t.status.as_mut().unwrap().started_at = started.map(str::to_string);
            t
        };
        let old = task(
            TaskState::Running,
            Some("2026-12-01T08:00:00Z"),
            "2026-12-01T07:00:00Z",
        );
        let early = task(
            TaskState::Running,
            Some("2026-12-01T09:10:00Z"),
            app.version(),
        );
        let late = task(
            TaskState::Running,
            Some("2026-12-01T09:50:00Z"),
            app.version(),
        );
        let staged = task(TaskState::Staging, None, app.version());
        let stats = task_stats(&app, &[&old, &early, &late, &staged], now);
        let total = &stats["totalSummary"]["stats"];
        assert_eq!(
            total["counts"],
            json!({"staged": 1, "running": 3, "healthy": 0, "unhealthy": 0})
        );
        // Lives of 7200, 3000 and 600 s.
        assert_eq!(total["lifeTime"]["averageSeconds"], json!(3600.0));
        assert_eq!(total["lifeTime"]["medianSeconds"], json!(3000.0));
        assert_eq!(
            stats["withOutdatedConfig"]["stats"]["counts"]["running"],
            json!(1)
        );
        assert_eq!(
            stats["withLatestConfig"]["stats"]["counts"]["running"],
            json!(2)
        );
        let after = &stats["startedAfterLastScaling"]["stats"];
        assert_eq!(after["counts"]["running"], json!(1));
        assert_eq!(after["lifeTime"]["medianSeconds"], json!(600.0));
        let none = task_stats(&app, &[&staged], now);
        assert!(
            none.get("withOutdatedConfig").is_none()
                && none.get("startedAfterLastScaling").is_none()
        );
        assert!(
            none["totalSummary"]["stats"].get("lifeTime").is_none(),
            "no task has started"
        );
    }

    #[test]
    fn legacy_ports_become_port_definitions() {
        let (_, spec) = convert(json!({"id": "a", "cmd": "x", "ports": [0, 8080]})).unwrap();
        let ports: Vec<i64> = spec.port_definitions.iter().map(|p| p.port).collect();
        assert_eq!(ports, vec![0, 8080]);
    }

    #[test]
    fn type_errors_get_play_json_codes() {
        let reason = |v: Value| convert(v).unwrap_err().0[0].clone();
        let cpus = reason(json!({"id": "/a", "cmd": "x", "cpus": "https://a string"}));
        assert_eq!(
            (cpus.path.as_str(), cpus.reason.as_str()),
            ("/cpus", "error.expected.jsnumber")
        );
        let cmd = reason(json!({"id": "/a", "cmd": 5}));
        assert_eq!(cmd.reason, "error.expected.jsstring");
        let network = reason(
            json!({"id": "/test", "cmd": "ls", "container": {"type": "DOCKER",
            "docker": {"image": "busybox", "network": "bogus"}}}),
        );
        assert_eq!(
            (network.path.as_str(), network.reason.as_str()),
            ("/container/docker/network", "error.unknown.enum.literal")
        );
        assert!(is_json_error(&network.reason));
        let negative = reason(json!({"id": "/a", "cmd": "x", "mem": -5}));
        assert!(
            !is_json_error(&negative.reason),
            "{negative:?} is validation"
        );
    }

    #[test]
    fn errors_use_marathon_paths() {
        let err = convert(json!({"id": "/a", "cmd": "x", "cpus": "lots"})).unwrap_err();
        assert_eq!(err.0[0].path, "/cpus");
        let err =
            convert(json!({"id": "/a", "container": {"docker": {"image": ""}}, "instances": -1}))
                .unwrap_err();
        let paths: Vec<&str> = err.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["/instances", "/container/docker/image"]);
        assert_eq!(convert(json!({"cmd": "x"})).unwrap_err().0[0].path, "/id");
        assert_eq!(
            convert(json!({"id": "/A", "cmd": "x"})).unwrap_err().0[0].path,
            "/id"
        );
        assert_eq!(
            marathon_path("spec.constraints[1][2]"),
            "/constraints(1)(2)"
        );
    }

    #[test]
    fn output_has_id_version_and_counts() {
        let mut app = App::test("prod_web");
        app.metadata.annotations = Some(
            [(
                VERSION_ANNOTATION.to_string(),
                "2026-01-01T00:00:00.000Z".to_string(),
            )]
            .into(),
        );
        let out = app_to_marathon(
            &app,
            &AppRuntime {
                tasks_running: 2,
                deployments: vec!["d1".into()],
                ..Default::default()
            },
        );
        assert_eq!(out["id"], "/prod/web");
        assert_eq!(out["version"], "2026-01-01T00:00:00.000Z");
        assert_eq!(out["tasksRunning"], 2);
        assert_eq!(out["deployments"][0]["id"], "d1");
        assert_eq!(
            out["mem"],
            json!(128),
            "whole numbers are written as integers"
        );
        assert_eq!(out["backoffFactor"], json!(1.15));
        let again = app_from_marathon(&out, None).unwrap();
        assert_eq!(again.1, app.spec, "a response posted back is the same app");
    }
}
