//! The app controller: converges each App's tasks to `instances` of its current version,
//! placing new ones by accepting offers in one etcd transaction. `decide` reads nothing and
//! writes nothing; `reconcile` gathers what it needs and carries the decision out.

use std::sync::Arc;
use std::time::Duration;

use pacer_crd::app::{PlacementReport, TaskFailure};
use pacer_crd::id::path_of;
use pacer_crd::time::Timestamp;
use pacer_crd::{App, AppStatus, Deployment, Offer, Task, TaskSpec, TaskState};
use pacer_runtime::{Action, Controller, Txn, now};
use tokio_util::sync::CancellationToken;

use crate::accept::{Placed, Placer, Request};
use crate::placement::Plan;
use crate::{CONFLICT_RETRY, Cluster, OwnWrites, WriteTimes, rollout};

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

/// What the app controller keeps: the shared caches, the placer it shares with the job runs,
/// and its memory of its own writes.
pub struct Context {
    pub cluster: Cluster,
    pub placer: Placer,
    /// Each app's last placement of tasks, until the task cache has it.
    placements: OwnWrites,
    /// Each app's last status write, until the app cache has it.
    status_writes: OwnWrites,
    /// When each app's status was last written.
    status_times: WriteTimes,
}

pub async fn run(cluster: Cluster, placer: Placer, token: CancellationToken) {
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
    let ctx = Context {
        cluster,
        placer,
        placements: OwnWrites::default(),
        status_writes: OwnWrites::default(),
        status_times: WriteTimes::default(),
    };
    controller
        .run(reconcile, |_, _, _| Action::await_change(), Arc::new(ctx))
        .await;
}

/// What was read for one app.
pub struct View<'a> {
    pub app: &'a App,
    /// Its tasks (not job runs').
    pub tasks: &'a [Arc<Task>],
    /// Running deployments and recent ones (read only for apps with dependencies).
    pub deployments: &'a [Arc<Deployment>],
    /// Whether a node is drained.
    pub drained: &'a (dyn Fn(&str) -> bool + Sync),
    pub now: Timestamp,
}

/// What to do next for one app.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Remove the records of ended tasks, with the status that counts the failures among them
    /// (`None`: unchanged) in the same transaction, so that no failure is counted twice.
    ForgetEnded {
        ended: Vec<Arc<Task>>,
        status: Option<AppStatus>,
    },
    /// An instance on a node gone longer than inactiveAfterSeconds is replaced: marked to be
    /// killed (its agent does it if it comes back), which takes it out of the count.
    Abandon(Arc<Task>),
    /// The app changed moments ago and its deployment is not in the cache yet: without it,
    /// the app cannot tell whether a plan orders it after its dependencies.
    AwaitDeployment,
    Converge(Converge),
}

/// One step towards `instances` of the current version.
#[derive(Debug, PartialEq)]
pub struct Converge {
    pub kill: Vec<Arc<Task>>,
    /// Instances to place now.
    pub place: usize,
    /// The status before placing: counts, pending instances and why they wait.
    pub status: AppStatus,
    /// Where an upgrade stands, said when nothing else is.
    pub progress: Option<String>,
    /// When to look again regardless of changes (a launch delay ends, a node may be given up).
    pub recheck: Option<Duration>,
}

/// The next step for an app, from what was read.
pub fn decide(view: &View) -> Decision {
    let app = view.app;
    let ended: Vec<Arc<Task>> = view
        .tasks
        .iter()
        .filter(|t| t.state().is_terminal())
        .cloned()
        .collect();
    if !ended.is_empty() {
        let status = count_failures(app, &ended, view.now);
        let status = (app.status.as_ref() != Some(&status)).then_some(status);
        return Decision::ForgetEnded { ended, status };
    }
    let (abandoned, recheck) = unreachable(app, view.tasks, view.now);
    if let Some(task) = abandoned {
        return Decision::Abandon(task);
    }
    if rollout::awaits_its_deployment(app, view.deployments, view.now) {
        return Decision::AwaitDeployment;
    }
    let changes = rollout::changes(app, view.tasks, view.drained);
    let waiting_for = rollout::pending_dependency(app, view.deployments);
    let mut status = counted(app, &changes);
    let mut place = changes.missing;
    let mut wait = None;
    if changes.missing > 0 {
        let missing = changes.missing;
        let why = match (&waiting_for, launch_delay(&status, app, view.now)) {
            (Some(dependency), _) => Some(format!(
                "{missing} instance(s) pending: waiting for dependency {dependency} to be deployed first"
            )),
            (None, Some(left)) => {
                wait = Some(left);
                Some(format!(
                    "{missing} instance(s) pending: launch delayed until {} after {} failure(s)",
                    status.launch_delayed_until.clone().unwrap_or_default(),
                    status.consecutive_failures
                ))
            }
            (None, None) => None,
        };
        if why.is_some() {
            place = 0;
        }
        status.message = why;
    }
    // An app whose plan puts it after a dependency changes nothing until that step is done:
    // no new instances, and no old ones stopped.
    let kill = match waiting_for {
        Some(_) => Vec::new(),
        None => changes.doomed,
    };
    Decision::Converge(Converge {
        kill,
        place,
        status,
        progress: changes.progress,
        recheck: [wait, recheck].into_iter().flatten().min(),
    })
}

/// The first instance gone past inactiveAfterSeconds, if any; otherwise when the next one
/// will be.
fn unreachable(
    app: &App,
    tasks: &[Arc<Task>],
    now: Timestamp,
) -> (Option<Arc<Task>>, Option<Duration>) {
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
        let gone_for = pacer_crd::time::seconds_since(since, now).unwrap_or(0.0);
        if gone_for >= inactive_after {
            return (Some(task.clone()), None);
        }
        let left = pacer_crd::time::secs(inactive_after - gone_for);
        recheck = Some(recheck.map_or(left, |r| r.min(left)));
    }
    (None, recheck)
}

/// The status with the task counts of the current version and the instances missing; no
/// message and no placement report yet (placing says those).
fn counted(app: &App, changes: &rollout::Changes) -> AppStatus {
    let current = &changes.current;
    let count = |f: &dyn Fn(&Task) -> bool| current.iter().filter(|t| f(t)).count() as i64;
    AppStatus {
        observed_generation: app.metadata.generation.unwrap_or(0),
        tasks_staged: count(&|t| matches!(t.state(), TaskState::Staging | TaskState::Starting)),
        tasks_running: count(&|t| t.state() == TaskState::Running),
        tasks_healthy: count(&|t| t.is_healthy()),
        tasks_unhealthy: count(&|t| t.state() == TaskState::Running && !t.is_healthy()),
        tasks_pending: changes.missing as i64,
        message: None,
        placement: None,
        ..app.status.clone().unwrap_or_default()
    }
}

/// The status after a placement: what is still pending, and why no node fits.
fn after_placement(
    mut status: AppStatus,
    before: Option<&PlacementReport>,
    plan: &Plan,
    lost: usize,
    now: impl FnOnce() -> String,
) -> AppStatus {
    status.tasks_pending = (plan.unplaced + lost) as i64;
    status.placement = plan.report().map(|r| stamped(r, before, now));
    if plan.unplaced > 0 {
        status.message = Some(format!(
            "{} instance(s) pending: no node fits: {}",
            plan.unplaced,
            plan.explain()
        ));
    }
    status
}

async fn reconcile(app: Arc<App>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = app.metadata.name.clone().unwrap_or_default();
    let cluster = &ctx.cluster;
    // Tasks this controller placed must be in the cache before it counts again, or it would
    // place them twice; likewise its last status write.
    let app_revision = app
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if !ctx
        .placements
        .seen(&name, cluster.task_cache.store().revision())
        || !ctx.status_writes.seen(&name, app_revision)
    {
        return Ok(Action::requeue(CONFLICT_RETRY));
    }
    let tasks = cluster.tasks_of(&name);
    let deployments = if app.spec.dependencies.is_empty() {
        Vec::new()
    } else {
        cluster.deployment_cache.store().list()
    };
    let view = View {
        app: &app,
        tasks: &tasks,
        deployments: &deployments,
        drained: &|node| cluster.drained(node),
        now: Timestamp::now(),
    };
    match decide(&view) {
        Decision::ForgetEnded { ended, status } => forget_ended(&ctx, &app, &ended, status).await,
        Decision::Abandon(task) => {
            kill(cluster, &task).await?;
            Ok(Action::requeue(CONFLICT_RETRY))
        }
        Decision::AwaitDeployment => Ok(Action::requeue(CONFLICT_RETRY)),
        Decision::Converge(step) => converge(&ctx, &app, &tasks, step).await,
    }
}

/// Carries out one step: kills, places, writes the status.
async fn converge(
    ctx: &Context,
    app: &App,
    tasks: &[Arc<Task>],
    step: Converge,
) -> Result<Action, Error> {
    let name = app.metadata.name.clone().unwrap_or_default();
    for task in &step.kill {
        kill(&ctx.cluster, task).await?;
    }
    let mut status = step.status;
    let mut action = step
        .recheck
        .map_or_else(Action::await_change, Action::requeue);
    if step.place > 0 {
        let request = Request {
            spec: &app.spec,
            live: tasks,
            missing: step.place,
            build: |a: &crate::placement::Assignment| new_task(app, &a.node, a.host_ports.clone()),
            owner: Txn::new(),
        };
        let placed = ctx
            .placer
            .accept(&ctx.cluster, request)
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
        ctx.placements.record(&name, revision);
        if lost > 0 {
            // Part of the plan lost a race for offers: place it again shortly.
            action = action.within(CONFLICT_RETRY);
        }
        let before = app.status.as_ref().and_then(|s| s.placement.as_ref());
        status = after_placement(status, before, &plan, lost, now);
    }
    if status.message.is_none() {
        status.message = step.progress;
    }
    if let Some(wait) = write_status(ctx, app, status).await? {
        action = action.within(wait);
    }
    Ok(action)
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

async fn kill(cluster: &Cluster, task: &Task) -> Result<(), Error> {
    cluster
        .kill_task(task)
        .await
        .map_err(|e| Error::TaskKill(task.metadata.name.clone().unwrap_or_default(), e))
}

/// Removes the records of ended tasks, writing `status` (their failures counted) in the same
/// transaction.
async fn forget_ended(
    ctx: &Context,
    app: &App,
    ended: &[Arc<Task>],
    status: Option<AppStatus>,
) -> Result<Action, Error> {
    let name = app.metadata.name.clone().unwrap_or_default();
    let err = |e| Error::TaskCleanup(name.clone(), e);
    let cluster = &ctx.cluster;
    let mut txn = Txn::new();
    txn.unchanged(&cluster.apps, app);
    for task in ended {
        txn.delete_unchanged(&cluster.tasks, task.as_ref());
    }
    let status_written = status.is_some();
    if let Some(status) = status {
        let mut updated = app.clone();
        updated.status = Some(status);
        txn.put(&cluster.apps, &updated).map_err(err)?;
    }
    match cluster.apps.client().commit(txn).await {
        Ok(revision) => {
            if status_written {
                ctx.status_writes.record(&name, revision);
            }
            Ok(Action::requeue(Duration::ZERO))
        }
        Err(e) if e.is_conflict() => Ok(Action::requeue(CONFLICT_RETRY)),
        Err(e) => Err(err(e)),
    }
}

/// The status with the failures among `ended` counted: only tasks of the current version that
/// failed on their own (not killed).
fn count_failures(app: &App, ended: &[Arc<Task>], now: Timestamp) -> AppStatus {
    let mut status = app.status.clone().unwrap_or_default();
    for task in ended {
        let failed = matches!(
            task.state(),
            TaskState::Failed | TaskState::Error | TaskState::Lost
        );
        if failed && !task.spec.kill && task.spec.app_version == app.version() {
            record_failure(app, task, &mut status, now);
        }
    }
    status
}

fn record_failure(app: &App, task: &Task, status: &mut AppStatus, now: Timestamp) {
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
    let until = now + pacer_crd::time::secs(delay);
    status.launch_delayed_until = Some(pacer_runtime::timestamp(until));
    let task_status = task.status.clone().unwrap_or_default();
    status.last_task_failure = Some(TaskFailure {
        task_id: task.metadata.name.clone().unwrap_or_default(),
        state: task.state().as_str().into(),
        message: task_status.message.unwrap_or_default(),
        timestamp: task_status
            .finished_at
            .unwrap_or_else(|| pacer_runtime::timestamp(now)),
        version: task.spec.app_version.clone(),
    });
}

/// How long launches of the current version are still held back after its failures, if at all.
fn launch_delay(status: &AppStatus, app: &App, now: Timestamp) -> Option<Duration> {
    let same_version = status
        .last_task_failure
        .as_ref()
        .is_some_and(|f| f.version == app.version());
    let ago = pacer_crd::time::seconds_since(status.launch_delayed_until.as_deref(), now)?;
    (same_version && ago < 0.0).then(|| pacer_crd::time::secs(-ago))
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
    ctx: &Context,
    cached: &App,
    status: AppStatus,
) -> Result<Option<Duration>, Error> {
    let name = cached.metadata.name.as_deref().unwrap_or_default();
    // The failure record stays as stored. Nothing new against the cache (which holds this
    // controller's last write): no read, no write.
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
        ctx.status_times.written(name);
    } else if let Some(wait) = ctx.status_times.held_back(name, COUNTS_EVERY, false) {
        return Ok(Some(wait));
    }
    let result = ctx.cluster.apps.modify(name, |app| {
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

    use pacer_crd::app::VERSION_ANNOTATION;
    use pacer_crd::meta::Time;

    const NOW: &str = "2026-12-01T10:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    /// An app at `version` wanting `instances`.
    fn web(instances: i64, version: &str) -> App {
        let mut app = App::test("web");
        app.spec.instances = instances;
        app.metadata.generation = Some(1);
        app.metadata.annotations =
            Some([(VERSION_ANNOTATION.to_string(), version.to_string())].into());
        app
    }

    /// A task of `app` as it is now, named `id`, created `age` seconds before NOW.
    fn task(app: &App, id: &str, state: TaskState, age: i64) -> Arc<Task> {
        let mut t = Task::test(app, &format!("node-{id}"), state);
        t.metadata.name = Some(format!("web.{id}"));
        let created = now() - Duration::from_secs(age as u64);
        t.metadata.creation_timestamp = Some(Time(created));
        Arc::new(t)
    }

    fn decide_for(app: &App, tasks: &[Arc<Task>], drained: &[&str]) -> Decision {
        let drained: Vec<String> = drained.iter().map(|d| d.to_string()).collect();
        let view = View {
            app,
            tasks,
            deployments: &[],
            drained: &|node| drained.iter().any(|d| d == node),
            now: now(),
        };
        decide(&view)
    }

    fn converge(decision: Decision) -> Converge {
        match decision {
            Decision::Converge(step) => step,
            other => panic!("expected a converge step, got {other:?}"),
        }
    }

    fn ids(tasks: &[Arc<Task>]) -> Vec<&str> {
        tasks
            .iter()
            .map(|t| t.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn a_scale_up_places_what_is_missing_and_counts_what_runs() {
        let app = web(3, "v1");
        let tasks = [
            task(&app, "a", TaskState::Running, 60),
            task(&app, "b", TaskState::Staging, 1),
        ];
        let step = converge(decide_for(&app, &tasks, &[]));
        assert_eq!((step.place, step.kill.len()), (1, 0));
        let s = &step.status;
        assert_eq!(
            (s.tasks_running, s.tasks_staged, s.tasks_pending),
            (1, 1, 1)
        );
        assert_eq!((s.tasks_healthy, s.observed_generation), (1, 1));
        assert_eq!(step.progress, None, "a scale is no upgrade");
    }

    #[test]
    fn a_scale_down_stops_the_surplus_by_kill_selection() {
        let mut app = web(1, "v1");
        let tasks = [
            task(&app, "old", TaskState::Running, 300),
            task(&app, "mid", TaskState::Running, 200),
            task(&app, "new", TaskState::Running, 100),
        ];
        let step = converge(decide_for(&app, &tasks, &[]));
        assert_eq!(
            ids(&step.kill),
            ["web.new", "web.mid"],
            "youngest first by default"
        );
        assert_eq!(step.place, 0);
        app.spec.kill_selection = pacer_crd::KillSelection::OldestFirst;
        let step = converge(decide_for(&app, &tasks, &[]));
        assert_eq!(ids(&step.kill), ["web.old", "web.mid"]);
    }

    #[test]
    fn ended_tasks_are_forgotten_and_only_own_failures_count() {
        let app = web(2, "v1");
        let failed = task(&app, "f", TaskState::Failed, 10);
        let mut killed = (*task(&app, "k", TaskState::Killed, 10)).clone();
        killed.spec.kill = true;
        let running = task(&app, "r", TaskState::Running, 10);
        let tasks = [failed.clone(), Arc::new(killed), running];
        let Decision::ForgetEnded { ended, status } = decide_for(&app, &tasks, &[]) else {
            panic!("ended tasks are removed first");
        };
        assert_eq!(ids(&ended), ["web.f", "web.k"]);
        let status = status.expect("a failure changes the status");
        assert_eq!(status.consecutive_failures, 1);
        assert_eq!(status.last_task_failure.unwrap().task_id, "web.f");
        // backoffSeconds 1: launches wait a second from now.
        assert_eq!(
            status.launch_delayed_until.as_deref(),
            Some("2026-12-01T10:00:01.000Z")
        );
        // A task killed on purpose is no failure: nothing to write but the deletion.
        let mut app = app;
        app.status = Some(AppStatus::default());
        let mut killed = (*task(&app, "k", TaskState::Killed, 10)).clone();
        killed.spec.kill = true;
        let Decision::ForgetEnded { status, .. } = decide_for(&app, &[Arc::new(killed)], &[])
        else {
            panic!("ended tasks are removed first");
        };
        assert_eq!(status, None);
    }

    #[test]
    fn failures_back_off_by_the_factor_up_to_the_maximum() {
        let mut app = web(1, "v1");
        app.spec.backoff_seconds = 10.0;
        app.spec.backoff_factor = 2.0;
        app.spec.max_launch_delay_seconds = 30.0;
        let delays: Vec<String> = (0..3)
            .scan(app.clone(), |app, _| {
                let failed = [task(app, "f", TaskState::Failed, 1)];
                let Decision::ForgetEnded { status, .. } = decide_for(app, &failed, &[]) else {
                    return None;
                };
                let status = status?;
                app.status = Some(status.clone());
                status.launch_delayed_until
            })
            .collect();
        assert_eq!(
            delays,
            [
                "2026-12-01T10:00:10.000Z",
                "2026-12-01T10:00:20.000Z",
                "2026-12-01T10:00:30.000Z"
            ]
        );
    }

    #[test]
    fn a_launch_delay_holds_new_instances_of_the_failed_version_only() {
        let mut app = web(1, "v1");
        let mut status = AppStatus {
            launch_delayed_until: Some("2026-12-01T10:00:30.000Z".into()),
            consecutive_failures: 2,
            ..AppStatus::default()
        };
        status.last_task_failure = Some(TaskFailure {
            version: "v1".into(),
            ..TaskFailure::default()
        });
        app.status = Some(status);
        let step = converge(decide_for(&app, &[], &[]));
        assert_eq!(step.place, 0);
        assert_eq!(step.recheck, Some(Duration::from_secs(30)));
        assert!(
            step.status
                .message
                .unwrap()
                .contains("launch delayed until 2026-12-01T10:00:30.000Z after 2 failure(s)")
        );
        // A new version starts with a clean slate.
        let mut changed = app.clone();
        changed.metadata.annotations =
            Some([(VERSION_ANNOTATION.to_string(), "v2".to_string())].into());
        assert_eq!(converge(decide_for(&changed, &[], &[])).place, 1);
    }

    #[test]
    fn an_instance_unreachable_too_long_is_replaced() {
        let app = web(1, "v1");
        let gone = |ago: u64| {
            let mut t = (*task(&app, "u", TaskState::Unreachable, 1000)).clone();
            let since = now() - Duration::from_secs(ago);
            t.status.as_mut().unwrap().unreachable_since = Some(pacer_runtime::timestamp(since));
            Arc::new(t)
        };
        // inactiveAfterSeconds is 60 by default.
        let lost = gone(61);
        assert_eq!(
            decide_for(&app, std::slice::from_ref(&lost), &[]),
            Decision::Abandon(lost)
        );
        let step = converge(decide_for(&app, &[gone(20)], &[]));
        assert_eq!(
            step.recheck,
            Some(Duration::from_secs(40)),
            "looked at again when it is due"
        );
        assert_eq!(step.place, 0, "still counted while it may come back");
    }

    #[test]
    fn an_upgrade_starts_new_instances_first_within_the_strategy() {
        let old = web(2, "v1");
        let tasks = [
            task(&old, "o1", TaskState::Running, 100),
            task(&old, "o2", TaskState::Running, 90),
        ];
        let mut app = web(2, "v2");
        // minimumHealthCapacity 1, maximumOverCapacity 1 (Marathon's defaults): all new ones
        // start at once, no old one stops before a new one is ready.
        let step = converge(decide_for(&app, &tasks, &[]));
        assert_eq!((step.place, step.kill.len()), (2, 0));
        assert!(
            step.progress
                .unwrap()
                .starts_with("upgrading: 0 of 2 new instances")
        );
        // With no room over capacity and half the health kept: one old one stops first.
        app.spec.upgrade_strategy.minimum_health_capacity = 0.5;
        app.spec.upgrade_strategy.maximum_over_capacity = 0.0;
        let step = converge(decide_for(&app, &tasks, &[]));
        assert_eq!(ids(&step.kill), ["web.o1"], "the oldest healthy one");
        assert_eq!(step.place, 0, "no room until it is gone");
        // A new ready instance lets the last old one go.
        let tasks = [tasks[1].clone(), task(&app, "n1", TaskState::Running, 5)];
        let step = converge(decide_for(&app, &tasks, &[]));
        assert_eq!(ids(&step.kill), ["web.o2"]);
    }

    #[test]
    fn instances_on_a_drained_node_move_like_an_upgrade() {
        let app = web(1, "v1");
        let here = task(&app, "a", TaskState::Running, 100);
        let step = converge(decide_for(&app, std::slice::from_ref(&here), &["node-a"]));
        assert_eq!(
            (step.place, step.kill.len()),
            (1, 0),
            "a new one elsewhere first"
        );
        let moved = [here, task(&app, "b", TaskState::Running, 1)];
        let step = converge(decide_for(&app, &moved, &["node-a"]));
        assert_eq!(ids(&step.kill), ["web.a"], "then the drained one stops");
    }

    #[test]
    fn an_app_held_by_its_plan_neither_starts_nor_stops_instances() {
        use pacer_crd::DeploymentSpec;
        use pacer_crd::deployment::DeploymentAction;
        let mut app = web(1, "v2");
        app.spec.dependencies = vec!["/db".into()];
        let old = web(1, "v1");
        let tasks = [task(&old, "o", TaskState::Running, 100)];
        let step_of = |app_id: &str| {
            let spec = DeploymentSpec {
                app_id: app_id.into(),
                app_generation: 1,
                action: DeploymentAction::RestartApplication,
                plan: Some("p1".into()),
            };
            Arc::new(Deployment::new(app_id, spec))
        };
        let deployments = [step_of("web"), step_of("db")];
        let view = View {
            app: &app,
            tasks: &tasks,
            deployments: &deployments,
            drained: &|_| false,
            now: now(),
        };
        let step = converge(decide(&view));
        assert_eq!((step.place, step.kill.len()), (0, 0));
        assert!(
            step.status
                .message
                .unwrap()
                .contains("waiting for dependency /db")
        );
        // Its own deployment not cached yet, moments after the change: it waits for it.
        let mut changed = app.clone();
        changed.metadata.generation = Some(2);
        let stamp = pacer_runtime::timestamp(now() - Duration::from_secs(1));
        changed.metadata.annotations = Some([(VERSION_ANNOTATION.to_string(), stamp)].into());
        let view = View {
            app: &changed,
            deployments: &[],
            ..view
        };
        assert_eq!(decide(&view), Decision::AwaitDeployment);
    }

    #[test]
    fn what_no_node_fits_stays_pending_with_the_reasons() {
        let plan = Plan {
            unplaced: 2,
            ..Plan::default()
        };
        let status = after_placement(AppStatus::default(), None, &plan, 1, || NOW.into());
        assert_eq!(status.tasks_pending, 3, "unplaced and lost to a race");
        assert!(
            status
                .message
                .unwrap()
                .starts_with("2 instance(s) pending: no node fits")
        );
        let placed = after_placement(AppStatus::default(), None, &Plan::default(), 0, || {
            NOW.into()
        });
        assert_eq!((placed.tasks_pending, placed.message), (0, None));
    }
}
