//! The controller runtime of Pacer: typed records over etcd, watchers, caches, queues, controllers.

pub mod api;
pub mod client;
pub mod controller;
pub mod election;
pub mod etcd_process;
pub mod lease;
pub mod queue;
pub mod reflector;
pub mod testing;
pub mod watch_mux;
pub mod watcher;

pub use api::{Api, Error};

pub use client::Client;
pub use controller::{Action, Controller};
pub use reflector::{Reflector, Store};
pub use watcher::Event;

/// Now, as Marathon prints it: ISO-8601 UTC with milliseconds and `Z`.
pub fn now() -> String {
    timestamp(pacer_crd::meta::jiff::Timestamp::now())
}

/// A time as Marathon prints it: ISO-8601 UTC with milliseconds and `Z`.
pub fn timestamp(t: pacer_crd::meta::jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Retry delays doubling from `min` up to `max`, forever, each with random jitter: after a
/// shared outage thousands of nodes must not retry in step (they overloaded etcd again).
pub fn backoff(min: std::time::Duration, max: std::time::Duration) -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_max_times(usize::MAX)
        .with_jitter()
        .build()
}
