//! The multi-host test bed: hosts as containers of `pacer/testbed:latest` on a private Docker
//! network: a 3-member etcd cluster, `pacer server` replicas and agents (which drive this
//! machine's Docker engine through its socket, each as its own node). A host can be killed,
//! restarted, or cut off the network and connected again.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::{node_containers, pacer_bin, poll};

pub const IMAGE: &str = "pacer/testbed:latest";
/// The lease TTL of the agents and the leader election, in seconds.
pub const TTL: u64 = 3;

/// Resolves the bed's host names to their current addresses, as the hosts themselves do
/// (`docker inspect`, each time: a reconnected host may get another address).
struct DockerNames;

impl reqwest::dns::Resolve for DockerNames {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let out = tokio::process::Command::new("docker")
                .args([
                    "inspect",
                    "-f",
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                    &host,
                ])
                .output()
                .await?;
            let ips: Vec<std::net::SocketAddr> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
                .map(|ip| std::net::SocketAddr::new(ip, 8080))
                .collect();
            if ips.is_empty() {
                return Err(format!("host {host} has no address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(ips.into_iter());
            Ok(addrs)
        })
    }
}

/// The etcd flags of identity `user`, as the bed's hosts find its files (/etc/pacer).
fn identity(user: &str) -> Vec<String> {
    crate::etcd_flags(std::path::Path::new("/etc/pacer"), user)
}

pub struct TestBed {
    /// Prefix of every container, network and node name of this bed.
    pub name: String,
    pub servers: Vec<String>,
    pub agents: Vec<String>,
    pub etcd: Vec<String>,
    http: reqwest::Client,
    /// Holds `admin.token`, mounted read-only into every server host at /etc/pacer.
    secrets: tempfile::TempDir,
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

fn docker_ok(args: &[&str]) {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the test bed image from the `pacer` binary the tests run (once per test binary).
pub fn ensure_image() {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        crate::ensure_image();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("images/testbed.sh");
        let status = Command::new("bash")
            .arg(script)
            .arg(pacer_bin())
            .status()
            .expect("testbed.sh runs");
        assert!(status.success(), "building {IMAGE} failed");
    });
}

impl TestBed {
    /// Starts 3 etcd members, `servers` API/controller replicas and `agents` agents.
    pub async fn start(name: &str, servers: usize, agents: usize) -> TestBed {
        ensure_image();
        let name = format!("tb-{name}-{}", std::process::id());
        docker_ok(&["network", "create", &name]);
        let secrets = tempfile::tempdir().expect("a temp dir");
        let token = crate::write_admin_token(secrets.path());
        // The servers' certificate names them as the bed's hosts reach them; this process
        // reaches them by the same names (`DockerNames`), so the names are checked for real.
        let ca = crate::make_ca(&crate::pacer_bin(), secrets.path());
        let servers: Vec<String> = (1..=servers).map(|i| format!("{name}-s{i}")).collect();
        let pacer = crate::pacer_bin();
        crate::issue_cert(&pacer, secrets.path(), "server", &servers.join(","));
        // etcd's members serve clients and each other with one certificate for their names;
        // every process shows its own identity: `root` for the setup, `pacer-server` for the
        // servers, `node-<host>` for each agent (the layout of manifests/deploy/README.md).
        let members: Vec<String> = (1..=3).map(|i| format!("{name}-e{i}")).collect();
        crate::issue(
            &pacer,
            secrets.path(),
            "etcd",
            &["--hosts", &members.join(","), "--usage", "both"],
        );
        crate::issue_client_cert(&pacer, secrets.path(), pacer_runtime::etcd_auth::ROOT_USER);
        crate::issue_client_cert(
            &pacer,
            secrets.path(),
            pacer_runtime::etcd_auth::SERVER_USER,
        );
        for i in 1..=agents {
            let host = format!("{name}-a{i}");
            let user = pacer_runtime::etcd_auth::node_user(&host);
            crate::issue_client_cert(&pacer, secrets.path(), &user);
            crate::issue_cert(&pacer, secrets.path(), &format!("agent-{host}"), &host);
        }
        let bed = TestBed {
            secrets,
            etcd: members,
            servers,
            agents: (1..=agents).map(|i| format!("{name}-a{i}")).collect(),
            name,
            http: pacer_apiserver::tls::client_builder(Some(&ca), Some(&token))
                .expect("the CA and the token")
                .dns_resolver(std::sync::Arc::new(DockerNames))
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
        };
        let mount = format!("{}:/etc/pacer:ro", bed.secrets.path().display());
        let cluster: Vec<String> = bed
            .etcd
            .iter()
            .map(|e| format!("{e}=https://{e}:2380"))
            .collect();
        for member in bed.etcd.clone() {
            let advertise = format!("https://{member}:2379");
            let peer = format!("https://{member}:2380");
            bed.run(
                &member,
                &["-v", &mount],
                &[
                    "etcd",
                    "--name",
                    &member,
                    "--data-dir",
                    "/var/lib/etcd",
                    "--listen-client-urls",
                    "https://0.0.0.0:2379",
                    "--advertise-client-urls",
                    &advertise,
                    "--listen-peer-urls",
                    "https://0.0.0.0:2380",
                    "--initial-advertise-peer-urls",
                    &peer,
                    "--initial-cluster",
                    &cluster.join(","),
                    "--initial-cluster-token",
                    &bed.name,
                    "--initial-cluster-state",
                    "new",
                    "--auto-compaction-mode",
                    "periodic",
                    "--auto-compaction-retention",
                    "5m",
                    "--client-cert-auth",
                    "--trusted-ca-file",
                    "/etc/pacer/ca.crt",
                    "--cert-file",
                    "/etc/pacer/etcd.crt",
                    "--key-file",
                    "/etc/pacer/etcd.key",
                    "--peer-client-cert-auth",
                    "--peer-trusted-ca-file",
                    "/etc/pacer/ca.crt",
                    "--peer-cert-file",
                    "/etc/pacer/etcd.crt",
                    "--peer-key-file",
                    "/etc/pacer/etcd.key",
                ],
            );
        }
        let endpoints = bed.endpoints();
        let ttl = TTL.to_string();
        let root = identity(pacer_runtime::etcd_auth::ROOT_USER);
        let mut setup = vec!["etcd".to_string(), "--etcd".into(), endpoints.clone()];
        setup.extend(root.iter().cloned());
        bed.once(&mount, &[&setup[..], &["setup".to_string()]].concat())
            .await;
        for agent in bed.agents.clone() {
            bed.once(
                &mount,
                &[&setup[..], &["grant-node".to_string(), agent]].concat(),
            )
            .await;
        }
        let server_identity = identity(pacer_runtime::etcd_auth::SERVER_USER);
        for server in bed.servers.clone() {
            let advertise = format!("{server}:8080");
            let mut command = vec![
                "pacer",
                "server",
                "--admin-token-file",
                "/etc/pacer/admin.token",
                "--tls-cert",
                "/etc/pacer/server.crt",
                "--tls-key",
                "/etc/pacer/server.key",
                "--etcd",
                &endpoints,
            ];
            command.extend(server_identity.iter().map(String::as_str));
            bed.run(
                &server,
                &["-v", &mount],
                &[
                    &command[..],
                    &[
                        "--listen",
                        "0.0.0.0:8080",
                        "--advertise",
                        &advertise,
                        "--leader-ttl",
                        &ttl,
                    ],
                ]
                .concat(),
            );
        }
        for (i, agent) in bed.agents.clone().iter().enumerate() {
            let ports = format!("{}-{}", 33100 + i * 100, 33199 + i * 100);
            let own = identity(&pacer_runtime::etcd_auth::node_user(agent));
            bed.run(
                agent,
                &[
                    "-v",
                    "/var/run/docker.sock:/var/run/docker.sock",
                    "-v",
                    &mount,
                ],
                &[
                    &["pacer", "agent", "--etcd", &endpoints][..],
                    &own.iter().map(String::as_str).collect::<Vec<_>>(),
                    &[
                        "--agent-tls-cert",
                        &format!("/etc/pacer/agent-{agent}.crt"),
                        "--agent-tls-key",
                        &format!("/etc/pacer/agent-{agent}.key"),
                        "--node-name",
                        agent,
                        "--hostname",
                        agent,
                        "--agent-listen",
                        "0.0.0.0:5051",
                        "--lease-ttl",
                        &ttl,
                        "--cpus",
                        "2",
                        "--mem",
                        "1024",
                        "--disk",
                        "100",
                        "--ports",
                        &ports,
                        "--work-dir",
                        "/var/lib/pacer",
                    ],
                ]
                .concat(),
            );
        }
        let wanted = agents;
        bed.eventually(
            Duration::from_secs(60),
            "a leader and every node",
            || async {
                let leader = bed.leader().await?;
                let nodes = bed.get(&leader, "/apis/pacer.io/v1/nodes").await?;
                let count = nodes["items"].as_array().map(Vec::len).unwrap_or(0);
                (count == wanted).then_some(())
            },
        )
        .await;
        bed
    }

    fn run(&self, host: &str, extra: &[&str], command: &[&str]) {
        let mut args = vec![
            "run",
            "-d",
            "--name",
            host,
            "--hostname",
            host,
            "--network",
            &self.name,
        ];
        args.extend(["--label", "pacer.io/testbed"]);
        args.extend(extra);
        args.push(IMAGE);
        args.extend(command);
        docker_ok(&args);
    }

    /// Runs `pacer <args>` once in a container of its own on the bed's network, with the
    /// secrets mounted, until it succeeds (etcd may still be forming its cluster).
    async fn once(&self, mount: &str, args: &[String]) {
        let mut command: Vec<&str> = vec!["run", "--rm", "--network", &self.name, "-v", mount];
        command.extend(["--label", "pacer.io/testbed", IMAGE, "pacer"]);
        command.extend(args.iter().map(String::as_str));
        let done = crate::poll(Duration::from_secs(60), || async {
            let out = docker(&command);
            out.status.success().then_some(())
        })
        .await;
        assert!(
            done.is_some(),
            "pacer {} kept failing: {}",
            args.join(" "),
            crate::text(&docker(&command).stderr)
        );
    }

    /// `https://e1:2379,...` as the hosts on the network reach etcd.
    pub fn endpoints(&self) -> String {
        self.etcd
            .iter()
            .map(|e| format!("https://{e}:2379"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The host's address on the bed's network (reachable from this machine).
    pub fn ip(&self, host: &str) -> String {
        let format = format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            self.name
        );
        let out = docker(&["inspect", "-f", &format, host]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `https://HOST:8080` of a server host (its name resolved by [`DockerNames`]).
    pub fn url(&self, server: &str) -> String {
        format!("https://{server}:8080")
    }

    pub async fn get(&self, server: &str, path: &str) -> Option<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.url(server)))
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// A request to a server host: status and JSON body.
    pub async fn call(
        &self,
        server: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        // Writes may wait out etcd's own recovery (up to 15 s of retries in the server).
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url(server)))
            .timeout(Duration::from_secs(20));
        if let Some(body) = body {
            req = req.json(&body);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                (status, resp.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// The server host that leads, as every running server says and the leader confirms.
    pub async fn leader(&self) -> Option<String> {
        for server in &self.servers {
            let Some(answer) = self.get(server, "/v2/leader").await else {
                continue;
            };
            let leader = answer["leader"]
                .as_str()?
                .trim_end_matches(":8080")
                .to_string();
            let info = self.get(&leader, "/v2/info").await?;
            if info["elected"] == Value::Bool(true) {
                return Some(leader);
            }
        }
        None
    }

    /// Any server host that answers.
    pub async fn any_server(&self) -> Option<String> {
        for server in &self.servers {
            if self.get(server, "/ping").await.is_some()
                || self.get(server, "/v2/info").await.is_some()
            {
                return Some(server.clone());
            }
        }
        None
    }

    pub fn kill(&self, host: &str) {
        docker_ok(&["kill", "-s", "KILL", host]);
    }

    /// `docker restart`: SIGTERM, then the host starts again.
    pub fn restart(&self, host: &str) {
        docker_ok(&["restart", "-t", "5", host]);
    }

    pub fn start_again(&self, host: &str) {
        docker_ok(&["start", host]);
    }

    /// Cuts the host off the bed's network (its processes keep running).
    pub fn disconnect(&self, host: &str) {
        docker_ok(&["network", "disconnect", &self.name, host]);
    }

    pub fn connect(&self, host: &str) {
        docker_ok(&["network", "connect", "--alias", host, &self.name, host]);
    }

    /// Running task containers of `app` on this machine's engine, by node.
    pub fn containers_of(&self, app: &str) -> Vec<(String, String)> {
        let filter = format!("label=pacer.io/app={app}");
        node_containers(|n| n.starts_with(&self.name), &[&filter, "status=running"])
    }

    pub async fn eventually<T, F, Fut>(&self, limit: Duration, what: &str, check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        if let Some(value) = poll(limit, check).await {
            return value;
        }
        let logs: Vec<String> = self
            .servers
            .iter()
            .chain(&self.agents)
            .map(|h| {
                let out = docker(&["logs", "--tail", "15", h]);
                format!("--- {h}\n{}", String::from_utf8_lossy(&out.stderr))
            })
            .collect();
        panic!(
            "timed out after {limit:?} waiting for {what}\n{}",
            logs.join("\n")
        );
    }
}

impl Drop for TestBed {
    /// Removes the hosts, the task containers their agents started, and the network.
    fn drop(&mut self) {
        let hosts: Vec<&str> = self
            .etcd
            .iter()
            .chain(&self.servers)
            .chain(&self.agents)
            .map(String::as_str)
            .collect();
        let mut args = vec!["rm", "-f"];
        args.extend(hosts);
        let _ = docker(&args);
        let tasks: Vec<String> = node_containers(|n| n.starts_with(&self.name), &[])
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if !tasks.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(tasks.iter().map(String::as_str));
            let _ = docker(&args);
        }
        let _ = docker(&["network", "rm", &self.name]);
    }
}
