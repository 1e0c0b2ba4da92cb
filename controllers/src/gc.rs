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

/// What becomes of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Its owner exists: not garbage.
    Keep,
    /// Ask its agent to stop it.
    Kill,
    /// Asked to stop; wait until it has.
    Wait,
    /// Ended: remove its record.
    Delete,
}

/// The fate of a task whose owner (app or job run) exists or not.
pub fn cleanup(task: &Task, owner_exists: bool) -> Cleanup {
    match (owner_exists, task.state().is_terminal(), task.spec.kill) {
        (true, _, _) => Cleanup::Keep,
        (false, true, _) => Cleanup::Delete,
        (false, false, false) => Cleanup::Kill,
        (false, false, true) => Cleanup::Wait,
    }
}

async fn reconcile(task: Arc<Task>, cluster: Arc<Cluster>) -> Result<Action, Error> {
    let exists = owner_exists(&task, &cluster).await?;
    let result = match cleanup(&task, exists) {
        Cleanup::Keep | Cleanup::Wait => Ok(()),
        Cleanup::Delete => cluster.tasks.delete_unchanged(&task).await,
        Cleanup::Kill => cluster.kill_task(&task).await,
    };
    match result {
        Ok(()) => Ok(Action::await_change()),
        Err(e) if e.is_conflict() || e.is_not_found() => Ok(Action::requeue(crate::CONFLICT_RETRY)),
        Err(e) => Err(Error::TaskCleanup(task.key(), e)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_crd::TaskState;

    #[test]
    fn an_orphan_is_stopped_then_removed_and_an_owned_task_kept() {
        let app = App::test("web");
        let running = Task::test(&app, "n1", TaskState::Running);
        assert_eq!(cleanup(&running, true), Cleanup::Keep);
        assert_eq!(cleanup(&running, false), Cleanup::Kill);
        let mut stopping = running.clone();
        stopping.spec.kill = true;
        assert_eq!(
            cleanup(&stopping, false),
            Cleanup::Wait,
            "killed once, not again"
        );
        let ended = Task::test(&app, "n1", TaskState::Killed);
        assert_eq!(cleanup(&ended, false), Cleanup::Delete);
        assert_eq!(cleanup(&ended, true), Cleanup::Keep, "its app removes it");
    }
}
