//! The node agent: registers its Node on a lease, runs its own tasks (docker or process) and
//! reports their status.

pub mod capacity;
pub mod driver;
mod health;
mod http;
mod readiness;
mod recovery;
mod register;
mod runner;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pacer_crd::{PortRange, Record, Resources, Task};
use pacer_runtime::watcher::{self, Event};
use pacer_runtime::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::driver::Drivers;
use crate::recovery::Ended;
use crate::runner::Runner;

/// Everything an agent needs to know about its machine.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    /// Where the node's task ports are reachable (task `host`).
    pub hostname: String,
    /// Address of the agent's HTTP endpoint (logs).
    pub listen: SocketAddr,
    pub capacity: Resources,
    pub ports: Vec<PortRange>,
    pub attributes: std::collections::BTreeMap<String, String>,
    /// Resources set apart for roles (`cpus(ads):2;mem(ads):512`).
    pub reservations: std::collections::BTreeMap<String, Resources>,
    /// Sandboxes of process tasks live here.
    pub work_dir: PathBuf,
    /// The node lease's TTL at least (`register::lease_terms`).
    pub lease_ttl: Duration,
    /// Lease renewals per second of the whole cluster at most.
    pub max_lease_renewals: f64,
    /// Nodes this process runs (one, or `--simulate N`): the cluster has at least these.
    pub local_nodes: usize,
    /// HTTPS for the endpoint, to clients with a certificate of the cluster CA only (the
    /// apiservers); plain HTTP without (`--insecure`).
    pub tls: Option<AgentTls>,
    /// Who runs a process task that names no `user` (`nobody`); the agent's own user when
    /// `None`.
    pub task_user: Option<String>,
}

/// The agent endpoint's certificate and key, and the CA its clients' certificates must be
/// signed by. PEM files.
#[derive(Debug, Clone)]
pub struct AgentTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {0}")]
    Listen(SocketAddr, #[source] std::io::Error),
    #[error("cannot reach the Docker engine")]
    Docker(#[source] bollard::errors::Error),
    #[error("registering the node failed")]
    Register(#[source] pacer_runtime::Error),
}

/// The tasks this agent runs now, by task name.
type Runners = Arc<Mutex<HashMap<String, Runner>>>;

/// Runs the agent until `token` is cancelled. Running tasks are stopped on the way out only
/// if they are deleted; an agent stopping leaves containers to a later agent's recovery.
pub async fn run(
    config: AgentConfig,
    client: Client,
    token: CancellationToken,
) -> Result<(), Error> {
    let drivers = Drivers::connect(&config.work_dir, config.task_user.clone())
        .await
        .map_err(Error::Docker)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::Listen(config.listen, e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Listen(config.listen, e))?;
    // Over TLS the address names the host as the certificate does.
    let address = match &config.tls {
        Some(_) => format!("https://{}:{}", config.hostname, bound.port()),
        None => format!("http://{bound}"),
    };
    let tasks: Api<Task> = Api::new(&client);
    recovery::clean_up(&drivers, &config.node_name, &tasks, &token).await;
    let writes = runner::status_writes();
    run_node(
        config,
        client,
        drivers,
        Some((listener, address)),
        writes,
        token,
    )
    .await;
    Ok(())
}

/// Runs `count` simulated nodes in this process (`pacer agent --simulate N`): each registers
/// its own Node on its own lease and watches its own tasks, as a real agent does, with the fake
/// driver. Nodes are named `<node_name>-0001`, ... and get the capacity of `config`.
pub async fn simulate(
    config: AgentConfig,
    count: usize,
    start_delay: Duration,
    fail_ratio: f64,
    client: Client,
    token: CancellationToken,
) {
    let fake = Arc::new(driver::Fake::new(start_delay, fail_ratio));
    // One limit for the process, as for a real agent: the nodes share its connection.
    let writes = runner::status_writes();
    let nodes = (1..=count).map(|i| {
        let mut node = config.clone();
        node.node_name = format!("{}-{i:04}", config.node_name);
        node.local_nodes = count;
        node.hostname = node.node_name.clone();
        run_node(
            node,
            client.clone(),
            Drivers::Simulated(fake.clone()),
            None,
            writes.clone(),
            token.clone(),
        )
    });
    futures::future::join_all(nodes).await;
}

/// One node: registration, the watch on its own tasks, one runner per task, and (for real
/// agents) the HTTP endpoint serving logs.
async fn run_node(
    config: AgentConfig,
    client: Client,
    drivers: Drivers,
    http: Option<(tokio::net::TcpListener, String)>,
    writes: Arc<tokio::sync::Semaphore>,
    token: CancellationToken,
) {
    let runners: Runners = Arc::default();
    let tasks: Api<Task> = Api::new(&client);
    let (http, address) = match http {
        Some((listener, address)) => (
            Some(tokio::spawn(http::serve(
                listener,
                runners.clone(),
                config.tls.clone(),
                token.clone(),
            ))),
            address,
        ),
        None => (None, "simulated".to_string()),
    };
    let registration = tokio::spawn(register::keep_registered(
        client.clone(),
        config.clone(),
        address,
        token.clone(),
    ));
    // The runners know the node's tasks: deletions need not carry the record (`prev_kv`).
    let mut events = watcher::watch_without_previous(
        tasks.clone(),
        &format!("{}/", config.node_name),
        token.clone(),
    );
    let ctx = runner::Ctx {
        tasks,
        drivers,
        hostname: config.hostname.clone(),
        writes,
        checks: health::check_client(),
    };
    let mut ended = Ended::default();
    while let Some(event) = events.recv().await {
        apply(event, &runners, &mut ended, &ctx);
    }
    if let Some(http) = http {
        let _ = http.await;
    }
    let _ = registration.await;
}

fn apply(event: Event<Task>, runners: &Runners, ended: &mut Ended, ctx: &runner::Ctx) {
    let mut runners = runners.lock().expect("runners lock");
    let name = match event {
        Event::Restarted(all) => {
            let names: Vec<String> = all.iter().filter_map(|t| t.metadata.name.clone()).collect();
            runners.retain(|name, runner| {
                let keep = names.contains(name);
                if !keep {
                    runner.deleted();
                }
                keep
            });
            ended.clear();
            all.iter().for_each(|t| ensure(&mut runners, ended, t, ctx));
            return;
        }
        Event::Applied(task) => return ensure(&mut runners, ended, &task, ctx),
        Event::Deleted(task) => task.metadata.name.clone().unwrap_or_default(),
        Event::Removed { key, .. } => Task::name_of_key(&key).to_string(),
    };
    if let Some(runner) = runners.remove(&name) {
        runner.deleted();
    } else {
        ended.deleted(&name, &ctx.drivers);
    }
}

/// Starts a runner for a task that needs one and passes kill requests on.
fn ensure(
    runners: &mut HashMap<String, Runner>,
    ended: &mut Ended,
    task: &Task,
    ctx: &runner::Ctx,
) {
    let name = task.metadata.name.clone().unwrap_or_default();
    if let Some(runner) = runners.get(&name) {
        if task.spec.kill {
            runner.kill();
        } else if task.state() == pacer_crd::TaskState::Unreachable {
            runner.resync();
        }
        return;
    }
    if task.state().is_terminal() {
        ended.note(task);
        return;
    }
    runners.insert(name, Runner::spawn(task.clone(), ctx.clone()));
}
