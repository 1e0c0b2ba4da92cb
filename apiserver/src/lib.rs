//! The apiserver: Pacer's native API under `/apis/pacer.io/v1` (used by the CLI) over etcd.
//! It keeps no state of its own; any number of replicas can serve.

pub mod access;
mod apply;
pub mod audit;
pub mod auth;
mod error;
mod marathon;
mod native;
mod policy;
mod records;
mod service_ports;
pub mod tls;
mod tokens;

use axum::Router;
use pacer_crd::{
    ApiToken, App, AppVersion, Deployment, Drain, EventSubscription, Job, JobRun, Node, Offer,
    Role, Task,
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
    pub tokens: Api<ApiToken>,
    pub policies: Api<pacer_crd::policy::Policy>,
    /// Who is calling (tokens, basic users); see [`auth`].
    pub auth: auth::Authenticator,
    /// Where each request that may change something is recorded.
    pub audit: audit::AuditLog,
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
        pacer_runtime::install_crypto();
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
            tokens: Api::new(client),
            policies: Api::new(client),
            auth: auth::Authenticator::new(Api::new(client)),
            audit: audit::AuditLog::default(),
            event_callbacks: std::sync::Arc::default(),
            http: log_proxy(pacer_runtime::tls::anonymous_client_config([]))
                .expect("an HTTP client with a preconfigured TLS setup builds"),
            identity: String::new(),
        }
    }

    pub fn with_identity(mut self, identity: &str) -> Self {
        self.identity = identity.to_string();
        self
    }

    /// Marathon's basic users besides tokens, or (`insecure`) no authentication at all, on
    /// the token cache this state already watches.
    pub fn with_authentication(mut self, basic: Vec<auth::BasicUser>, insecure: bool) -> Self {
        let auth = self.auth.clone().with_basic(basic);
        self.auth = if insecure { auth.insecure() } else { auth };
        self
    }

    /// Reaches agents' endpoints over HTTPS showing `identity` (they require a certificate of
    /// the cluster CA), trusting that CA only.
    pub fn with_agent_client(
        mut self,
        identity: &pacer_runtime::client::EtcdTls,
    ) -> Result<Self, String> {
        self.http = log_proxy(pacer_runtime::tls::client_config(identity)?)?;
        Ok(self)
    }

    /// Records mutations in `audit` (`--audit-log`).
    pub fn with_audit(mut self, audit: audit::AuditLog) -> Self {
        self.audit = audit;
        self
    }

    /// Allows event subscriptions to callbacks under these URLs (see [`ApiState::event_callbacks`]).
    pub fn with_event_callbacks(mut self, allowed: Vec<CallbackRule>) -> Self {
        self.event_callbacks = std::sync::Arc::new(allowed);
        self
    }
}

/// The log proxy's client: an agent's answer is passed on, never followed elsewhere.
fn log_proxy(tls: rustls::ClientConfig) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

pub use marathon::subscriptions::{CallbackRule, deliver as deliver_events};

/// Every route with what it needs, the router and the authorization table from the same lines.
fn routes() -> access::Routes {
    native::routes()
        .merge(records::routes())
        .merge(tokens::routes())
        .merge(policy::routes())
        .merge(marathon::routes())
}

/// The authorization table: every route of [`router`] and what it needs of its caller.
pub fn route_table() -> Vec<access::RouteAccess> {
    routes().into_parts().1
}

/// The whole HTTP surface, for `serve` and for in-process tests.
pub fn router(state: ApiState) -> Router {
    let (routes, _) = routes().into_parts();
    routes
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::authenticate,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

pub use tokens::ensure_admin as ensure_admin_token;

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}
