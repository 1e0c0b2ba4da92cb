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
use pacer_runtime::client::EtcdTls;
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
    pub prefix: String,
    #[command(flatten)]
    pub tls: EtcdTlsArgs,
}

impl EtcdArgs {
    pub fn endpoints(&self) -> &[String] {
        &self.etcd
    }
}

/// The identity a process shows an etcd that requires client certificates.
#[derive(Args, Clone)]
pub struct EtcdTlsArgs {
    /// The CA etcd's certificates are signed by (PEM).
    #[arg(long, env = "PACER_ETCD_CACERT", requires_all = ["etcd_cert", "etcd_key"])]
    etcd_cacert: Option<PathBuf>,
    /// This process's client certificate; its common name is its etcd user
    /// (`pacer-server`, `node-<name>`, `root`).
    #[arg(long, env = "PACER_ETCD_CERT", requires_all = ["etcd_cacert", "etcd_key"])]
    etcd_cert: Option<PathBuf>,
    /// The client certificate's key.
    #[arg(long, env = "PACER_ETCD_KEY", requires_all = ["etcd_cacert", "etcd_cert"])]
    etcd_key: Option<PathBuf>,
}

impl EtcdTlsArgs {
    pub fn identity(&self) -> Option<EtcdTls> {
        Some(EtcdTls {
            ca: self.etcd_cacert.clone()?,
            cert: self.etcd_cert.clone()?,
            key: self.etcd_key.clone()?,
        })
    }
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
    #[command(flatten)]
    security: SecurityArgs,
    #[command(flatten)]
    tls: TlsArgs,
    /// A file holding the admin token (`admin.<secret>`): made valid at start, written with a
    /// new token first if it does not exist. Give every replica the same file.
    #[arg(long, env = "PACER_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct SecurityArgs {
    /// Marathon's basic credentials, `user:password`, comma-separated for several users (the
    /// `marathon` Python client's `username`/`password`); basic users are admins.
    #[arg(long, env = "PACER_HTTP_CREDENTIALS", value_delimiter = ',', value_parser = basic_user)]
    http_credentials: Vec<pacer_apiserver::auth::BasicUser>,
    /// No authentication at all: every caller is an admin. For local experiments and old
    /// clients only; refused on an address other than loopback unless --insecure-anywhere.
    #[arg(long)]
    insecure: bool,
    /// With --insecure, listen on a non-loopback address anyway.
    #[arg(long, requires = "insecure")]
    insecure_anywhere: bool,
    /// The audit log: one JSON line per request that may change something (`pacer audit`
    /// reads it). `pacer up`: `<data-dir>/audit.log` by default.
    #[arg(long, env = "PACER_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
    /// Rotate the audit log at this many MiB.
    #[arg(long, default_value_t = 100)]
    audit_log_max_mib: usize,
    /// Rotated audit logs kept (`audit.log.1` newest).
    #[arg(long, default_value_t = 5)]
    audit_log_keep: usize,
}

#[derive(Args, Clone)]
pub struct TlsArgs {
    /// The API's certificate (PEM, chain first): `pacer certs issue NAME --hosts ...`.
    #[arg(long, env = "PACER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The API certificate's private key (PEM).
    #[arg(long, env = "PACER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn basic_user(s: &str) -> Result<pacer_apiserver::auth::BasicUser, String> {
    pacer_apiserver::auth::BasicUser::parse(s)
}

impl SecurityArgs {
    /// The audit log of these flags, at `default` when no path is given.
    fn audit(&self, default: Option<PathBuf>) -> anyhow::Result<pacer_apiserver::audit::AuditLog> {
        let Some(path) = self.audit_log.clone().or(default) else {
            tracing::warn!("no --audit-log: requests that change something are not audited");
            return Ok(pacer_apiserver::audit::AuditLog::default());
        };
        let file = pacer_apiserver::audit::AuditFile {
            path: path.clone(),
            max_bytes: self.audit_log_max_mib.max(1) << 20,
            keep: self.audit_log_keep.max(1),
        };
        tracing::info!(path = %path.display(), "audit log");
        pacer_apiserver::audit::AuditLog::to_file(file)
            .with_context(|| format!("opening the audit log {}", path.display()))
    }

    /// How the API authenticates with these flags, after refusing an insecure API off
    /// loopback.
    fn authentication(&self, listen: SocketAddr) -> anyhow::Result<Authentication> {
        if self.insecure {
            if !listen.ip().is_loopback() && !self.insecure_anywhere {
                bail!(
                    "--insecure serves the API without authentication: only on a loopback address (got {listen}); add --insecure-anywhere to force it"
                );
            }
            tracing::warn!(%listen, "--insecure: the API takes no credentials, every caller is an admin");
        }
        Ok(Authentication {
            basic: self.http_credentials.clone(),
            insecure: self.insecure,
        })
    }
}

/// Marathon's basic users, or no authentication at all (`--insecure`).
struct Authentication {
    basic: Vec<pacer_apiserver::auth::BasicUser>,
    insecure: bool,
}

/// Reads the admin token from `path`, writing a new one there first if the file does not
/// exist (readable by its owner only), and makes it valid in etcd.
async fn admin_token(client: &Client, path: &std::path::Path) -> anyhow::Result<String> {
    let token = match std::fs::read_to_string(path) {
        Ok(text) => text.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (token, _) = pacer_apiserver::auth::new_token("admin");
            write_private(path, &format!("{token}\n"))?;
            tracing::info!(path = %path.display(), "wrote a new admin token");
            token
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    pacer_apiserver::ensure_admin_token(&pacer_runtime::Api::new(client), &token)
        .await
        .with_context(|| format!("the admin token of {}", path.display()))?;
    Ok(token)
}

/// Writes a file only its owner can read.
pub fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
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
    /// The agent endpoint's certificate (`pacer certs issue agent-<host> --hosts <host>`); it
    /// then serves HTTPS to clients with a certificate of the etcd CA (the apiservers) only.
    #[arg(long, env = "PACER_AGENT_TLS_CERT", requires = "agent_tls_key")]
    agent_tls_cert: Option<PathBuf>,
    #[arg(long, env = "PACER_AGENT_TLS_KEY", requires = "agent_tls_cert")]
    agent_tls_key: Option<PathBuf>,
    /// Who runs a process task that names no `user`: `nobody` unless given (`""`: the
    /// agent's own user, root on most nodes). A task runs as root only by asking for it, and
    /// the admission policy refuses that unless an admin allows it.
    #[arg(long, env = "PACER_TASK_USER", default_value = "nobody")]
    task_user: String,
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
    /// Serve the endpoint (task logs) over plain HTTP to anyone: local experiments only.
    #[arg(long)]
    insecure: bool,
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
    /// The identity for the etcd of --etcd, if it requires client certificates.
    #[command(flatten)]
    etcd_tls: EtcdTlsArgs,
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
    security: SecurityArgs,
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
    /// The endpoint's TLS: its certificate, clients' certificates checked against `client_ca`.
    fn tls(&self, client_ca: Option<PathBuf>) -> anyhow::Result<Option<pacer_agent::AgentTls>> {
        match (&self.agent_tls_cert, &self.agent_tls_key, client_ca) {
            (Some(cert), Some(key), Some(client_ca)) => Ok(Some(pacer_agent::AgentTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca,
            })),
            (Some(_), _, None) => bail!(
                "--agent-tls-cert: clients are checked against the CA of --etcd-cacert, which is missing"
            ),
            _ => Ok(None),
        }
    }

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
            tls: None,
            task_user: Some(self.task_user.trim().to_string()).filter(|u| !u.is_empty()),
        })
    }
}

async fn connect(
    endpoints: &[String],
    prefix: &str,
    tls: Option<&EtcdTls>,
) -> anyhow::Result<Client> {
    Client::connect_as(endpoints, prefix, Duration::from_secs(30), tls)
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

/// What the API of a replica is: where it listens, how it campaigns, whom it lets in.
struct Plane {
    listen: SocketAddr,
    leader_ttl: Duration,
    advertise: Option<String>,
    event_callbacks: Vec<pacer_apiserver::CallbackRule>,
    auth: Authentication,
    audit: pacer_apiserver::audit::AuditLog,
    /// The certificate shown to agents' endpoints (the etcd identity: the same CA).
    agent_client: Option<EtcdTls>,
    /// HTTPS with this configuration; plain HTTP (`--insecure` only) without.
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
}

/// The API and, while this replica is elected, the controllers, on one client until `token`
/// is cancelled.
async fn control_plane(
    client: Client,
    plane: Plane,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let listen = plane.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let identity = plane.advertise.unwrap_or_else(|| {
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| listen.to_string())
    });
    tracing::info!(%listen, "API listening");
    let state = pacer_apiserver::ApiState::new(&client)
        .with_identity(&identity)
        .with_event_callbacks(plane.event_callbacks)
        .with_authentication(plane.auth.basic, plane.auth.insecure)
        .with_audit(plane.audit);
    let state = match &plane.agent_client {
        Some(identity) => state
            .with_agent_client(identity)
            .map_err(anyhow::Error::msg)?,
        None => state,
    };
    let events = pacer_apiserver::deliver_events(state.clone(), token.clone());
    let stop = token.clone().cancelled_owned();
    let api = async {
        match plane.tls {
            Some(tls) => pacer_apiserver::tls::serve_tls(listener, state, tls, stop).await,
            None => pacer_apiserver::serve(listener, state, stop).await,
        }
    };
    let elected = pacer_controllers::election::run_elected(
        &client,
        &identity,
        plane.leader_ttl,
        token.clone(),
    );
    let (served, (), ()) = tokio::join!(api, elected, events);
    served.context("the API server failed")
}

pub async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let token = CancellationToken::new();
    stop_on_signal(token.clone());
    let client = connect(
        &args.etcd.etcd,
        &args.etcd.prefix,
        args.etcd.tls.identity().as_ref(),
    )
    .await?;
    if let Some(path) = &args.admin_token_file {
        admin_token(&client, path).await?;
    }
    let plane = Plane {
        listen: args.listen,
        leader_ttl: Duration::from_secs(args.leader_ttl.max(2)),
        advertise: args.advertise,
        event_callbacks: args.event_callbacks,
        auth: args.security.authentication(args.listen)?,
        audit: args.security.audit(None)?,
        agent_client: args.etcd.tls.identity(),
        tls: match (&args.tls.tls_cert, &args.tls.tls_key) {
            (Some(cert), Some(key)) => {
                Some(pacer_apiserver::tls::server_config(cert, key).map_err(anyhow::Error::msg)?)
            }
            _ if args.security.insecure => None,
            _ => bail!(
                "the API serves HTTPS only: give --tls-cert and --tls-key (`pacer certs issue`), or --insecure for plain HTTP without authentication"
            ),
        },
    };
    control_plane(client, plane, token).await
}

pub async fn agent(args: AgentCommand) -> anyhow::Result<()> {
    let mut config = args.agent.config()?;
    config.tls = args.agent.tls(args.etcd.tls.identity().map(|t| t.ca))?;
    if config.tls.is_none() && !args.insecure && args.simulate.is_none() {
        bail!(
            "the agent's endpoint serves task logs over HTTPS only: give --agent-tls-cert and --agent-tls-key (`pacer certs issue`) with --etcd-cacert, or --insecure"
        );
    }
    let token = CancellationToken::new();
    stop_on_signal(token.clone());
    let client = connect(
        &args.etcd.etcd,
        &args.etcd.prefix,
        args.etcd.tls.identity().as_ref(),
    )
    .await?;
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

/// What `pacer up` keeps in its data folder, made on first start: the cluster CA, the API's
/// certificate, the admin token and the client config the CLI finds (`.pacer/config`).
/// Nothing of it with `--insecure` but a config that says plain HTTP.
async fn local_pki(
    client: &Client,
    args: &UpArgs,
    insecure: bool,
    etcd: Option<crate::config::EtcdConfig>,
) -> anyhow::Result<Option<axum_server::tls_rustls::RustlsConfig>> {
    let dir = std::path::absolute(&args.data_dir).unwrap_or_else(|_| args.data_dir.clone());
    let host = match args.listen.ip() {
        ip if ip.is_unspecified() => {
            std::net::SocketAddr::new([127, 0, 0, 1].into(), args.listen.port())
        }
        _ => args.listen,
    };
    if insecure {
        let config = crate::config::ClientConfig {
            server: format!("http://{host}"),
            ..Default::default()
        };
        config.write(&dir.join("config"))?;
        return Ok(None);
    }
    crate::certs::ensure_ca(&dir)?;
    let cert = crate::certs::ensure_cert(
        &dir,
        "server",
        &crate::certs::local_hosts(args.listen),
        crate::certs::Usage::Server,
    )?;
    let tls = pacer_apiserver::tls::server_config(&cert, &dir.join("server.key"))
        .map_err(anyhow::Error::msg)?;
    let config = crate::config::ClientConfig {
        server: format!("https://{host}"),
        token: Some(admin_token(client, &dir.join("admin.token")).await?),
        ca: Some(dir.join("ca.crt")),
        etcd,
    };
    config.write(&dir.join("config"))?;
    Ok(Some(tls))
}

/// Starts the etcd of `pacer up` with its data in `dir/etcd`: unless `secure` is false, it
/// serves HTTPS to clients with a certificate of the cluster CA only (made here on first
/// start: `etcd-server`, `root` for an admin's etcdctl, `pacer-server` for this process),
/// with etcd's access control on. The identity to connect with.
async fn start_etcd(
    dir: &std::path::Path,
    port: u16,
    prefix: &str,
    secure: bool,
) -> anyhow::Result<(EtcdProcess, Option<EtcdTls>)> {
    let data = dir.join("etcd");
    if !secure {
        let etcd = EtcdProcess::start(&data, port)
            .await
            .context("starting etcd")?;
        tracing::warn!(endpoint = %etcd.endpoint, "etcd started without TLS or authentication (--insecure)");
        return Ok((etcd, None));
    }
    use crate::certs::{Usage, ensure_cert};
    let hosts = ["localhost".to_string(), "127.0.0.1".into()];
    ensure_cert(dir, "etcd-server", &hosts, Usage::Both)?;
    ensure_cert(dir, pacer_runtime::etcd_auth::ROOT_USER, &[], Usage::Client)?;
    ensure_cert(
        dir,
        pacer_runtime::etcd_auth::SERVER_USER,
        &[],
        Usage::Client,
    )?;
    let server = pacer_runtime::etcd_process::EtcdServerTls {
        ca: dir.join("ca.crt"),
        cert: dir.join("etcd-server.crt"),
        key: dir.join("etcd-server.key"),
    };
    let root = EtcdTls::in_dir(dir, pacer_runtime::etcd_auth::ROOT_USER);
    let etcd = EtcdProcess::start_secure(&data, port, &server, &root)
        .await
        .context("starting etcd")?;
    pacer_runtime::etcd_auth::enable(std::slice::from_ref(&etcd.endpoint), &root, prefix)
        .await
        .context("turning on etcd's access control")?;
    tracing::info!(endpoint = %etcd.endpoint, data = %data.display(), "etcd started (client certificates required)");
    Ok((
        etcd,
        Some(EtcdTls::in_dir(dir, pacer_runtime::etcd_auth::SERVER_USER)),
    ))
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut config = args.agent.config()?;
    let token = CancellationToken::new();
    stop_on_signal(token.clone());
    let dir = std::path::absolute(&args.data_dir).unwrap_or_else(|_| args.data_dir.clone());
    let secure = !args.security.insecure;
    if secure {
        crate::certs::ensure_ca(&dir)?;
    }
    let (etcd_process, endpoint, identity) = match &args.etcd {
        Some(url) => (None, url.clone(), args.etcd_tls.identity()),
        None => {
            let (etcd, identity) = start_etcd(&dir, args.etcd_port, &args.prefix, secure).await?;
            let endpoint = etcd.endpoint.clone();
            (Some(etcd), endpoint, identity)
        }
    };
    let client = connect(
        std::slice::from_ref(&endpoint),
        &args.prefix,
        identity.as_ref(),
    )
    .await?;
    let auth = args.security.authentication(args.listen)?;
    let etcdctl = etcd_process
        .as_ref()
        .filter(|_| secure)
        .map(|_| crate::config::EtcdConfig::admin(&dir, &endpoint));
    let tls = local_pki(&client, &args, auth.insecure, etcdctl).await?;
    if secure {
        // The agent's endpoint: HTTPS for the names the node is reached by, to this
        // process's own client certificate (or another apiserver's) only.
        let mut hosts = crate::certs::local_hosts(args.agent.agent_listen);
        hosts.push(config.hostname.clone());
        hosts.dedup();
        let cert = crate::certs::ensure_cert(&dir, "agent", &hosts, crate::certs::Usage::Server)?;
        config.tls = Some(pacer_agent::AgentTls {
            cert,
            key: dir.join("agent.key"),
            client_ca: dir.join("ca.crt"),
        });
    }
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
            Plane {
                listen: args.listen,
                leader_ttl: Duration::from_secs(5),
                advertise: None,
                event_callbacks: args.event_callbacks.clone(),
                auth,
                audit: args.security.audit(Some(args.data_dir.join("audit.log")))?,
                agent_client: identity.clone(),
                tls,
            },
            token.clone()
        )
        .map(stop_all(token.clone())),
        agent.map(stop_all(token.clone())),
    );
    drop(etcd_process);
    plane.and(agent)
}
