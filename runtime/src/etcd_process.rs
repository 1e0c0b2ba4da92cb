//! etcd as a child process: for `pacer up` on one machine and for tests (free ports, own data dir).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running etcd; killed when dropped.
pub struct EtcdProcess {
    child: Child,
    command: Vec<String>,
    pub endpoint: String,
    pub data_dir: PathBuf,
    /// The identity `wait_ready` connects with, when the etcd requires client certificates.
    client_tls: Option<crate::client::EtcdTls>,
}

/// What a secure etcd serves with: its certificate and key, and the CA client certificates
/// must be signed by; clients are then refused without one (`--client-cert-auth`).
#[derive(Clone, Debug)]
pub struct EtcdServerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start etcd (is etcd-server installed and on PATH?)")]
    Spawn(#[source] std::io::Error),
    #[error("cannot create {0}")]
    DataDir(PathBuf, #[source] std::io::Error),
    #[error("etcd exited at start with {0}; see {1}")]
    Exited(std::process::ExitStatus, PathBuf),
    #[error("etcd did not answer within {0:?}; see {1}")]
    Timeout(Duration, PathBuf),
}

impl EtcdProcess {
    /// Starts etcd with its data under `data_dir`, clients on `client_port` (0 = any free port).
    pub async fn start(data_dir: &Path, client_port: u16) -> Result<EtcdProcess, StartError> {
        EtcdProcess::start_with(data_dir, client_port, None).await
    }

    /// [`EtcdProcess::start`] serving HTTPS only, to clients with a certificate of the CA;
    /// `client` is the identity it is checked with at start.
    pub async fn start_secure(
        data_dir: &Path,
        client_port: u16,
        server: &EtcdServerTls,
        client: &crate::client::EtcdTls,
    ) -> Result<EtcdProcess, StartError> {
        EtcdProcess::start_with(data_dir, client_port, Some((server, client))).await
    }

    async fn start_with(
        data_dir: &Path,
        client_port: u16,
        tls: Option<(&EtcdServerTls, &crate::client::EtcdTls)>,
    ) -> Result<EtcdProcess, StartError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StartError::DataDir(data_dir.into(), e))?;
        let client_port = if client_port == 0 {
            free_port()
        } else {
            client_port
        };
        let peer = format!("http://127.0.0.1:{}", free_port());
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{client_port}");
        let log_path = data_dir.join("etcd.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| StartError::DataDir(log_path.clone(), e))?;
        let member_dir = data_dir.join("member-data").to_string_lossy().into_owned();
        let command: Vec<String> = [
            "--name",
            "pacer",
            "--data-dir",
            &member_dir,
            "--listen-client-urls",
            &endpoint,
            "--advertise-client-urls",
            &endpoint,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("pacer={peer}"),
            "--auto-compaction-mode",
            "periodic",
            "--auto-compaction-retention",
            "1h",
            // etcd 3.4 copies its buffer of writes not yet committed to the backend for every
            // response's header (ConcurrentReadTx; etcd 3.5 caches that copy). The buffer
            // keeps the size of the largest batch: after a burst of 10,000 writes (the
            // default limit) each lease renewal cost about a millisecond. A tenth of that
            // keeps it small; the backend still commits at most every 100 ms under load.
            "--backend-batch-limit",
            "1000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut command = command;
        if let Some((server, _)) = tls {
            let path = |p: &Path| p.to_string_lossy().into_owned();
            command.extend([
                "--client-cert-auth".to_string(),
                "--trusted-ca-file".into(),
                path(&server.ca),
                "--cert-file".into(),
                path(&server.cert),
                "--key-file".into(),
                path(&server.key),
            ]);
        }
        let child = spawn(&command, log)?;
        let mut etcd = EtcdProcess {
            child,
            command,
            endpoint,
            data_dir: data_dir.into(),
            client_tls: tls.map(|(_, client)| client.clone()),
        };
        etcd.wait_ready(Duration::from_secs(20), &log_path).await?;
        Ok(etcd)
    }

    /// Starts etcd again after `kill`, on the same ports and data.
    pub async fn restart(&mut self) -> Result<(), StartError> {
        self.kill();
        let log_path = self.data_dir.join("etcd.log");
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .map_err(|e| StartError::DataDir(log_path.clone(), e))?;
        self.child = spawn(&self.command, log)?;
        self.wait_ready(Duration::from_secs(20), &log_path).await
    }

    async fn wait_ready(&mut self, limit: Duration, log: &Path) -> Result<(), StartError> {
        let mut options =
            etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
        if let Some(tls) = &self.client_tls {
            crate::install_crypto();
            match tls.options() {
                Ok(tls) => options = options.with_tls(tls),
                Err(e) => return Err(StartError::DataDir(tls.cert.clone(), e)),
            }
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(StartError::Exited(status, log.into()));
            }
            if let Ok(mut c) =
                etcd_client::Client::connect([&self.endpoint], Some(options.clone())).await
                && c.status().await.is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(StartError::Timeout(limit, log.into()))
    }

    /// The etcd process (benchmarks read its CPU time and memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops etcd the hard way (for tests of etcd failures).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(args: &[String], log: std::fs::File) -> Result<Child, StartError> {
    Command::new("etcd")
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(StartError::Spawn)
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}
