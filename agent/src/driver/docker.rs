//! The docker driver: containers through the local engine (bollard), labelled with task, app and node.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::StreamExt;
use pacer_crd::Task;
use pacer_crd::app::Container as ContainerSpec;
use pacer_crd::app::{DockerParameter, NetworkMode, VolumeMode};

use super::{Driver, DriverError, Found, Handle, task_env};

pub const LABEL_TASK: &str = "pacer.io/task";
pub const LABEL_APP: &str = "pacer.io/app";
pub const LABEL_NODE: &str = "pacer.io/node";

/// How long a pull may take before the task fails (no registry may be reachable at all).
const PULL_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Docker {
    client: bollard::Docker,
}

/// A container this driver labelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    /// The task it was created for (its label).
    pub task: String,
    /// When it was created, in seconds since the epoch.
    pub created: Option<i64>,
}

impl Docker {
    pub async fn connect() -> Result<Docker, DockerError> {
        let client = bollard::Docker::connect_with_local_defaults()?
            .negotiate_version()
            .await?;
        Ok(Docker { client })
    }

    /// This node's labelled containers, running or not.
    pub async fn containers(&self, node: &str) -> Result<Vec<Container>, DriverError> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_NODE}={node}")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let listed = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(DriverError::Docker)?;
        Ok(listed
            .into_iter()
            .filter_map(|c| {
                let task = c.labels.as_ref().and_then(|l| l.get(LABEL_TASK)).cloned();
                Some(Container {
                    id: c.id?,
                    task: task.unwrap_or_default(),
                    created: c.created,
                })
            })
            .collect())
    }

    async fn ensure_image(&self, image: &str, force_pull: bool) -> Result<(), DriverError> {
        let present = self.client.inspect_image(image).await.is_ok();
        if present && !force_pull {
            return Ok(());
        }
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let pull = async {
            let mut stream = self.client.create_image(Some(options), None, None);
            while let Some(item) = stream.next().await {
                item?;
            }
            Ok::<_, DockerError>(())
        };
        let outcome = tokio::time::timeout(PULL_TIMEOUT, pull).await;
        match outcome {
            Ok(Ok(())) => Ok(()),
            // A failed forced pull still runs a local copy, as Docker itself would.
            _ if present => Ok(()),
            Ok(Err(e)) => Err(DriverError::ImageMissing {
                image: image.into(),
                reason: format!("not found locally and the pull failed: {e}"),
            }),
            Err(_) => Err(DriverError::ImageMissing {
                image: image.into(),
                reason: format!("not found locally and the pull took over {PULL_TIMEOUT:?}"),
            }),
        }
    }

    fn container_name(task: &Task) -> String {
        format!(
            "pacer-{}",
            task.metadata.name.as_deref().unwrap_or_default()
        )
    }
}

/// The create request for a task: image, command, env, labels, limits, ports, volumes.
fn create_body(task: &Task, host: &str) -> Result<ContainerCreateBody, DriverError> {
    let app = &task.spec.app;
    let container = app.container.clone().unwrap_or_default();
    let docker = container.docker.clone().unwrap_or_default();
    let env: Vec<String> = task_env(task, host)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let (entrypoint, cmd) = command(app);
    let bridge = app.networks.iter().any(|n| n.mode == NetworkMode::Bridge);
    let (exposed, port_bindings) = if bridge {
        ports(&container, &task.spec.host_ports)
    } else {
        (Vec::new(), HashMap::new())
    };
    let body = ContainerCreateBody {
        image: Some(docker.image.clone()),
        entrypoint,
        cmd,
        user: app.user.clone(),
        exposed_ports: Some(exposed),
        host_config: Some(HostConfig {
            network_mode: Some(if bridge { "bridge" } else { "host" }.into()),
            port_bindings: Some(port_bindings),
            binds: Some(binds(&container)),
            privileged: Some(docker.privileged),
            cpu_shares: Some(((app.cpus * 1024.0) as i64).max(2)),
            memory: (app.mem >= 6.0).then_some((app.mem * 1024.0 * 1024.0) as i64),
            ..Default::default()
        }),
        ..Default::default()
    };
    with_parameters(body, labels(task), env, &docker.parameters)
}

/// The app's labels, and the agent's own: which task, app and node a container is for.
fn labels(task: &Task) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = task.spec.app.labels.clone().into_iter().collect();
    let name = task.metadata.name.clone().unwrap_or_default();
    labels.insert(LABEL_TASK.into(), name);
    labels.insert(LABEL_APP.into(), task.spec.app_id.clone());
    labels.insert(LABEL_NODE.into(), task.spec.node.clone());
    labels
}

/// Entrypoint and command: `cmd` through a shell, `args` as the image's command.
fn command(app: &pacer_crd::AppSpec) -> (Option<Vec<String>>, Option<Vec<String>>) {
    match (&app.cmd, &app.args) {
        (Some(cmd), _) => (
            Some(vec!["/bin/sh".to_string(), "-c".to_string()]),
            Some(vec![cmd.clone()]),
        ),
        (None, Some(args)) => (None, Some(args.clone())),
        (None, None) => (None, None),
    }
}

type PortBindings = HashMap<String, Option<Vec<PortBinding>>>;

/// Exposed ports and their bindings to the task's host ports, one per mapping and protocol.
fn ports(container: &ContainerSpec, host_ports: &[u16]) -> (Vec<String>, PortBindings) {
    let mut bindings = HashMap::new();
    let mut exposed = Vec::new();
    for (mapping, host_port) in container.port_mappings.iter().zip(host_ports) {
        for proto in mapping.protocol.split(',') {
            let key = format!("{}/{}", mapping.container_port, proto.trim());
            exposed.push(key.clone());
            let binding = PortBinding {
                host_ip: Some("0.0.0.0".into()),
                host_port: Some(host_port.to_string()),
            };
            bindings.insert(key, Some(vec![binding]));
        }
    }
    (exposed, bindings)
}

/// Volumes from a host path; others (persistent volumes) are not mounted.
fn binds(container: &ContainerSpec) -> Vec<String> {
    container
        .volumes
        .iter()
        .filter_map(|v| {
            let mode = if v.mode == VolumeMode::RO { "ro" } else { "rw" };
            v.host_path
                .as_ref()
                .map(|h| format!("{h}:{}:{mode}", v.container_path))
        })
        .collect()
}

/// `body` with its labels and env, as the app's docker `parameters` amend them (the few
/// `docker run` options Marathon apps use; any other is refused rather than ignored). The
/// agent's own labels are refused too: with another task's or node's, a container would be
/// taken for that one's.
fn with_parameters(
    mut body: ContainerCreateBody,
    mut labels: HashMap<String, String>,
    mut env: Vec<String>,
    parameters: &[DockerParameter],
) -> Result<ContainerCreateBody, DriverError> {
    for p in parameters {
        let (k, v) = p.value.split_once('=').unwrap_or((p.value.as_str(), ""));
        match p.key.as_str() {
            "label" if [LABEL_TASK, LABEL_APP, LABEL_NODE].contains(&k) => {
                return Err(DriverError::Parameter(format!("label {k}")));
            }
            "label" => drop(labels.insert(k.into(), v.into())),
            "env" | "e" => env.push(p.value.clone()),
            "hostname" => body.hostname = Some(p.value.clone()),
            "workdir" | "w" => body.working_dir = Some(p.value.clone()),
            "user" | "u" => body.user = Some(p.value.clone()),
            other => return Err(DriverError::Parameter(other.into())),
        }
    }
    body.labels = Some(labels);
    body.env = Some(env);
    Ok(body)
}

fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

#[async_trait]
impl Driver for Docker {
    async fn recover(&self, task: &Task) -> Option<Found> {
        let info = self
            .client
            .inspect_container(&Self::container_name(task), None)
            .await
            .ok()?;
        let state = info.state?;
        let id = info.id?;
        // The engine's zero time: a container created but never started.
        if state
            .started_at
            .as_deref()
            .is_none_or(|t| t.starts_with("0001-"))
        {
            return Some(Found::NeverStarted(Handle { id, pid: None }));
        }
        Some(Found::Started(Handle {
            id,
            pid: state
                .pid
                .filter(|p| *p > 0)
                .and_then(|p| u32::try_from(p).ok()),
        }))
    }

    async fn start(&self, task: &Task, host: &str) -> Result<Handle, DriverError> {
        let image = task.spec.app.image().unwrap_or_default().to_string();
        let force = task
            .spec
            .app
            .container
            .as_ref()
            .and_then(|c| c.docker.as_ref())
            .is_some_and(|d| d.force_pull_image);
        self.ensure_image(&image, force).await?;
        let body = create_body(task, host)?;
        let name = Self::container_name(task);
        // A container of this name is a leftover of an attempt that never reported: replace it.
        let _ = self
            .client
            .remove_container(
                &name,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = self
            .client
            .create_container(Some(options), body)
            .await
            .map_err(DriverError::ContainerCreate)?;
        let handle = Handle {
            id: created.id,
            pid: None,
        };
        if let Err(e) = self.client.start_container(&handle.id, None).await {
            let _ = self.remove(&handle).await;
            return Err(DriverError::ContainerStart(e));
        }
        let pid = self
            .client
            .inspect_container(&handle.id, None)
            .await
            .ok()
            .and_then(|i| i.state?.pid);
        Ok(Handle {
            pid: pid.and_then(|p| u32::try_from(p).ok()),
            ..handle
        })
    }

    async fn wait(&self, handle: &Handle) -> Result<i64, DriverError> {
        loop {
            let next = self.client.wait_container(&handle.id, None).next().await;
            match next {
                Some(Ok(resp)) => return Ok(resp.status_code),
                Some(Err(DockerError::DockerContainerWaitError { code, .. })) => return Ok(code),
                Some(Err(e)) if is_not_found(&e) => return Err(DriverError::Docker(e)),
                // The engine's request timeout ends long waits: ask again unless it has exited.
                _ => {
                    let info = self
                        .client
                        .inspect_container(&handle.id, None)
                        .await
                        .map_err(DriverError::Docker)?;
                    let state = info.state.unwrap_or_default();
                    if state.running != Some(true) {
                        return Ok(state.exit_code.unwrap_or(-1));
                    }
                }
            }
        }
    }

    async fn stop(&self, handle: &Handle, grace: Duration) -> Result<(), DriverError> {
        let options = StopContainerOptionsBuilder::new()
            .t(grace.as_secs().max(1) as i32)
            .build();
        match self.client.stop_container(&handle.id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => Ok(()),
            Err(e) => Err(DriverError::Docker(e)),
        }
    }

    async fn remove(&self, handle: &Handle) -> Result<(), DriverError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self
            .client
            .remove_container(&handle.id, Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(DriverError::Docker(e)),
        }
    }

    async fn exec(&self, handle: &Handle, _task: &Task, command: &str) -> Result<i64, DriverError> {
        let options = bollard::exec::CreateExecOptions {
            cmd: Some(vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                command.to_string(),
            ]),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = self
            .client
            .create_exec(&handle.id, options)
            .await
            .map_err(DriverError::Docker)?;
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = self
            .client
            .start_exec(&exec.id, None)
            .await
            .map_err(DriverError::Docker)?
        {
            while output.next().await.is_some() {}
        }
        let inspect = self
            .client
            .inspect_exec(&exec.id)
            .await
            .map_err(DriverError::Docker)?;
        Ok(inspect.exit_code.unwrap_or(-1))
    }

    async fn logs(&self, handle: &Handle, tail: usize) -> Result<String, DriverError> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&tail.to_string())
            .build();
        let mut stream = self.client.logs(&handle.id, Some(options));
        let mut out = String::new();
        while let Some(chunk) = stream.next().await {
            out.push_str(&chunk.map_err(DriverError::Docker)?.to_string());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use pacer_crd::app::{Docker, Network, PortMapping, Volume};
    use pacer_crd::{App, TaskState};

    use super::*;

    /// A bridged `nginx` task with one port mapping (tcp and udp), two volumes and `parameters`.
    fn task(parameters: &[(&str, &str)]) -> Task {
        let mut app = App::test("web");
        app.spec.cmd = Some("nginx -g 'daemon off;'".into());
        app.spec.mem = 128.0;
        app.spec.cpus = 0.5;
        app.spec.networks = vec![Network {
            mode: NetworkMode::Bridge,
            name: None,
        }];
        let volume = |host: Option<&str>, mode| Volume {
            container_path: "/data".into(),
            host_path: host.map(str::to_string),
            mode,
        };
        app.spec.container = Some(ContainerSpec {
            docker: Some(Docker {
                image: "nginx".into(),
                parameters: parameters
                    .iter()
                    .map(|(key, value)| DockerParameter {
                        key: key.to_string(),
                        value: value.to_string(),
                    })
                    .collect(),
                ..Docker::default()
            }),
            port_mappings: vec![PortMapping {
                container_port: 80,
                host_port: None,
                service_port: 0,
                protocol: "tcp,udp".into(),
                name: Some("http".into()),
                labels: Default::default(),
            }],
            volumes: vec![
                volume(Some("/srv"), VolumeMode::RO),
                volume(None, VolumeMode::RW),
            ],
            ..ContainerSpec::default()
        });
        let mut task = Task::test(&app, "n1", TaskState::Staging);
        task.spec.host_ports = vec![31000];
        task
    }

    #[test]
    fn a_bridged_container_maps_its_ports_mounts_and_limits() {
        let body = create_body(&task(&[]), "h1").expect("a body");
        assert_eq!(body.image.as_deref(), Some("nginx"));
        let shell = vec!["/bin/sh".to_string(), "-c".to_string()];
        assert_eq!(body.entrypoint, Some(shell));
        assert_eq!(body.cmd, Some(vec!["nginx -g 'daemon off;'".to_string()]));
        let exposed = vec!["80/tcp".to_string(), "80/udp".to_string()];
        assert_eq!(body.exposed_ports, Some(exposed));
        let host = body.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        let bindings = host.port_bindings.expect("bindings");
        let tcp = bindings["80/tcp"].as_ref().expect("80/tcp bound");
        assert_eq!(tcp[0].host_port.as_deref(), Some("31000"));
        assert_eq!(tcp[0].host_ip.as_deref(), Some("0.0.0.0"));
        assert!(bindings.contains_key("80/udp"));
        assert_eq!(host.binds, Some(vec!["/srv:/data:ro".to_string()]));
        assert_eq!(host.cpu_shares, Some(512));
        assert_eq!(host.memory, Some(128 * 1024 * 1024));
        let labels = body.labels.expect("labels");
        assert_eq!(labels[LABEL_APP], "web");
        assert_eq!(labels[LABEL_NODE], "n1");
        assert_eq!(
            labels[LABEL_TASK],
            task(&[]).metadata.name.unwrap_or_default()
        );
        let env = body.env.expect("env");
        assert!(env.contains(&"PORT0=31000".to_string()), "{env:?}");
        assert!(env.contains(&"HOST=h1".to_string()), "{env:?}");
    }

    #[test]
    fn host_networking_maps_nothing() {
        let mut task = task(&[]);
        task.spec.app.networks.clear();
        task.spec.app.args = Some(vec!["a".into()]);
        task.spec.app.cmd = None;
        let body = create_body(&task, "h1").expect("a body");
        let host = body.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert_eq!(host.port_bindings, Some(HashMap::new()));
        assert_eq!(body.exposed_ports, Some(Vec::new()));
        assert_eq!(
            (body.entrypoint, body.cmd),
            (None, Some(vec!["a".to_string()]))
        );
    }

    #[test]
    fn docker_parameters_set_what_they_name_and_others_are_refused() {
        let params = [
            ("label", "team=ads"),
            ("env", "X=1"),
            ("e", "Y=2"),
            ("hostname", "box"),
            ("w", "/app"),
            ("user", "nobody"),
        ];
        let body = create_body(&task(&params), "h1").expect("a body");
        assert_eq!(body.labels.expect("labels")["team"], "ads");
        let env = body.env.expect("env");
        assert!(env.contains(&"X=1".to_string()) && env.contains(&"Y=2".to_string()));
        assert_eq!(body.hostname.as_deref(), Some("box"));
        assert_eq!(body.working_dir.as_deref(), Some("/app"));
        assert_eq!(body.user.as_deref(), Some("nobody"));
        let refused = create_body(&task(&[("cap-add", "ALL")]), "h1");
        assert!(matches!(refused, Err(DriverError::Parameter(p)) if p == "cap-add"));
        let disguised = create_body(&task(&[("label", "pacer.io/task=other.1")]), "h1");
        assert!(matches!(disguised, Err(DriverError::Parameter(p)) if p == "label pacer.io/task"));
    }

    #[test]
    fn the_default_policy_allows_only_options_this_driver_interprets() {
        for key in pacer_crd::PolicySpec::default().allowed_docker_parameters {
            let body = create_body(&task(&[(key.as_str(), "x=1")]), "h1");
            assert!(body.is_ok(), "{key}: {:?}", body.err());
        }
    }
}
