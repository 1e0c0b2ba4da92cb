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
