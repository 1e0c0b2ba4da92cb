//! Writing apps: apply (create or update, a no-op when nothing changed), scale and delete,
//! each with its Deployment record in the same etcd transaction.

use pacer_crd::app::{DEADLINE_ANNOTATION, SCALED_ANNOTATION, VERSION_ANNOTATION};
use pacer_crd::deployment::DeploymentAction;
use pacer_crd::{
    App, AppVersion, AppVersionSpec, Deployment, DeploymentSpec, DeploymentStatus, Record,
};
use pacer_runtime::{Api, Txn, now};
use serde::Serialize;

use crate::{ApiError, ApiState, service_ports};
pub use pacer_crd::id::path_of;

/// What an apply did, in kubectl's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

#[derive(Debug, Serialize)]
pub struct ApplyResult {
    pub result: Applied,
    pub object: App,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
}

/// Creates the app or updates its spec and labels. A change to anything but `instances` is a
/// new version. Retries on concurrent writes; an unchanged app is not written at all.
pub async fn apply(
    state: &ApiState,
    desired: App,
    create_only: bool,
) -> Result<ApplyResult, ApiError> {
    apply_in_plan(state, desired, create_only, None).await
}

/// [`apply`] as one step of `plan`, a write of several apps ordered by their dependencies.
pub async fn apply_in_plan(
    state: &ApiState,
    desired: App,
    create_only: bool,
    plan: Option<&str>,
) -> Result<ApplyResult, ApiError> {
    apply_with(state, desired, create_only, plan, &[]).await
}

/// Lowers `instances` by as many tasks as `kill` names (their keys) and marks them to be
/// killed in the same transaction (Marathon's kill with `scale=true`): the app controller
/// never sees the kills without the smaller count, so it never replaces them.
pub async fn scale_and_kill(
    state: &ApiState,
    name: &str,
    kill: &[String],
) -> Result<ApplyResult, ApiError> {
    let current = state
        .apps
        .get(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("App '{}' does not exist", path_of(name))))?;
    // The count is taken again from each read of the app (see `apply_with`).
    apply_with(state, current, false, None, kill).await
}

/// The kill marks of `keys` (tasks gone meanwhile are skipped), each on the task as read.
async fn kill_marks(state: &ApiState, keys: &[String]) -> Result<Txn, ApiError> {
    let mut txn = Txn::new();
    for key in keys {
        let Some(mut task) = state.tasks.get(key).await? else {
            continue;
        };
        task.spec.kill = true;
        txn.replace(&state.tasks, &task)?;
    }
    Ok(txn)
}

async fn apply_with(
    state: &ApiState,
    mut desired: App,
    create_only: bool,
    plan: Option<&str>,
    kill: &[String],
) -> Result<ApplyResult, ApiError> {
    desired.spec.normalize();
    // Every path that writes an app checks it here too: a scale (`scaleBy`, kill with
    // `scale=true`) must not store what a create would refuse.
    let problems = desired.spec.validate();
    if !problems.is_empty() {
        return Err(ApiError::Invalid(pacer_crd::FieldErrors(problems)));
    }
    // Read once per request, not per attempt of the write.
    let policy = crate::policy::current(state).await?;
    let request = Request {
        desired: &desired,
        create_only,
        plan,
        kill,
        policy: &policy,
    };
    pacer_runtime::retry::on_conflict(|| apply_once(state, &request)).await
}

/// One write of an app, as `apply_with` asked for it.
struct Request<'a> {
    desired: &'a App,
    create_only: bool,
    plan: Option<&'a str>,
    /// Tasks to kill, the count lowered by as many.
    kill: &'a [String],
    /// The admission policy in effect.
    policy: &'a pacer_crd::policy::PolicySpec,
}

/// Reads the app and the port claims, decides the change and writes it with its deployment,
/// its version, its port claims and the kill marks in one transaction.
async fn apply_once(state: &ApiState, request: &Request<'_>) -> Result<ApplyResult, ApiError> {
    let name = request.desired.metadata.name.clone().unwrap_or_default();
    let current = state.apps.get(&name).await?;
    let claims = service_ports::claims(state).await?;
    let mut desired = wanted(request, current.as_ref())?;
    // What an admin's policy allows is checked on every change but of the count alone.
    let count_only = current.as_ref().is_some_and(|c| {
        let mut same = c.spec.clone();
        same.instances = desired.spec.instances;
        same == desired.spec
    });
    if !count_only {
        crate::policy::admit_app(request.policy, &name, &desired.spec)?;
    }
    let ports = service_ports::assign(
        state,
        &name,
        &mut desired.spec,
        current.as_ref().map(|c| &c.spec),
        &claims,
    )?;
    if request.create_only && current.is_some() {
        return Err(ApiError::AlreadyExists(format!(
            "App '{name}' already exists"
        )));
    }
    let (next, result, action) = match change(current.as_ref(), &desired, request.kill) {
        Change::Unchanged(existing) => return kill_only(state, request.kill, existing).await,
        Change::Write(next, result, action) => (next, result, action),
    };
    let mut txn = Txn::new();
    match &current {
        Some(existing) => txn.unchanged(&state.apps, existing),
        None => txn.absent(&state.apps, &name),
    };
    let mut deployment = new_deployment(&next, action);
    deployment.spec.plan = request.plan.map(str::to_string);
    write_version(state, &mut txn, &next, &deployment)?;
    txn.append(ports);
    txn.append(kill_marks(state, request.kill).await?);
    let rev = state.apps.client().commit(txn).await?;
    prune_versions(state, &name).await;
    let mut object = next;
    object.metadata.resource_version = Some(rev.to_string());
    Ok(ApplyResult {
        result,
        object,
        deployment: deployment.metadata.name,
    })
}

/// The app a request asks for, given the app as read: a kill with scale lowers the count the
/// app has now, whatever else changed since (and never brings back an app deleted meanwhile).
fn wanted(request: &Request<'_>, current: Option<&App>) -> Result<App, ApiError> {
    if request.kill.is_empty() {
        return Ok(request.desired.clone());
    }
    let now = current.ok_or_else(|| {
        let name = request.desired.metadata.name.as_deref().unwrap_or_default();
        ApiError::NotFound(format!("App '{}' does not exist", path_of(name)))
    })?;
    let mut desired = now.clone();
    desired.spec.instances = (now.spec.instances - request.kill.len() as i64).max(0);
    Ok(desired)
}

/// What a write of an app comes to, decided from the app as read.
#[derive(Debug)]
enum Change {
    /// Nothing to write: the app as it is stored.
    Unchanged(App),
    /// The app to write, what the apply did and the deployment that rolls it out.
    Write(App, Applied, DeploymentAction),
}

/// The change from `current` to `desired`; the tasks `kill` names (a kill with scale) are
/// named on the app too, so that the app controller counts them as stopping at once.
fn change(current: Option<&App>, desired: &App, kill: &[String]) -> Change {
    let (mut next, result, action) = match current {
        None => (
            new_app(desired),
            Applied::Created,
            DeploymentAction::StartApplication,
        ),
        Some(existing) => match updated(existing, desired) {
            Some((app, action)) => (app, Applied::Configured, action),
            None => return Change::Unchanged(existing.clone()),
        },
    };
    if !kill.is_empty() {
        let names: Vec<&str> = kill
            .iter()
            .map(|key| <pacer_crd::Task as Record>::name_of_key(key))
            .collect();
        next.set_killing(&names);
    }
    Change::Write(next, result, action)
}

/// An app that does not change: already at 0 instances, a kill with scale is the kills alone.
async fn kill_only(
    state: &ApiState,
    kill: &[String],
    existing: App,
) -> Result<ApplyResult, ApiError> {
    let kills = kill_marks(state, kill).await?;
    if !kills.is_empty() {
        state.tasks.client().commit(kills).await?;
    }
    Ok(ApplyResult {
        result: Applied::Unchanged,
        object: existing,
        deployment: None,
    })
}

/// The writes of a new version of an app: the app, its deployment, its stored version.
fn write_version(
    state: &ApiState,
    txn: &mut Txn,
    next: &App,
    deployment: &Deployment,
) -> Result<(), ApiError> {
    txn.put(&state.apps, next)?
        .put(&state.deployments, deployment)?
        .put(&state.versions, &version_of(next))?;
    Ok(())
}

fn new_app(desired: &App) -> App {
    let name = desired.metadata.name.as_deref().unwrap_or_default();
    let mut app = App::new(name, desired.spec.clone());
    app.metadata.labels = desired.metadata.labels.clone();
    let now = now();
    let stamps = [
        (VERSION_ANNOTATION.to_string(), now.clone()),
        (SCALED_ANNOTATION.to_string(), now),
    ];
    app.metadata.annotations = Some(
        user_annotations(desired)
            .into_iter()
            .chain(stamps)
            .collect(),
    );
    pacer_runtime::api::prepare_new(&mut app);
    app
}

/// The existing app changed to `desired`, or None if nothing would change. A change to
/// anything but `instances` is a new version; a change of `instances` is a scale.
fn updated(existing: &App, desired: &App) -> Option<(App, DeploymentAction)> {
    let config_changed = existing.config() != desired.config();
    let scaled = existing.spec.instances != desired.spec.instances;
    let labels_same = existing.metadata.labels.clone().unwrap_or_default()
        == desired.metadata.labels.clone().unwrap_or_default();
    let annotations_same = user_annotations(existing) == user_annotations(desired);
    if !config_changed && !scaled && labels_same && annotations_same {
        return None;
    }
    let mut annotations = user_annotations(desired);
    let previous = existing.metadata.annotations.clone().unwrap_or_default();
    for key in [VERSION_ANNOTATION, SCALED_ANNOTATION] {
        let changed = if key == VERSION_ANNOTATION {
            config_changed
        } else {
            scaled
        };
        let stamp = if changed {
            now()
        } else {
            previous.get(key).cloned().unwrap_or_else(now)
        };
        annotations.insert(key.into(), stamp);
    }
    let action = if config_changed {
        DeploymentAction::RestartApplication
    } else {
        DeploymentAction::ScaleApplication
    };
    let mut app = existing.clone();
    app.spec = desired.spec.clone();
    app.metadata.labels = desired.metadata.labels.clone();
    app.metadata.annotations = Some(annotations);
    app.metadata.generation = Some(existing.metadata.generation.unwrap_or(0) + 1);
    Some((app, action))
}

/// The snapshot of `app` stored for `/versions` and rollback.
fn version_of(app: &App) -> AppVersion {
    let version = app.last_change();
    let spec = AppVersionSpec {
        app_id: app.key(),
        version: version.clone(),
        app: app.spec.clone(),
    };
    let mut snapshot = AppVersion::new(&version, spec);
    pacer_runtime::api::prepare_new(&mut snapshot);
    snapshot
}

/// Keeps the newest `VERSIONS_KEPT` snapshots of an app; best effort, after a change landed.
async fn prune_versions(state: &ApiState, app: &str) {
    let Ok(list) = state.versions.list(&format!("{app}/")).await else {
        return;
    };
    let excess = list.items.len().saturating_sub(VERSIONS_KEPT);
    for old in list.items.iter().take(excess) {
        let _ = state.versions.delete(&old.key()).await;
    }
}

/// How many versions of each app are kept for rollback.
pub const VERSIONS_KEPT: usize = 50;

/// Annotations a user may set: anything outside `pacer.io/`.
fn user_annotations(app: &App) -> std::collections::BTreeMap<String, String> {
    let mut annotations = app.metadata.annotations.clone().unwrap_or_default();
    annotations.retain(|k, _| !k.starts_with("pacer.io/") || k == DEADLINE_ANNOTATION);
    annotations
}

fn new_deployment(app: &App, action: DeploymentAction) -> Deployment {
    let spec = DeploymentSpec {
        app_id: app.metadata.name.clone().unwrap_or_default(),
        app_generation: app.metadata.generation.unwrap_or(1),
        action,
        plan: None,
    };
    let mut deployment = Deployment::new(&uuid::Uuid::new_v4().to_string(), spec);
    deployment.status = Some(DeploymentStatus::default());
    pacer_runtime::api::prepare_new(&mut deployment);
    deployment
}

/// Sets `instances` of an existing app.
pub async fn scale(state: &ApiState, name: &str, instances: i64) -> Result<ApplyResult, ApiError> {
    if instances < 0 {
        return Err(ApiError::field(
            "instances",
            format!("must be >= 0 (got {instances})"),
        ));
    }
    let current = state
        .apps
        .get(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("App '{name}' does not exist")))?;
    let mut desired = current.clone();
    desired.spec.instances = instances;
    apply(state, desired, false).await
}

/// Deletes an app; the controllers then stop and remove its tasks.
pub async fn delete(state: &ApiState, name: &str) -> Result<App, ApiError> {
    pacer_runtime::retry::on_conflict(|| async {
        let app = state
            .apps
            .get(name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("App '{name}' does not exist")))?;
        let deployment = new_deployment(&app, DeploymentAction::StopApplication);
        let claims = service_ports::claims(state).await?;
        let mut txn = Txn::new();
        txn.delete_unchanged(&state.apps, &app)
            .put(&state.deployments, &deployment)?;
        txn.append(service_ports::release(state, name, &claims, &[]));
        state.apps.client().commit(txn).await?;
        Ok(app)
    })
    .await
}

/// Finds a task by its id alone (its key also holds the node).
pub async fn find_task(
    tasks: &Api<pacer_crd::Task>,
    id: &str,
) -> Result<pacer_crd::Task, ApiError> {
    let all = tasks.list("").await?;
    all.items
        .into_iter()
        .find(|t| t.metadata.name.as_deref() == Some(id))
        .ok_or_else(|| ApiError::NotFound(format!("Task '{id}' does not exist")))
}

/// A new version of an app with the same definition: its tasks are replaced (Marathon's restart).
pub async fn restart(state: &ApiState, name: &str) -> Result<ApplyResult, ApiError> {
    pacer_runtime::retry::on_conflict(|| async {
        let existing =
            state.apps.get(name).await?.ok_or_else(|| {
                ApiError::NotFound(format!("App '{}' does not exist", path_of(name)))
            })?;
        let mut next = existing.clone();
        let mut annotations = next.metadata.annotations.clone().unwrap_or_default();
        annotations.insert(VERSION_ANNOTATION.into(), now());
        next.metadata.annotations = Some(annotations);
        next.metadata.generation = Some(existing.metadata.generation.unwrap_or(0) + 1);
        let deployment = new_deployment(&next, DeploymentAction::RestartApplication);
        let mut txn = Txn::new();
        txn.unchanged(&state.apps, &existing);
        write_version(state, &mut txn, &next, &deployment)?;
        state.apps.client().commit(txn).await?;
        Ok(ApplyResult {
            result: Applied::Configured,
            object: next,
            deployment: deployment.metadata.name,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(name: &str, instances: i64) -> App {
        let mut app = App::test(name);
        app.spec.instances = instances;
        app.metadata.generation = Some(3);
        app.metadata.annotations =
            Some([(VERSION_ANNOTATION.to_string(), "v1".to_string())].into());
        app
    }

    fn request<'a>(desired: &'a App, kill: &'a [String]) -> Request<'a> {
        static DEFAULT: std::sync::LazyLock<pacer_crd::policy::PolicySpec> =
            std::sync::LazyLock::new(Default::default);
        Request {
            desired,
            create_only: false,
            plan: None,
            kill,
            policy: &DEFAULT,
        }
    }

    #[test]
    fn a_kill_with_scale_lowers_the_count_the_app_has_now() {
        let asked = stored("web", 9);
        let kill = ["node-1/web.1".to_string(), "node-1/web.2".to_string()];
        let wanted_now = wanted(&request(&asked, &kill), Some(&stored("web", 3))).unwrap();
        assert_eq!(wanted_now.spec.instances, 1);
        let wanted_now = wanted(&request(&asked, &kill), Some(&stored("web", 1))).unwrap();
        assert_eq!(wanted_now.spec.instances, 0, "never below 0");
        let gone = wanted(&request(&asked, &kill), None).unwrap_err();
        assert!(matches!(gone, ApiError::NotFound(m) if m == "App '/web' does not exist"));
        let plain = wanted(&request(&asked, &[]), Some(&stored("web", 3))).unwrap();
        assert_eq!(plain.spec.instances, 9, "without kills the request stands");
    }

    #[test]
    fn a_change_is_a_start_a_scale_a_restart_or_nothing() {
        let current = stored("web", 2);
        let mut restarted = current.clone();
        restarted.spec.cmd = Some("sleep 5".into());
        for (current, desired, expected) in [
            (
                None,
                stored("web", 2),
                Some((Applied::Created, DeploymentAction::StartApplication)),
            ),
            (
                Some(&current),
                stored("web", 5),
                Some((Applied::Configured, DeploymentAction::ScaleApplication)),
            ),
            (
                Some(&current),
                restarted,
                Some((Applied::Configured, DeploymentAction::RestartApplication)),
            ),
            (Some(&current), stored("web", 2), None),
        ] {
            let outcome = match change(current, &desired, &[]) {
                Change::Write(next, applied, action) => {
                    assert_eq!(next.spec, desired.spec);
                    Some((applied, action))
                }
                Change::Unchanged(kept) => {
                    assert_eq!(Some(&kept), current);
                    None
                }
            };
            assert_eq!(
                outcome,
                expected,
                "{:?} -> {:?}",
                current.map(|c| &c.spec),
                desired.spec
            );
        }
    }

    #[test]
    fn a_scale_is_the_next_generation_and_keeps_the_version() {
        let Change::Write(next, _, _) = change(Some(&stored("web", 2)), &stored("web", 5), &[])
        else {
            panic!("a scale writes the app");
        };
        assert_eq!(next.metadata.generation, Some(4));
        assert_eq!(next.metadata.annotations.unwrap()[VERSION_ANNOTATION], "v1");
    }

    #[test]
    fn the_tasks_a_kill_with_scale_names_are_on_the_app_it_writes() {
        let kill = ["node-1/web.1".to_string(), "node-2/web.7".to_string()];
        let Change::Write(next, _, action) =
            change(Some(&stored("web", 3)), &stored("web", 1), &kill)
        else {
            panic!("a kill with scale writes the app");
        };
        assert_eq!(action, DeploymentAction::ScaleApplication);
        assert_eq!(
            next.metadata.annotations.unwrap()[pacer_crd::app::KILLING_ANNOTATION],
            "web.1,web.7"
        );
    }
}
