//! The controller runtime of Pacer: typed records over etcd, watchers, caches, queues, controllers.

pub mod api;
pub mod client;
pub mod controller;
pub mod election;
pub mod etcd_auth;
pub mod etcd_process;
pub mod lease;
pub mod queue;
pub mod reflector;
pub mod retry;
pub mod testing;
pub mod tls;
pub mod txn;
pub mod watch_mux;
pub mod watcher;

pub use api::{Api, Error};

pub use client::Client;
pub use controller::{Action, Controller};
pub use reflector::{Reflector, Store};
pub use retry::Backoff;
pub use txn::{Claims, Reads, Txn};
pub use watcher::Event;

/// Now, as Marathon prints it: ISO-8601 UTC with milliseconds and `Z`.
pub fn now() -> String {
    timestamp(pacer_crd::meta::jiff::Timestamp::now())
}

/// A time as Marathon prints it: ISO-8601 UTC with milliseconds and `Z`.
pub fn timestamp(t: pacer_crd::meta::jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub use retry::backoff;

/// Makes ring the process's TLS provider (rustls), before any TLS client or server is built:
/// every HTTP client of Pacer's (API, health checks, event callbacks) and the API's HTTPS. A
/// second call changes nothing.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A TLS client configuration (ring) that trusts `roots` only: the cluster's CA for Pacer's
/// own endpoints, none for clients that only speak plain HTTP to tasks. Unlike reqwest's
/// default it needs no system certificate store, which a minimal host may not have.
pub fn client_tls(
    roots: impl IntoIterator<Item = rustls::pki_types::CertificateDer<'static>>,
) -> rustls::ClientConfig {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        // A certificate that is not a CA is no trust anchor: skipped, trusted for nothing.
        let _ = store.add(root);
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports TLS 1.2 and 1.3")
    .with_root_certificates(store)
    .with_no_client_auth()
}
