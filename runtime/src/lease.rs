//! An etcd lease kept alive in the background; records bound to it vanish when its holder dies.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::client::Client;

/// A granted lease. `lost()` turns true if it expired (the holder was cut off too long).
pub struct Lease {
    pub id: i64,
    lost: watch::Receiver<bool>,
    token: CancellationToken,
    keeper: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Grants a lease of `ttl` and renews it every third of that until `token` is cancelled.
    /// On cancellation the lease is revoked, so its records go at once (`release` waits for
    /// that).
    pub async fn grant(
        client: &Client,
        ttl: Duration,
        token: CancellationToken,
    ) -> Result<Lease, etcd_client::Error> {
        // Only the lease client lives on in the keeper task (the whole client is 3.5 KiB).
        let mut etcd = client.leases();
        let id = etcd.grant(ttl.as_secs().max(2) as i64, None).await?.id();
        let (lost_tx, lost) = watch::channel(false);
        let keeper_token = token.clone();
        let keeper = tokio::spawn(async move {
            let token = keeper_token;
            let expired = keep_alive(&mut etcd, id, ttl, &token).await;
            if expired {
                tracing::warn!(lease = id, "lease expired: records bound to it are gone");
                let _ = lost_tx.send(true);
            } else {
                let _ = etcd.revoke(id).await;
            }
        });
        Ok(Lease {
            id,
            lost,
            token,
            keeper,
        })
    }

    /// Stops renewing and revokes the lease, waiting (up to 2 s) until etcd has done so: a
    /// process about to exit calls this, or its records would linger for a whole TTL.
    pub async fn release(self) {
        self.token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.keeper).await;
    }

    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when the lease has expired.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|l| *l).await;
    }
}

/// Renews until cancelled (false), or until the lease is gone (true): etcd says so, or no
/// renewal got through for a whole TTL (then etcd will have expired it, whatever we hear).
async fn keep_alive(
    etcd: &mut etcd_client::LeaseClient,
    id: i64,
    ttl: Duration,
    token: &CancellationToken,
) -> bool {
    let period = ttl / 3;
    let mut renewed = std::time::Instant::now();
    loop {
        match etcd.keep_alive(id).await {
            // Opening the stream renewed the lease (etcd-client reads that answer). The next
            // renewal waits a random part of a period: nodes started together (a fleet
            // powered on, a process of simulated nodes, every agent after an etcd outage)
            // must not renew in step for ever after.
            Ok((mut keeper, mut stream)) => {
                renewed = std::time::Instant::now();
                let mut wait = period.mul_f64(fastrand::f64());
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return false,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = period;
                    if keeper.keep_alive().await.is_err() {
                        break;
                    }
                    match tokio::time::timeout(period, stream.message()).await {
                        Ok(Ok(Some(resp))) if resp.ttl() <= 0 => return true,
                        Ok(Ok(Some(_))) => renewed = std::time::Instant::now(),
                        _ => break,
                    }
                }
            }
            Err(e) => tracing::debug!(lease = id, error = %e, "lease keep-alive failed, retrying"),
        }
        if renewed.elapsed() >= ttl {
            return true;
        }
        tokio::select! {
            _ = token.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
