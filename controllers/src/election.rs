//! Leader election: any number of `pacer server` replicas serve the API, one runs the
//! controllers. The leader holds an etcd election key bound to its lease; when it dies or is
//! cut off, the lease expires and a standby's campaign wins. A leader that cannot renew its
//! lease for a whole TTL stops its controllers before anyone else can be elected.

use std::time::{Duration, Instant};

use pacer_runtime::lease::{Lease, Terms};
use pacer_runtime::{Backoff, Client};
use tokio_util::sync::CancellationToken;

pub use pacer_runtime::election::leader;

/// Campaigns as `identity`; while elected, runs every controller. Returns when `token` is
/// cancelled (resigning by revoking the lease, so a standby takes over at once).
pub async fn run_elected(client: &Client, identity: &str, ttl: Duration, token: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while !token.is_cancelled() {
        let lease = match Lease::grant(client, Terms::thirds(ttl), token.child_token()).await {
            Ok(lease) => lease,
            Err(e) => {
                let told = |delay| tracing::info!(error = %e, retry_in = ?delay, "cannot get a lease for the election");
                if !backoff.pause(&token, told).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        let campaign = pacer_runtime::election::campaign(client, identity, lease.id);
        let won = tokio::select! {
            _ = token.cancelled() => None,
            _ = lease.lost() => None,
            result = campaign => Some(result),
        };
        if token.is_cancelled() {
            lease.release().await;
            return;
        }
        match won {
            Some(Ok(_)) => {
                let since = Instant::now();
                tracing::info!(%identity, lease = lease.id, "elected: running the controllers");
                let controllers = token.child_token();
                // A task of its own: the controllers' future is large, and must not sit on the
                // caller's stack.
                let mut running = tokio::spawn({
                    let (client, controllers) = (client.clone(), controllers.clone());
                    async move { crate::run(&client, controllers).await }
                });
                tokio::select! {
                    _ = &mut running => {}
                    _ = lease.lost() => {
                        tracing::warn!(%identity, led_for = ?since.elapsed(), "leadership lost: stopping the controllers");
                        controllers.cancel();
                        let _ = running.await;
                    }
                    _ = token.cancelled() => {
                        controllers.cancel();
                        let _ = running.await;
                    }
                }
            }
            Some(Err(e)) => tracing::info!(error = %e, "campaign failed, trying again"),
            None => tracing::info!("lease lost while campaigning, trying again"),
        }
        // Revoking the lease hands leadership over at once (and before this process exits).
        lease.release().await;
    }
}
