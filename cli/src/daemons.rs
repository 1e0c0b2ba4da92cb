//! The long-running commands: `pacer up` (all in one), `pacer server`, `pacer agent`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use futures::FutureExt;
use pacer_agent::AgentConfig;
use pacer_crd::{PortRange, Resources};
use pacer_runtime::Client;
use pacer_runtime::etcd_process::EtcdProcess;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated.
    #[arg(
        long,
        env = "PACER_ETCD",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    etcd: Vec<String>,
    /// Key prefix of all records.
    #[arg(long, env = "PACER_PREFIX", default_value = "/pacer/")]
    prefix: String,
}

#[derive(Args)]
pub struct ServerArgs {
    #[command(flatten)]
    etcd: EtcdArgs,
    /// Address of the API (Marathon's port by default); also this replica's name in the
    /// leader election.
    #[arg(long, env = "PACER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Seconds a leader may go without renewing its lease before a standby takes over.
    #[arg(long, env = "PACER_LEADER_TTL", default_value_t = 5)]
    leader_ttl: u64,
    /// The address other hosts reach this replica at (its name in the election, shown by
    /// /v2/leader); the listen address by default.
    #[arg(long, env = "PACER_ADVERTISE")]
    advertise: Option<String>,
    /// Callback URLs Marathon event subscriptions may use (`POST /v2/eventSubscriptions`),
    /// comma-separated: `http://10.0.0.5:4567/events`, `https://hooks.example.com/` (a path
    /// prefix), `http://127.0.0.1:*/` (any port). None (the default) turns the callbacks off,
    /// so that the API cannot be made to send requests anywhere.
    #[arg(long, env = "PACER_EVENT_CALLBACKS", value_delimiter = ',', value_parser = callback_rule)]
    event_callbacks: Vec<pacer_apiserver::CallbackRule>,
}

fn callback_rule(s: &str) -> Result<pacer_apiserver::CallbackRule, String> {
    pacer_apiserver::CallbackRule::parse(s)
}

#[derive(Args, Clone)]
pub struct AgentArgs {
    /// Name of the node record (default: this machine's host name).
    #[arg(long, env = "PACER_NODE_NAME")]
    node_name: Option<String>,
    /// Host name or address where task ports are reachable (default: this machine's host name).
    #[arg(long, env = "PACER_HOSTNAME")]
    hostname: Option<String>,
    /// Address of the agent's own endpoint (task logs).
    #[arg(long, env = "PACER_AGENT_LISTEN", default_value = "127.0.0.1:5051")]
    agent_listen: SocketAddr,
    /// Cpus to offer (default: all).
    #[arg(long, env = "PACER_CPUS")]
    cpus: Option<f64>,
    /// Memory to offer in MiB (default: total minus what the system keeps).
    #[arg(long, env = "PACER_MEM")]
    mem: Option<f64>,
    /// Disk to offer in MiB (default: free space of the work dir, minus a reserve).
    #[arg(long, env = "PACER_DISK")]
    disk: Option<f64>,
    /// Host ports lent to tasks, Mesos style: `31000-32000` or `31000-31100,32000-32010`.
    #[arg(long, env = "PACER_PORTS", default_value = "31000-32000")]
    ports: String,
    /// Mesos-style attributes: `rack:r1;zone:a`.
    #[arg(long, env = "PACER_ATTRIBUTES", default_value = "")]
    attributes: String,
    /// Resources reserved for roles, Mesos style: `cpus(ads):2;mem(ads):1024`.
    #[arg(long, env = "PACER_RESERVED", default_value = "")]
    reserved: String,
    /// Sandboxes of process tasks.
    #[arg(long, env = "PACER_WORK_DIR", default_value = ".pacer/agent")]
    work_dir: PathBuf,
    /// Seconds without contact after which the node is considered gone (renewed every third
    /// of that), at least: 40 s, like Kubernetes' node grace period. A larger cluster gets
    /// longer leases (`--max-lease-renewals`).
    #[arg(long, env = "PACER_LEASE_TTL", default_value_t = 40)]
    lease_ttl: u64,
    /// Node lease renewals per second the whole cluster may cost etcd, as Nomad's
    /// `max_heartbeats_per_second`: past 333 nodes (at 25/s and 40 s) each node renews less
    /// often, and its lease lasts a renewal period plus the small cluster's grace (5,000
    /// nodes: renewed every 200 s, gone after 227 s).
    #[arg(long, env = "PACER_MAX_LEASE_RENEWALS", default_value_t = 25.0, value_parser = positive)]
    max_lease_renewals: f64,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a number above 0")),
    }
}

#[derive(Args)]
pub struct AgentCommand {
    #[command(flatten)]
    etcd: EtcdArgs,
    #[command(flatten)]
    agent: AgentArgs,
    /// Run this many simulated nodes (named `<node-name>-0001`, ...) with a fake runtime
    /// instead of one real node: same registration, watches and status writes, no containers.
    #[arg(long, value_name = "N")]
    simulate: Option<usize>,
    /// With --simulate: how long a simulated task takes to start, in milliseconds.
    #[arg(long, default_value_t = 0, requires = "simulate")]
    simulate_start_ms: u64,
    /// With --simulate: the share of task starts that fail (0 to 1), to inject failures.
    #[arg(long, default_value_t = 0.0, requires = "simulate", value_parser = ratio)]
    simulate_fail_ratio: f64,
}

fn ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("expected a number from 0 to 1, got '{s}'")),
    }
}

#[derive(Args)]
pub struct UpArgs {
    /// Use this etcd instead of starting one.
    #[arg(long, env = "PACER_ETCD")]
    etcd: Option<String>,
    /// Client port of the etcd that `up` starts.
    #[arg(long, default_value_t = 2379)]
    etcd_port: u16,
    /// Where the started etcd keeps its data.
    #[arg(long, env = "PACER_DATA_DIR", default_value = ".pacer")]
    data_dir: PathBuf,
    #[arg(long, env = "PACER_PREFIX", default_value = "/pacer/")]
    prefix: String,
    #[arg(long, env = "PACER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Callback URLs Marathon event subscriptions may use (`POST /v2/eventSubscriptions`),
    /// comma-separated: `http://10.0.0.5:4567/events`, `https://hooks.example.com/` (a path
    /// prefix), `http://127.0.0.1:*/` (any port). None (the default) turns the callbacks off,
    /// so that the API cannot be made to send requests anywhere.
    #[arg(long, env = "PACER_EVENT_CALLBACKS", value_delimiter = ',', value_parser = callback_rule)]
    event_callbacks: Vec<pacer_apiserver::CallbackRule>,
    #[command(flatten)]
    agent: AgentArgs,
}

fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

impl AgentArgs {
    /// The validated agent configuration.
    fn config(&self) -> anyhow::Result<AgentConfig> {
        let ports = self
            .ports
            .split(',')
            .map(|r| PortRange::parse(r.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("--ports: {e}"))?;
        let mut attributes = std::collections::BTreeMap::new();
        for pair in self.attributes.split(';').filter(|p| !p.trim().is_empty()) {
            let Some((k, v)) = pair.split_once(':') else {
                bail!("--attributes: '{pair}' is not name:value")
            };
            attributes.insert(k.trim().to_string(), v.trim().to_string());
        }
        let detected = pacer_agent::capacity::detect(&self.work_dir);
        let capacity = Resources::new(
            self.cpus.unwrap_or(detected.cpus),
            self.mem.unwrap_or(detected.mem),
            self.disk.unwrap_or(detected.disk),
        );
        if capacity.cpus <= 0.0 || capacity.mem <= 0.0 || capacity.disk < 0.0 {
            bail!("--cpus and --mem must be > 0 and --disk >= 0 (got {capacity:?})");
        }
        let hostname = self.hostname.clone().unwrap_or_else(machine_hostname);
        Ok(AgentConfig {
            node_name: self.node_name.clone().unwrap_or_else(|| hostname.clone()),
            hostname,
            listen: self.agent_listen,
            capacity,
            ports,
            attributes,
            reservations: pacer_crd::node::parse_reservations(&self.reserved)
                .map_err(|e| anyhow::anyhow!("--reserved: {e}"))?,
            work_dir: std::path::absolute(&self.work_dir).unwrap_or_else(|_| self.work_dir.clone()),
            lease_ttl: Duration::from_secs(self.lease_ttl.max(2)),
            max_lease_renewals: self.max_lease_renewals,
            local_nodes: 1,
        })
    }
}

async fn connect(endpoints: &[String], prefix: &str) -> anyhow::Result<Client> {
    Client::connect(endpoints, prefix, Duration::from_secs(30))
        .await
        .with_context(|| format!("cannot reach etcd at {}", endpoints.join(",")))
}

/// Cancels `token` on the first Ctrl-C or SIGTERM; a second one exits at once.
fn stop_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        next_signal(&mut term).await;
        tracing::info!("stopping (signal again to force)");
        token.cancel();
        next_signal(&mut term).await;
        std::process::exit(130);
    });
}

async fn next_signal(term: &mut Option<tokio::signal::unix::Signal>) {
    match term.as_mut() {
        Some(t) => tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = t.recv() => {} },
        None => drop(tokio::signal::ctrl_c().await),
    }
}

/// The API and, while this replica is elected, the controllers, on one client until `token`
/// is cancelled.
async fn control_plane(
    client: Client,
    listen: SocketAddr,
    leader_ttl: Duration,
    advertise: Option<String>,
    event_callbacks: Vec<pacer_apiserver::CallbackRule>,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let identity = advertise.unwrap_or_else(|| {
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| listen.to_string())
    });
    tracing::info!(%listen, "API listening");
    let state = pacer_apiserver::ApiState::new(&client)
        .with_identity(&identity)
        .with_event_callbacks(event_callbacks);
    let events = pacer_apiserver::deliver_events(state.clone(), token.clone());
    let api = pacer_apiserver::serve(listener, state, token.clone().cancelled_owned());
    let elected =
        pacer_controllers::election::run_elected(&client, &identity, leader_ttl, token.clone());
    let (served, (), ()) = tokio::join!(api, elected, events);
    served.context("the API server failed")
}

pub async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let token = CancellationToken::new();
    stop_on_signal(token.clone());
    let client = connect(&args.etcd.etcd, &args.etcd.prefix).await?;
    let ttl = Duration::from_secs(args.leader_ttl.max(2));
    control_plane(
        client,
        args.listen,
        ttl,
        args.advertise,
        args.event_callbacks,
        token,
    )
    .await
}

pub async fn agent(args: AgentCommand) -> anyhow::Result<()> {
    let config = args.agent.config()?;
    let token = CancellationToken::new();
    stop_on_signal(token.clone());
    let client = connect(&args.etcd.etcd, &args.etcd.prefix).await?;
    if let Some(count) = args.simulate {
        tracing::info!(nodes = count, base = %config.node_name, "simulating nodes");
        let delay = Duration::from_millis(args.simulate_start_ms);
        pacer_agent::simulate(
            config,
            count,
            delay,
            args.simulate_fail_ratio,
            client,
            token,
        )
        .await;
        return Ok(());
    }
    pacer_agent::run(config, client, token)
        .await
        .context("the agent failed")
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let config = args.agent.config()?;
    let token = CancellationToken::new();
    stop_on_signal(token.clone());
    let (etcd_process, endpoint) = match &args.etcd {
        Some(url) => (None, url.clone()),
        None => {
            let dir = std::path::absolute(args.data_dir.join("etcd"))
                .unwrap_or_else(|_| args.data_dir.join("etcd"));
            let etcd = EtcdProcess::start(&dir, args.etcd_port)
                .await
                .context("starting etcd")?;
            tracing::info!(endpoint = %etcd.endpoint, data = %dir.display(), "etcd started");
            let endpoint = etcd.endpoint.clone();
            (Some(etcd), endpoint)
        }
    };
    let client = connect(&[endpoint], &args.prefix).await?;
    tracing::info!(node = %config.node_name, cpus = config.capacity.cpus, mem = config.capacity.mem, "starting the agent");
    // Whichever part fails first stops the others.
    let stop_all = |token: CancellationToken| {
        move |result: anyhow::Result<()>| {
            if result.is_err() {
                token.cancel();
            }
            result
        }
    };
    let agent = async {
        pacer_agent::run(config, client.clone(), token.clone())
            .await
            .context("the agent failed")
    };
    let (plane, agent) = tokio::join!(
        control_plane(
            client.clone(),
            args.listen,
            Duration::from_secs(5),
            None,
            args.event_callbacks.clone(),
            token.clone()
        )
        .map(stop_all(token.clone())),
        agent.map(stop_all(token.clone())),
    );
    drop(etcd_process);
    plane.and(agent)
}
