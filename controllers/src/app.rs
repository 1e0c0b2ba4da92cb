//! The app controller: converges each App's tasks to `instances` of its current version,
//! placing new ones by accepting offers in one etcd transaction.

use std::sync::Arc;
use std::time::Duration;

use pacer_crd::app::{PlacementReport, TaskFailure};
use pacer_crd::deployment::DeploymentPhase;
use pacer_crd::{App, AppStatus, Deployment, KillSelection, Offer, Task, TaskSpec, TaskState};
use pacer_runtime::{Action, Controller, Txn, now};
use tokio_util::sync::CancellationToken;

use crate::accept::{self, Placed};
use crate::{CONFLICT_RETRY, Cluster, upgrade};
use pacer_crd::id::path_of;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("removing ended tasks of {0} failed")]
    TaskCleanup(String, #[source] pacer_runtime::Error),
    #[error("killing task {0} failed")]
    TaskKill(String, #[source] pacer_runtime::Error),
    #[error("accepting offers for {0} failed")]
    AcceptOffers(String, #[source] pacer_runtime::Error),
    #[error("writing the status of {0} failed")]
    StatusWrite(String, #[source] pacer_runtime::Error),
}

pub async fn run(cluster: Cluster, token: CancellationToken) {
    let apps = cluster.app_cache.store();
    let dependents = cluster.app_cache.store();
    // An app and the apps that depend on it.
    let with_dependents = move |app: &str| -> Vec<String> {
        let path = path_of(app);
        let waiting = dependents.filter(|a| {
            a.spec
                .dependencies
                .iter()
                .any(|d| pacer_crd::AppId::parse(d).is_ok_and(|i| i.path() == path))
        });
        std::iter::once(app.to_string())
            .chain(waiting.iter().filter_map(|a| a.metadata.name.clone()))
            .collect()
    };
    let dependents_of = with_dependents.clone();
    let controller = Controller::new(&cluster.app_cache, token)
        .watches(&cluster.task_cache, move |t: &Task| {
            with_dependents(&t.spec.app_id)
        })
        // A dependency's deployment ending lets its dependents in the same plan go on.
        .watches(&cluster.deployment_cache, move |d: &Deployment| {
            dependents_of(&d.spec.app_id)
        })
        // More room on a node may let pending instances in.
        .watches(&cluster.drain_cache, {
            let tasks = cluster.task_cache.store();
            move |d: &pacer_crd::Drain| {
                let node = d.metadata.name.clone().unwrap_or_default();
                let mut apps: Vec<String> = tasks
                    .filter(|t| t.spec.node == node && t.spec.run.is_none())
                    .iter()
                    .map(|t| t.spec.app_id.clone())
                    .collect();
                apps.sort();
                apps.dedup();
                apps
            }
        })
        .watches(&cluster.offer_cache, move |_: &Offer| {
            apps.filter(|a| a.status.as_ref().is_some_and(|s| s.tasks_pending > 0))
                .iter()
                .filter_map(|a| a.metadata.name.clone())
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

async fn reconcile(app: Arc<App>, cluster: Arc<Cluster>) -> Result<Action, Error> {
    let name = app.metadata.name.clone().unwrap_or_default();
    // Tasks this controller placed must be in the cache before it counts again, or it would
    // place them twice.
    let app_revision = app
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if !cluster
        .placements
        .seen(&name, cluster.task_cache.store().revision())
        || !cluster.status_writes.seen(&name, app_revision)
    {
        return Ok(Action::requeue(CONFLICT_RETRY));
    }
    let tasks = cluster.tasks_of(&name);
    if tasks.iter().any(|t| t.state().is_terminal()) {
        return forget_ended(&app, &tasks, &cluster).await;
    }
    // Instances on a node gone longer than inactiveAfterSeconds are replaced: marked to be
    // killed (their agent does it if it comes back), which takes them out of the count.
    let inactive_after = app.spec.unreachable_strategy.inactive_after_seconds;
    let mut recheck: Option<Duration> = None;
    for task in tasks
        .iter()
        .filter(|t| t.state() == TaskState::Unreachable && !t.spec.kill)
    {
        let since = task
            .status
            .as_ref()
            .and_then(|s| s.unreachable_since.as_deref());
        let gone_for = crate::nodes::seconds_since(since).unwrap_or(0.0);
        if gone_for >= inactive_after {
            kill(&cluster, task).await?;
            return Ok(Action::requeue(CONFLICT_RETRY));
        }
        let left = Duration::from_secs_f64(inactive_after - gone_for);
        recheck = Some(recheck.map_or(left, |r| r.min(left)));
    }
    let version = app.version();
    let wanted = usize::try_from(app.spec.instances).unwrap_or(0);
    let killing = killing(&app);
    let (stopping, active): (Vec<&Arc<Task>>, Vec<&Arc<Task>>) = tasks.iter().partition(|t| {
        t.spec.kill || killing.contains(&t.metadata.name.as_deref().unwrap_or_default())
    });
    // Tasks on a drained node move like an upgrade's old ones: a new instance elsewhere
    // first, within the upgrade strategy's bounds, then the old one stops.
    let (current, old): (Vec<&Arc<Task>>, Vec<&Arc<Task>>) = active
        .into_iter()
        .partition(|t| t.spec.app_version == version && !cluster.drained(&t.spec.node));
    // An upgrade lasts while any task of another version runs, even one already stopping.
    let upgrading = !old.is_empty() || tasks.iter().any(|t| t.spec.app_version != version);
    let (doomed, missing) = if !upgrading {
        // A scale: start what is missing, stop the surplus by killSelection.
        (
            pick_to_kill(&current, wanted, app.spec.kill_selection),
            wanted.saturating_sub(current.len()),
        )
    } else {
        rolling_step(&app, wanted, &current, &old, stopping.len())
    };
    // An app whose plan puts it after a dependency changes nothing until that step is done:
    // no new instances, and no old ones stopped.
    let deployments = if app.spec.dependencies.is_empty() {
        Vec::new()
    } else {
        cluster.deployment_cache.store().list()
    };
    if awaits_its_deployment(&app, &deployments, pacer_crd::meta::jiff::Timestamp::now()) {
        return Ok(Action::requeue(CONFLICT_RETRY));
    }
    let waiting_for = pending_dependency(&app, &deployments);
    if waiting_for.is_none() {
        for task in doomed {
            kill(&cluster, task).await?;
        }
    }
    let running_current = current
        .iter()
        .filter(|t| t.state() == TaskState::Running)
        .count();

    let mut status = AppStatus {
        observed_generation: app.metadata.generation.unwrap_or(0),
        tasks_staged: current
            .iter()
            .filter(|t| matches!(t.state(), TaskState::Staging | TaskState::Starting))
            .count() as i64,
        tasks_running: running_current as i64,
        tasks_healthy: current.iter().filter(|t| t.is_healthy()).count() as i64,
        tasks_unhealthy: current
            .iter()
            .filter(|t| t.state() == TaskState::Running && !t.is_healthy())
            .count() as i64,
        tasks_pending: missing as i64,
        ..app.status.clone().unwrap_or_default()
    };
    status.message = None;
    status.placement = None;
    let mut action = Action::await_change();
    if let (true, Some(dependency)) = (missing > 0, &waiting_for) {
        status.message = Some(format!(
            "{missing} instance(s) pending: waiting for dependency {dependency} to be deployed first"
        ));
    } else if missing > 0 {
        let same_version = status
            .last_task_failure
            .as_ref()
            .is_some_and(|f| f.version == version);
        match launch_delay(&status).filter(|_| same_version) {
            Some(wait) => {
                status.message = Some(format!(
                    "{missing} instance(s) pending: launch delayed until {} after {} failure(s)",
                    status.launch_delayed_until.clone().unwrap_or_default(),
                    status.consecutive_failures
                ));
                action = Action::requeue(wait);
            }
            None => {
                let placed = accept::accept(
                    &cluster,
                    &app.spec,
                    &tasks,
                    missing,
                    |a| new_task(&app, &a.node, a.host_ports.clone()),
                    Txn::new(),
                )
                .await
                .map_err(|e| Error::AcceptOffers(name.clone(), e))?;
                let Placed::Done {
                    plan,
                    revision,
                    lost,
                } = placed
                else {
                    return Ok(Action::requeue(CONFLICT_RETRY));
                };
                cluster.placements.record(&name, revision);
                if lost > 0 {
                    // Part of the plan lost a race for offers: place it again shortly.
                    action = Action::requeue(CONFLICT_RETRY);
                }
                status.tasks_pending = (plan.unplaced + lost) as i64;
                let before = app.status.as_ref().and_then(|s| s.placement.as_ref());
                status.placement = plan.report().map(|r| stamped(r, before, now));
                if plan.unplaced > 0 {
                    status.message = Some(format!(
                        "{} instance(s) pending: no node fits: {}",
                        plan.unplaced,
                        plan.explain()
                    ));
                }
            }
        }
    }
    if upgrading && status.message.is_none() {
        status.message = Some(upgrade_progress(&current, &old, wanted));
    }
    if let Some(wait) = write_status(&cluster, &app, status).await? {
        action = action.within(wait);
    }
    if let Some(left) = recheck {
        action = action.within(left);
    }
    Ok(action)
}

/// One step of a rolling upgrade: which old tasks to stop (unhealthy first, then oldest) and
/// how many new ones to start, within the app's upgradeStrategy.
fn rolling_step<'a>(
    app: &App,
    wanted: usize,
    current: &[&'a Arc<Task>],
    old: &[&'a Arc<Task>],
    stopping: usize,
) -> (Vec<&'a Arc<Task>>, usize) {
    let strategy = &app.spec.upgrade_strategy;
    let bounds = upgrade::Bounds::new(
        wanted,
        strategy.minimum_health_capacity,
        strategy.maximum_over_capacity,
    );
    let counts = upgrade::Counts {
        old: old.len(),
        old_healthy: old.iter().filter(|t| t.is_healthy()).count(),
        new: current.len(),
        // A new instance counts once it is ready too: old ones stop only for ready new ones.
        new_healthy: current.iter().filter(|t| t.is_ready()).count(),
        stopping,
    };
    let step = upgrade::step(wanted, bounds, counts);
    let mut order = old.to_vec();
    order.sort_by_cached_key(|t| (t.is_healthy(), age_key(t)));
    let mut doomed: Vec<&Arc<Task>> = order.into_iter().take(step.stop_old).collect();
    doomed.extend(pick_to_kill(current, wanted, app.spec.kill_selection));
    (doomed, step.start_new)
}

/// The first dependency the app waits for: one changed in the same plan (one write of several
/// apps) as the app's own running change, whose deployment has not ended yet. Marathon orders
/// the steps of a plan by dependencies; a dependency outside the plan (absent, at rest, or
/// changed by another write) holds nothing back, so a scale, a restart or a later change of
/// the app proceeds.
pub fn pending_dependency(app: &App, deployments: &[Arc<Deployment>]) -> Option<String> {
    let name = app.metadata.name.as_deref().unwrap_or_default();
    let running: Vec<&Arc<Deployment>> = deployments
        .iter()
        .filter(|d| d.phase() == DeploymentPhase::Running)
        .collect();
    let plans: Vec<&str> = running
        .iter()
        .filter(|d| d.spec.app_id == name)
        .filter_map(|d| d.spec.plan.as_deref())
        .collect();
    if plans.is_empty() {
        return None;
    }
    app.spec.dependencies.iter().find_map(|dep| {
        let id = pacer_crd::AppId::parse(dep)
            .ok()
            .filter(|id| id.name() != name)?;
        let waiting = running.iter().any(|d| {
            d.spec.app_id == id.name() && d.spec.plan.as_deref().is_some_and(|p| plans.contains(&p))
        });
        waiting.then(|| id.path())
    })
}

/// The report with the time its reasons were first seen: the same reasons again keep the
/// earlier time, so that a placement attempt finding nothing new writes nothing.
fn stamped(
    mut report: PlacementReport,
    before: Option<&PlacementReport>,
    now: impl FnOnce() -> String,
) -> PlacementReport {
    let same = before.is_some_and(|b| {
        PlacementReport {
            at: None,
            ..b.clone()
        } == report
    });
    report.at = match before {
        Some(b) if same => b.at.clone(),
        _ => Some(now()),
    };
    report
}

/// The tasks a kill with scale marked with the app's last write (`KILLING_ANNOTATION`).
fn killing(app: &App) -> Vec<&str> {
    app.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(pacer_crd::app::KILLING_ANNOTATION))
        .map(|names| names.split(',').collect())
        .unwrap_or_default()
}

/// How long after an app's change its deployment may still be missing from the cache.
const CACHE_LAG: Duration = Duration::from_secs(10);

/// Whether an app with dependencies changed moments ago and the deployment written with the
/// change is not in the deployment cache yet (each kind has a cache of its own): without it,
/// the app could not tell whether a plan orders it after its dependencies.
pub fn awaits_its_deployment(
    app: &App,
    deployments: &[Arc<Deployment>],
    now: pacer_crd::meta::jiff::Timestamp,
) -> bool {
    if app.spec.dependencies.is_empty() {
        return false;
    }
    let name = app.metadata.name.as_deref().unwrap_or_default();
    let generation = app.metadata.generation.unwrap_or(1);
    let known = deployments
        .iter()
        .any(|d| d.spec.app_id == name && d.spec.app_generation >= generation);
    let changed = app
        .last_change()
        .parse::<pacer_crd::meta::jiff::Timestamp>();
    !known && changed.is_ok_and(|at| now.duration_since(at).as_secs_f64() < CACHE_LAG.as_secs_f64())
}

/// Where a rolling upgrade stands, and why it waits if it does.
fn upgrade_progress(current: &[&Arc<Task>], old: &[&Arc<Task>], wanted: usize) -> String {
    let ready = current.iter().filter(|t| t.is_ready()).count();
    let mut message = format!(
        "upgrading: {ready} of {wanted} new instances healthy and ready, {} old left",
        old.len()
    );
    let failing = current.iter().find_map(|t| {
        t.status
            .as_ref()?
            .health
            .iter()
            .find_map(|h| h.last_failure_cause.clone())
    });
    if let Some(cause) = failing {
        message.push_str(&format!("; new instances fail their health check: {cause}"));
    }
    let unready = current
        .iter()
        .filter(|t| t.is_healthy() && !t.is_ready())
        .count();
    if unready > 0 {
        message.push_str(&format!(
            "; {unready} healthy new instance(s) not ready yet"
        ));
    }
    message
}

/// Which of `tasks` to stop so that `keep` remain.
fn pick_to_kill<'a>(
    tasks: &[&'a Arc<Task>],
    keep: usize,
    selection: KillSelection,
) -> Vec<&'a Arc<Task>> {
    if tasks.len() <= keep {
        return Vec::new();
    }
    let mut sorted = tasks.to_vec();
    // The key holds strings: made once per task, not once per comparison.
    sorted.sort_by_cached_key(|t| age_key(t));
    if selection == KillSelection::YoungestFirst {
        sorted.reverse();
    }
    sorted
        .into_iter()
        .take(tasks.len().saturating_sub(keep))
        .collect()
}

/// Oldest first: creation time, then when the agent staged it, then name.
fn age_key(t: &Task) -> (Option<String>, Option<String>, String) {
    let created = t
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|ts| ts.0.to_string());
    let staged = t.status.as_ref().and_then(|s| s.staged_at.clone());
    (created, staged, t.metadata.name.clone().unwrap_or_default())
}

async fn kill(cluster: &Cluster, task: &Task) -> Result<(), Error> {
    cluster
        .kill_task(task)
        .await
        .map_err(|e| Error::TaskKill(task.metadata.name.clone().unwrap_or_default(), e))
}

/// Removes the records of ended tasks and counts failures of the current version, in one
/// transaction with the app's status so that no failure is counted twice.
async fn forget_ended(app: &App, tasks: &[Arc<Task>], cluster: &Cluster) -> Result<Action, Error> {
    let name = app.metadata.name.clone().unwrap_or_default();
    let err = |e| Error::TaskCleanup(name.clone(), e);
    let mut status = app.status.clone().unwrap_or_default();
    let mut txn = Txn::new();
    txn.unchanged(&cluster.apps, app);
    for task in tasks.iter().filter(|t| t.state().is_terminal()) {
        let failed = matches!(
            task.state(),
            TaskState::Failed | TaskState::Error | TaskState::Lost
        );
        if failed && !task.spec.kill && task.spec.app_version == app.version() {
            record_failure(app, task, &mut status);
        }
        txn.delete_unchanged(&cluster.tasks, task.as_ref());
    }
    let status_written = app.status.as_ref() != Some(&status);
    if status_written {
        let mut updated = app.clone();
        updated.status = Some(status);
        txn.put(&cluster.apps, &updated).map_err(err)?;
    }
    match cluster.tasks.client().commit(txn).await {
        Ok(revision) => {
            if status_written {
                cluster.status_writes.record(&name, revision);
            }
            Ok(Action::requeue(Duration::ZERO))
        }
        Err(e) if e.is_conflict() => Ok(Action::requeue(CONFLICT_RETRY)),
        Err(e) => Err(err(e)),
    }
}

fn record_failure(app: &App, task: &Task, status: &mut AppStatus) {
    let spec = &app.spec;
    // A new version or a restart starts with a clean slate.
    if status
        .last_task_failure
        .as_ref()
        .is_some_and(|f| f.version != task.spec.app_version)
    {
        status.consecutive_failures = 0;
    }
    status.consecutive_failures += 1;
    let exp = (status.consecutive_failures - 1).min(64) as i32;
    let delay =
        (spec.backoff_seconds * spec.backoff_factor.powi(exp)).min(spec.max_launch_delay_seconds);
    let until = pacer_crd::meta::jiff::Timestamp::now() + Duration::from_secs_f64(delay.max(0.0));
    status.launch_delayed_until = Some(pacer_runtime::timestamp(until));
    let task_status = task.status.clone().unwrap_or_default();
    status.last_task_failure = Some(TaskFailure {
        task_id: task.metadata.name.clone().unwrap_or_default(),
        state: task.state().as_str().into(),
        message: task_status.message.unwrap_or_default(),
        timestamp: task_status.finished_at.unwrap_or_else(now),
        version: task.spec.app_version.clone(),
    });
}

/// How long launches are still held back after failures, if at all.
fn launch_delay(status: &AppStatus) -> Option<Duration> {
    let until: pacer_crd::meta::jiff::Timestamp =
        status.launch_delayed_until.as_deref()?.parse().ok()?;
    let left = until.duration_since(pacer_crd::meta::jiff::Timestamp::now());
    (left.is_positive()).then(|| Duration::from_millis(left.as_millis() as u64))
}

/// A task of the app's current version bound to `node`; its id is Marathon's `app.uuid`.
pub fn new_task(app: &App, node: &str, host_ports: Vec<u16>) -> Task {
    let app_id = app.metadata.name.clone().unwrap_or_default();
    let id = format!("{app_id}.{}", uuid::Uuid::new_v4());
    let spec = TaskSpec {
        app_id: app_id.clone(),
        app_version: app.version().to_string(),
        node: node.to_string(),
        resources: app.spec.resources(),
        host_ports,
        kill: false,
        app: app.spec.clone(),
        run: None,
    };
    let mut task = Task::new(&id, spec);
    task.metadata.labels = Some([("pacer.io/app".to_string(), app_id)].into());
    pacer_runtime::api::prepare_new(&mut task);
    task
}

/// A change of task counts alone is written at most this often per app: instances starting one
/// after another would each cost a write. The generation observed, pending instances and
/// messages are written at once.
const COUNTS_EVERY: Duration = Duration::from_secs(1);

/// Writes the counts and the message; the failure record stays as stored (it is written with the
/// task deletions that count failures, and cleared by the API), so a stale view cannot undo it.
/// Returns when to look again if a change of counts was held back.
async fn write_status(
    cluster: &Cluster,
    cached: &App,
    status: AppStatus,
) -> Result<Option<Duration>, Error> {
    let name = cached.metadata.name.as_deref().unwrap_or_default();
    // Nothing new against the cache (which holds this controller's last write): no read, no
    // write.
    // The failure record stays as stored.
    let over = |stored: &AppStatus| AppStatus {
        consecutive_failures: stored.consecutive_failures,
        launch_delayed_until: stored.launch_delayed_until.clone(),
        last_task_failure: stored.last_task_failure.clone(),
        ..status.clone()
    };
    let stored = cached.status.clone().unwrap_or_default();
    let next = over(&stored);
    if next == stored {
        return Ok(None);
    }
    let counts_only = without_counts(&next) == without_counts(&stored);
    if !counts_only {
        cluster.app_status_writes.written(name);
    } else if let Some(wait) = cluster
        .app_status_writes
        .held_back(name, COUNTS_EVERY, false)
    {
        return Ok(Some(wait));
    }
    let result = cluster.apps.modify(name, |app| {
        let stored = app.status.clone().unwrap_or_default();
        let next = over(&stored);
        let changed = stored != next;
        app.status = Some(next);
        changed
    });
    match result.await {
        Ok(_) => Ok(None),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(Error::StatusWrite(name.to_string(), e)),
    }
}

/// The status with its task counts left out.
fn without_counts(status: &AppStatus) -> AppStatus {
    AppStatus {
        tasks_staged: 0,
        tasks_running: 0,
        tasks_healthy: 0,
        tasks_unhealthy: 0,
        ..status.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_crd::DeploymentSpec;
    use pacer_crd::deployment::DeploymentAction;

    fn deployment(app: &str, plan: Option<&str>) -> Arc<Deployment> {
        let spec = DeploymentSpec {
            app_id: app.into(),
            app_generation: 1,
            action: DeploymentAction::StartApplication,
            plan: plan.map(str::to_string),
        };
        Arc::new(Deployment::new(&format!("{app}-{plan:?}"), spec))
    }

    fn web_on(dependencies: &[&str]) -> App {
        let mut web = App::test("web");
        web.spec.dependencies = dependencies.iter().map(|d| d.to_string()).collect();
        web
    }

    #[test]
    fn an_app_waits_for_a_dependency_changed_in_the_same_plan() {
        let web = web_on(&["/db"]);
        let running = [deployment("web", Some("p1")), deployment("db", Some("p1"))];
        assert_eq!(pending_dependency(&web, &running), Some("/db".into()));
    }

    #[test]
    fn a_dependency_outside_the_plan_holds_nothing_back() {
        let web = web_on(&["/db", "/product/database"]);
        // Absent from the write (and from the cluster): Marathon leaves it out of the plan.
        assert_eq!(
            pending_dependency(&web, &[deployment("web", Some("p1"))]),
            None
        );
        // Deployed by another write, or the app changed on its own (a scale, a restart).
        let other = [deployment("web", Some("p1")), deployment("db", Some("p2"))];
        assert_eq!(pending_dependency(&web, &other), None);
        let alone = [deployment("web", None), deployment("db", None)];
        assert_eq!(pending_dependency(&web, &alone), None);
        // Its dependency's step is over: the plan moves on.
        assert_eq!(
            pending_dependency(&web, &[deployment("web", Some("p1"))]),
            None
        );
    }

    #[test]
    fn a_placement_report_keeps_its_time_while_the_reasons_stay() {
        let report = |rejected: i64| PlacementReport {
            nodes_considered: 3,
            rejected: [("UnfulfilledConstraint".to_string(), rejected)].into(),
            ..PlacementReport::default()
        };
        let first = stamped(report(3), None, || "t1".into());
        assert_eq!(first.at.as_deref(), Some("t1"));
        let again = stamped(report(3), Some(&first), || "t2".into());
        assert_eq!(again, first, "nothing new: nothing to write");
        let changed = stamped(report(2), Some(&first), || "t3".into());
        assert_eq!(changed.at.as_deref(), Some("t3"));
    }

    #[test]
    fn tasks_killed_with_scale_are_read_from_the_app_itself() {
        let mut web = App::test("web");
        assert!(killing(&web).is_empty());
        web.metadata.annotations = Some(
            [(
                pacer_crd::app::KILLING_ANNOTATION.to_string(),
                "web.1,web.2".to_string(),
            )]
            .into(),
        );
        assert_eq!(killing(&web), vec!["web.1", "web.2"]);
    }

    #[test]
    fn an_app_never_waits_for_itself() {
        let web = web_on(&["/web"]);
        let running = [deployment("web", Some("p1"))];
        assert_eq!(pending_dependency(&web, &running), None);
    }

    #[test]
    fn a_change_waits_for_its_deployment_to_reach_the_cache_for_a_while() {
        use pacer_crd::meta::jiff::Timestamp;
        let mut web = web_on(&["/db"]);
        web.metadata.generation = Some(2);
        let changed: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        web.metadata.annotations = Some(
            [(
                pacer_crd::app::VERSION_ANNOTATION.to_string(),
                changed.to_string(),
            )]
            .into(),
        );
        let soon = changed + Duration::from_secs(1);
        assert!(awaits_its_deployment(&web, &[], soon));
        let mut older = (*deployment("web", Some("p1"))).clone();
        older.spec.app_generation = 1;
        assert!(
            awaits_its_deployment(&web, &[Arc::new(older.clone())], soon),
            "an older change's"
        );
        older.spec.app_generation = 2;
        assert!(
            !awaits_its_deployment(&web, &[Arc::new(older)], soon),
            "its own is there"
        );
        assert!(
            !awaits_its_deployment(&web, &[], changed + CACHE_LAG),
            "not for ever"
        );
        assert!(
            !awaits_its_deployment(&web_on(&[]), &[], soon),
            "only apps with dependencies"
        );
    }

    #[test]
    fn an_app_is_not_held_back_by_an_app_it_does_not_depend_on() {
        let web = web_on(&[]);
        let running = [deployment("web", Some("p1")), deployment("db", Some("p1"))];
        assert_eq!(pending_dependency(&web, &running), None);
    }
}
