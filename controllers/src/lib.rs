//! Pacer's controllers: allocator (offers), app (tasks), gc (orphans), deployment.

pub mod allocator;
pub mod app;
pub mod deployment;
pub mod gc;
pub mod placement;
pub mod upgrade;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pacer_crd::{App, Deployment, Node, Offer, Task};
use pacer_runtime::{Api, Client, Reflector};
use tokio_util::sync::CancellationToken;

/// Typed APIs and shared caches every controller reads from.
#[derive(Clone)]
pub struct Cluster {
    pub apps: Api<App>,
    pub tasks: Api<Task>,
    pub nodes: Api<Node>,
    pub offers: Api<Offer>,
    pub deployments: Api<Deployment>,
    pub app_cache: Reflector<App>,
    pub task_cache: Reflector<Task>,
    pub node_cache: Reflector<Node>,
    pub offer_cache: Reflector<Offer>,
    pub deployment_cache: Reflector<Deployment>,
    /// The etcd revision of each app's last placement, until the task cache has seen it.
    placements: Arc<Mutex<HashMap<String, i64>>>,
    /// The revision of each app's last status write by the app controller, until the app cache has it.
    app_writes: Arc<Mutex<HashMap<String, i64>>>,
}

impl Cluster {
    /// Starts one watcher per kind; the caches fill in the background.
    pub fn watch(client: &Client, token: &CancellationToken) -> Cluster {
        let (apps, tasks, nodes, offers, deployments) = (
            Api::new(client),
            Api::new(client),
            Api::new(client),
            Api::new(client),
            Api::new(client),
        );
        Cluster {
            app_cache: Reflector::start(Api::clone(&apps), "", token.clone()),
            task_cache: Reflector::start(Api::clone(&tasks), "", token.clone()),
            node_cache: Reflector::start(Api::clone(&nodes), "", token.clone()),
            offer_cache: Reflector::start(Api::clone(&offers), "", token.clone()),
            deployment_cache: Reflector::start(Api::clone(&deployments), "", token.clone()),
            placements: Arc::default(),
            app_writes: Arc::default(),
            apps,
            tasks,
            nodes,
            offers,
            deployments,
        }
    }

    /// Records that tasks of `app` were written at `revision`.
    pub fn placed_at(&self, app: &str, revision: i64) {
        if revision > 0 {
            self.placements
                .lock()
                .expect("placements lock")
                .insert(app.to_string(), revision);
        }
    }

    /// Whether the task cache holds every task placed for `app` so far.
    pub fn sees_placements_of(&self, app: &str) -> bool {
        let mut placements = self.placements.lock().expect("placements lock");
        let seen = placements
            .get(app)
            .is_none_or(|rev| self.task_cache.store().revision() >= *rev);
        if seen {
            placements.remove(app);
        }
        seen
    }

    /// Records that the app controller wrote `app` at `revision`.
    pub fn app_written(&self, app: &str, revision: i64) {
        self.app_writes
            .lock()
            .expect("app writes lock")
            .insert(app.to_string(), revision);
    }

    /// Whether `app` (from the cache) includes the controller's own last write of it.
    pub fn is_current(&self, app: &App) -> bool {
        let name = app.metadata.name.clone().unwrap_or_default();
        let seen: i64 = app
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut writes = self.app_writes.lock().expect("app writes lock");
        let current = writes.get(&name).is_none_or(|rev| seen >= *rev);
        if current {
            writes.remove(&name);
        }
        current
    }

    /// The tasks of one app, from the cache.
    pub fn tasks_of(&self, app: &str) -> Vec<Arc<Task>> {
        self.task_cache.store().filter(|t| t.spec.app_id == app)
    }
}

/// Runs every controller until `token` is cancelled.
pub async fn run(client: &Client, token: CancellationToken) {
    let cluster = Cluster::watch(client, &token);
    tokio::join!(
        allocator::run(cluster.clone(), token.clone()),
        app::run(cluster.clone(), token.clone()),
        gc::run(cluster.clone(), token.clone()),
        deployment::run(cluster.clone(), token.clone()),
    );
}

/// How soon a reconcile that lost a race retries.
pub(crate) const CONFLICT_RETRY: Duration = Duration::from_millis(20);
