//! The job controllers. Jobs: start runs (once when created, or on the cron schedule with the
//! concurrency policy), keep a bounded history. Runs: place one task per attempt through the
//! offers, retry failed attempts with backoff, kill on a deadline or on request.

use std::sync::Arc;
use std::time::Duration;

use pacer_crd::job::{ConcurrencyPolicy, next_run};
use pacer_crd::meta::jiff::Timestamp;
use pacer_crd::{
    Job, JobRun, JobRunStatus, JobStatus, Record, RunPhase, Task, TaskSpec, TaskState,
};
use pacer_runtime::Txn;
use pacer_runtime::{Action, Controller, now, timestamp};
use tokio_util::sync::CancellationToken;

use crate::accept::{Placed, Placer, Request};
use crate::{CONFLICT_RETRY, Cluster, OwnWrites};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing job {0} failed")]
    Job(String, #[source] pacer_runtime::Error),
    #[error("writing run {0} failed")]
    Run(String, #[source] pacer_runtime::Error),
}

/// How often a run waiting for room looks at the offers again, besides offer changes.
const PENDING_RECHECK: Duration = Duration::from_secs(5);

/// The job controllers' context: the shared caches, the placer they share with the apps,
/// and each run's last placement until the task cache has it.
pub struct Context {
    pub cluster: Cluster,
    pub placer: Placer,
    placements: OwnWrites,
}

pub async fn run(cluster: Cluster, placer: Placer, token: CancellationToken) {
    let jobs = Controller::new(&cluster.job_cache, token.clone())
        .watches(&cluster.run_cache, |r: &JobRun| vec![r.spec.job.clone()]);
    let pending = cluster.run_cache.store();
    let runs = Controller::new(&cluster.run_cache, token)
        .watches(&cluster.task_cache, |t: &Task| {
            t.spec.run.iter().cloned().collect()
        })
        .watches(&cluster.offer_cache, move |_: &pacer_crd::Offer| {
            pending
                .filter(|r| r.phase() == RunPhase::Pending)
                .iter()
                .map(|r| r.key())
                .collect()
        });
    let ctx = Arc::new(Context {
        cluster,
        placer,
        placements: OwnWrites::default(),
    });
    tokio::join!(
        jobs.run(
            reconcile_job,
            |_, _, _| Action::requeue(Duration::from_secs(1)),
            ctx.clone()
        ),
        runs.run(
            reconcile_run,
            |_, _, _| Action::requeue(Duration::from_secs(1)),
            ctx
        ),
    );
}

fn parse_time(text: Option<&str>) -> Option<i64> {
    pacer_crd::time::parse(text).map(|t| t.as_second())
}

fn at(seconds: i64) -> String {
    Timestamp::from_second(seconds)
        .map(timestamp)
        .unwrap_or_else(|_| now())
}

/// What a job does next: its status, a run to start (and why), runs to replace, when to look
/// again (its next scheduled start).
#[derive(Debug, PartialEq)]
pub struct JobStep {
    pub status: JobStatus,
    pub start: Option<&'static str>,
    pub replace: Vec<Arc<JobRun>>,
    pub recheck: Option<Duration>,
}

/// The next step of a job, from its runs (sorted by number) at `now`: a job without a schedule
/// starts one run when created; a scheduled one starts at each due time by its concurrency
/// policy (only the latest missed start counts: no flood after downtime).
pub fn job_step(job: &Job, runs: &[Arc<JobRun>], now: i64) -> JobStep {
    let active: Vec<Arc<JobRun>> = runs
        .iter()
        .filter(|r| !r.phase().is_finished())
        .cloned()
        .collect();
    let mut status = job.status.clone().unwrap_or_default();
    status.active = active.iter().map(|r| r.key()).collect();
    status.succeeded = count(runs, RunPhase::Succeeded);
    status.failed = count(runs, RunPhase::Failed) + count(runs, RunPhase::Killed);
    let mut step = JobStep {
        start: None,
        replace: Vec::new(),
        recheck: None,
        status,
    };
    let Some(schedule) = &job.spec.schedule else {
        if step.status.runs_started == 0 {
            step.start = Some("create");
        }
        return step;
    };
    let created = job
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(now);
    let base = parse_time(step.status.last_schedule_time.as_deref()).unwrap_or(created);
    if let Some(due) = schedule.next_after(base).filter(|t| *t <= now) {
        let due = latest_due(schedule, due, now);
        step.status.last_schedule_time = Some(at(due));
        let late = (now - due) as f64;
        let missed = schedule.starting_deadline_seconds.is_some_and(|d| late > d);
        match schedule.concurrency_policy {
            _ if missed => skip(&mut step.status, due),
            ConcurrencyPolicy::Forbid if !active.is_empty() => skip(&mut step.status, due),
            ConcurrencyPolicy::Replace if !active.is_empty() => {
                step.replace = active;
                step.start = Some("schedule");
            }
            _ => step.start = Some("schedule"),
        }
    }
    let from = parse_time(step.status.last_schedule_time.as_deref()).unwrap_or(base);
    if let Some(next) = schedule.next_after(from.max(now - 1)) {
        step.status.next_run_at = Some(at(next));
        let wait = Duration::from_secs((next - now).max(0) as u64);
        step.recheck = Some(wait + Duration::from_millis(50));
    }
    step
}

/// The latest scheduled time at or before `now`, from a first due one.
fn latest_due(schedule: &pacer_crd::job::Schedule, mut due: i64, now: i64) -> i64 {
    for _ in 0..10_000 {
        match schedule.next_after(due) {
            Some(n) if n <= now => due = n,
            _ => break,
        }
    }
    due
}

async fn reconcile_job(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let cluster = &ctx.cluster;
    let name = job.key();
    let err = |e| Error::Job(name.clone(), e);
    let mut runs = cluster.run_cache.store().filter(|r| r.spec.job == name);
    runs.sort_by_key(|r| r.spec.number);
    let step = job_step(&job, &runs, Timestamp::now().as_second());
    for run in &step.replace {
        kill_run(cluster, run).await?;
    }
    let mut next = (*job).clone();
    next.status = Some(step.status);
    let mut txn = Txn::new();
    txn.unchanged(&cluster.jobs, &job);
    if let Some(trigger) = step.start {
        let (updated, mut run) = next_run(&next, trigger);
        pacer_runtime::api::prepare_new(&mut run);
        txn.create(&cluster.runs, &run).map_err(err)?;
        next = updated;
    }
    if next != *job {
        txn.put(&cluster.jobs, &next).map_err(err)?;
        match cluster.jobs.client().commit(txn).await {
            Ok(_) => {}
            Err(e) if e.is_conflict() => return Ok(Action::requeue(CONFLICT_RETRY)),
            Err(e) => return Err(err(e)),
        }
    }
    prune(cluster, &job, &runs).await?;
    Ok(step
        .recheck
        .map(Action::requeue)
        .unwrap_or_else(Action::await_change))
}

fn count(runs: &[Arc<JobRun>], phase: RunPhase) -> u64 {
    runs.iter().filter(|r| r.phase() == phase).count() as u64
}

fn skip(status: &mut pacer_crd::JobStatus, due: i64) {
    status.skipped += 1;
    status.last_skipped_at = Some(at(due));
}

/// Keeps the newest `historyLimit` finished runs; older ones go, their tasks with them (gc).
async fn prune(cluster: &Cluster, job: &Job, runs: &[Arc<JobRun>]) -> Result<(), Error> {
    let finished: Vec<&Arc<JobRun>> = runs.iter().filter(|r| r.phase().is_finished()).collect();
    let excess = finished
        .len()
        .saturating_sub(job.spec.history_limit as usize);
    for run in finished.into_iter().take(excess) {
        match cluster.runs.delete_unchanged(run).await {
            Ok(()) => {}
            Err(e) if e.is_conflict() || e.is_not_found() => {}
            Err(e) => return Err(Error::Run(run.key(), e)),
        }
    }
    Ok(())
}

async fn kill_run(cluster: &Cluster, run: &JobRun) -> Result<(), Error> {
    let result = cluster
        .runs
        .modify(&run.key(), |r| !std::mem::replace(&mut r.spec.kill, true))
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(Error::Run(run.key(), e)),
    }
}

/// What a run does next.
#[derive(Debug, PartialEq)]
pub struct RunStep {
    pub status: JobRunStatus,
    /// Tasks to stop (a kill on request, an attempt past its deadline).
    pub kill: Vec<Arc<Task>>,
    /// Place the next attempt (its status is written with it).
    pub place: bool,
    pub recheck: Option<Duration>,
}

/// The next step of a running job run, from its tasks at `now`: kill on request, watch the
/// attempt (and its deadline), or after an attempt ended: succeed, fail after the retries,
/// wait out the retry delay, or place the next attempt.
pub fn run_step(run: &JobRun, tasks: &[Arc<Task>], now: Timestamp) -> RunStep {
    let mut step = RunStep {
        status: run.status.clone().unwrap_or_default(),
        kill: Vec::new(),
        place: false,
        recheck: None,
    };
    let live: Vec<Arc<Task>> = tasks
        .iter()
        .filter(|t| !t.state().is_terminal())
        .cloned()
        .collect();
    let latest = step
        .status
        .task
        .as_ref()
        .and_then(|id| tasks.iter().find(|t| t.metadata.name.as_ref() == Some(id)));
    if run.spec.kill {
        if live.is_empty() {
            finish(
                &mut step.status,
                RunPhase::Killed,
                "killed on request".into(),
                now,
            );
        }
        step.kill = live;
    } else if let Some(task) = latest.filter(|t| !t.state().is_terminal()) {
        attempt_running(run, task, now, &mut step);
    } else {
        attempt_ended(run, latest.map(|t| t.as_ref()), now, &mut step);
    }
    step
}

/// An attempt runs: note where and since when, and stop it past the active deadline.
fn attempt_running(run: &JobRun, task: &Arc<Task>, now: Timestamp, step: &mut RunStep) {
    let status = &mut step.status;
    let task_status = task.status.clone().unwrap_or_default();
    status.node = Some(task.spec.node.clone());
    if task.state() == TaskState::Running {
        status.phase = RunPhase::Running;
        status.started_at = status.started_at.take().or(task_status.started_at.clone());
    }
    let Some(deadline) = run.spec.template.active_deadline_seconds else {
        return;
    };
    let Some(ran) = pacer_crd::time::seconds_since(task_status.started_at.as_deref(), now) else {
        return;
    };
    let left = deadline - ran;
    if left <= 0.0 {
        status.message = Some(format!("attempt ran longer than {deadline}s"));
        step.kill.push(task.clone());
    } else {
        step.recheck = Some(Duration::from_secs_f64(left));
    }
}

/// No attempt runs: the last one (if any) ended; decide what follows.
fn attempt_ended(run: &JobRun, latest: Option<&Task>, now: Timestamp, step: &mut RunStep) {
    let spec = &run.spec.template;
    let status = &mut step.status;
    match latest.map(|t| (t.state(), t.status.clone().unwrap_or_default())) {
        Some((TaskState::Finished, s)) if s.exit_code.unwrap_or(0) == 0 => {
            status.exit_code = Some(0);
            finish(status, RunPhase::Succeeded, "succeeded".into(), now);
        }
        Some((state, s)) if status.attempts > spec.max_retries => {
            status.exit_code = s.exit_code;
            let why = s.message.unwrap_or_else(|| state.as_str().to_string());
            let message = format!("failed after {} attempt(s): {why}", status.attempts);
            finish(status, RunPhase::Failed, message, now);
        }
        Some((_, s)) if status.retry_at.is_none() => {
            status.exit_code = s.exit_code;
            let delay = spec.retry_delay(status.attempts);
            status.retry_at = Some(at(now.as_second() + delay.as_secs() as i64));
            status.message = Some(format!(
                "attempt {} failed ({}); retrying in {}s",
                status.attempts,
                s.message.unwrap_or_default(),
                delay.as_secs()
            ));
            step.recheck = Some(delay);
        }
        _ => match pacer_crd::time::seconds_since(status.retry_at.as_deref(), now) {
            Some(ago) if ago < 0.0 => step.recheck = Some(Duration::from_secs((-ago) as u64)),
            _ => step.place = true,
        },
    }
}

async fn reconcile_run(run: Arc<JobRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    let cluster = &ctx.cluster;
    let name = run.key();
    let err = |e| Error::Run(name.clone(), e);
    if run.phase().is_finished() {
        return Ok(Action::await_change());
    }
    if !ctx
        .placements
        .seen(&name, cluster.task_cache.store().revision())
    {
        return Ok(Action::requeue(CONFLICT_RETRY));
    }
    let tasks = cluster
        .task_cache
        .store()
        .filter(|t| t.spec.run.as_deref() == Some(name.as_str()));
    let step = run_step(&run, &tasks, Timestamp::now());
    for task in &step.kill {
        kill_task(cluster, task).await?;
    }
    if step.place {
        return place_attempt(&ctx, &run, step.status).await.map_err(err);
    }
    if Some(&step.status) != run.status.as_ref() {
        let mut next = (*run).clone();
        next.status = Some(step.status);
        match cluster.runs.replace(&next).await {
            Ok(_) => {}
            Err(e) if e.is_conflict() || e.is_not_found() => {
                return Ok(Action::requeue(CONFLICT_RETRY));
            }
            Err(e) => return Err(err(e)),
        }
    }
    Ok(step
        .recheck
        .map_or_else(Action::await_change, Action::requeue))
}

fn finish(status: &mut JobRunStatus, phase: RunPhase, message: String, now: Timestamp) {
    status.phase = phase;
    status.message = Some(message);
    status.finished_at = Some(timestamp(now));
    status.retry_at = None;
}

async fn kill_task(cluster: &Cluster, task: &Task) -> Result<(), Error> {
    cluster
        .kill_task(task)
        .await
        .map_err(|e| Error::Run(task.key(), e))
}

/// The task of one attempt of `run`, bound where `a` placed it.
fn attempt_task(run: &JobRun, task_id: &str, a: &crate::placement::Assignment) -> Task {
    let name = run.key();
    let template = &run.spec.template.run;
    let spec = TaskSpec {
        app_id: run.spec.job.clone(),
        app_version: name.clone(),
        node: a.node.clone(),
        resources: template.resources(),
        host_ports: a.host_ports.clone(),
        kill: false,
        app: template.clone(),
        run: Some(name.clone()),
    };
    let mut task = Task::new(task_id, spec);
    task.metadata.labels = Some(
        [
            ("pacer.io/job".to_string(), run.spec.job.clone()),
            ("pacer.io/run".to_string(), name),
        ]
        .into(),
    );
    pacer_runtime::api::prepare_new(&mut task);
    task
}

/// Places the next attempt's task, writing the run's status in the same transaction so that
/// an attempt is never placed twice.
async fn place_attempt(
    ctx: &Context,
    run: &JobRun,
    mut status: JobRunStatus,
) -> Result<Action, pacer_runtime::Error> {
    let cluster = &ctx.cluster;
    let name = run.key();
    let attempt = status.attempts + 1;
    let task_id = format!("{name}.{attempt}");
    let template = &run.spec.template.run;
    let before = status.clone();
    status.attempts = attempt;
    status.task = Some(task_id.clone());
    status.retry_at = None;
    status.phase = RunPhase::Pending;
    status.message = Some(format!("attempt {attempt} placed"));
    let mut next = run.clone();
    next.status = Some(status);
    let build = |a: &crate::placement::Assignment| attempt_task(run, &task_id, a);
    let mut owner = Txn::new();
    owner.replace(&cluster.runs, &next)?;
    let request = Request {
        spec: template,
        live: &[],
        missing: 1,
        build,
        owner,
    };
    match ctx.placer.accept(cluster, request).await? {
        Placed::Conflict => Ok(Action::requeue(CONFLICT_RETRY)),
        Placed::Done { plan, revision, .. } if plan.unplaced == 0 => {
            ctx.placements.record(&name, revision);
            Ok(Action::await_change())
        }
        Placed::Done { plan, .. } => {
            let message = format!("waiting for a node: {}", plan.explain());
            if before.message.as_deref() != Some(message.as_str()) {
                let mut waiting = run.clone();
                waiting.status = Some(JobRunStatus {
                    message: Some(message),
                    ..before
                });
                match cluster.runs.replace(&waiting).await {
                    Ok(_) => {}
                    Err(e) if e.is_conflict() || e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(Action::requeue(PENDING_RECHECK))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_crd::meta::Time;

    const NOW: &str = "2026-12-01T10:00:30Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn job(extra: serde_json::Value) -> Job {
        let mut spec = serde_json::json!({"run": {"cmd": "true"}});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let mut job = Job::new("backup", serde_json::from_value(spec).unwrap());
        let created: Timestamp = "2026-12-01T09:00:00Z".parse().unwrap();
        job.metadata.creation_timestamp = Some(Time(created));
        job
    }

    fn active_run(job: &Job) -> Arc<JobRun> {
        let (_, run) = next_run(job, "schedule");
        Arc::new(run)
    }

    fn every_minute(policy: &str) -> Job {
        let mut job = job(serde_json::json!({
            "schedule": {"cron": "* * * * *", "concurrencyPolicy": policy}
        }));
        let status = job.status.get_or_insert_with(Default::default);
        status.last_schedule_time = Some("2026-12-01T09:59:00.000Z".into());
        job
    }

    #[test]
    fn a_job_without_a_schedule_runs_once() {
        let once = job(serde_json::json!({}));
        let step = job_step(&once, &[], now().as_second());
        assert_eq!((step.start, step.recheck), (Some("create"), None));
        let (started, _) = next_run(&once, "create");
        assert_eq!(job_step(&started, &[], now().as_second()).start, None);
    }

    #[test]
    fn a_due_start_follows_the_concurrency_policy() {
        let at = now().as_second();
        // Due at 10:00:00, the next at 10:01:00 (30.05 s away).
        let step = job_step(&every_minute("ALLOW"), &[], at);
        assert_eq!(step.start, Some("schedule"));
        assert_eq!(
            step.status.last_schedule_time.as_deref(),
            Some("2026-12-01T10:00:00.000Z")
        );
        assert_eq!(
            step.status.next_run_at.as_deref(),
            Some("2026-12-01T10:01:00.000Z")
        );
        assert_eq!(step.recheck, Some(Duration::from_millis(30_050)));
        let forbid = every_minute("FORBID");
        let busy = [active_run(&forbid)];
        let step = job_step(&forbid, &busy, at);
        assert_eq!(
            (step.start, step.status.skipped),
            (None, 1),
            "skipped while one runs"
        );
        let replace = every_minute("REPLACE");
        let busy = [active_run(&replace)];
        let step = job_step(&replace, &busy, at);
        assert_eq!(step.start, Some("schedule"));
        assert_eq!(step.replace, busy.to_vec(), "the running one is replaced");
    }

    #[test]
    fn after_downtime_only_the_latest_missed_start_counts_within_its_deadline() {
        let mut late = every_minute("ALLOW");
        late.status.as_mut().unwrap().last_schedule_time = Some("2026-12-01T08:00:00.000Z".into());
        let step = job_step(&late, &[], now().as_second());
        assert_eq!(
            step.status.last_schedule_time.as_deref(),
            Some("2026-12-01T10:00:00.000Z")
        );
        assert_eq!(step.start, Some("schedule"), "one start, not 120");
        late.spec
            .schedule
            .as_mut()
            .unwrap()
            .starting_deadline_seconds = Some(10.0);
        let step = job_step(&late, &[], now().as_second());
        assert_eq!(
            (step.start, step.status.skipped),
            (None, 1),
            "30 s late is past 10 s"
        );
    }

    fn attempt(run: &JobRun, state: TaskState, exit_code: Option<i64>) -> Arc<Task> {
        let app = pacer_crd::App::test("backup");
        let mut task = Task::test(&app, "n1", state);
        task.metadata.name = run.status.as_ref().and_then(|s| s.task.clone());
        task.spec.run = Some(run.key());
        let status = task.status.as_mut().unwrap();
        status.exit_code = exit_code;
        status.started_at = Some("2026-12-01T10:00:00.000Z".into());
        Arc::new(task)
    }

    fn run_with(extra: serde_json::Value, attempts: u32) -> JobRun {
        let (_, mut run) = next_run(&job(extra), "create");
        let status = run.status.get_or_insert_with(Default::default);
        status.attempts = attempts;
        status.task = Some(format!("backup-1.{attempts}"));
        run
    }

    #[test]
    fn a_run_succeeds_or_retries_with_backoff_then_fails() {
        let run = run_with(serde_json::json!({"maxRetries": 1, "backoffSeconds": 5}), 1);
        let ok = run_step(&run, &[attempt(&run, TaskState::Finished, Some(0))], now());
        assert_eq!(ok.status.phase, RunPhase::Succeeded);
        let failed = [attempt(&run, TaskState::Failed, Some(3))];
        let retry = run_step(&run, &failed, now());
        assert_eq!(
            retry.status.retry_at.as_deref(),
            Some("2026-12-01T10:00:35.000Z")
        );
        assert_eq!(
            (retry.recheck, retry.place),
            (Some(Duration::from_secs(5)), false)
        );
        // Waiting out the delay, then the next attempt.
        let mut waiting = run.clone();
        waiting.status = Some(retry.status.clone());
        let early = run_step(&waiting, &failed, now());
        assert_eq!(
            (early.recheck, early.place),
            (Some(Duration::from_secs(5)), false)
        );
        let due = run_step(&waiting, &failed, now() + Duration::from_secs(5));
        assert!(due.place);
        // Past maxRetries: failed, with the last exit code.
        let last = run_with(serde_json::json!({"maxRetries": 1}), 2);
        let step = run_step(&last, &[attempt(&last, TaskState::Failed, Some(3))], now());
        assert_eq!(
            (step.status.phase, step.status.exit_code),
            (RunPhase::Failed, Some(3))
        );
    }

    #[test]
    fn an_attempt_past_its_deadline_is_killed_and_a_killed_run_ends_when_its_task_has() {
        let run = run_with(serde_json::json!({"activeDeadlineSeconds": 60}), 1);
        let running = [attempt(&run, TaskState::Running, None)];
        let step = run_step(&run, &running, now());
        assert_eq!(step.status.phase, RunPhase::Running);
        assert_eq!(
            (step.recheck, step.kill.len()),
            (Some(Duration::from_secs(30)), 0)
        );
        let step = run_step(&run, &running, now() + Duration::from_secs(30));
        assert_eq!(step.kill, running.to_vec());
        assert_eq!(
            step.status.message.as_deref(),
            Some("attempt ran longer than 60s")
        );
        let mut stop = run.clone();
        stop.spec.kill = true;
        assert_eq!(run_step(&stop, &running, now()).kill, running.to_vec());
        let ended = [attempt(&run, TaskState::Killed, None)];
        assert_eq!(
            run_step(&stop, &ended, now()).status.phase,
            RunPhase::Killed
        );
    }

    #[test]
    fn the_first_attempt_is_placed_at_once() {
        let (_, fresh) = next_run(&job(serde_json::json!({})), "create");
        assert!(run_step(&fresh, &[], now()).place);
    }
}
