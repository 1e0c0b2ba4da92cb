//! The job controllers. Jobs: start runs (once when created, or on the cron schedule with the
//! concurrency policy), keep a bounded history. Runs: place one task per attempt through the
//! offers, retry failed attempts with backoff, kill on a deadline or on request.

use std::sync::Arc;
use std::time::Duration;

use pacer_crd::job::{ConcurrencyPolicy, next_run};
use pacer_crd::meta::jiff::Timestamp;
use pacer_crd::{Job, JobRun, JobRunStatus, Record, RunPhase, Task, TaskSpec, TaskState};
use pacer_runtime::Txn;
use pacer_runtime::{Action, Controller, now, timestamp};
use tokio_util::sync::CancellationToken;

use crate::accept::{self, Placed};
use crate::{CONFLICT_RETRY, Cluster};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing job {0} failed")]
    Job(String, #[source] pacer_runtime::Error),
    #[error("writing run {0} failed")]
    Run(String, #[source] pacer_runtime::Error),
}

/// How often a run waiting for room looks at the offers again, besides offer changes.
const PENDING_RECHECK: Duration = Duration::from_secs(5);

pub async fn run(cluster: Cluster, token: CancellationToken) {
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
    let ctx = Arc::new(cluster);
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

fn unix_now() -> i64 {
    Timestamp::now().as_second()
}

fn parse_time(text: Option<&str>) -> Option<i64> {
    text?.parse::<Timestamp>().ok().map(|t| t.as_second())
}

fn at(seconds: i64) -> String {
    Timestamp::from_second(seconds)
        .map(timestamp)
        .unwrap_or_else(|_| now())
}

async fn reconcile_job(job: Arc<Job>, cluster: Arc<Cluster>) -> Result<Action, Error> {
    let name = job.key();
    let err = |e| Error::Job(name.clone(), e);
    let mut runs = cluster.run_cache.store().filter(|r| r.spec.job == name);
    runs.sort_by_key(|r| r.spec.number);
    let active: Vec<&Arc<JobRun>> = runs.iter().filter(|r| !r.phase().is_finished()).collect();

    let mut status = job.status.clone().unwrap_or_default();
    status.active = active.iter().map(|r| r.key()).collect();
    status.succeeded = count(&runs, RunPhase::Succeeded);
    status.failed = count(&runs, RunPhase::Failed) + count(&runs, RunPhase::Killed);
    let mut start: Option<&str> = None;
    let mut requeue = None;
    let mut replace: Vec<&Arc<JobRun>> = Vec::new();
    match &job.spec.schedule {
        None => {
            if status.runs_started == 0 {
                start = Some("create");
            }
        }
        Some(schedule) => {
            let now = unix_now();
            let created = job
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or(now);
            let base = parse_time(status.last_schedule_time.as_deref()).unwrap_or(created);
            if let Some(mut due) = schedule.next_after(base).filter(|t| *t <= now) {
                // Only the latest missed start counts: no flood after downtime.
                for _ in 0..10_000 {
                    match schedule.next_after(due) {
                        Some(n) if n <= now => due = n,
                        _ => break,
                    }
                }
                status.last_schedule_time = Some(at(due));
                let late = (now - due) as f64;
                let missed = schedule.starting_deadline_seconds.is_some_and(|d| late > d);
                let busy = !active.is_empty();
                match schedule.concurrency_policy {
                    _ if missed => skip(&mut status, due),
                    ConcurrencyPolicy::Forbid if busy => skip(&mut status, due),
                    ConcurrencyPolicy::Replace if busy => {
                        replace = active.clone();
                        start = Some("schedule");
                    }
                    _ => start = Some("schedule"),
                }
            }
            let from = parse_time(status.last_schedule_time.as_deref()).unwrap_or(base);
            if let Some(next) = schedule.next_after(from.max(now - 1)) {
                status.next_run_at = Some(at(next));
                requeue = Some(
                    Duration::from_secs((next - now).max(0) as u64) + Duration::from_millis(50),
                );
            }
        }
    }
    for run in replace {
        kill_run(&cluster, run).await?;
    }
    let mut next = (*job).clone();
    next.status = Some(status);
    let mut txn = Txn::new();
    txn.unchanged(&cluster.jobs, &job);
    if let Some(trigger) = start {
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
    prune(&cluster, &job, &runs).await?;
    Ok(requeue
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

async fn reconcile_run(run: Arc<JobRun>, cluster: Arc<Cluster>) -> Result<Action, Error> {
    let name = run.key();
    let err = |e| Error::Run(name.clone(), e);
    if run.phase().is_finished() {
        return Ok(Action::await_change());
    }
    let barrier = format!("run/{name}");
    if !cluster
        .placements
        .seen(&barrier, cluster.task_cache.store().revision())
    {
        return Ok(Action::requeue(CONFLICT_RETRY));
    }
    let tasks = cluster
        .task_cache
        .store()
        .filter(|t| t.spec.run.as_deref() == Some(name.as_str()));
    let live: Vec<&Arc<Task>> = tasks.iter().filter(|t| !t.state().is_terminal()).collect();
    let mut status = run.status.clone().unwrap_or_default();
    let latest = status
        .task
        .as_ref()
        .and_then(|id| tasks.iter().find(|t| t.metadata.name.as_ref() == Some(id)));
    let spec = &run.spec.template;
    let mut action = Action::await_change();

    if run.spec.kill {
        for task in &live {
            kill_task(&cluster, task).await?;
        }
        if live.is_empty() {
            finish(&mut status, RunPhase::Killed, "killed on request".into());
        }
    } else if let Some(task) = latest.filter(|t| !t.state().is_terminal()) {
        let task_status = task.status.clone().unwrap_or_default();
        status.node = Some(task.spec.node.clone());
        if task.state() == TaskState::Running {
            status.phase = RunPhase::Running;
            status.started_at = status.started_at.or(task_status.started_at.clone());
        }
        if let Some(deadline) = spec.active_deadline_seconds {
            let started = parse_time(task_status.started_at.as_deref());
            if let Some(started) = started {
                let left = started as f64 + deadline - unix_now() as f64;
                if left <= 0.0 {
                    status.message = Some(format!("attempt ran longer than {deadline}s"));
                    kill_task(&cluster, task).await?;
                } else {
                    action = Action::requeue(Duration::from_secs_f64(left));
                }
            }
        }
    } else {
        let ended = latest.map(|t| (t.state(), t.status.clone().unwrap_or_default()));
        match ended {
            Some((TaskState::Finished, s)) if s.exit_code.unwrap_or(0) == 0 => {
                status.exit_code = Some(0);
                finish(&mut status, RunPhase::Succeeded, "succeeded".into());
            }
            Some((state, s)) if status.attempts > spec.max_retries => {
                status.exit_code = s.exit_code;
                let why = s.message.unwrap_or_else(|| state.as_str().to_string());
                let message = format!("failed after {} attempt(s): {why}", status.attempts);
                finish(&mut status, RunPhase::Failed, message);
            }
            Some((_, s)) if status.retry_at.is_none() => {
                status.exit_code = s.exit_code;
                let delay = spec.retry_delay(status.attempts);
                status.retry_at = Some(at(unix_now() + delay.as_secs() as i64));
                status.message = Some(format!(
                    "attempt {} failed ({}); retrying in {}s",
                    status.attempts,
                    s.message.unwrap_or_default(),
                    delay.as_secs()
                ));
                action = Action::requeue(delay);
            }
            _ => {
                let wait = parse_time(status.retry_at.as_deref())
                    .map(|t| t - unix_now())
                    .filter(|left| *left > 0);
                if let Some(left) = wait {
                    action = Action::requeue(Duration::from_secs(left as u64));
                } else {
                    return place_attempt(&run, status, &cluster).await.map_err(err);
                }
            }
        }
    }
    if Some(&status) != run.status.as_ref() {
        let mut next = (*run).clone();
        next.status = Some(status);
        match cluster.runs.replace(&next).await {
            Ok(_) => {}
            Err(e) if e.is_conflict() || e.is_not_found() => {
                return Ok(Action::requeue(CONFLICT_RETRY));
            }
            Err(e) => return Err(err(e)),
        }
    }
    Ok(action)
}

fn finish(status: &mut JobRunStatus, phase: RunPhase, message: String) {
    status.phase = phase;
    status.message = Some(message);
    status.finished_at = Some(now());
    status.retry_at = None;
}

async fn kill_task(cluster: &Cluster, task: &Task) -> Result<(), Error> {
    cluster
        .kill_task(task)
        .await
        .map_err(|e| Error::Run(task.key(), e))
}

/// Places the next attempt's task, writing the run's status in the same transaction so that
/// an attempt is never placed twice.
async fn place_attempt(
    run: &JobRun,
    mut status: JobRunStatus,
    cluster: &Cluster,
) -> Result<Action, pacer_runtime::Error> {
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
    let build = |a: &crate::placement::Assignment| {
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
        let mut task = Task::new(&task_id, spec);
        task.metadata.labels = Some(
            [
                ("pacer.io/job".to_string(), run.spec.job.clone()),
                ("pacer.io/run".to_string(), name.clone()),
            ]
            .into(),
        );
        pacer_runtime::api::prepare_new(&mut task);
        task
    };
    let mut owner = Txn::new();
    owner.replace(&cluster.runs, &next)?;
    match accept::accept(cluster, template, &[], 1, build, owner).await? {
        Placed::Conflict => Ok(Action::requeue(CONFLICT_RETRY)),
        Placed::Done { plan, revision, .. } if plan.unplaced == 0 => {
            cluster.placements.record(&format!("run/{name}"), revision);
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
