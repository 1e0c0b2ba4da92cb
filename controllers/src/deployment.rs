//! The deployment controller (minimal): marks a Deployment succeeded once its app has converged.

use std::sync::Arc;

use pacer_crd::app::DEADLINE_ANNOTATION;
use pacer_crd::deployment::{DeploymentAction, DeploymentPhase};
use pacer_crd::{App, Deployment, DeploymentStatus, Task};
use pacer_runtime::{Action, Controller};
use tokio_util::sync::CancellationToken;

use crate::Cluster;

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
    controller
        .run(
            reconcile,
            |_, _, _| Action::await_change(),
            Arc::new(cluster),
        )
        .await;
}

/// How often a running deployment's progress is written at most.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Finished deployments kept per app, newest first; older ones are removed.
const HISTORY: usize = 10;

async fn reconcile(deployment: Arc<Deployment>, cluster: Arc<Cluster>) -> Result<Action, Error> {
    if deployment.phase() != DeploymentPhase::Running {
        return forget_old(&deployment, &cluster).await;
    }
    let spec = &deployment.spec;
    let app = cluster.app_cache.store().get(&spec.app_id);
    let tasks = cluster.tasks_of(&spec.app_id);
    let outcome = outcome(&deployment, app.as_deref(), &tasks);
    // Each kind has a cache of its own: one may show a deployment before another shows the app
    // written with it. Only etcd may say the app is gone.
    if app.is_none()
        && outcome == Some(DeploymentPhase::Superseded)
        && crate::exists(&cluster.app_cache, &cluster.apps, &spec.app_id)
            .await
            .map_err(|e| Error::AppRead(spec.app_id.clone(), e))?
    {
        return Ok(Action::requeue(crate::CONFLICT_RETRY));
    }
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let (phase, message, action) = match outcome {
        Some(phase) => (phase, None, Action::await_change()),
        None => match overdue(&deployment, app.as_deref()) {
            Some(Ok(why)) => (DeploymentPhase::Failed, Some(why), Action::await_change()),
            Some(Err(left)) => {
                // Still running: say why it waits, and look again at the deadline.
                let why = app
                    .as_ref()
                    .and_then(|a| a.status.as_ref()?.message.clone());
                (DeploymentPhase::Running, why, Action::requeue(left))
            }
            None => {
                let why = app
                    .as_ref()
                    .and_then(|a| a.status.as_ref()?.message.clone());
                (DeploymentPhase::Running, why, Action::await_change())
            }
        },
    };
    let (healthy, wanted) = progress(app.as_deref(), &tasks);
    let status = DeploymentStatus {
        phase,
        message,
        healthy,
        wanted,
    };
    if deployment.status.as_ref() == Some(&status) {
        return Ok(action);
    }
    // Progress of a running deployment is written at most once a second, counted from when
    // this controller first saw it (not once per task started: a short deployment is written
    // twice, created and ended); its end is written at once.
    if phase == DeploymentPhase::Running && deployment.status.is_some() {
        if let Some(wait) = cluster
            .progress_writes
            .held_back(&name, PROGRESS_EVERY, true)
        {
            return Ok(action.within(wait));
        }
    } else {
        cluster.progress_writes.forget(&name);
    }
    match cluster.deployments.update_status(&name, status).await {
        Ok(_) => Ok(action),
        Err(e) if e.is_not_found() => Ok(Action::await_change()),
        Err(e) => Err(Error::StatusWrite(name, e)),
    }
}

/// How a running deployment ended, if it has: `None` while it still runs.
///
/// A deployment of an app that is gone ends with it: the stop succeeds once the tasks are
/// gone, and any other change (a scale, a start, a restart) was cancelled by the deletion, as
/// Marathon cancels the deployments a forced delete overrides. An app older than the
/// deployment's generation is a cache that has not seen the change yet: it decides nothing.
fn outcome(
    deployment: &Deployment,
    app: Option<&App>,
    tasks: &[Arc<Task>],
) -> Option<DeploymentPhase> {
    let spec = &deployment.spec;
    match (app, spec.action) {
        (None, DeploymentAction::StopApplication) => {
            tasks.is_empty().then_some(DeploymentPhase::Succeeded)
        }
        (None, _) => Some(DeploymentPhase::Superseded),
        (Some(app), _) => match app
            .metadata
            .generation
            .unwrap_or(0)
            .cmp(&spec.app_generation)
        {
            std::cmp::Ordering::Greater => Some(DeploymentPhase::Superseded),
            std::cmp::Ordering::Less => None,
            std::cmp::Ordering::Equal => {
                converged(app, tasks).then_some(DeploymentPhase::Succeeded)
            }
        },
    }
}

/// With a deadline (the app's `pacer.io/deployment-deadline-seconds` annotation): `Ok(reason)`
/// once it has passed, `Err(time left)` before; `None` without one.
fn overdue(
    deployment: &Deployment,
    app: Option<&App>,
) -> Option<Result<String, std::time::Duration>> {
    let deadline: u64 = app?
        .metadata
        .annotations
        .as_ref()?
        .get(DEADLINE_ANNOTATION)?
        .parse()
        .ok()?;
    let created = deployment.metadata.creation_timestamp.as_ref()?.0;
    let age = pacer_crd::meta::jiff::Timestamp::now()
        .duration_since(created)
        .as_secs()
        .max(0) as u64;
    if age < deadline {
        return Some(Err(std::time::Duration::from_secs(deadline - age)));
    }
    let why = app?
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_else(|| "instances did not become healthy".into());
    Some(Ok(format!(
        "not done within its {deadline} s deadline: {why}"
    )))
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

/// Healthy and ready instances of the app's current version, and how many are wanted.
fn progress(app: Option<&App>, tasks: &[Arc<Task>]) -> (i64, i64) {
    let Some(app) = app else { return (0, 0) };
    let healthy = tasks
        .iter()
        .filter(|t| t.spec.app_version == app.version() && !t.spec.kill && t.is_ready())
        .count();
    (healthy as i64, app.spec.instances)
}

/// Every wanted instance of the current version runs healthy and ready, and nothing else is
/// left.
fn converged(app: &App, tasks: &[Arc<Task>]) -> bool {
    let wanted = usize::try_from(app.spec.instances).unwrap_or(0);
    let running = tasks
        .iter()
        .filter(|t| t.spec.app_version == app.version() && t.is_ready())
        .count();
    running == wanted && tasks.len() == wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_crd::{DeploymentSpec, TaskState};

    fn deployment(action: DeploymentAction, generation: i64) -> Deployment {
        let spec = DeploymentSpec {
            app_id: "web".into(),
            app_generation: generation,
            action,
            plan: None,
        };
        Deployment::new("d1", spec)
    }

    fn app(instances: i64, generation: i64) -> App {
        let mut app = App::test("web");
        app.spec.instances = instances;
        app.metadata.generation = Some(generation);
        app
    }

    fn running(app: &App, n: usize) -> Vec<Arc<Task>> {
        (0..n)
            .map(|i| Arc::new(Task::test(app, &format!("n{i}"), TaskState::Running)))
            .collect()
    }

    #[test]
    fn a_change_of_a_deleted_app_ends_with_it() {
        let gone = app(2, 1);
        let tasks = running(&gone, 1);
        for action in [
            DeploymentAction::ScaleApplication,
            DeploymentAction::StartApplication,
            DeploymentAction::RestartApplication,
        ] {
            let d = deployment(action, 1);
            assert_eq!(outcome(&d, None, &tasks), Some(DeploymentPhase::Superseded));
            assert_eq!(outcome(&d, None, &[]), Some(DeploymentPhase::Superseded));
        }
    }

    #[test]
    fn a_stop_succeeds_once_the_tasks_are_gone() {
        let gone = app(1, 1);
        let d = deployment(DeploymentAction::StopApplication, 1);
        assert_eq!(outcome(&d, None, &running(&gone, 1)), None);
        assert_eq!(outcome(&d, None, &[]), Some(DeploymentPhase::Succeeded));
    }

    #[test]
    fn a_change_succeeds_when_the_app_converged_and_is_superseded_by_a_newer_one() {
        let web = app(2, 3);
        let d = deployment(DeploymentAction::ScaleApplication, 3);
        assert_eq!(outcome(&d, Some(&web), &running(&web, 1)), None);
        assert_eq!(
            outcome(&d, Some(&web), &running(&web, 2)),
            Some(DeploymentPhase::Succeeded)
        );
        assert_eq!(outcome(&d, Some(&web), &running(&web, 3)), None);
        let older = deployment(DeploymentAction::ScaleApplication, 2);
        assert_eq!(
            outcome(&older, Some(&web), &running(&web, 1)),
            Some(DeploymentPhase::Superseded)
        );
    }

    #[test]
    fn an_app_cache_behind_the_deployment_decides_nothing() {
        // The scale to 100 written with generation 2, the cache still at 0 instances of 1.
        let before = app(0, 1);
        let d = deployment(DeploymentAction::ScaleApplication, 2);
        assert_eq!(outcome(&d, Some(&before), &[]), None);
    }

    #[test]
    fn a_deployment_waits_for_readiness_after_health() {
        let mut web = app(1, 1);
        let check = serde_json::json!({"name": "ready", "portName": "default"});
        web.spec.readiness_checks = vec![serde_json::from_value(check).unwrap()];
        let d = deployment(DeploymentAction::StartApplication, 1);
        let mut task = Task::test(&web, "n1", TaskState::Running);
        assert_eq!(
            outcome(&d, Some(&web), &[Arc::new(task.clone())]),
            None,
            "no result yet"
        );
        let result = |ready| pacer_crd::ReadinessResult {
            name: "ready".into(),
            ready,
            last_response: None,
        };
        task.status.as_mut().unwrap().readiness = vec![result(false)];
        assert_eq!(outcome(&d, Some(&web), &[Arc::new(task.clone())]), None);
        task.status.as_mut().unwrap().readiness = vec![result(true)];
        assert_eq!(
            outcome(&d, Some(&web), &[Arc::new(task)]),
            Some(DeploymentPhase::Succeeded)
        );
    }
}
