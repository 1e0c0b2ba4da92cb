//! Pacer's record types (App, Task, Node, Offer, Deployment): serde, schema, defaults, validation; no I/O.

pub mod app;
pub mod app_version;
pub mod crds;
pub mod deployment;
pub mod drain;
pub mod error;
pub mod id;
pub mod job;
pub mod manifest;
pub mod marathon;
pub mod node;
pub mod offer;
pub mod plan;
pub mod policy;
pub mod role;
pub mod subscription;
pub mod task;
pub mod time;
pub mod token;
mod validate;

pub use app::{App, AppSpec, AppStatus, KillSelection, NetworkMode};
pub use app_version::{AppVersion, AppVersionSpec};
pub use deployment::{Deployment, DeploymentSpec, DeploymentStatus};
pub use drain::{Drain, DrainSpec};
pub use error::{FieldError, FieldErrors};
pub use id::AppId;
pub use job::{Job, JobRun, JobRunSpec, JobRunStatus, JobSpec, JobStatus, RunPhase};
pub use kube_core::object::{HasSpec, HasStatus};
pub use kube_core::{CustomResourceExt, Resource};
pub use manifest::Manifest;
pub use node::{Node, NodeSpec, NodeStatus, PortRange, Resources};
pub use offer::{Offer, OfferSpec};
pub use policy::{Policy, PolicyAllow, PolicyException, PolicySpec};
pub use role::{Quantities, Role, RoleSpec};
pub use subscription::{EventSubscription, EventSubscriptionSpec};
pub use task::{
    HealthResult, ReadinessResponse, ReadinessResult, Task, TaskSpec, TaskState, TaskStatus,
};
pub use token::{ApiToken, ApiTokenSpec};

use serde::{Serialize, de::DeserializeOwned};

/// The API group of every record.
pub const GROUP: &str = "pacer.io";
/// The `apiVersion` every record carries.
pub const API_VERSION: &str = "pacer.io/v1";

/// A record kind stored in etcd under `<prefix>/<plural>/<key>`.
pub trait Record:
    Resource<DynamicType = ()>
    + Serialize
    + DeserializeOwned
    + Clone
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The key of this record below its kind's prefix. Most kinds use their name; tasks nest
    /// under their node so that an agent can watch only its own.
    fn key(&self) -> String {
        self.meta().name.clone().unwrap_or_default()
    }

    /// The name of the record stored under `key` (what `key` made of it): a deletion seen
    /// by a watch without previous values carries only the key.
    fn name_of_key(key: &str) -> &str {
        key
    }

    /// The plural used in keys and URLs (`apps`, `tasks`, ...).
    fn plural_name() -> String {
        <Self as Resource>::plural(&()).into_owned()
    }
}

impl Record for App {}
impl Record for Node {}
impl Record for Offer {}
impl Record for Role {}
impl Record for Drain {}
impl Record for EventSubscription {}
impl Record for ApiToken {}
impl Record for Job {}
impl Record for JobRun {}
impl Record for Deployment {}
/// The name in the key of a record kept under its parent (`<parent>/<name>`).
fn nested_name(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(_, name)| name)
}

impl Record for AppVersion {
    fn key(&self) -> String {
        format!(
            "{}/{}",
            self.spec.app_id,
            self.meta().name.as_deref().unwrap_or_default()
        )
    }

    fn name_of_key(key: &str) -> &str {
        nested_name(key)
    }
}
impl Record for Task {
    fn key(&self) -> String {
        task::task_key(
            &self.spec.node,
            self.meta().name.as_deref().unwrap_or_default(),
        )
    }

    fn name_of_key(key: &str) -> &str {
        nested_name(key)
    }
}

/// Kubernetes' metadata types, as the records carry them.
pub mod meta {
    pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    /// The time library the metadata uses, re-exported so that all crates share one.
    pub use k8s_openapi::jiff;
}
