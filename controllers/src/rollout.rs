//! The rollout, controller side: which tasks a change stops and starts (Marathon's
//! `upgradeStrategy` and `killSelection`), in what order the apps of one plan go (their
//! `dependencies`), and when a deployment has ended. The API side (a change and its
//! Deployment record written together) is `pacer_apiserver::apply`; the record types are
//! `pacer_crd::deployment` and `pacer_crd::plan`.

use std::sync::Arc;
use std::time::Duration;

use pacer_crd::app::DEADLINE_ANNOTATION;
use pacer_crd::deployment::{DeploymentAction, DeploymentPhase};
use pacer_crd::time::Timestamp;
use pacer_crd::{App, Deployment, DeploymentStatus, KillSelection, Task};

// Rolling upgrade arithmetic: how many old tasks to stop and how many new ones to start, so
// that healthy tasks never drop below ceil(n x minimumHealthCapacity) and live tasks never
// exceed floor(n x (1 + maximumOverCapacity)).
/// The bounds of one upgrade of `n` instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min_healthy: usize,
    pub max_live: usize,
}

/// Rounding slack, so that 4 x 0.5 is exactly 2.
const EPSILON: f64 = 1e-9;

impl Bounds {
    pub fn new(n: usize, minimum_health_capacity: f64, maximum_over_capacity: f64) -> Bounds {
        let min_healthy = ((n as f64 * minimum_health_capacity) - EPSILON)
            .ceil()
            .max(0.0) as usize;
        let max_live = ((n as f64 * (1.0 + maximum_over_capacity)) + EPSILON).floor() as usize;
        // Marathon's special case: with no room at all (1.0 / 0.0), one extra instance is
        // allowed, or the upgrade could never start.
        let max_live = if n > 0 && min_healthy >= max_live {
            min_healthy + 1
        } else {
            max_live.max(min_healthy)
        };
        Bounds {
            min_healthy,
            max_live,
        }
    }
}

/// Counts the step looks at. `live_*` include tasks being stopped (they still run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Old-version tasks not asked to stop.
    pub old: usize,
    pub old_healthy: usize,
    /// New-version tasks not asked to stop.
    pub new: usize,
    pub new_healthy: usize,
    /// Tasks asked to stop that still run.
    pub stopping: usize,
}

/// What to do now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// Old tasks to stop: unhealthy ones first, then healthy ones the minimum can spare.
    pub stop_old: usize,
    pub start_new: usize,
}

/// One step towards `n` new tasks and no old ones, within `bounds`.
pub fn step(n: usize, bounds: Bounds, c: Counts) -> Step {
    let old_unhealthy = c.old - c.old_healthy;
    let healthy = c.old_healthy + c.new_healthy;
    // Old tasks go only as far as healthy ones can spare, and never below what is still needed.
    let stop_healthy = healthy
        .saturating_sub(bounds.min_healthy)
        .min(c.old_healthy);
    let stop_old = old_unhealthy + stop_healthy;
    let live = c.old + c.new + c.stopping;
    let room = bounds.max_live.saturating_sub(live);
    let start_new = n.saturating_sub(c.new).min(room);
    Step {
        stop_old,
        start_new,
    }
}

/// What an app's definition asks of its tasks now.
#[derive(Debug, PartialEq)]
pub struct Changes {
    /// Tasks of the current version on nodes not drained and not asked to stop.
    pub current: Vec<Arc<Task>>,
    /// Tasks to stop now.
    pub doomed: Vec<Arc<Task>>,
    /// Instances to start now.
    pub missing: usize,
    /// Where an upgrade stands (`None` when the app is not upgrading).
    pub progress: Option<String>,
}

/// The next step for an app's tasks: a scale (start what is missing, stop the surplus by
/// killSelection), or a step of a rolling upgrade within its upgradeStrategy. Tasks on a
/// drained node move like an upgrade's old ones: a new instance elsewhere first, then the old
/// one stops.
pub fn changes(app: &App, tasks: &[Arc<Task>], drained: &dyn Fn(&str) -> bool) -> Changes {
    let version = app.version();
    let wanted = usize::try_from(app.spec.instances).unwrap_or(0);
    let killing = app.killing();
    let (stopping, active): (Vec<&Arc<Task>>, Vec<&Arc<Task>>) = tasks.iter().partition(|t| {
        t.spec.kill || killing.contains(&t.metadata.name.as_deref().unwrap_or_default())
    });
    let (current, old): (Vec<&Arc<Task>>, Vec<&Arc<Task>>) = active
        .into_iter()
        .partition(|t| t.spec.app_version == version && !drained(&t.spec.node));
    // An upgrade lasts while any task of another version runs, even one already stopping.
    let upgrading = !old.is_empty() || tasks.iter().any(|t| t.spec.app_version != version);
    let (doomed, missing) = if upgrading {
        rolling_step(app, wanted, &current, &old, stopping.len())
    } else {
        (
            pick_to_kill(&current, wanted, app.spec.kill_selection),
            wanted.saturating_sub(current.len()),
        )
    };
    Changes {
        progress: upgrading.then(|| upgrade_progress(&current, &old, wanted)),
        doomed: doomed.into_iter().cloned().collect(),
        current: current.into_iter().cloned().collect(),
        missing,
    }
}

/// One step of a rolling upgrade: which old tasks to stop (unhealthy first, then oldest) and
/// how many new ones to start, within the app's upgradeStrategy.
pub(crate) fn rolling_step<'a>(
    app: &App,
    wanted: usize,
    current: &[&'a Arc<Task>],
    old: &[&'a Arc<Task>],
    stopping: usize,
) -> (Vec<&'a Arc<Task>>, usize) {
    let strategy = &app.spec.upgrade_strategy;
    let bounds = Bounds::new(
        wanted,
        strategy.minimum_health_capacity,
        strategy.maximum_over_capacity,
    );
    let counts = Counts {
        old: old.len(),
        old_healthy: old.iter().filter(|t| t.is_healthy()).count(),
        new: current.len(),
        // A new instance counts once it is ready too: old ones stop only for ready new ones.
        new_healthy: current.iter().filter(|t| t.is_ready()).count(),
        stopping,
    };
    let step = step(wanted, bounds, counts);
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

/// How long after an app's change its deployment may still be missing from the cache.
const CACHE_LAG: Duration = Duration::from_secs(10);

/// Whether an app with dependencies changed moments ago and the deployment written with the
/// change is not in the deployment cache yet (each kind has a cache of its own): without it,
/// the app could not tell whether a plan orders it after its dependencies.
pub fn awaits_its_deployment(app: &App, deployments: &[Arc<Deployment>], now: Timestamp) -> bool {
    if app.spec.dependencies.is_empty() {
        return false;
    }
    let name = app.metadata.name.as_deref().unwrap_or_default();
    let generation = app.metadata.generation.unwrap_or(1);
    let known = deployments
        .iter()
        .any(|d| d.spec.app_id == name && d.spec.app_generation >= generation);
    let ago = pacer_crd::time::seconds_since(Some(&app.last_change()), now);
    !known && ago.is_some_and(|ago| ago < CACHE_LAG.as_secs_f64())
}

/// Where a rolling upgrade stands, and why it waits if it does.
pub(crate) fn upgrade_progress(
    current: &[&Arc<Task>],
    old: &[&Arc<Task>],
    wanted: usize,
) -> String {
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
pub(crate) fn pick_to_kill<'a>(
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
pub(crate) fn age_key(t: &Task) -> (Option<String>, Option<String>, String) {
    let created = t
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|ts| ts.0.to_string());
    let staged = t.status.as_ref().and_then(|s| s.staged_at.clone());
    (created, staged, t.metadata.name.clone().unwrap_or_default())
}

/// How a running deployment ended, if it has: `None` while it still runs.
///
/// A deployment of an app that is gone ends with it: the stop succeeds once the tasks are
/// gone, and any other change (a scale, a start, a restart) was cancelled by the deletion, as
/// Marathon cancels the deployments a forced delete overrides. An app older than the
/// deployment's generation is a cache that has not seen the change yet: it decides nothing.
pub(crate) fn outcome(
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

/// Where a running deployment stands, and when to look again regardless of changes (its
/// deadline). A deployment that has ended says so in its phase.
pub fn deployment_status(
    deployment: &Deployment,
    app: Option<&App>,
    tasks: &[Arc<Task>],
    now: Timestamp,
) -> (DeploymentStatus, Option<Duration>) {
    let why = || app.and_then(|a| a.status.as_ref()?.message.clone());
    let (phase, message, recheck) = match outcome(deployment, app, tasks) {
        Some(phase) => (phase, None, None),
        None => match overdue(deployment, app, now) {
            Some(Ok(overdue)) => (DeploymentPhase::Failed, Some(overdue), None),
            // Still running: say why it waits, and look again at the deadline.
            Some(Err(left)) => (DeploymentPhase::Running, why(), Some(left)),
            None => (DeploymentPhase::Running, why(), None),
        },
    };
    let (healthy, wanted) = progress(app, tasks);
    let status = DeploymentStatus {
        phase,
        message,
        healthy,
        wanted,
    };
    (status, recheck)
}

/// With a deadline (the app's `pacer.io/deployment-deadline-seconds` annotation): `Ok(reason)`
/// once it has passed, `Err(time left)` before; `None` without one.
pub(crate) fn overdue(
    deployment: &Deployment,
    app: Option<&App>,
    now: Timestamp,
) -> Option<Result<String, std::time::Duration>> {
    let deadline: u64 = app?
        .metadata
        .annotations
        .as_ref()?
        .get(DEADLINE_ANNOTATION)?
        .parse()
        .ok()?;
    let created = deployment.metadata.creation_timestamp.as_ref()?.0;
    let age = now.duration_since(created).as_secs().max(0) as u64;
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

/// Healthy and ready instances of the app's current version, and how many are wanted.
pub(crate) fn progress(app: Option<&App>, tasks: &[Arc<Task>]) -> (i64, i64) {
    let Some(app) = app else { return (0, 0) };
    let healthy = tasks
        .iter()
        .filter(|t| t.spec.app_version == app.version() && !t.spec.kill && t.is_ready())
        .count();
    (healthy as i64, app.spec.instances)
}

/// Every wanted instance of the current version runs healthy and ready, and nothing else is
/// left.
pub(crate) fn converged(app: &App, tasks: &[Arc<Task>]) -> bool {
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

    #[test]
    fn bounds_follow_marathon() {
        assert_eq!(
            Bounds::new(4, 1.0, 1.0),
            Bounds {
                min_healthy: 4,
                max_live: 8
            }
        );
        assert_eq!(
            Bounds::new(4, 0.5, 0.5),
            Bounds {
                min_healthy: 2,
                max_live: 6
            }
        );
        assert_eq!(
            Bounds::new(3, 0.5, 0.0),
            Bounds {
                min_healthy: 2,
                max_live: 3
            }
        );
        assert_eq!(
            Bounds::new(4, 1.0, 0.0),
            Bounds {
                min_healthy: 4,
                max_live: 5
            },
            "one extra when nothing is spare"
        );
        assert_eq!(
            Bounds::new(4, 0.0, 0.0),
            Bounds {
                min_healthy: 0,
                max_live: 4
            }
        );
        assert_eq!(
            Bounds::new(1, 0.0, 0.0),
            Bounds {
                min_healthy: 0,
                max_live: 1
            }
        );
        assert_eq!(
            Bounds::new(0, 1.0, 0.0),
            Bounds {
                min_healthy: 0,
                max_live: 0
            }
        );
        assert_eq!(
            Bounds::new(3, 0.34, 0.0),
            Bounds {
                min_healthy: 2,
                max_live: 3
            }
        );
    }

    /// Runs an upgrade of n instances to the end, new tasks becoming healthy at once, and
    /// checks the bounds after every step.
    fn simulate(n: usize, min: f64, max: f64) -> usize {
        let bounds = Bounds::new(n, min, max);
        let mut c = Counts {
            old: n,
            old_healthy: n,
            ..Default::default()
        };
        for round in 1..=4 * n + 4 {
            if c.old == 0 && c.new == n {
                return round;
            }
            let s = step(n, bounds, c);
            // Stopping happens first, then starting; both are observed.
            let stop_unhealthy = s.stop_old.min(c.old - c.old_healthy);
            c.old -= s.stop_old;
            c.old_healthy -= s.stop_old - stop_unhealthy;
            c.stopping += s.stop_old;
            assert!(
                c.old_healthy + c.new_healthy >= bounds.min_healthy.min(n),
                "n={n} {min}/{max}: healthy dropped: {c:?}"
            );
            c.new += s.start_new;
            assert!(
                c.old + c.new + c.stopping <= bounds.max_live,
                "n={n} {min}/{max}: too many live: {c:?}"
            );
            // Stopped tasks end and new tasks pass their checks before the next step.
            c.stopping = 0;
            c.new_healthy = c.new;
        }
        panic!("n={n} {min}/{max}: no progress: {c:?}");
    }

    #[test]
    fn upgrades_finish_within_bounds_for_many_strategies() {
        for n in [0, 1, 2, 3, 4, 5, 10, 17] {
            for min in [0.0, 0.25, 0.5, 0.75, 1.0] {
                for max in [0.0, 0.25, 0.5, 1.0] {
                    simulate(n, min, max);
                }
            }
        }
    }

    #[test]
    fn unhealthy_new_tasks_never_let_old_ones_go_below_the_minimum() {
        let bounds = Bounds::new(4, 1.0, 0.5);
        let c = Counts {
            old: 4,
            old_healthy: 4,
            new: 2,
            new_healthy: 0,
            stopping: 0,
        };
        assert_eq!(
            step(4, bounds, c),
            Step {
                stop_old: 0,
                start_new: 0
            },
            "no healthy to spare, no room"
        );
        let c = Counts {
            old: 4,
            old_healthy: 4,
            new: 2,
            new_healthy: 1,
            stopping: 0,
        };
        assert_eq!(step(4, bounds, c).stop_old, 1);
    }

    #[test]
    fn unhealthy_old_tasks_go_first() {
        let bounds = Bounds::new(4, 1.0, 0.0);
        let c = Counts {
            old: 4,
            old_healthy: 3,
            new: 0,
            new_healthy: 0,
            stopping: 0,
        };
        assert_eq!(step(4, bounds, c).stop_old, 1);
    }
}

#[cfg(test)]
mod ordering_tests {
    use super::*;
    use pacer_crd::DeploymentSpec;

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
    fn tasks_killed_with_scale_are_read_from_the_app_itself() {
        let mut web = App::test("web");
        assert!(web.killing().is_empty());
        web.metadata.annotations = Some(
            [(
                pacer_crd::app::KILLING_ANNOTATION.to_string(),
                "web.1,web.2".to_string(),
            )]
            .into(),
        );
        assert_eq!(web.killing(), vec!["web.1", "web.2"]);
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

#[cfg(test)]
mod outcome_tests {
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
    fn a_deployment_past_its_deadline_fails_with_the_reason_it_waited() {
        use pacer_crd::meta::Time;
        let mut web = app(2, 1);
        web.metadata.annotations =
            Some([(DEADLINE_ANNOTATION.to_string(), "60".to_string())].into());
        web.status = Some(pacer_crd::AppStatus {
            message: Some("1 instance(s) pending: no node fits".into()),
            ..Default::default()
        });
        let created: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let mut d = deployment(DeploymentAction::ScaleApplication, 1);
        d.metadata.creation_timestamp = Some(Time(created));
        let tasks = running(&web, 1);
        let (status, recheck) =
            deployment_status(&d, Some(&web), &tasks, created + Duration::from_secs(20));
        assert_eq!(
            (status.phase, status.healthy, status.wanted),
            (DeploymentPhase::Running, 1, 2)
        );
        assert_eq!(
            status.message.as_deref(),
            Some("1 instance(s) pending: no node fits")
        );
        assert_eq!(
            recheck,
            Some(Duration::from_secs(40)),
            "looked at again at the deadline"
        );
        let (status, recheck) =
            deployment_status(&d, Some(&web), &tasks, created + Duration::from_secs(60));
        assert_eq!((status.phase, recheck), (DeploymentPhase::Failed, None));
        assert_eq!(
            status.message.as_deref(),
            Some("not done within its 60 s deadline: 1 instance(s) pending: no node fits")
        );
        // Done in time: succeeded, whatever the deadline.
        let (status, _) = deployment_status(
            &d,
            Some(&web),
            &running(&web, 2),
            created + Duration::from_secs(90),
        );
        assert_eq!(status.phase, DeploymentPhase::Succeeded);
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
