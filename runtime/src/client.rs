//! A connection to etcd and the key prefix all of Pacer's records live under.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

/// An etcd client plus the key prefix (default `/pacer/`). Cheap to clone.
#[derive(Clone)]
pub struct Client {
    etcd: etcd_client::Client,
    prefix: String,
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
        Ok(Client {
            etcd,
            prefix: normalize_prefix(prefix),
        })
    }

    /// The raw etcd client, for operations the typed API does not cover.
    pub fn etcd(&self) -> etcd_client::Client {
        self.etcd.clone()
    }

    /// The key prefix, always ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
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
