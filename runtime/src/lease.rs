//! An etcd lease kept alive in the background; records bound to it vanish when its holder dies.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::client::Client;

/// How long a lease outlives its last renewal, and how often it is renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terms {
    pub ttl: Duration,
    pub renew_every: Duration,
}

impl Terms {
    /// Renewed every third of `ttl`: two renewals in a row may fail before it expires.
    pub fn thirds(ttl: Duration) -> Terms {
        Terms {
            ttl,
            renew_every: ttl / 3,
        }
    }

    /// The time left to renew after a renewal was due: retries happen within it.
    pub fn grace(&self) -> Duration {
        self.ttl.saturating_sub(self.renew_every)
    }
}

/// A granted lease. `lost()` turns true if it expired (the holder was cut off too long).
pub struct Lease {
    pub id: i64,
    lost: watch::Receiver<bool>,
    token: CancellationToken,
    keeper: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Grants a lease on `terms` and renews it as they say until `token` is cancelled. On
    /// cancellation the lease is revoked, so its records go at once (`release` waits for
    /// that).
    pub async fn grant(
        client: &Client,
        terms: Terms,
        token: CancellationToken,
    ) -> Result<Lease, etcd_client::Error> {
        // Only the lease client lives on in the keeper task (the whole client is 3.5 KiB).
        let mut etcd = client.leases();
        // etcd counts in whole seconds: rounded up, the lease never ends before its terms.
        let secs = (terms.ttl.as_secs_f64().ceil() as i64).max(2);
        let id = etcd.grant(secs, None).await?.id();
        let (lost_tx, lost) = watch::channel(false);
        let keeper_token = token.clone();
        let keeper = tokio::spawn(async move {
            let token = keeper_token;
            let expired = keep_alive(&mut etcd, id, terms, &token).await;
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
    terms: Terms,
    token: &CancellationToken,
) -> bool {
    let Terms {
        ttl,
        renew_every: period,
    } = terms;
    // etcd answers a renewal at once; one that goes unanswered for half the grace is given
    // up on and the stream opened again, leaving the other half for that.
    let answer_within = (terms.grace() / 2).min(period);
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
                    match tokio::time::timeout(answer_within, stream.message()).await {
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
