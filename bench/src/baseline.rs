//! Baselines measured in the same run as the figures they are compared with.

use std::time::{Duration, Instant};

use anyhow::Result;
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, WatchOptions};

/// Raw etcd compare-and-put transactions per second: `concurrency` workers, each on its own
/// key, each transaction comparing the key's mod revision and putting `value_size` bytes.
pub async fn cas_rate(
    client: &etcd_client::Client,
    concurrency: usize,
    value_size: usize,
    run_for: Duration,
) -> Result<f64> {
    let value = vec![b'x'; value_size.max(1)];
    let workers = (0..concurrency).map(|w| {
        let mut c = client.clone();
        let value = value.clone();
        async move {
            let key = format!("/bench/cas/{w}");
            let mut revision = c
                .put(key.as_str(), value.clone(), None)
                .await?
                .header()
                .map(|h| h.revision())
                .unwrap_or(0);
            let (start, mut done) = (Instant::now(), 0u64);
            while start.elapsed() < run_for {
                let txn = Txn::new()
                    .when([Compare::mod_revision(
                        key.as_str(),
                        CompareOp::Equal,
                        revision,
                    )])
                    .and_then([TxnOp::put(key.as_str(), value.clone(), None)]);
                let r = c.txn(txn).await?;
                anyhow::ensure!(r.succeeded(), "compare failed on a private key");
                revision = r.header().map(|h| h.revision()).unwrap_or(0);
                done += 1;
            }
            anyhow::Ok((done, start.elapsed()))
        }
    });
    let results = futures::future::try_join_all(workers).await?;
    let mut c = client.clone();
    c.delete(
        "/bench/cas/",
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await?;
    Ok(results
        .iter()
        .map(|(n, t)| *n as f64 / t.as_secs_f64())
        .sum())
}

/// A bare list + watch of the keys a control plane caches: connect, read every prefix (all at
/// once, as the controllers' caches do), open a watch from the next revision. Seconds, keys.
pub async fn list_and_watch(endpoint: &str, prefixes: &[&str]) -> Result<(f64, usize)> {
    let start = Instant::now();
    let c = etcd_client::Client::connect([endpoint], None).await?;
    let lists = prefixes.iter().map(|prefix| {
        let mut c = c.clone();
        async move {
            // One read per prefix, however big (a bare client need not page).
            let mut kv = c.kv_client().max_decoding_message_size(1 << 30);
            let r = kv
                .get(*prefix, Some(GetOptions::new().with_prefix()))
                .await?;
            let revision = r.header().map(|h| h.revision()).unwrap_or(0);
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(revision + 1);
            let mut stream = c.watch(*prefix, Some(options)).await?;
            // The watch is in place once etcd has confirmed it.
            stream.message().await?;
            anyhow::Ok((r.kvs().len(), stream))
        }
    });
    let done = futures::future::try_join_all(lists).await?;
    let keys = done.iter().map(|(n, _)| n).sum();
    Ok((start.elapsed().as_secs_f64(), keys))
}

/// `docker run -d IMAGE sleep 3600` seconds, then the container is removed (not timed).
pub fn docker_run(image: &str, label: &str) -> Result<f64> {
    let start = Instant::now();
    let out = std::process::Command::new("docker")
        .args(["run", "-d", "--label", label, image, "sleep", "3600"])
        .output()?;
    let took = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "docker run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", &id])
        .output();
    Ok(took)
}
