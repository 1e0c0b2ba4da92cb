//! Test support shared by the crates' integration tests: a real etcd in a temporary folder and
//! a deadline-bound wait. Not used by the binaries.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::Client;
use crate::etcd_process::EtcdProcess;

/// A fresh etcd on free ports, its data in a temporary folder removed on drop.
pub struct TestEtcd {
    pub etcd: EtcdProcess,
    pub client: Client,
    dir: PathBuf,
}

impl TestEtcd {
    pub async fn start() -> TestEtcd {
        let dir = std::env::temp_dir().join(format!("pacer-test-{}", uuid::Uuid::new_v4()));
        let etcd = EtcdProcess::start(&dir, 0)
            .await
            .expect("etcd starts (is etcd-server installed?)");
        let client = Client::connect(
            std::slice::from_ref(&etcd.endpoint),
            "/pacer-test",
            Duration::from_secs(10),
        )
        .await
        .expect("etcd answers");
        TestEtcd { etcd, client, dir }
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        self.etcd.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` until it holds, panicking with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
