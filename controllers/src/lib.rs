//! Pacer's controllers: allocator (offers, DRF), app (tasks), gc (orphans), deployment, jobs.

pub use writes::{OwnWrites, WriteTimes};

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
pub mod rollout;
pub mod writes;

use std::sync::Arc;
use std::time::Duration;

use pacer_crd::{App, Deployment, Drain, Job, JobRun, Node, Offer, Role, Task};
use pacer_runtime::{Api, Client, Reflector};
use tokio_util::sync::CancellationToken;

/// Typed APIs and shared caches every controller reads from; what a controller keeps for
/// itself is in its own context.
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

    /// Whether `node` is drained (no new tasks; its tasks move away).
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
    // Apps and job runs place through one placer: one placement at a time.
    let placer = accept::Placer::default();
    tokio::join!(
        allocator::run(cluster.clone(), token.clone()),
        app::run(cluster.clone(), placer.clone(), token.clone()),
        gc::run(cluster.clone(), token.clone()),
        deployment::run(cluster.clone(), token.clone()),
        jobs::run(cluster.clone(), placer, token.clone()),
        nodes::run(cluster.clone(), token.clone()),
    );
}

/// How soon a reconcile that lost a race retries.
pub(crate) const CONFLICT_RETRY: Duration = Duration::from_millis(20);
