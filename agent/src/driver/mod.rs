//! Task drivers (Nomad's word): the `Driver` trait and its docker, process and fake implementations.

mod docker;
mod fake;
mod process;
mod sandbox;
mod user;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pacer_crd::Task;
use pacer_crd::id::path_of;

pub use docker::{Container, Docker};
pub use fake::Fake;
pub use process::{Process, Sandbox};

/// A started task: a container id or a process id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handle {
    pub id: String,
    pub pid: Option<u32>,
}

impl Handle {
    /// The container or process the task's record names, whichever driver started it.
    pub fn of(task: &Task) -> Option<Handle> {
        let status = task.status.as_ref()?;
        Some(Handle {
            id: status.container_id.clone()?,
            pid: status.pid,
        })
    }
}

/// What a driver finds of a task an earlier agent started (`Driver::recover`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// It was started; it may have exited since (waiting on it then gives its exit code).
    Started(Handle),
    /// It was created but never started: the agent stopped in between.
    NeverStarted(Handle),
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("image '{image}' is not available on this node: {reason}")]
    ImageMissing { image: String, reason: String },
    #[error("docker parameter '{0}' is not supported")]
    Parameter(String),
    #[error("creating the container failed: {0}")]
    ContainerCreate(#[source] bollard::errors::Error),
    #[error("starting the container failed: {0}")]
    ContainerStart(#[source] bollard::errors::Error),
    #[error("docker call failed: {0}")]
    Docker(#[source] bollard::errors::Error),
    #[error("starting the process failed: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("simulated start failure (--simulate-fail-ratio)")]
    Simulated,
    #[error("task {0} is not known to this driver")]
    Unknown(String),
    #[error("reading logs failed: {0}")]
    Logs(#[source] std::io::Error),
    #[error("task name '{0}' cannot name a sandbox (a single plain path component is needed)")]
    BadName(String),
    #[error("the task cannot run as its user: {0}")]
    User(#[source] user::UserError),
    #[error("handing the sandbox to user '{user}' failed: {source}")]
    SandboxOwner {
        user: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs tasks of one kind. Implementations touch only what they started (labelled containers,
/// their own process groups).
#[async_trait]
pub trait Driver: Send + Sync {
    /// What is left of the task if an earlier agent started it; what to do with it is
    /// `recovery`'s business.
    async fn recover(&self, task: &Task) -> Option<Found>;
    async fn start(&self, task: &Task, host: &str) -> Result<Handle, DriverError>;
    /// Waits for the task to end; its exit code.
    async fn wait(&self, handle: &Handle) -> Result<i64, DriverError>;
    /// SIGTERM, then SIGKILL after `grace`.
    async fn stop(&self, handle: &Handle, grace: Duration) -> Result<(), DriverError>;
    /// Frees what the task left behind (container, sandbox).
    async fn remove(&self, handle: &Handle) -> Result<(), DriverError>;
    async fn logs(&self, handle: &Handle, tail: usize) -> Result<String, DriverError>;
    /// Runs `command` with `sh -c` inside the task (COMMAND health checks); its exit code.
    async fn exec(&self, handle: &Handle, task: &Task, command: &str) -> Result<i64, DriverError>;
}

/// The drivers of one agent: real ones, or a fake one for simulated nodes.
#[derive(Clone)]
pub enum Drivers {
    Real {
        docker: Arc<Docker>,
        process: Arc<Process>,
    },
    Simulated(Arc<Fake>),
}

impl Drivers {
    /// The real drivers; process tasks without a `user` run as `task_user`.
    pub async fn connect(
        work_dir: &Path,
        task_user: Option<String>,
    ) -> Result<Drivers, bollard::errors::Error> {
        Ok(Drivers::Real {
            docker: Arc::new(Docker::connect().await?),
            process: Arc::new(Process::with_default_user(work_dir, task_user)),
        })
    }

    /// Docker for tasks with an image, a plain process otherwise (Marathon's command tasks).
    pub fn for_task(&self, task: &Task) -> Arc<dyn Driver> {
        match self {
            Drivers::Real { process, .. } if task.spec.app.is_process() => process.clone(),
            Drivers::Real { docker, .. } => docker.clone(),
            Drivers::Simulated(fake) => fake.clone(),
        }
    }
}

/// The environment of a task: the app's `env`, then what Marathon and Mesos set.
pub fn task_env(task: &Task, host: &str) -> Vec<(String, String)> {
    let spec = &task.spec;
    let mut env: Vec<(String, String)> = spec
        .app
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let task_id = task.metadata.name.clone().unwrap_or_default();
    let app_path = path_of(&spec.app_id);
    env.extend(port_env(spec));
    for (name, value) in [
        ("HOST", host.to_string()),
        ("MARATHON_APP_ID", app_path.clone()),
        ("MARATHON_APP_VERSION", spec.app_version.clone()),
        ("MESOS_TASK_ID", task_id.clone()),
        ("PACER_APP_ID", app_path),
        ("PACER_TASK_ID", task_id),
        ("PACER_NODE", spec.node.clone()),
    ] {
        env.push((name.into(), value));
    }
    // PACER_PORT0, PACER_PORTS, PACER_PORT_HTTP, PACER_HOST: the same under Pacer's prefix.
    let pacer: Vec<(String, String)> = env
        .iter()
        .skip(spec.app.env.len())
        .filter(|(k, _)| k.starts_with("PORT") || k == "HOST")
        .map(|(k, v)| (format!("PACER_{k}"), v.clone()))
        .collect();
    env.extend(pacer);
    env
}

/// PORT0..n, Marathon's PORT_<declared port> and PORT_<NAME> for each slot, PORT, PORTS.
fn port_env(spec: &pacer_crd::TaskSpec) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (i, port) in spec.host_ports.iter().enumerate() {
        env.push((format!("PORT{i}"), port.to_string()));
    }
    for ((name, declared), port) in spec.app.declared_ports().iter().zip(&spec.host_ports) {
        if *declared != 0 {
            env.push((format!("PORT_{declared}"), port.to_string()));
        }
        if let Some(name) = name {
            env.push((format!("PORT_{}", env_name(name)), port.to_string()));
        }
    }
    if let Some(first) = spec.host_ports.first() {
        env.push(("PORT".into(), first.to_string()));
    }
    let ports: Vec<String> = spec.host_ports.iter().map(u16::to_string).collect();
    env.push(("PORTS".into(), ports.join(",")));
    env
}

/// A port's name as a variable name: `admin-api` is `ADMIN_API`.
fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use pacer_crd::App;

    use super::*;

    #[test]
    fn a_task_record_names_its_container_or_process() {
        let mut task = Task::test(&App::test("web"), "n1", pacer_crd::TaskState::Running);
        assert_eq!(Handle::of(&task), None);
        let status = task.status.as_mut().expect("a status");
        status.pid = Some(42);
        assert_eq!(
            Handle::of(&task),
            None,
            "a pid alone names nothing to remove"
        );
        let status = task.status.as_mut().expect("a status");
        status.container_id = Some("web.1".into());
        let handle = Handle {
            id: "web.1".into(),
            pid: Some(42),
        };
        assert_eq!(Handle::of(&task), Some(handle));
        task.status = None;
        assert_eq!(Handle::of(&task), None);
    }

    /// A task of `app` named `id` holding `ports` on its node.
    fn with_ports(app: &App, id: &str, ports: &[u16]) -> Task {
        let mut task = Task::test(app, "n1", pacer_crd::TaskState::Running);
        task.metadata.name = Some(id.into());
        task.spec.host_ports = ports.to_vec();
        task
    }

    #[test]
    fn env_carries_ports_and_ids() {
        let task = with_ports(&App::test("prod_web"), "prod_web.abc", &[31000, 31005]);
        let env = task_env(&task, "h1");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PORT0"), Some("31000"));
        assert_eq!(get("PORT1"), Some("31005"));
        assert_eq!(get("PORTS"), Some("31000,31005"));
        assert_eq!(get("MARATHON_APP_ID"), Some("/prod/web"));
        assert_eq!(get("MESOS_TASK_ID"), Some("prod_web.abc"));
        assert_eq!(get("HOST"), Some("h1"));
    }

    #[test]
    fn env_names_declared_and_named_ports() {
        let mut app = App::test("web");
        let port = |port: i64, name: &str| pacer_crd::app::PortDefinition {
            port,
            protocol: "tcp".into(),
            name: Some(name.into()),
            labels: Default::default(),
        };
        app.spec.port_definitions = vec![port(10001, "http"), port(0, "admin-api")];
        let env = task_env(&with_ports(&app, "web.abc", &[31000, 31001]), "h1");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PORT_10001"), Some("31000"));
        assert_eq!(get("PORT_HTTP"), Some("31000"));
        assert_eq!(get("PORT_ADMIN_API"), Some("31001"));
        assert_eq!(get("PACER_PORT_HTTP"), Some("31000"));
    }
}
