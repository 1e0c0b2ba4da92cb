//! A connection to etcd and the key prefix all of Pacer's records live under.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

/// An etcd client plus the key prefix (default `/pacer/`). Cheap to clone, and small: an
/// `etcd_client::Client` is about 3.5 KiB, and every `Api` and long-lived future holds a
/// `Client` (a simulated node's futures were 30 KiB).
#[derive(Clone)]
pub struct Client(std::sync::Arc<Inner>);

struct Inner {
    etcd: etcd_client::Client,
    /// A connection of its own for lease grants and keep-alives: a flood of writes queued on
    /// the main one (thousands of simulated nodes reporting at once, a server placing) must
    /// not hold back renewals until leases expire, which then multiplies the flood.
    leases: etcd_client::Client,
    prefix: String,
    /// The one watch stream all watches of this client share.
    watches: crate::watch_mux::WatchMux,
}

impl Client {
    /// Connects to the given endpoints, retrying with backoff for up to `patience`.
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        patience: Duration,
    ) -> Result<Client, etcd_client::Error> {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5));
        let connect = || async {
            let mut etcd = etcd_client::Client::connect(endpoints, Some(options.clone())).await?;
            etcd.status().await?;
            Ok::<_, etcd_client::Error>(etcd)
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .with_total_delay(Some(patience))
            .with_max_times(usize::MAX)
            .with_jitter();
        let etcd = connect
            .retry(backoff)
            .notify(|e, d| tracing::info!(error = %e, retry_in = ?d, "etcd not reachable yet"))
            .await?;
        let leases = etcd_client::Client::connect(endpoints, Some(options.clone())).await?;
        Ok(Client(std::sync::Arc::new(Inner {
            watches: crate::watch_mux::WatchMux::new(etcd.clone()),
            etcd,
            leases,
            prefix: normalize_prefix(prefix),
        })))
    }

    /// The raw etcd client, for operations the typed API does not cover (inside this crate,
    /// and for tests that look at etcd itself).
    pub fn etcd(&self) -> etcd_client::Client {
        self.0.etcd.clone()
    }

    /// The key-value client alone: cloning it per request clones one channel, where cloning
    /// the whole client clones one per service (2% of a simulated fleet's CPU went to
    /// dropping them).
    pub fn kv(&self) -> etcd_client::KvClient {
        self.0.etcd.kv_client()
    }

    /// The lease client, on the connection kept for leases.
    pub fn leases(&self) -> etcd_client::LeaseClient {
        self.0.leases.lease_client()
    }

    /// Watches `key` on the stream shared by every watch of this client.
    pub fn watch(
        &self,
        key: impl Into<Vec<u8>>,
        options: etcd_client::WatchOptions,
    ) -> crate::watch_mux::Watch {
        self.0.watches.watch(key, options)
    }

    /// The key prefix, always ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.0.prefix
    }
}

fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        format!("/{trimmed}/")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_is_normalized() {
        assert_eq!(super::normalize_prefix("pacer"), "/pacer/");
        assert_eq!(super::normalize_prefix("/pacer/"), "/pacer/");
        assert_eq!(super::normalize_prefix("/a/b"), "/a/b/");
        assert_eq!(super::normalize_prefix(""), "/");
    }
}
