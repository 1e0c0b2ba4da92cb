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

/// How a client proves itself to an etcd that requires client certificates: the CA the
/// members' certificates are checked against, and the client's own certificate and key (its
/// common name is its etcd user). PEM files.
#[derive(Clone, Debug, PartialEq)]
pub struct EtcdTls {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl EtcdTls {
    /// The files of identity `name` in a folder of certificates (`ca.crt`, `<name>.crt`,
    /// `<name>.key`, as `pacer certs` writes them).
    pub fn in_dir(dir: &std::path::Path, name: &str) -> EtcdTls {
        EtcdTls {
            ca: dir.join("ca.crt"),
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        }
    }

    /// etcd-client's options for this identity.
    pub fn options(&self) -> std::io::Result<etcd_client::TlsOptions> {
        let ca = std::fs::read(&self.ca)?;
        let cert = std::fs::read(&self.cert)?;
        let key = std::fs::read(&self.key)?;
        Ok(etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(ca))
            .identity(etcd_client::Identity::from_pem(cert, key)))
    }
}

fn pacer_tls_provider() {
    crate::install_crypto();
}

/// The options of every connection: timeouts, keep-alives and the identity, if any.
pub fn connect_options(tls: Option<&EtcdTls>) -> std::io::Result<etcd_client::ConnectOptions> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(10))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5));
    Ok(match tls {
        Some(tls) => options.with_tls(tls.options()?),
        None => options,
    })
}

impl Client {
    /// Connects to the given endpoints, retrying with backoff for up to `patience`.
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        patience: Duration,
    ) -> Result<Client, etcd_client::Error> {
        Client::connect_as(endpoints, prefix, patience, None).await
    }

    /// [`Client::connect`] with a client certificate (an etcd that requires one).
    pub async fn connect_as(
        endpoints: &[String],
        prefix: &str,
        patience: Duration,
        tls: Option<&EtcdTls>,
    ) -> Result<Client, etcd_client::Error> {
        pacer_tls_provider();
        let options = connect_options(tls).map_err(etcd_client::Error::IoError)?;
        let probe = normalize_prefix(prefix);
        let connect = || async {
            let mut etcd = etcd_client::Client::connect(endpoints, Some(options.clone())).await?;
            // A read of one key of the prefix: what every identity may do (an agent may not
            // call etcd's maintenance API).
            let one = etcd_client::GetOptions::new()
                .with_prefix()
                .with_limit(1)
                .with_keys_only();
            etcd.get(probe.as_str(), Some(one)).await?;
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

pub(crate) fn normalize_prefix(prefix: &str) -> String {
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
