//! The App record: a Marathon app definition, with Marathon's field names and defaults.

use std::collections::BTreeMap;

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A long-running service: `instances` copies of a command or a container.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pacer.io",
    version = "v1",
    kind = "App",
    status = "AppStatus",
    shortname = "app",
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppSpec {
    /// Shell command run with `sh -c` (Marathon's `cmd`). Exclusive with `args`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// Command and arguments run without a shell, or appended to the image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// How many copies should run.
    #[serde(default = "default_instances")]
    pub instances: i64,
    #[serde(default = "default_cpus")]
    pub cpus: f64,
    /// Memory in MiB.
    #[serde(default = "default_mem")]
    pub mem: f64,
    /// Scratch disk in MiB.
    #[serde(default)]
    pub disk: f64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    #[serde(default = "default_networks")]
    pub networks: Vec<Network>,
    /// Ports for host networking; `port: 0` picks a free host port. Left out, an app gets one
    /// (Marathon: "each application is given a single port by default, so `$PORT0` is always
    /// available"); an empty list means none.
    #[serde(default = "default_port_definitions")]
    pub port_definitions: Vec<PortDefinition>,
    #[serde(default)]
    pub require_ports: bool,
    /// Marathon constraints: `[field, operator]` or `[field, operator, value]`.
    #[serde(default)]
    pub constraints: Vec<Vec<String>>,
    #[serde(default)]
    pub health_checks: Vec<HealthCheck>,
    /// Checks an instance must pass (after its health checks) before a deployment counts it:
    /// old instances stop only for ready new ones (Marathon's `readinessChecks`).
    #[serde(default)]
    pub readiness_checks: Vec<ReadinessCheck>,
    #[serde(default)]
    pub upgrade_strategy: UpgradeStrategy,
    #[serde(default = "default_backoff_seconds")]
    pub backoff_seconds: f64,
    #[serde(default = "default_backoff_factor")]
    pub backoff_factor: f64,
    #[serde(default = "default_max_launch_delay")]
    pub max_launch_delay_seconds: f64,
    #[serde(default)]
    pub kill_selection: KillSelection,
    /// Seconds between SIGTERM and SIGKILL when a task is stopped.
    #[serde(default = "default_kill_grace")]
    pub task_kill_grace_period_seconds: f64,
    /// Ids of apps that must be deployed before this one.
    #[serde(default)]
    pub dependencies: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What happens to instances on a node that is gone: replaced after `inactiveAfterSeconds`,
    /// forgotten after `expungeAfterSeconds` (Marathon's 0/0 default is not kept: a network
    /// blip would restart everything).
    #[serde(default)]
    pub unreachable_strategy: UnreachableStrategy,
    /// The role whose offers the app accepts (Marathon's `role`; `*` is the default role).
    #[serde(default = "default_role")]
    pub role: String,
    /// Which resources of the role's offers the app may use: `*` for unreserved ones, the role's
    /// name for those reserved for it. Unset means both (Marathon's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_resource_roles: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnreachableStrategy {
    #[serde(default = "default_inactive_after")]
    pub inactive_after_seconds: f64,
    #[serde(default = "default_expunge_after")]
    pub expunge_after_seconds: f64,
}

impl Default for UnreachableStrategy {
    fn default() -> Self {
        UnreachableStrategy {
            inactive_after_seconds: default_inactive_after(),
            expunge_after_seconds: default_expunge_after(),
        }
    }
}

fn default_inactive_after() -> f64 {
    60.0
}

fn default_expunge_after() -> f64 {
    300.0
}

fn default_role() -> String {
    "*".into()
}

fn default_instances() -> i64 {
    1
}
fn default_cpus() -> f64 {
    1.0
}
fn default_mem() -> f64 {
    128.0
}
fn default_backoff_seconds() -> f64 {
    1.0
}
fn default_backoff_factor() -> f64 {
    1.15
}
fn default_max_launch_delay() -> f64 {
    300.0
}
fn default_kill_grace() -> f64 {
    3.0
}
fn default_networks() -> Vec<Network> {
    vec![Network {
        mode: NetworkMode::Host,
        name: None,
    }]
}

/// What runs the task: Docker (`DOCKER`) or Mesos' containerizer (`MESOS`, run as a process here).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    #[serde(rename = "type", default)]
    pub kind: ContainerType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<Docker>,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ContainerType {
    #[default]
    Docker,
    Mesos,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Docker {
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub privileged: bool,
    /// Extra `docker run` options as key/value pairs (e.g. `hostname`, `workdir`, `label`).
    #[serde(default)]
    pub parameters: Vec<DockerParameter>,
    #[serde(default)]
    pub force_pull_image: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerParameter {
    pub key: String,
    pub value: String,
}

/// A container port published on the host (BRIDGE networking).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMapping {
    #[serde(default)]
    pub container_port: i64,
    /// 0 picks a free port from the node's range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    /// Cluster-wide port for service discovery; 0 lets Pacer pick.
    #[serde(default)]
    pub service_port: i64,
    #[serde(default = "default_protocol")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortDefinition {
    #[serde(default)]
    pub port: i64,
    #[serde(default = "default_protocol")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_port_definitions() -> Vec<PortDefinition> {
    vec![PortDefinition {
        port: 0,
        protocol: default_protocol(),
        name: Some("default".into()),
        labels: BTreeMap::new(),
    }]
}

fn default_protocol() -> String {
    "tcp".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    pub container_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    #[serde(default)]
    pub mode: VolumeMode,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum VolumeMode {
    #[default]
    RW,
    RO,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    #[serde(default)]
    pub mode: NetworkMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum NetworkMode {
    #[default]
    #[serde(rename = "host")]
    Host,
    #[serde(rename = "container/bridge")]
    Bridge,
    #[serde(rename = "container")]
    Container,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default)]
    pub protocol: HealthProtocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_index: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<HealthCommand>,
    #[serde(default = "default_grace")]
    pub grace_period_seconds: i64,
    #[serde(default = "default_interval")]
    pub interval_seconds: i64,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: i64,
    #[serde(default = "default_max_failures")]
    pub max_consecutive_failures: i64,
    #[serde(default)]
    pub ignore_http1xx: bool,
    #[serde(default = "default_delay")]
    pub delay_seconds: i64,
}

fn default_grace() -> i64 {
    300
}
fn default_interval() -> i64 {
    60
}
fn default_timeout() -> i64 {
    20
}
fn default_max_failures() -> i64 {
    3
}
fn default_delay() -> i64 {
    15
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthProtocol {
    #[default]
    Http,
    Https,
    Tcp,
    Command,
    MesosHttp,
    MesosHttps,
    MesosTcp,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCommand {
    pub value: String,
}

/// Marathon's readiness check: an HTTP(S) GET on a named port until it answers one of the
/// ready status codes; run by the agent while the instance is not yet ready.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadinessCheck {
    #[serde(default = "default_readiness_name")]
    pub name: String,
    #[serde(default)]
    pub protocol: ReadinessProtocol,
    #[serde(default = "default_readiness_path")]
    pub path: String,
    /// The name of the port (in `portDefinitions` or `portMappings`) to query.
    #[serde(default = "default_readiness_port_name")]
    pub port_name: String,
    #[serde(default = "default_readiness_interval")]
    pub interval_seconds: i64,
    #[serde(default = "default_readiness_timeout")]
    pub timeout_seconds: i64,
    #[serde(default = "default_ready_codes")]
    pub http_status_codes_for_ready: Vec<i64>,
    /// Keep the last response (status, content type, body) in the task's results.
    #[serde(default)]
    pub preserve_last_response: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ReadinessProtocol {
    #[default]
    Http,
    Https,
}

fn default_readiness_name() -> String {
    "readinessCheck".into()
}
fn default_readiness_path() -> String {
    "/".into()
}
fn default_readiness_port_name() -> String {
    "http-api".into()
}
fn default_readiness_interval() -> i64 {
    30
}
fn default_readiness_timeout() -> i64 {
    10
}
fn default_ready_codes() -> Vec<i64> {
    vec![200]
}

/// Bounds of a rolling upgrade, as fractions of `instances`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpgradeStrategy {
    #[serde(default = "one")]
    pub minimum_health_capacity: f64,
    #[serde(default = "one")]
    pub maximum_over_capacity: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for UpgradeStrategy {
    fn default() -> Self {
        Self {
            minimum_health_capacity: 1.0,
            maximum_over_capacity: 1.0,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KillSelection {
    #[default]
    YoungestFirst,
    OldestFirst,
}

/// What the app controller last saw of an App's tasks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// The spec generation this status describes.
    #[serde(default)]
    pub observed_generation: i64,
    #[serde(default)]
    pub tasks_staged: i64,
    #[serde(default)]
    pub tasks_running: i64,
    /// Running tasks passing all their health checks (all running ones when there are none).
    #[serde(default)]
    pub tasks_healthy: i64,
    /// Running tasks failing a health check or not yet passing one.
    #[serde(default)]
    pub tasks_unhealthy: i64,
    /// Instances wanted but not placed on any node.
    #[serde(default)]
    pub tasks_pending: i64,
    /// Why pending instances could not be placed, in plain words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Tasks of the current version that failed in a row; drives the launch delay.
    #[serde(default)]
    pub consecutive_failures: i64,
    /// No new task is launched before this time (ISO-8601), after failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_delayed_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_task_failure: Option<TaskFailure>,
    /// Why the pending instances were not placed, per node (`pacer explain app`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementReport>,
}

/// The last placement attempt that left instances pending: how many nodes were looked at, how
/// many were rejected for each reason (Marathon's names), and each node's reason (the first 50).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementReport {
    /// When nodes were first rejected for these reasons (Marathon's `lastUnusedOfferAt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    pub nodes_considered: i64,
    pub rejected: BTreeMap<String, i64>,
    pub nodes: Vec<NodeRejection>,
}

/// Why a node cannot take an instance, in Marathon's reason names (`processedOffersSummary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    UnfulfilledRole,
    NoCorrespondingReservationFound,
    InsufficientCpus,
    InsufficientMemory,
    InsufficientDisk,
    InsufficientPorts,
    UnfulfilledConstraint,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::UnfulfilledRole,
        Reason::NoCorrespondingReservationFound,
        Reason::InsufficientCpus,
        Reason::InsufficientMemory,
        Reason::InsufficientDisk,
        Reason::InsufficientPorts,
        Reason::UnfulfilledConstraint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnfulfilledRole => "UnfulfilledRole",
            Reason::NoCorrespondingReservationFound => "NoCorrespondingReservationFound",
            Reason::InsufficientCpus => "InsufficientCpus",
            Reason::InsufficientMemory => "InsufficientMemory",
            Reason::InsufficientDisk => "InsufficientDisk",
            Reason::InsufficientPorts => "InsufficientPorts",
            Reason::UnfulfilledConstraint => "UnfulfilledConstraint",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeRejection {
    pub node: String,
    pub reason: String,
    pub message: String,
}

/// The last task of the app that ended on its own with an error (Marathon's `lastTaskFailure`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskFailure {
    pub task_id: String,
    pub state: String,
    pub message: String,
    pub timestamp: String,
    pub version: String,
}

/// The annotation holding when `instances` last changed (Marathon's `versionInfo.lastScalingAt`).
pub const SCALED_ANNOTATION: &str = "pacer.io/scaled-at";

/// Tasks that a kill with `scale=true` marked in the same write as the lower count (their
/// names, comma-separated): the app controller counts them as stopping even before its task
/// cache shows the marks (each kind has a cache of its own), so it neither replaces them nor
/// picks others to kill.
pub const KILLING_ANNOTATION: &str = "pacer.io/killing";

/// Seconds a deployment of the app may take before it is marked failed (optional, set by users).
pub const DEADLINE_ANNOTATION: &str = "pacer.io/deployment-deadline-seconds";

/// The annotation holding an app's version: when its config (anything but `instances`) last changed.
pub const VERSION_ANNOTATION: &str = "pacer.io/version";

impl AppSpec {
    /// What one instance needs.
    pub fn resources(&self) -> crate::Resources {
        crate::Resources::new(self.cpus, self.mem, self.disk)
    }

    /// Marathon's normalization of what defaults cannot see: an app on a bridge or container
    /// network has no port definitions (its ports are its port mappings), so the default one
    /// is dropped.
    pub fn normalize(&mut self) {
        let host = self.networks.iter().all(|n| n.mode == NetworkMode::Host);
        if !host && self.port_definitions == default_port_definitions() {
            self.port_definitions.clear();
        }
    }

    /// The image of a Docker app, if it has one.
    pub fn image(&self) -> Option<&str> {
        let container = self.container.as_ref()?;
        if container.kind != ContainerType::Docker {
            return None;
        }
        container.docker.as_ref().map(|d| d.image.as_str())
    }

    /// Whether the app runs as a plain process (Marathon's command tasks).
    pub fn is_process(&self) -> bool {
        self.image().is_none()
    }

    /// Each port slot's name and declared (service) port, in the order of the host ports.
    pub fn declared_ports(&self) -> Vec<(Option<String>, i64)> {
        let bridge = self.networks.iter().any(|n| n.mode == NetworkMode::Bridge);
        if bridge {
            self.container
                .iter()
                .flat_map(|c| c.port_mappings.iter())
                .map(|m| (m.name.clone(), m.service_port))
                .collect()
        } else {
            self.port_definitions
                .iter()
                .map(|p| (p.name.clone(), p.port))
                .collect()
        }
    }

    /// How many host ports one instance needs, with the fixed ones it asks for (0 = any).
    pub fn requested_host_ports(&self) -> Vec<u16> {
        let bridge = self.networks.iter().any(|n| n.mode == NetworkMode::Bridge);
        if bridge {
            let mappings = self
                .container
                .as_ref()
                .map(|c| c.port_mappings.as_slice())
                .unwrap_or_default();
            mappings
                .iter()
                .map(|m| u16::try_from(m.host_port.unwrap_or(0)).unwrap_or(0))
                .collect()
        } else {
            // Host networking: `port` is the service port; it is the host port too only with
            // `requirePorts` (Marathon's rule), otherwise any free port will do.
            self.port_definitions
                .iter()
                .map(|p| {
                    if self.require_ports {
                        u16::try_from(p.port).unwrap_or(0)
                    } else {
                        0
                    }
                })
                .collect()
        }
    }
}

impl App {
    /// The app's version (Marathon's `versionInfo.lastConfigChangeAt`); empty before it is stored.
    pub fn version(&self) -> &str {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(VERSION_ANNOTATION))
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The tasks a kill with scale named with this version of the app (`KILLING_ANNOTATION`).
    pub fn killing(&self) -> Vec<&str> {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(KILLING_ANNOTATION))
            .map(|names| names.split(',').collect())
            .unwrap_or_default()
    }

    /// Names the tasks a kill with scale stops, on the app written with the lower count.
    pub fn set_killing(&mut self, names: &[&str]) {
        let annotations = self
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        annotations.insert(KILLING_ANNOTATION.into(), names.join(","));
    }

    /// Marathon's `version`: the last change of any kind (config or scale).
    pub fn last_change(&self) -> String {
        let annotations = self.metadata.annotations.clone().unwrap_or_default();
        let scaled = annotations
            .get(SCALED_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        scaled.max(self.version().to_string())
    }

    /// The spec a config change compares: everything but `instances`.
    pub fn config(&self) -> AppSpec {
        AppSpec {
            instances: 0,
            ..self.spec.clone()
        }
    }

    /// A minimal valid app, for tests and examples.
    pub fn test(name: &str) -> App {
        let spec: AppSpec = serde_json::from_value(serde_json::json!({"cmd": "sleep 1000"}))
            .expect("a minimal spec deserializes");
        App::new(name, spec)
    }
}
