//! A test bed for one benchmark: its own etcd, `pacer server` and agents as child processes
//! (so that each one's CPU time and memory can be read from /proc), and a raw etcd client.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use etcd_client::{EventType, GetOptions, WatchOptions};
use pacer_runtime::etcd_process::{EtcdProcess, free_port};
use serde_json::{Value, json};

/// A child process of the bed, killed when dropped.
pub struct Proc {
    child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then up to 10 s for it to exit (then SIGKILL).
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for pid {pid}"))
}

/// User + system CPU seconds a process has used so far (its threads included).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
    let ticks: f64 = fields
        .get(11..13)
        .ok_or_else(|| anyhow!("short /proc/{pid}/stat"))?
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    Ok(ticks / clock_ticks())
}

/// Clock ticks per second of /proc/PID/stat (asked once).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Waits until `check` gives a value, for at most `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    pacer_e2e::poll(limit, check)
        .await
        .ok_or_else(|| anyhow!("timed out after {limit:?} waiting for {what}"))
}

pub struct Bed {
    pacer: PathBuf,
    pub etcd: EtcdProcess,
    pub client: etcd_client::Client,
    /// `https://127.0.0.1:PORT` of `pacer server`.
    pub api: String,
    pub server: Option<Proc>,
    pub agents: Vec<Proc>,
    pub http: reqwest::Client,
    // Last: removed after the processes that write into it.
    dir: tempfile::TempDir,
}

impl Bed {
    /// A fresh etcd in a temporary folder; no server or agent yet.
    pub async fn start(pacer: &Path) -> Result<Bed> {
        let mut dir = tempfile::tempdir()?;
        // PACER_BENCH_KEEP=1 keeps the folder (etcd's data, every process's log) to look into.
        if std::env::var_os("PACER_BENCH_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("  keeping {}", dir.path().display());
        }
        let etcd = EtcdProcess::start(&dir.path().join("etcd"), 0).await?;
        let client = etcd_client::Client::connect([&etcd.endpoint], None).await?;
        // The server is measured as it runs: with authentication (the bench sends the admin token).
        let token = pacer_e2e::write_admin_token(dir.path());
        let ca = pacer_e2e::make_ca(pacer, dir.path());
        pacer_e2e::issue_cert(pacer, dir.path(), "server", "127.0.0.1");
        Ok(Bed {
            pacer: pacer.into(),
            client,
            api: format!("https://127.0.0.1:{}", free_port()),
            server: None,
            agents: Vec::new(),
            http: pacer_apiserver::tls::client(Some(&ca), Some(&token), Duration::from_secs(30))
                .map_err(anyhow::Error::msg)?,
            etcd,
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `pacer <args>` with its log in the bed's folder.
    pub fn spawn(&self, name: &str, args: &[&str]) -> Result<Proc> {
        let log = std::fs::File::create(self.dir().join(format!("{name}.log")))?;
        let child = Command::new(&self.pacer)
            .args(args)
            .args(["--etcd", &self.etcd.endpoint])
            .env(
                "PACER_LOG",
                std::env::var("PACER_BENCH_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.pacer.display()))?;
        Ok(Proc { child })
    }

    /// Everything a process of the bed printed, colours removed.
    pub fn full_log(&self, name: &str) -> String {
        let text =
            std::fs::read_to_string(self.dir().join(format!("{name}.log"))).unwrap_or_default();
        let mut plain = String::with_capacity(text.len());
        let mut escape = false;
        for ch in text.chars() {
            match (escape, ch) {
                (false, '\u{1b}') => escape = true,
                (true, 'm') => escape = false,
                (true, _) => {}
                (false, c) => plain.push(c),
            }
        }
        plain
    }

    /// The last lines a process of the bed printed, for errors.
    pub fn log(&self, name: &str) -> String {
        let text = self.full_log(name);
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The arguments of `pacer server` listening on `listen`, with the bed's admin token.
    pub fn server_args(&self, listen: &str) -> Vec<String> {
        let file = |name: &str| self.dir().join(name).display().to_string();
        ["server", "--listen", listen, "--leader-ttl", "10"]
            .iter()
            .map(|s| s.to_string())
            .chain(["--admin-token-file".into(), file("admin.token")])
            .chain(["--tls-cert".into(), file("server.crt")])
            .chain(["--tls-key".into(), file("server.key")])
            .collect()
    }

    /// Starts `pacer server` and waits until it is the elected leader.
    pub async fn start_server(&mut self) -> Result<()> {
        let listen = self.api.trim_start_matches("https://").to_string();
        let args = self.server_args(&listen);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = self.spawn("server", &args)?;
        self.server = Some(server);
        let (http, api) = (self.http.clone(), self.api.clone());
        wait_for(
            Duration::from_secs(30),
            "pacer server to be elected",
            || {
                let (http, api) = (http.clone(), api.clone());
                async move {
                    let info: Value = http
                        .get(format!("{api}/v2/info"))
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    (info["elected"] == json!(true)).then_some(())
                }
            },
        )
        .await
        .map_err(|e| anyhow!("{e}\n{}", self.log("server")))
    }

    /// Starts `pacer agent --simulate count` (nodes `<base>-0001`...) and waits until every
    /// node has registered. Returns the process's index in `agents`.
    pub async fn start_simulated(
        &mut self,
        base: &str,
        count: usize,
        extra: &[&str],
    ) -> Result<usize> {
        let n = count.to_string();
        let mut args = vec![
            "agent",
            "--node-name",
            base,
            "--simulate",
            &n,
            "--cpus",
            "16",
            "--mem",
            "65536",
            "--disk",
            "0",
            "--ports",
            "31000-31099",
        ];
        args.extend_from_slice(extra);
        let agent = self.spawn(base, &args)?;
        self.agents.push(agent);
        let this = &*self;
        let prefix = format!("/pacer/nodes/{base}-");
        let limit = Duration::from_secs(30 + count as u64 / 50);
        let started = Instant::now();
        wait_for(limit, &format!("{count} simulated nodes"), || {
            let prefix = prefix.clone();
            async move { (this.count(&prefix).await.ok()? == count as i64).then_some(()) }
        })
        .await
        .map_err(|e| anyhow!("{e}\n{}", this.log(base)))?;
        let offers = format!("/pacer/offers/{base}-");
        wait_for(limit, &format!("offers of {count} simulated nodes"), || {
            let offers = offers.clone();
            async move { (this.count(&offers).await.ok()? >= count as i64).then_some(()) }
        })
        .await?;
        eprintln!(
            "  {count} simulated nodes registered and offering in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(self.agents.len() - 1)
    }

    /// Starts a real `pacer agent` (Docker and process runtimes) named `name`.
    pub async fn start_agent(&mut self, name: &str, cpus: &str, mem: &str) -> Result<usize> {
        let work = self.dir().join(name);
        let work = work.to_string_lossy().into_owned();
        let agent = self.spawn(
            name,
            &[
                "agent",
                // The bench's etcd is plain (its baseline is raw etcd); so is this endpoint.
                "--insecure",
                "--node-name",
                name,
                "--hostname",
                "127.0.0.1",
                "--agent-listen",
                "127.0.0.1:0",
                "--cpus",
                cpus,
                "--mem",
                mem,
                "--disk",
                "1000",
                "--ports",
                "33400-33499",
                "--work-dir",
                &work,
            ],
        )?;
        self.agents.push(agent);
        let this = &*self;
        let key = format!("/pacer/offers/{name}.");
        wait_for(Duration::from_secs(30), "the agent's offer", || {
            let key = key.clone();
            async move { (this.count(&key).await.ok()? > 0).then_some(()) }
        })
        .await
        .map_err(|e| anyhow!("{e}\n{}", this.log(name)))?;
        Ok(self.agents.len() - 1)
    }

    /// How many keys start with `prefix`.
    pub async fn count(&self, prefix: &str) -> Result<i64> {
        let mut c = self.client.clone();
        let r = c
            .get(
                prefix,
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await?;
        Ok(r.count())
    }

    /// etcd's current revision (one per write transaction).
    pub async fn revision(&self) -> Result<i64> {
        let mut c = self.client.clone();
        let r = c
            .get("/", Some(GetOptions::new().with_count_only()))
            .await?;
        Ok(r.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Waits until etcd's revision has not moved for `quiet` (at most `limit`); the revision.
    pub async fn settle(&self, quiet: Duration, limit: Duration) -> Result<i64> {
        let deadline = Instant::now() + limit;
        let mut last = (self.revision().await?, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.revision().await?;
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() >= quiet {
                return Ok(now);
            }
            if Instant::now() > deadline {
                bail!("etcd did not settle within {limit:?}");
            }
        }
    }

    /// `POST /v2/apps` with Marathon's JSON.
    pub async fn post_app(&self, app: &Value) -> Result<()> {
        let r = self
            .http
            .post(format!("{}/v2/apps", self.api))
            .json(app)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("POST /v2/apps: {} {}", r.status(), r.text().await?);
        }
        Ok(())
    }

    /// `PUT /apis/pacer.io/v1/apps/NAME/scale` with `{"instances": n}` (Marathon's
    /// `PUT /v2/apps/ID` reads every task for its answer: too slow a probe with 50,000).
    pub async fn scale(&self, id: &str, instances: usize) -> Result<()> {
        let name = id.trim_start_matches('/').replace('/', "_");
        let r = self
            .http
            .put(format!("{}/apis/pacer.io/v1/apps/{name}/scale", self.api))
            .json(&json!({ "instances": instances }))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("scaling {id}: {} {}", r.status(), r.text().await?);
        }
        Ok(())
    }

    pub async fn delete_app(&self, id: &str) -> Result<()> {
        let r = self
            .http
            .delete(format!("{}/v2/apps{id}?force=true", self.api))
            .send()
            .await?;
        if !r.status().is_success() && r.status() != reqwest::StatusCode::NOT_FOUND {
            bail!("DELETE /v2/apps{id}: {}", r.status());
        }
        Ok(())
    }

    /// Running instances of every app, from the apps' status in etcd (cheaper than asking
    /// the API, which reads every task).
    pub async fn tasks_running(&self) -> Result<i64> {
        let mut c = self.client.clone();
        let r = c
            .get("/pacer/apps/", Some(GetOptions::new().with_prefix()))
            .await?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(kv.value()).ok())
            .filter_map(|a| a["status"]["tasksRunning"].as_i64())
            .sum())
    }
}

/// Counts tasks that reached TASK_RUNNING, from an etcd watch on the task keys.
#[derive(Clone, Default)]
pub struct TaskEvents {
    /// Tasks seen in TASK_RUNNING.
    pub running: Arc<AtomicUsize>,
    /// When the watch saw the newest task reach TASK_RUNNING (not when a poll noticed).
    last_running: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl TaskEvents {
    /// Starts watching `/pacer/tasks/` from the current revision.
    pub async fn watch(bed: &Bed) -> Result<TaskEvents> {
        let events = TaskEvents::default();
        let options = WatchOptions::new().with_prefix();
        let mut c = bed.client.clone();
        let mut stream = c.watch("/pacer/tasks/", Some(options)).await?;
        let e = events.clone();
        tokio::spawn(async move {
            let mut running = std::collections::HashSet::new();
            while let Ok(Some(resp)) = stream.message().await {
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    if ev.event_type() != EventType::Put {
                        continue;
                    }
                    let v: Value = serde_json::from_slice(kv.value()).unwrap_or_default();
                    if v["status"]["state"] == "TASK_RUNNING" && running.insert(kv.key().to_vec()) {
                        *e.last_running.lock().expect("last running") = Some(Instant::now());
                        e.running.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
        Ok(events)
    }

    /// Seconds from `start` to the newest TASK_RUNNING the watch saw.
    pub fn running_since(&self, start: Instant) -> f64 {
        self.last_running
            .lock()
            .expect("last running")
            .map_or(0.0, |at| at.duration_since(start).as_secs_f64())
    }

    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}
