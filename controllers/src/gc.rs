//! Garbage collection: tasks whose app is gone are killed, and their records removed once ended.

use std::sync::Arc;

use pacer_crd::{App, Record, Task};
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
    let controller = Controller::new(&cluster.task_cache, token).watches(
        &cluster.app_cache,
        move |app: &App| {
            let name = app.metadata.name.clone().unwrap_or_default();
            tasks
                .filter(|t| t.spec.app_id == name)
                .iter()
                .map(|t| t.key())
                .collect()
        },
    );
    controller
        .run(
            reconcile,
            |_, _, _| Action::await_change(),
            Arc::new(cluster),
        )
        .await;
}

async fn reconcile(task: Arc<Task>, cluster: Arc<Cluster>) -> Result<Action, Error> {
    let app_id = &task.spec.app_id;
    if cluster.app_cache.store().get(app_id).is_some() {
        return Ok(Action::await_change());
    }
    // The cache may lag behind a just-created app: only etcd itself may say it is gone.
    if cluster
        .apps
        .get(app_id)
        .await
        .map_err(|e| Error::AppLookup(app_id.clone(), e))?
        .is_some()
    {
        return Ok(Action::await_change());
    }
    let name = task.key();
    let result = if task.state().is_terminal() {
        cluster.tasks.delete_unchanged(&task).await
    } else if !task.spec.kill {
        cluster
            .tasks
            .modify(&name, |t| !std::mem::replace(&mut t.spec.kill, true))
            .await
            .map(|_| ())
    } else {
        Ok(())
    };
    match result {
        Ok(()) => Ok(Action::await_change()),
        Err(e) if e.is_conflict() || e.is_not_found() => Ok(Action::requeue(crate::CONFLICT_RETRY)),
        Err(e) => Err(Error::TaskCleanup(name, e)),
    }
}
