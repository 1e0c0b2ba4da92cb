//! The Deployment record: one change to an App being rolled out (minimal until rolling upgrades land).

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A change to one app: its target generation and what the change does.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pacer.io",
    version = "v1",
    kind = "Deployment",
    status = "DeploymentStatus",
    shortname = "deploy",
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    pub app_id: String,
    pub app_generation: i64,
    pub action: DeploymentAction,
    /// The write (Marathon's deployment plan) this change is a step of, when one write changed
    /// several apps: within a plan an app waits for the apps it depends on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DeploymentAction {
    StartApplication,
    ScaleApplication,
    RestartApplication,
    StopApplication,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    pub phase: DeploymentPhase,
    /// Why it waits (while running) or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Instances of the target version running healthy, of those wanted.
    #[serde(default)]
    pub healthy: i64,
    #[serde(default)]
    pub wanted: i64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeploymentPhase {
    #[default]
    Running,
    Succeeded,
    Failed,
    Superseded,
}

impl Deployment {
    /// The deployment's phase; one nobody has reported on yet is running.
    pub fn phase(&self) -> DeploymentPhase {
        self.status.as_ref().map(|s| s.phase).unwrap_or_default()
    }
}
