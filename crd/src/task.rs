//! The Task record: one instance of an App, bound to a node; the agent writes its status.

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::app::AppSpec;
use crate::node::Resources;

/// One instance of an app on one node. The spec carries a snapshot of the app version it runs,
/// so that an agent needs nothing but its own tasks.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pacer.io",
    version = "v1",
    kind = "Task",
    status = "TaskStatus",
    shortname = "task",
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// Record name of the app (`prod_web`).
    pub app_id: String,
    /// The app version (last config change, Marathon's `version`) this task runs.
    pub app_version: String,
    /// The node the task is bound to.
    pub node: String,
    pub resources: Resources,
    /// Host ports reserved on the node, in the order of the app's port mappings or definitions.
    #[serde(default)]
    pub host_ports: Vec<u16>,
    /// Set by the app controller when the task should stop; the agent kills it.
    #[serde(default)]
    pub kill: bool,
    pub app: AppSpec,
    /// The JobRun this task is an attempt of; `None` for an app's instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// Mesos task states, as Marathon reports them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    #[default]
    #[serde(rename = "TASK_STAGING")]
    Staging,
    #[serde(rename = "TASK_STARTING")]
    Starting,
    #[serde(rename = "TASK_RUNNING")]
    Running,
    #[serde(rename = "TASK_KILLING")]
    Killing,
    #[serde(rename = "TASK_FINISHED")]
    Finished,
    #[serde(rename = "TASK_FAILED")]
    Failed,
    #[serde(rename = "TASK_KILLED")]
    Killed,
    #[serde(rename = "TASK_ERROR")]
    Error,
    #[serde(rename = "TASK_LOST")]
    Lost,
    /// The node's lease expired: the task may still run there, unseen.
    #[serde(rename = "TASK_UNREACHABLE")]
    Unreachable,
}

impl TaskState {
    /// A terminal task holds no resources and will never run again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Finished | Self::Failed | Self::Killed | Self::Error | Self::Lost
        )
    }

    /// Marathon's spelling, e.g. `TASK_RUNNING`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staging => "TASK_STAGING",
            Self::Starting => "TASK_STARTING",
            Self::Running => "TASK_RUNNING",
            Self::Killing => "TASK_KILLING",
            Self::Finished => "TASK_FINISHED",
            Self::Failed => "TASK_FAILED",
            Self::Killed => "TASK_KILLED",
            Self::Error => "TASK_ERROR",
            Self::Lost => "TASK_LOST",
            Self::Unreachable => "TASK_UNREACHABLE",
        }
    }
}

/// What the agent last observed of the task.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    pub state: TaskState,
    /// When an agent started after the task re-attached to it (agent recovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_at: Option<String>,
    /// Since when the task's node has been gone (TASK_UNREACHABLE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_since: Option<String>,
    /// The host name or address where the task's ports are reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// One result per health check of the app, in its order (Marathon's `healthCheckResults`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<HealthResult>,
    /// One result per readiness check of the app, in its order, once checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readiness: Vec<ReadinessResult>,
}

/// The state of one readiness check of one task (Marathon's `TaskReadinessCheckResult`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessResult {
    pub name: String,
    pub ready: bool,
    /// With `preserveLastResponse`: what the check last got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_response: Option<ReadinessResponse>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessResponse {
    pub status: i64,
    pub content_type: String,
    pub body: String,
}

/// The state of one health check of one task, as the agent last saw it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthResult {
    pub alive: bool,
    pub consecutive_failures: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_cause: Option<String>,
}

/// The key of a task below `tasks/`: nested under its node, so agents watch only their own.
pub fn task_key(node: &str, name: &str) -> String {
    format!("{node}/{name}")
}

impl Task {
    /// The task's current state; a task nobody has reported on yet is staging.
    pub fn state(&self) -> TaskState {
        self.status.as_ref().map(|s| s.state).unwrap_or_default()
    }

    /// Running and, if the app has health checks, passing all of them.
    pub fn is_healthy(&self) -> bool {
        if self.state() != TaskState::Running {
            return false;
        }
        let checks = self.spec.app.health_checks.len();
        let results = self
            .status
            .as_ref()
            .map(|s| s.health.as_slice())
            .unwrap_or_default();
        checks == 0 || (results.len() == checks && results.iter().all(|r| r.alive))
    }

    /// Healthy and, if the app has readiness checks, passing all of them: what a deployment
    /// waits for.
    pub fn is_ready(&self) -> bool {
        let checks = self.spec.app.readiness_checks.len();
        let results = self
            .status
            .as_ref()
            .map(|s| s.readiness.as_slice())
            .unwrap_or_default();
        self.is_healthy()
            && (checks == 0 || (results.len() == checks && results.iter().all(|r| r.ready)))
    }
}

impl Task {
    /// A task of `app` (version included) on `node` in `state`, for tests.
    pub fn test(app: &crate::App, node: &str, state: TaskState) -> Task {
        let app_id = app.metadata.name.clone().unwrap_or_default();
        let spec = TaskSpec {
            app_id: app_id.clone(),
            app_version: app.version().to_string(),
            node: node.to_string(),
            resources: app.spec.resources(),
            host_ports: Vec::new(),
            kill: false,
            app: app.spec.clone(),
            run: None,
        };
        let mut task = Task::new(&format!("{app_id}.{node}.{}", state.as_str()), spec);
        task.status = Some(TaskStatus {
            state,
            ..TaskStatus::default()
        });
        task
    }
}
