//! What Marathon's responses are built from: one read of apps, tasks and deployments.

use std::collections::BTreeMap;

use pacer_crd::deployment::DeploymentPhase;
use pacer_crd::marathon::{AppRuntime, app_to_marathon, task_to_marathon};
use pacer_crd::{App, AppId, Deployment, Task, TaskState};
use serde_json::{Value, json};

use super::MarathonError;
use crate::ApiState;
use pacer_crd::id::path_of;

/// Apps, tasks and running deployments, read once per request.
pub struct Snapshot {
    pub apps: Vec<App>,
    pub tasks: Vec<Task>,
    pub deployments: Vec<Deployment>,
}

impl Snapshot {
    pub async fn read(state: &ApiState) -> Result<Snapshot, MarathonError> {
        let (apps, tasks, deployments) = tokio::try_join!(
            state.apps.list(""),
            state.tasks.list(""),
            state.deployments.list("")
        )?;
        let running = deployments
            .items
            .into_iter()
            .filter(|d| d.phase() == DeploymentPhase::Running)
            .collect();
        Ok(Snapshot {
            apps: apps.items,
            tasks: tasks.items,
            deployments: running,
        })
    }

    pub fn app(&self, name: &str) -> Option<&App> {
        self.apps
            .iter()
            .find(|a| a.metadata.name.as_deref() == Some(name))
    }

    pub fn tasks_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
        self.tasks.iter().filter(move |t| t.spec.app_id == name)
    }

    /// The app's tasks that have not ended.
    pub fn live_tasks<'a>(&'a self, name: &'a str) -> Vec<&'a Task> {
        self.tasks_of(name)
            .filter(|t| !t.state().is_terminal())
            .collect()
    }

    /// Running deployments of an app.
    pub fn deployments_of(&self, name: &str) -> Vec<String> {
        self.deployments
            .iter()
            .filter(|d| d.spec.app_id == name)
            .filter_map(|d| d.metadata.name.clone())
            .collect()
    }

    /// An app as Marathon shows it, with what `embed` asks for (`tasks`, `taskStats`).
    pub fn app_embedded(&self, app: &App, embed: &[&str]) -> Value {
        let mut out = self.app_json(app, embed.contains(&"tasks"));
        if embed.contains(&"readiness") {
            let name = app.metadata.name.as_deref().unwrap_or_default();
            out["readinessCheckResults"] = Value::Array(self.readiness_results(name));
        }
        if embed.contains(&"taskStats") {
            let name = app.metadata.name.as_deref().unwrap_or_default();
            out["taskStats"] = pacer_crd::marathon::task_stats(
                app,
                &self.live_tasks(name),
                pacer_crd::meta::jiff::Timestamp::now(),
            );
        }
        out
    }

    /// The readiness results of the app's live tasks (Marathon's `readinessCheckResults`).
    pub fn readiness_results(&self, name: &str) -> Vec<Value> {
        let live = self.live_tasks(name);
        let results = live.iter().filter(|t| !t.spec.kill).flat_map(|t| {
            let id = t.metadata.name.clone().unwrap_or_default();
            let results = t.status.iter().flat_map(|s| s.readiness.iter());
            results.map(move |r| {
                // Marathon's TaskReadinessCheckResult: the stored result and its task.
                let mut out = serde_json::to_value(r).unwrap_or_default();
                out["taskId"] = json!(id);
                out
            })
        });
        results.collect()
    }

    /// A running deployment as `GET /v2/deployments` shows it, with the readiness results of
    /// its app's instances.
    pub fn deployment_json(&self, d: &Deployment) -> Value {
        let mut out = deployment_json(d);
        out["currentActions"][0]["readinessCheckResults"] =
            Value::Array(self.readiness_results(&d.spec.app_id));
        out
    }

    /// An app as Marathon shows it, with its tasks if asked.
    pub fn app_json(&self, app: &App, with_tasks: bool) -> Value {
        let name = app.metadata.name.as_deref().unwrap_or_default();
        let live = self.live_tasks(name);
        let count = |s: &[TaskState]| live.iter().filter(|t| s.contains(&t.state())).count() as i64;
        let runtime = AppRuntime {
            tasks_staged: count(&[TaskState::Staging, TaskState::Starting]),
            tasks_running: count(&[TaskState::Running]),
            tasks_healthy: live
                .iter()
                .filter(|t| has_checks(t) && t.is_healthy())
                .count() as i64,
            tasks_unhealthy: live
                .iter()
                .filter(|t| has_checks(t) && t.state() == TaskState::Running && !t.is_healthy())
                .count() as i64,
            deployments: self.deployments_of(name),
        };
        let mut out = app_to_marathon(app, &runtime);
        if with_tasks {
            out["tasks"] = Value::Array(live.iter().map(|t| task_to_marathon(t)).collect());
        }
        out
    }
}

fn has_checks(t: &Task) -> bool {
    !t.spec.app.health_checks.is_empty()
}

/// A deployment as `GET /v2/deployments` shows it.
pub fn deployment_json(d: &Deployment) -> Value {
    let app = path_of(&d.spec.app_id);
    let action = format!("{:?}", d.spec.action);
    let version = d
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| pacer_runtime::timestamp(t.0))
        .unwrap_or_default();
    json!({
        "id": d.metadata.name,
        "version": version,
        "affectedApps": [app],
        "affectedPods": [],
        "steps": [{"actions": [{"action": action, "app": app}]}],
        "currentActions": [{"action": action, "app": app, "readinessCheckResults": []}],
        "currentStep": 1,
        "totalSteps": 1,
    })
}

/// `{"version": ..., "deploymentId": ...}`, the answer to most writes.
pub fn deployment_result(version: &str, deployment: Option<&str>) -> Value {
    json!({"version": version, "deploymentId": deployment})
}

/// The answer to a write of several apps: the version and deployment of the last one.
pub fn last_result(last: Option<&crate::apply::ApplyResult>) -> Value {
    let version = last.map(|r| r.object.last_change()).unwrap_or_default();
    deployment_result(&version, last.and_then(|r| r.deployment.as_deref()))
}

/// Applies apps one after the other, in the order given (dependencies first: callers sort
/// them and check them all first), as the steps of one plan; the last one's result.
pub async fn apply_all(s: &ApiState, desired: Vec<App>) -> Result<Value, MarathonError> {
    let plan = (desired.len() > 1).then(|| uuid::Uuid::new_v4().to_string());
    let mut last = None;
    for app in desired {
        last = Some(crate::apply::apply_in_plan(s, app, false, plan.as_deref()).await?);
    }
    Ok(last_result(last.as_ref()))
}

/// Apps grouped by the group path that holds them (`/` for top-level apps).
pub fn by_group(apps: &[App]) -> BTreeMap<String, Vec<&App>> {
    let mut groups: BTreeMap<String, Vec<&App>> = BTreeMap::new();
    for app in apps {
        let path = AppId::parse(app.metadata.name.as_deref().unwrap_or_default())
            .map(|i| i.path())
            .unwrap_or_default();
        let parent = path
            .rsplit_once('/')
            .map(|(p, _)| {
                if p.is_empty() {
                    "/".to_string()
                } else {
                    p.to_string()
                }
            })
            .unwrap_or_default();
        groups.entry(parent).or_default().push(app);
    }
    groups
}
