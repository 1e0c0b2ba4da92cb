//! Pacer's controllers: allocator (offers, DRF), app (tasks), gc (orphans), deployment, jobs.

pub mod accept;
pub mod allocator;
pub mod app;
pub mod deployment;
pub mod drf;
pub mod election;
pub mod gc;
pub mod jobs;
pub mod nodes;
pub mod placement;
pub mod upgrade;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pacer_crd::{App, Deployment, Drain, Job, JobRun, Node, Offer, Resources, Role, Task};
use pacer_runtime::{Api, Client, Reflector};
use tokio_util::sync::CancellationToken;

/// Per node, the (role, resources) the allocator last offered.
pub type OfferBook = HashMap<String, Vec<(String, Resources)>>;

/// Typed APIs and shared caches every controller reads from.
#[derive(Clone)]
pub struct Cluster {
    pub apps: Api<App>,
    pub tasks: Api<Task>,
    pub nodes: Api<Node>,
    pub offers: Api<Offer>,
    pub deployments: Api<Deployment>,
    pub jobs: Api<Job>,
    pub runs: Api<JobRun>,
    pub app_cache: Reflector<App>,
    pub task_cache: Reflector<Task>,
    pub node_cache: Reflector<Node>,
    pub offer_cache: Reflector<Offer>,
    pub deployment_cache: Reflector<Deployment>,
    pub role_cache: Reflector<Role>,
    pub run_cache: Reflector<JobRun>,
    pub job_cache: Reflector<Job>,
    pub drain_cache: Reflector<Drain>,
    /// The allocator's last offers per node (role, resources): its own writes count before
    /// the offer cache shows them, so two nodes decided in a row see each other.
    pub offer_book: Arc<Mutex<OfferBook>>,
    /// Each app's last placement of tasks, until the task cache has it.
    pub placements: OwnWrites,
    /// Held while placing (one placement at a time); the revision of the last offers written.
    pub placing: Arc<tokio::sync::Mutex<i64>>,
    /// Each app's last status write by the app controller, until the app cache has it.
    pub status_writes: OwnWrites,
    /// When each running deployment's progress was last written.
    pub progress_writes: WriteTimes,
    /// When the app controller last wrote each app's status.
    pub app_status_writes: WriteTimes,
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
            // Tasks by app: an app's reconcile reads its own, not all of them.
            task_cache: Reflector::start_indexed(
                Api::clone(&tasks),
                "",
                Some(|t: &Task| Some(t.spec.app_id.clone())),
                token.clone(),
            ),
            node_cache: Reflector::start(Api::clone(&nodes), "", token.clone()),
            offer_cache: Reflector::start(Api::clone(&offers), "", token.clone()),
            deployment_cache: Reflector::start(Api::clone(&deployments), "", token.clone()),
            role_cache: Reflector::start(Api::new(client), "", token.clone()),
            run_cache: Reflector::start(Api::new(client), "", token.clone()),
            job_cache: Reflector::start(Api::new(client), "", token.clone()),
            drain_cache: Reflector::start(Api::new(client), "", token.clone()),
            jobs: Api::new(client),
            runs: Api::new(client),
            offer_book: Arc::default(),
            placements: OwnWrites::default(),
            placing: Arc::default(),
            status_writes: OwnWrites::default(),
            progress_writes: WriteTimes::default(),
            app_status_writes: WriteTimes::default(),
            apps,
            tasks,
            nodes,
            offers,
            deployments,
        }
    }

    /// Asks the task's agent to stop it (sets `spec.kill`); a task already gone is fine.
    pub async fn kill_task(&self, task: &Task) -> Result<(), pacer_runtime::Error> {
        let key = pacer_crd::Record::key(task);
        match self
            .tasks
            .modify(&key, |t| !std::mem::replace(&mut t.spec.kill, true))
            .await
        {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    /// Whether `node` is drained (no new tasks; its tasks move away).
    /// Waits until every cache has its first full list.
    pub async fn synced(&self) {
        let (apps, tasks, nodes) = (
            self.app_cache.store(),
            self.task_cache.store(),
            self.node_cache.store(),
        );
        let (offers, deployments, roles) = (
            self.offer_cache.store(),
            self.deployment_cache.store(),
            self.role_cache.store(),
        );
        let (runs, jobs, drains) = (
            self.run_cache.store(),
            self.job_cache.store(),
            self.drain_cache.store(),
        );
        tokio::join!(
            apps.wait_ready(),
            tasks.wait_ready(),
            nodes.wait_ready(),
            offers.wait_ready(),
            deployments.wait_ready(),
            roles.wait_ready(),
            runs.wait_ready(),
            jobs.wait_ready(),
            drains.wait_ready(),
        );
    }

    pub fn drained(&self, node: &str) -> bool {
        self.drain_cache.store().get(node).is_some()
    }

    /// The tasks of one app, from the cache (job runs' tasks are not an app's).
    pub fn tasks_of(&self, app: &str) -> Vec<Arc<Task>> {
        let mut tasks = self.task_cache.store().indexed(app);
        tasks.retain(|t| t.spec.run.is_none());
        tasks
    }
}

/// Whether the record `key` exists: the cache may say yes at once; only etcd may say no (a
/// cache can lag behind a record just written).
pub async fn exists<K: pacer_crd::Record>(
    cache: &Reflector<K>,
    api: &Api<K>,
    key: &str,
) -> Result<bool, pacer_runtime::Error> {
    if cache.store().get(key).is_some() {
        return Ok(true);
    }
    Ok(api.get(key).await?.is_some())
}

/// A controller's own writes, by key, that a cache has not shown yet. Acting on a cache that
/// lacks them would undo or repeat them (place tasks twice, write back a stale status).
#[derive(Clone, Default)]
pub struct OwnWrites(Arc<Mutex<HashMap<String, i64>>>);

impl OwnWrites {
    /// Records a write of `key` at etcd `revision`.
    pub fn record(&self, key: &str, revision: i64) {
        if revision > 0 {
            self.0
                .lock()
                .expect("own writes lock")
                .insert(key.to_string(), revision);
        }
    }

    /// Whether a cache at `revision` holds the last write of `key` (which is then forgotten).
    pub fn seen(&self, key: &str, revision: i64) -> bool {
        let mut writes = self.0.lock().expect("own writes lock");
        let seen = writes.get(key).is_none_or(|written| revision >= *written);
        if seen {
            writes.remove(key);
        }
        seen
    }
}

/// When a controller last wrote each record, for writes made at most once per interval.
#[derive(Clone, Default)]
pub struct WriteTimes(Arc<Mutex<HashMap<String, std::time::Instant>>>);

impl WriteTimes {
    /// `None` when `key` may be written now (recorded as written now), else how long until
    /// it may. A key not seen before may be written at once, or, with `from_first_sight`, one
    /// interval from now.
    pub fn held_back(
        &self,
        key: &str,
        every: Duration,
        from_first_sight: bool,
    ) -> Option<Duration> {
        let mut times = self.0.lock().expect("write times lock");
        let now = std::time::Instant::now();
        let ago = match times.get(key) {
            Some(at) => now.duration_since(*at),
            None if from_first_sight => {
                times.insert(key.to_string(), now);
                Duration::ZERO
            }
            None => every,
        };
        if ago < every {
            return Some(every - ago);
        }
        times.insert(key.to_string(), now);
        None
    }

    /// Records a write of `key` made now.
    pub fn written(&self, key: &str) {
        let now = std::time::Instant::now();
        self.0
            .lock()
            .expect("write times lock")
            .insert(key.to_string(), now);
    }

    pub fn forget(&self, key: &str) {
        self.0.lock().expect("write times lock").remove(key);
    }
}

/// Runs every controller until `token` is cancelled.
pub async fn run(client: &Client, token: CancellationToken) {
    let cluster = Cluster::watch(client, &token);
    let started = std::time::Instant::now();
    // Every controller reads several caches: none starts before all have their first list.
    tokio::select! {
        _ = token.cancelled() => return,
        _ = cluster.synced() => {}
    }
    tracing::info!(
        took_ms = started.elapsed().as_millis() as u64,
        tasks = cluster.task_cache.store().len(),
        nodes = cluster.node_cache.store().len(),
        "caches synced"
    );
    tokio::join!(
        allocator::run(cluster.clone(), token.clone()),
        app::run(cluster.clone(), token.clone()),
        gc::run(cluster.clone(), token.clone()),
        deployment::run(cluster.clone(), token.clone()),
        jobs::run(cluster.clone(), token.clone()),
        nodes::run(cluster.clone(), token.clone()),
    );
}

/// How soon a reconcile that lost a race retries.
pub(crate) const CONFLICT_RETRY: Duration = Duration::from_millis(20);
