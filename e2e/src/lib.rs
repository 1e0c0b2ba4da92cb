//! End-to-end harness: a real etcd, the real `pacer` binary (`pacer up`), the real Docker
//! engine. Every test gets its own etcd, node name and host port range, and cleans up after
//! itself: containers are found by the node label.

pub mod testbed;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pacer_crd::{App, Node, Offer, Task};
use pacer_runtime::client::EtcdTls;
use pacer_runtime::etcd_process::{EtcdProcess, free_port};
use serde_json::Value;

/// The image every example and test uses (built by `make images`).
pub const IMAGE: &str = "pacer/busybox:latest";

/// The `pacer` binary next to the test executable, or `$PACER_BIN`.
pub fn pacer_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PACER_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("pacer"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p pacer-cli`, done by `make test`)",
        bin.display()
    );
    bin
}

/// A single-node cluster: etcd plus `pacer up` with a one-off node.
pub struct Cluster {
    pub node: String,
    pub server: String,
    pub etcd_endpoint: String,
    pub ports: (u16, u16),
    process: Child,
    /// Agents started beside `pacer up`: their node names (or simulated base names) and processes.
    agents: Vec<(String, Child)>,
    http: reqwest::Client,
    /// The admin token `pacer up` was started with (its `admin.token`).
    pub token: String,
    _etcd: EtcdProcess,
    dir: tempfile::TempDir,
}

/// Writes a fresh admin token to `dir/admin.token`, as `pacer up` would on first start, so that
/// a test knows it before the server starts; the token.
pub fn write_admin_token(dir: &Path) -> String {
    let (token, _) = pacer_apiserver::auth::new_token("admin");
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join("admin.token"))
        .expect("write admin.token");
    writeln!(file, "{token}").expect("write admin.token");
    token
}

/// Creates the cluster CA in `dir` with the real `pacer certs`, as `pacer up` would on first
/// start, so that a test trusts it before the server starts; the CA's path.
pub fn make_ca(pacer: &Path, dir: &Path) -> PathBuf {
    certs(pacer, dir, &["ca"]);
    dir.join("ca.crt")
}

/// Issues `dir/<name>.crt` and `.key` for `hosts` with the real `pacer certs`.
pub fn issue_cert(pacer: &Path, dir: &Path, name: &str, hosts: &str) {
    issue(pacer, dir, name, &["--hosts", hosts]);
}

/// Issues a client certificate `dir/<name>.crt` (its common name is its etcd user).
pub fn issue_client_cert(pacer: &Path, dir: &Path, name: &str) {
    issue(pacer, dir, name, &["--usage", "client"]);
}

fn issue(pacer: &Path, dir: &Path, name: &str, args: &[&str]) {
    certs(pacer, dir, &[&["issue", name], args].concat());
}

/// `pacer certs --dir DIR <args>`, which must succeed.
fn certs(pacer: &Path, dir: &Path, args: &[&str]) {
    let dir = dir.display().to_string();
    let mut all = vec!["certs", "--dir", &dir];
    all.extend(args);
    pacer_ok(pacer, &all);
}

/// Runs `pacer <args>`, which must succeed.
fn pacer_ok(pacer: &Path, args: &[&str]) {
    let out = Command::new(pacer).args(args).output().expect("pacer runs");
    assert!(
        out.status.success(),
        "pacer {}: {}",
        args.join(" "),
        text(&out.stderr)
    );
}

/// `pacer etcd <command>` as etcd's root (its certificate in `dir`).
fn etcd_admin(pacer: &Path, dir: &Path, endpoint: &str, command: &[&str]) {
    let flags = etcd_flags(dir, "root");
    let mut all = vec!["etcd", "--etcd", endpoint];
    all.extend(flags.iter().map(String::as_str));
    all.extend(command);
    pacer_ok(pacer, &all);
}

/// An etcd on a free port as `pacer up` runs its own: HTTPS to clients with a certificate of
/// the CA in `dir` only, etcd's access control on (`pacer etcd setup`); the certificates of
/// `root` and `pacer-server` are in `dir`.
pub async fn secure_etcd(pacer: &Path, dir: &Path) -> EtcdProcess {
    issue(
        pacer,
        dir,
        "etcd-server",
        &["--hosts", "localhost,127.0.0.1", "--usage", "both"],
    );
    issue_client_cert(pacer, dir, "root");
    issue_client_cert(pacer, dir, "pacer-server");
    let server = pacer_runtime::etcd_process::EtcdServerTls {
        ca: dir.join("ca.crt"),
        cert: dir.join("etcd-server.crt"),
        key: dir.join("etcd-server.key"),
    };
    let root = EtcdTls::in_dir(dir, "root");
    let etcd = EtcdProcess::start_secure(&dir.join("etcd"), 0, &server, &root)
        .await
        .expect("etcd starts");
    etcd_admin(pacer, dir, &etcd.endpoint, &["setup"]);
    etcd
}

/// `--etcd-cacert`, `--etcd-cert`, `--etcd-key` of identity `name` in `dir`.
pub fn etcd_flags(dir: &Path, name: &str) -> Vec<String> {
    tls_flags(&EtcdTls::in_dir(dir, name))
}

/// `--etcd-cacert`, `--etcd-cert`, `--etcd-key` of `identity`.
pub fn tls_flags(identity: &EtcdTls) -> Vec<String> {
    vec![
        "--etcd-cacert".into(),
        identity.ca.display().to_string(),
        "--etcd-cert".into(),
        identity.cert.display().to_string(),
        "--etcd-key".into(),
        identity.key.display().to_string(),
    ]
}

/// An HTTPS client that trusts the CA at `ca` only and authenticates with `token`.
pub fn client_with(ca: &Path, token: &str) -> reqwest::Client {
    pacer_apiserver::tls::client(Some(ca), Some(token), std::time::Duration::from_secs(60))
        .expect("an HTTP client")
}

impl Cluster {
    /// Starts a node offering `cpus` and `mem`, with host ports `ports.0..=ports.1`.
    pub async fn start(name: &str, cpus: f64, mem: f64, ports: (u16, u16)) -> Cluster {
        ensure_image();
        pacer_runtime::install_crypto();
        let dir = tempfile::tempdir().expect("temp dir");
        // Process tasks run as `nobody`: their sandboxes below must be reachable (the keys
        // and the token in it stay their owner's, mode 0600).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the test's folder");
        let token = write_admin_token(dir.path());
        let ca = make_ca(&pacer_bin(), dir.path());
        let etcd = secure_etcd(&pacer_bin(), dir.path()).await;
        let node = format!("e2e-{name}-{}", std::process::id());
        let server = format!("127.0.0.1:{}", free_port());
        let mut cluster = Cluster {
            process: spawn_up(dir.path(), &etcd.endpoint, &server, &node, cpus, mem, ports),
            server: format!("https://{server}"),
            etcd_endpoint: etcd.endpoint.clone(),
            node,
            ports,
            agents: Vec::new(),
            http: client_with(&ca, &token),
            token,
            _etcd: etcd,
            dir,
        };
        for attempt in 1.. {
            match cluster.wait_for_node().await {
                Ok(()) => break,
                // Another process took the API port between choosing and binding it: choose again.
                Err(log) if log.contains("Address already in use") && attempt < 3 => {
                    let _ = cluster.process.kill();
                    let _ = cluster.process.wait();
                    let server = format!("127.0.0.1:{}", free_port());
                    cluster.server = format!("https://{server}");
                    cluster.process = spawn_up(
                        cluster.dir.path(),
                        &cluster.etcd_endpoint,
                        &server,
                        &cluster.node,
                        cpus,
                        mem,
                        ports,
                    );
                }
                Err(log) => panic!("node {} did not register; log:\n{log}", cluster.node),
            }
        }
        cluster
    }

    /// The `pacer agent` process of `add_agent`; its log is appended to across restarts.
    fn spawn_agent(&self, suffix: &str, attributes: &str, ports: (u16, u16)) -> Child {
        let node = format!("{}-{suffix}", self.node);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join(format!("agent-{suffix}.log")))
            .expect("log");
        // Each agent shows etcd its own identity, which may write its node's records only.
        let identity = self.node_identity(&node);
        Command::new(pacer_bin())
            .args([
                "agent",
                "--etcd",
                &self.etcd_endpoint,
                "--agent-listen",
                "127.0.0.1:0",
            ])
            .args(tls_flags(&identity))
            .args(self.agent_tls())
            .args(["--node-name", &node, "--hostname", "127.0.0.1"])
            .args(["--cpus", "4", "--mem", "2048", "--disk", "1000"])
            .args(["--attributes", attributes])
            .args(["--ports", &format!("{}-{}", ports.0, ports.1)])
            .arg("--work-dir")
            .arg(self.dir().join(format!("agent-{suffix}")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("pacer agent starts")
    }

    /// The etcd identity of node `node`'s agent (`node-<node>`, its certificate in the test's
    /// folder), granted its node's records once (`pacer etcd grant-node`).
    pub fn node_identity(&self, node: &str) -> EtcdTls {
        let user = pacer_runtime::etcd_auth::node_user(node);
        if !self.dir().join(format!("{user}.crt")).exists() {
            issue_client_cert(&pacer_bin(), self.dir(), &user);
            etcd_admin(
                &pacer_bin(),
                self.dir(),
                &self.etcd_endpoint,
                &["grant-node", node],
            );
        }
        EtcdTls::in_dir(self.dir(), &user)
    }

    /// A client of the cluster's etcd as `identity`.
    pub async fn etcd_as(&self, identity: &EtcdTls) -> pacer_runtime::Client {
        pacer_runtime::Client::connect_as(
            std::slice::from_ref(&self.etcd_endpoint),
            "/pacer/",
            Duration::from_secs(10),
            Some(identity),
        )
        .await
        .expect("etcd accepts the identity")
    }

    /// The endpoint flags of the agents a test adds: one certificate for 127.0.0.1, where
    /// they all listen.
    fn agent_tls(&self) -> Vec<String> {
        if !self.dir().join("agent-extra.crt").exists() {
            issue_cert(
                &pacer_bin(),
                self.dir(),
                "agent-extra",
                "127.0.0.1,localhost",
            );
        }
        let file = |name: &str| self.dir().join(name).display().to_string();
        vec![
            "--agent-tls-cert".into(),
            file("agent-extra.crt"),
            "--agent-tls-key".into(),
            file("agent-extra.key"),
        ]
    }

    /// kill -9 of the agent started with `suffix`, then the same agent again (same node name,
    /// work dir and flags), as after a crash.
    pub fn crash_and_restart_agent(&mut self, suffix: &str, attributes: &str, ports: (u16, u16)) {
        let base = format!("{}-{suffix}", self.node);
        let index = self
            .agents
            .iter()
            .position(|(name, _)| *name == base)
            .expect("an agent with that suffix");
        let (_, mut old) = self.agents.remove(index);
        let _ = old.kill();
        let _ = old.wait();
        let child = self.spawn_agent(suffix, attributes, ports);
        self.agents.push((base, child));
    }

    /// Starts another real agent (docker and process runtimes) on this machine, as its own
    /// node with `attributes` (Mesos syntax) and host ports `ports`, and waits for its offer.
    pub async fn add_agent(&mut self, suffix: &str, attributes: &str, ports: (u16, u16)) -> String {
        let node = format!("{}-{suffix}", self.node);
        let child = self.spawn_agent(suffix, attributes, ports);
        self.agents.push((node.clone(), child));
        let (this, wanted): (&Cluster, &str) = (self, &node);
        this.eventually(
            Duration::from_secs(30),
            &format!("node {node} offers"),
            || async move {
                this.offers()
                    .await
                    .iter()
                    .any(|o| o.spec.node == wanted)
                    .then_some(())
            },
        )
        .await;
        node
    }

    /// Starts `count` simulated nodes (`pacer agent --simulate`) of `cpus` and `mem` each, and
    /// waits until they all offer. Their names start with the returned prefix.
    pub async fn add_simulated(
        &mut self,
        suffix: &str,
        count: usize,
        cpus: f64,
        mem: f64,
    ) -> String {
        self.add_simulated_with(suffix, count, cpus, mem, &[]).await
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`) to the agent process started with `suffix`:
    /// SIGSTOP freezes it as a partition would (its lease expires), SIGCONT heals.
    pub fn signal_agent(&self, suffix: &str, signal: &str) {
        let base = format!("{}-{suffix}", self.node);
        let (_, child) = self
            .agents
            .iter()
            .find(|(name, _)| *name == base)
            .expect("an agent with that suffix");
        let status = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// `add_simulated` with more `pacer agent` flags (`--lease-ttl 2`, ...).
    pub async fn add_simulated_with(
        &mut self,
        suffix: &str,
        count: usize,
        cpus: f64,
        mem: f64,
        extra: &[&str],
    ) -> String {
        let base = format!("{}-{suffix}", self.node);
        let log = std::fs::File::create(self.dir().join(format!("sim-{suffix}.log"))).expect("log");
        let child = Command::new(pacer_bin())
            .args(["agent", "--etcd", &self.etcd_endpoint, "--node-name", &base])
            // Simulated nodes share one process, so one identity: the server's.
            .args(etcd_flags(self.dir(), "pacer-server"))
            .args(["--simulate", &count.to_string()])
            .args([
                "--cpus",
                &cpus.to_string(),
                "--mem",
                &mem.to_string(),
                "--disk",
                "0",
            ])
            // Fake ports, but as many as a real agent lends: every app asks for one by default.
            .args(["--ports", "31000-31099"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("pacer agent --simulate starts");
        self.agents.push((base.clone(), child));
        let prefix = format!("{base}-");
        let (this, wanted): (&Cluster, &str) = (self, &prefix);
        this.eventually(
            Duration::from_secs(60),
            &format!("{count} simulated nodes"),
            || async move {
                let nodes = this.nodes().await;
                let up = nodes
                    .iter()
                    .filter(|n| {
                        n.metadata
                            .name
                            .as_deref()
                            .unwrap_or_default()
                            .starts_with(wanted)
                    })
                    .count();
                (up == count).then_some(())
            },
        )
        .await;
        prefix
    }

    /// Waits until the node offers resources; the log if `pacer up` exits or 30 s pass first.
    async fn wait_for_node(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.offers().await.iter().any(|o| o.spec.node == self.node) {
                return Ok(());
            }
            let exited = self.process.try_wait().ok().flatten().is_some();
            if exited || Instant::now() > deadline {
                return Err(self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What `pacer up` printed, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pacer.log")).unwrap_or_default()
    }

    /// Stops etcd (kill -9) for `down_for`, then starts it again on the same port and data.
    pub async fn etcd_outage(&mut self, down_for: Duration) {
        self._etcd.kill();
        tokio::time::sleep(down_for).await;
        self._etcd.restart().await.expect("etcd starts again");
    }

    /// An HTTP client carrying the cluster's admin token.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The test's temporary folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A Marathon API call: status and JSON body.
    pub async fn marathon(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.server));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("the API answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Follows every task change, in etcd's order, from the native API's watch.
    pub async fn watch_tasks(&self) -> TaskWatch {
        let resp = self
            .http
            .get(format!("{}/apis/pacer.io/v1/tasks?watch=true", self.server))
            .send()
            .await
            .expect("watch starts");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut resp = resp;
            let mut buffer = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find('\n') {
                    let line: String = buffer.drain(..=end).collect();
                    let Ok(event) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    let kind = event["type"].as_str().unwrap_or_default().to_string();
                    if let Ok(task) = serde_json::from_value::<Task>(event["object"].clone())
                        && tx.send((kind, task)).is_err()
                    {
                        return;
                    }
                }
            }
        });
        TaskWatch {
            rx,
            tasks: Default::default(),
        }
    }

    /// Runs the CLI against this cluster.
    pub fn pacer(&self, args: &[&str]) -> Output {
        Command::new(pacer_bin())
            .args(args)
            .env("PACER_SERVER", &self.server)
            .env("PACER_TOKEN", &self.token)
            .env("PACER_CACERT", self.dir().join("ca.crt"))
            .output()
            .expect("pacer runs")
    }

    /// Writes `text` to a file in the test's folder and applies it; the CLI's output.
    pub fn apply(&self, file: &str, text: &str) -> Output {
        let path = self.dir().join(file);
        std::fs::write(&path, text).expect("write manifest");
        self.pacer(&["apply", "-f", path.to_str().unwrap_or_default()])
    }

    async fn items<K: serde::de::DeserializeOwned>(&self, plural: &str) -> Vec<K> {
        let url = format!("{}/apis/pacer.io/v1/{plural}", self.server);
        let Ok(resp) = self.http.get(&url).send().await else {
            return vec![];
        };
        let body: Value = resp.json().await.unwrap_or_default();
        serde_json::from_value(body["items"].clone()).unwrap_or_default()
    }

    pub async fn tasks(&self) -> Vec<Task> {
        self.items("tasks").await
    }

    pub async fn apps(&self) -> Vec<App> {
        self.items("apps").await
    }

    pub async fn offers(&self) -> Vec<Offer> {
        self.items("offers").await
    }

    pub async fn nodes(&self) -> Vec<Node> {
        self.items("nodes").await
    }

    /// Tasks of `app` in state TASK_RUNNING.
    pub async fn running(&self, app: &str) -> Vec<Task> {
        let all = self.tasks().await;
        all.into_iter()
            .filter(|t| t.spec.app_id == app && t.state() == pacer_crd::TaskState::Running)
            .collect()
    }

    /// Ids of this node's containers (all states) with label `key=value`.
    pub fn containers(&self, app: Option<&str>) -> Vec<String> {
        let filter = app.map(|app| format!("label=pacer.io/app={app}"));
        let filters: Vec<&str> = filter.iter().map(String::as_str).collect();
        node_containers(|n| n == self.node, &filters)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// Ids of the containers of this cluster's nodes (`pacer up`'s and the added agents').
    pub fn all_containers(&self) -> Vec<String> {
        let prefix = format!("{}-", self.node);
        node_containers(|n| n == self.node || n.starts_with(&prefix), &[])
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// Polls `check` until it returns Some, failing with `what` and the server log after `limit`.
    pub async fn eventually<T, F, Fut>(&self, limit: Duration, what: &str, check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        if let Some(value) = poll(limit, check).await {
            return value;
        }
        let tasks = self.pacer(&["get", "tasks", "-o", "wide"]);
        panic!(
            "timed out after {limit:?} waiting for {what}\ntasks:\n{}\nlog tail:\n{}",
            String::from_utf8_lossy(&tasks.stdout),
            tail(&self.log(), 40)
        );
    }
}

/// Polls `check` every 100 ms until it returns Some, or `None` once `limit` has passed (the
/// caller says what it waited for and what it saw).
pub async fn poll<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A command's output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Containers carrying a `pacer.io/node` label that `node` accepts and matching every docker
/// `filters` entry: (id, node).
pub fn node_containers(node: impl Fn(&str) -> bool, filters: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["ps", "-a", "--filter", "label=pacer.io/node"];
    for filter in filters {
        args.extend(["--filter", filter]);
    }
    args.extend(["--format", "{{.ID}} {{.Label \"pacer.io/node\"}}"]);
    let out = Command::new("docker")
        .args(&args)
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, n)| node(n))
        .map(|(id, n)| (id.to_string(), n.to_string()))
        .collect()
}

/// Tasks as the watch has reported them so far.
pub struct TaskWatch {
    rx: tokio::sync::mpsc::UnboundedReceiver<(String, Task)>,
    pub tasks: std::collections::BTreeMap<String, Task>,
}

impl TaskWatch {
    /// Waits for the next change (at most `limit`) and applies it; the task it concerned.
    pub async fn next(&mut self, limit: Duration) -> Task {
        let (kind, task) = tokio::time::timeout(limit, self.rx.recv())
            .await
            .expect("a task change in time")
            .expect("the watch runs");
        let name = task.metadata.name.clone().unwrap_or_default();
        if kind == "DELETED" {
            self.tasks.remove(&name);
        } else {
            self.tasks.insert(name, task.clone());
        }
        task
    }

    /// Tasks of `app` that have not ended.
    pub fn live(&self, app: &str) -> Vec<&Task> {
        self.tasks
            .values()
            .filter(|t| t.spec.app_id == app && !t.state().is_terminal())
            .collect()
    }
}

impl Drop for Cluster {
    /// Stops `pacer up` and removes the node's containers. A create the engine was still
    /// finishing when pacer stopped can surface a moment later, so the node is swept until it
    /// has been empty twice in a row (for at most 5 s).
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        for (_, agent) in &mut self.agents {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        // Process-runtime tasks outlive their agent by design (a restarted agent adopts them);
        // the test's are the processes working in its folder.
        kill_processes_under(self.dir.path());
        let mut empty_in_a_row = 0;
        for _ in 0..20 {
            let ids = self.all_containers();
            if ids.is_empty() {
                empty_in_a_row += 1;
                if empty_in_a_row == 2 {
                    return;
                }
            } else {
                empty_in_a_row = 0;
                let _ = Command::new("docker")
                    .arg("rm")
                    .arg("-f")
                    .args(&ids)
                    .output();
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Kills (SIGKILL) every process whose working directory is inside `dir`.
fn kill_processes_under(dir: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let inside =
            std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir));
        if inside {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
        }
    }
}

/// `pacer up` against `etcd` with a one-off node; its log goes to `dir/pacer.log`.
fn spawn_up(
    dir: &Path,
    etcd: &str,
    server: &str,
    node: &str,
    cpus: f64,
    mem: f64,
    ports: (u16, u16),
) -> Child {
    let log = std::fs::File::create(dir.join("pacer.log")).expect("log file");
    Command::new(pacer_bin())
        .args([
            "up",
            "--etcd",
            etcd,
            "--listen",
            server,
            "--agent-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir)
        .args(etcd_flags(dir, "pacer-server"))
        .args(["--node-name", node, "--hostname", "127.0.0.1"])
        .args([
            "--cpus",
            &cpus.to_string(),
            "--mem",
            &mem.to_string(),
            "--disk",
            "1000",
        ])
        .args(["--ports", &format!("{}-{}", ports.0, ports.1)])
        .arg("--work-dir")
        .arg(dir.join("agent"))
        .env(
            "PACER_LOG",
            "info,pacer_runtime=debug,pacer_controllers::allocator=debug",
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("pacer up starts")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Builds `pacer/busybox:latest` (and its `centos`, `python:3` tags) if they are not there yet.
pub fn ensure_image() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let present = Command::new("docker")
            .args(["image", "inspect", IMAGE, "centos:latest", "python:3"])
            .output()
            .is_ok_and(|o| o.status.success());
        if present {
            return;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/images/build.sh");
        let status = Command::new("bash")
            .arg(script)
            .status()
            .expect("image build runs");
        assert!(status.success(), "building {IMAGE} failed");
    });
}

/// An App manifest in YAML for a busybox command with one bridge port mapping.
pub fn web_app(name: &str, instances: i64) -> String {
    format!(
        r#"apiVersion: pacer.io/v1
kind: App
metadata:
  name: {name}
spec:
  instances: {instances}
  cpus: 0.1
  mem: 16
  cmd: echo "hello from $MESOS_TASK_ID" > /tmp/index.html && exec httpd -f -p 8080 -h /tmp
  taskKillGracePeriodSeconds: 1
  container:
    docker:
      image: {IMAGE}
    portMappings:
      - containerPort: 8080
        hostPort: 0
  networks:
    - mode: container/bridge
"#
    )
}
