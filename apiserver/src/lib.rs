//! The apiserver: Pacer's native API under `/apis/pacer.io/v1` (used by the CLI) over etcd.
//! It keeps no state of its own; any number of replicas can serve.

mod apply;
mod error;
mod marathon;
mod native;
mod records;
mod service_ports;

use axum::Router;
use pacer_crd::{
    App, AppVersion, Deployment, Drain, EventSubscription, Job, JobRun, Node, Offer, Role, Task,
};
use pacer_runtime::{Api, Client};

pub use apply::Applied;
pub use error::ApiError;

/// What every handler reads and writes through.
#[derive(Clone)]
pub struct ApiState {
    pub apps: Api<App>,
    pub tasks: Api<Task>,
    pub nodes: Api<Node>,
    pub offers: Api<Offer>,
    pub deployments: Api<Deployment>,
    pub versions: Api<AppVersion>,
    pub roles: Api<Role>,
    pub jobs: Api<Job>,
    pub runs: Api<JobRun>,
    pub drains: Api<Drain>,
    pub subscriptions: Api<EventSubscription>,
    /// The callback URLs an admin allows event subscriptions to (`--event-callbacks`): none
    /// means the callback system is off, as in Marathon without `--event_subscriber`.
    pub event_callbacks: std::sync::Arc<Vec<CallbackRule>>,
    /// For reaching agents (task logs).
    pub http: reqwest::Client,
    /// The address this replica campaigns with, to tell whether it leads (`/v2/info`).
    pub identity: String,
}

impl ApiState {
    pub fn new(client: &Client) -> ApiState {
        ApiState {
            apps: Api::new(client),
            tasks: Api::new(client),
            nodes: Api::new(client),
            offers: Api::new(client),
            deployments: Api::new(client),
            versions: Api::new(client),
            roles: Api::new(client),
            jobs: Api::new(client),
            runs: Api::new(client),
            drains: Api::new(client),
            subscriptions: Api::new(client),
            event_callbacks: std::sync::Arc::default(),
            // The log proxy's: an agent's answer is passed on, never followed elsewhere.
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            identity: String::new(),
        }
    }

    pub fn with_identity(mut self, identity: &str) -> Self {
        self.identity = identity.to_string();
        self
    }

    /// Allows event subscriptions to callbacks under these URLs (see [`ApiState::event_callbacks`]).
    pub fn with_event_callbacks(mut self, allowed: Vec<CallbackRule>) -> Self {
        self.event_callbacks = std::sync::Arc::new(allowed);
        self
    }
}

pub use marathon::subscriptions::{CallbackRule, deliver as deliver_events};

/// The whole HTTP surface, for `serve` and for in-process tests.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .nest(
            "/apis/pacer.io/v1",
            native::routes().merge(records::routes()),
        )
        .merge(marathon::routes())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
