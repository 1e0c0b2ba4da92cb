//! The deployment controller: reports each running Deployment's progress and how it ended
//! (the decision is `rollout::deployment_status`), and keeps a bounded history.

use std::sync::Arc;

use pacer_crd::deployment::DeploymentPhase;
use pacer_crd::{App, Deployment, Task};
use pacer_runtime::{Action, Controller};
use tokio_util::sync::CancellationToken;

use crate::{Cluster, WriteTimes, rollout};

/// The deployment controller's context: the shared caches, and when it last wrote each
/// running deployment's progress.
pub struct Context {
    pub cluster: Cluster,
    progress_writes: WriteTimes,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of deployment {0} failed")]
    StatusWrite(String, #[source] pacer_runtime::Error),
    #[error("reading app {0} of a deployment failed")]
    AppRead(String, #[source] pacer_runtime::Error),
}

pub async fn run(cluster: Cluster, token: CancellationToken) {
    let by_app = |store: pacer_runtime::Store<Deployment>, app: String| -> Vec<String> {
        store
            .filter(|d| d.spec.app_id == app)
            .iter()
            .filter_map(|d| d.metadata.name.clone())
            .collect()
    };
    let (s1, s2) = (
        cluster.deployment_cache.store(),
        cluster.deployment_cache.store(),
    );
    let controller = Controller::new(&cluster.deployment_cache, token)
        .watches(&cluster.app_cache, move |a: &App| {
            by_app(s1.clone(), a.metadata.name.clone().unwrap_or_default())
        })
        .watches(&cluster.task_cache, move |t: &Task| {
            by_app(s2.clone(), t.spec.app_id.clone())
        });
    let ctx = Context {
        cluster,
        progress_writes: WriteTimes::default(),
    };
    controller
        .run(reconcile, |_, _, _| Action::await_change(), Arc::new(ctx))
        .await;
}

/// How often a running deployment's progress is written at most.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Finished deployments kept per app, newest first; older ones are removed.
const HISTORY: usize = 10;

async fn reconcile(deployment: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let cluster = &ctx.cluster;
    if deployment.phase() != DeploymentPhase::Running {
        return forget_old(&deployment, cluster).await;
    }
    let spec = &deployment.spec;
    let app = cluster.app_cache.store().get(&spec.app_id);
    let tasks = cluster.tasks_of(&spec.app_id);
    let now = pacer_crd::time::Timestamp::now();
    let (status, recheck) = rollout::deployment_status(&deployment, app.as_deref(), &tasks, now);
    // Each kind has a cache of its own: one may show a deployment before another shows the app
    // written with it. Only etcd may say the app is gone.
    if app.is_none()
        && status.phase == DeploymentPhase::Superseded
        && crate::exists(&cluster.app_cache, &cluster.apps, &spec.app_id)
            .await
            .map_err(|e| Error::AppRead(spec.app_id.clone(), e))?
    {
        return Ok(Action::requeue(crate::CONFLICT_RETRY));
    }
    let action = recheck.map_or_else(Action::await_change, Action::requeue);
    if deployment.status.as_ref() == Some(&status) {
        return Ok(action);
    }
    let name = deployment.metadata.name.clone().unwrap_or_default();
    // Progress of a running deployment is written at most once a second, counted from when
    // this controller first saw it (not once per task started: a short deployment is written
    // twice, created and ended); its end is written at once.
    if status.phase == DeploymentPhase::Running && deployment.status.is_some() {
        if let Some(wait) = ctx.progress_writes.held_back(&name, PROGRESS_EVERY, true) {
            return Ok(action.within(wait));
        }
    } else {
        ctx.progress_writes.forget(&name);
    }
    match cluster.deployments.update_status(&name, status).await {
        Ok(_) => Ok(action),
        Err(e) if e.is_not_found() => Ok(Action::await_change()),
        Err(e) => Err(Error::StatusWrite(name, e)),
    }
}

/// Deletes this deployment if its app has more than `HISTORY` newer finished ones.
async fn forget_old(deployment: &Deployment, cluster: &Cluster) -> Result<Action, Error> {
    let finished = |d: &Deployment| {
        d.spec.app_id == deployment.spec.app_id && d.phase() != DeploymentPhase::Running
    };
    let created = |d: &Deployment| d.metadata.creation_timestamp.clone();
    let newer = cluster
        .deployment_cache
        .store()
        .filter(|d| finished(d) && created(d) > created(deployment))
        .len();
    if newer < HISTORY {
        return Ok(Action::await_change());
    }
    let name = deployment.metadata.name.clone().unwrap_or_default();
    match cluster.deployments.delete_unchanged(deployment).await {
        Ok(()) => Ok(Action::await_change()),
        Err(e) if e.is_conflict() || e.is_not_found() => Ok(Action::await_change()),
        Err(e) => Err(Error::StatusWrite(name, e)),
    }
}
