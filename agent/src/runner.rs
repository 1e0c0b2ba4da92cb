//! One runner per task: start it, report its status, stop it when asked, clean up when deleted.

use std::sync::Arc;
use std::time::Duration;

use pacer_crd::{Task, TaskState, TaskStatus};
use pacer_runtime::{Api, now};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::driver::{Driver, Drivers, Handle};
use crate::health::Update;

/// What a runner needs from its agent.
#[derive(Clone)]
pub struct Ctx {
    pub tasks: Api<Task>,
    pub drivers: Drivers,
    pub hostname: String,
    /// Status writes in flight, for the whole process (`status_writes`).
    pub writes: Arc<tokio::sync::Semaphore>,
}

/// Status writes one agent process has in flight at most. A node starting tasks writes far
/// fewer; the limit is for a burst (5,000 simulated nodes resuming at once wrote 50,000
/// statuses together: requests timed out in the queue, their cancellations closed the
/// connection, etcd refused with "too many requests"). The rest wait their turn, and a
/// request's timeout starts only when it is sent.
const STATUS_WRITES: usize = 64;

pub fn status_writes() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(STATUS_WRITES))
}

/// The agent's handle on a running runner.
pub struct Runner {
    kill: CancellationToken,
    deleted: CancellationToken,
    /// Asks the runner to write its status again (the record says otherwise, e.g. after the
    /// node was unreachable for a while).
    resync: Arc<tokio::sync::Notify>,
    pub handle: Arc<Mutex<Option<Handle>>>,
    pub driver: Arc<dyn Driver>,
}

impl Runner {
    pub fn spawn(task: Task, ctx: Ctx) -> Runner {
        let runner = Runner {
            kill: CancellationToken::new(),
            deleted: CancellationToken::new(),
            resync: Arc::default(),
            handle: Arc::default(),
            driver: ctx.drivers.for_task(&task),
        };
        if task.spec.kill {
            runner.kill.cancel();
        }
        let (kill, deleted, handle, driver) = (
            runner.kill.clone(),
            runner.deleted.clone(),
            runner.handle.clone(),
            runner.driver.clone(),
        );
        let resync = runner.resync.clone();
        let span = tracing::info_span!("task", node = %task.spec.node, task = %task.metadata.name.as_deref().unwrap_or_default());
        tokio::spawn(tracing::Instrument::instrument(
            run(task, ctx, driver, handle, kill, deleted, resync),
            span,
        ));
        runner
    }

    /// The record's status is not what this runner last reported: report again.
    pub fn resync(&self) {
        self.resync.notify_one();
    }

    /// The controller asked for the task to stop.
    pub fn kill(&self) {
        self.kill.cancel();
    }

    /// The task record is gone: stop the task if it runs and remove what it left.
    pub fn deleted(&self) {
        self.deleted.cancel();
    }
}

async fn run(
    task: Task,
    ctx: Ctx,
    driver: Arc<dyn Driver>,
    slot: Arc<Mutex<Option<Handle>>>,
    kill: CancellationToken,
    deleted: CancellationToken,
    resync: Arc<tokio::sync::Notify>,
) {
    let mut report = Reporter {
        known: task.clone(),
        tasks: ctx.tasks.clone(),
        status: task.status.clone().unwrap_or_default(),
        deleted: deleted.clone(),
        writes: ctx.writes.clone(),
    };
    let grace = Duration::from_secs_f64(task.spec.app.task_kill_grace_period_seconds.max(0.0));
    let reattached = crate::recovery::reattach(driver.as_ref(), &task).await;
    let handle = match reattached {
        Some(handle) => {
            let status = std::mem::take(&mut report.status);
            report.status = crate::recovery::resumed(status, &handle, &ctx.hostname, &now());
            report.send().await;
            handle
        }
        None => {
            report.status = TaskStatus {
                state: TaskState::Staging,
                host: Some(ctx.hostname.clone()),
                staged_at: Some(now()),
                ..Default::default()
            };
            if kill.is_cancelled() || deleted.is_cancelled() {
                report
                    .end(TaskState::Killed, None, "killed before it started")
                    .await;
                return;
            }
            // A quick start goes straight to TASK_RUNNING (one write fewer per task); a slow
            // one (an image being pulled) shows TASK_STAGING meanwhile.
            match shown_if_slow(driver.start(&task, &ctx.hostname), &mut report).await {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::info!(error = %e, "task failed to start");
                    report.end(TaskState::Failed, None, &e.to_string()).await;
                    deleted.cancelled().await;
                    return;
                }
            }
        }
    };
    *slot.lock().await = Some(handle.clone());
    if report.status.state != TaskState::Running {
        report.status.state = TaskState::Running;
        report.status.container_id = Some(handle.id.clone());
        report.status.pid = handle.pid;
        report.status.started_at = Some(now());
        report.send().await;
    }
    let (updates, mut health) = mpsc::channel(16);
    let stop_checks = CancellationToken::new();
    if !task.spec.app.health_checks.is_empty() {
        tokio::spawn(crate::health::run(
            task.clone(),
            handle.clone(),
            driver.clone(),
            updates.clone(),
            stop_checks.clone(),
        ));
    }
    if !task.spec.app.readiness_checks.is_empty() {
        tokio::spawn(crate::readiness::run(
            task.clone(),
            updates.clone(),
            stop_checks.clone(),
        ));
    }
    let wait = driver.wait(&handle);
    tokio::pin!(wait);
    loop {
        tokio::select! {
            code = &mut wait => {
                let code = code.unwrap_or(-1);
                let state = if code == 0 { TaskState::Finished } else { TaskState::Failed };
                report.end(state, Some(code), &format!("exited with code {code}")).await;
                break;
            }
            _ = kill.cancelled() => {
                stop(&mut report, driver.as_ref(), &handle, grace, "killed on request").await;
                break;
            }
            Some(update) = health.recv() => match update {
                Update::Results(results) => {
                    report.status.health = results;
                    report.send().await;
                }
                Update::Readiness(results) => {
                    report.status.readiness = results;
                    report.send().await;
                }
                Update::Kill(reason) => {
                    tracing::info!(%reason, "killing an unhealthy task");
                    stop(&mut report, driver.as_ref(), &handle, grace, &format!("killed: {reason}")).await;
                    break;
                }
            },
            _ = resync.notified() => report.send().await,
            _ = deleted.cancelled() => break,
        }
    }
    stop_checks.cancel();
    deleted.cancelled().await;
    let _ = driver.stop(&handle, grace).await;
    if let Err(e) = driver.remove(&handle).await {
        tracing::info!(error = %e, "removing the task's container failed");
    }
}

/// Stops a running task: TASK_KILLING, then TASK_KILLED with `message` once it has exited.
async fn stop(
    report: &mut Reporter,
    driver: &dyn Driver,
    handle: &Handle,
    grace: Duration,
    message: &str,
) {
    report.status.state = TaskState::Killing;
    let stopping = async {
        let _ = driver.stop(handle, grace).await;
        driver.wait(handle).await.ok()
    };
    // As with TASK_STAGING: TASK_KILLING is written only if the stop takes a while.
    let code = shown_if_slow(stopping, report).await;
    report.end(TaskState::Killed, code, message).await;
}

/// How long a passing state (TASK_STAGING, TASK_KILLING) must last before it is written.
const SHOW_AFTER: Duration = Duration::from_millis(500);

/// Runs `work`; if it takes longer than `SHOW_AFTER`, the report's passing state is written
/// meanwhile.
async fn shown_if_slow<F: std::future::Future>(work: F, report: &mut Reporter) -> F::Output {
    tokio::pin!(work);
    tokio::select! {
        done = &mut work => done,
        _ = tokio::time::sleep(SHOW_AFTER) => {
            report.send().await;
            work.await
        }
    }
}

/// Writes a task's status, retrying until it is stored or the task record is gone.
struct Reporter {
    /// The record as last read or written here: a status write compares against it and needs
    /// no read while nobody else changed the record.
    known: Task,
    tasks: Api<Task>,
    status: TaskStatus,
    deleted: CancellationToken,
    writes: Arc<tokio::sync::Semaphore>,
}

impl Reporter {
    async fn end(&mut self, state: TaskState, exit_code: Option<i64>, message: &str) {
        self.status.state = state;
        self.status.exit_code = exit_code;
        self.status.message = Some(message.to_string());
        self.status.finished_at = Some(now());
        self.send().await;
    }

    async fn send(&mut self) {
        let mut backoff =
            pacer_runtime::backoff(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let written = async {
                let _permit = self.writes.acquire().await;
                self.tasks
                    .update_status_of(&self.known, self.status.clone())
                    .await
            };
            let written = tokio::select! {
                _ = self.deleted.cancelled() => return,
                w = written => w,
            };
            match written {
                Ok(stored) => {
                    self.known = stored;
                    return;
                }
                Err(e) if e.is_not_found() => return,
                Err(e) => {
                    let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                    tracing::info!(error = %e, retry_in = ?delay, "writing task status failed");
                    tokio::select! {
                        _ = self.deleted.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}
