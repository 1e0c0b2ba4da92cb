//! Garbage collection: tasks whose app (or job run) is gone are killed, and their records
//! removed once ended.

use std::sync::Arc;

use pacer_crd::{App, JobRun, Record, Task};
use pacer_runtime::{Action, Controller};
use tokio_util::sync::CancellationToken;

use crate::Cluster;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("looking up app {0} failed")]
    AppLookup(String, #[source] pacer_runtime::Error),
    #[error("cleaning up task {0} failed")]
    TaskCleanup(String, #[source] pacer_runtime::Error),
}

pub async fn run(cluster: Cluster, token: CancellationToken) {
    let tasks = cluster.task_cache.store();
    let run_tasks = cluster.task_cache.store();
    let controller = Controller::new(&cluster.task_cache, token)
        .watches(&cluster.app_cache, move |app: &App| {
            let name = app.metadata.name.clone().unwrap_or_default();
            tasks
                .indexed(&name)
                .iter()
                .filter(|t| t.spec.run.is_none())
                .map(|t| t.key())
                .collect()
        })
        .watches(&cluster.run_cache, move |run: &JobRun| {
            let name = run.key();
            run_tasks
                .filter(|t| t.spec.run.as_deref() == Some(name.as_str()))
                .iter()
                .map(|t| t.key())
                .collect()
        });
    controller
        .run(
            reconcile,
            |_, _, _| Action::await_change(),
            Arc::new(cluster),
        )
        .await;
}

async fn reconcile(task: Arc<Task>, cluster: Arc<Cluster>) -> Result<Action, Error> {
    if owner_exists(&task, &cluster).await? {
        return Ok(Action::await_change());
    }
    let name = task.key();
    let result = if task.state().is_terminal() {
        cluster.tasks.delete_unchanged(&task).await
    } else if !task.spec.kill {
        cluster.kill_task(&task).await
    } else {
        Ok(())
    };
    match result {
        Ok(()) => Ok(Action::await_change()),
        Err(e) if e.is_conflict() || e.is_not_found() => Ok(Action::requeue(crate::CONFLICT_RETRY)),
        Err(e) => Err(Error::TaskCleanup(name, e)),
    }
}

/// Whether the app (or, for a job's task, the run) the task belongs to still exists. The cache
/// may lag behind a just-created owner: only etcd itself may say it is gone.
async fn owner_exists(task: &Task, cluster: &Cluster) -> Result<bool, Error> {
    match &task.spec.run {
        Some(run) => crate::exists(&cluster.run_cache, &cluster.runs, run)
            .await
            .map_err(|e| Error::AppLookup(run.clone(), e)),
        None => crate::exists(&cluster.app_cache, &cluster.apps, &task.spec.app_id)
            .await
            .map_err(|e| Error::AppLookup(task.spec.app_id.clone(), e)),
    }
}
