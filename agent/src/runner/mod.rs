//! One runner per task: start it, report its status, stop it when asked, clean up when
//! deleted. `decide` says what to do next from what was observed; `TaskRun` does it.

mod decision;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use pacer_crd::{Task, TaskStatus};
use pacer_runtime::{Api, Backoff, now};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::driver::{Driver, Drivers, Handle};
use crate::health::Update;
use crate::recovery;

pub use decision::{Decision, Known, Observed, decide};

/// What a runner needs from its agent.
#[derive(Clone)]
pub struct Ctx {
    pub tasks: Api<Task>,
    pub drivers: Drivers,
    pub hostname: String,
    /// Status writes in flight, for the whole process (`status_writes`).
    pub writes: Arc<tokio::sync::Semaphore>,
    /// The client of every task's health and readiness checks (`health::check_client`).
    pub checks: reqwest::Client,
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

/// The agent's handle on a running runner; the runner holds a copy.
#[derive(Clone)]
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
        let span = tracing::info_span!("task", node = %task.spec.node, task = %task.metadata.name.as_deref().unwrap_or_default());
        let run = TaskRun::new(task, &ctx, runner.clone());
        tokio::spawn(tracing::Instrument::instrument(run.run(), span));
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

/// One task's life on this node: what its runner was given and what it started.
struct TaskRun {
    task: Task,
    host: String,
    checks: reqwest::Client,
    runner: Runner,
    report: Reporter,
    /// Set once the task runs.
    running: Option<Running>,
}

/// A running task: its handle, its exit to come, what its checks say.
struct Running {
    handle: Handle,
    exit: BoxFuture<'static, Option<i64>>,
    updates: mpsc::Receiver<Update>,
    stop_checks: CancellationToken,
}

impl TaskRun {
    fn new(task: Task, ctx: &Ctx, runner: Runner) -> TaskRun {
        let report = Reporter {
            known: task.clone(),
            tasks: ctx.tasks.clone(),
            status: task.status.clone().unwrap_or_default(),
            deleted: runner.deleted.clone(),
            writes: ctx.writes.clone(),
        };
        TaskRun {
            task,
            host: ctx.hostname.clone(),
            checks: ctx.checks.clone(),
            runner,
            report,
            running: None,
        }
    }

    /// Observes, decides, acts, until the task's record is gone.
    async fn run(mut self) {
        let handle = recovery::reattach(self.runner.driver.as_ref(), &self.task).await;
        let stop_asked = self.runner.kill.is_cancelled() || self.runner.deleted.is_cancelled();
        let mut observed = Observed::Found { handle, stop_asked };
        loop {
            let now = now();
            let known = Known {
                status: &self.report.status,
                host: &self.host,
                now: &now,
            };
            match self.act(decide(&known, observed)).await {
                Some(next) => observed = next,
                None => return,
            }
        }
    }

    /// Carries `decision` out; what was observed next, or None when the runner is done.
    async fn act(&mut self, decision: Decision) -> Option<Observed> {
        match decision {
            Decision::Start { staging } => Some(Observed::Started(self.start(staging).await)),
            Decision::Run { handle, status } => {
                *self.runner.handle.lock().await = Some(handle.clone());
                self.report(status).await;
                self.running = Some(self.watch(handle));
                Some(self.observe().await)
            }
            Decision::Report(status) => {
                self.report(status).await;
                Some(self.observe().await)
            }
            Decision::Kill { killing, message } => {
                self.report.status = killing;
                let code = self.stop().await;
                Some(Observed::Stopped { code, message })
            }
            Decision::End(status) => {
                self.report(status).await;
                self.clean_up().await;
                None
            }
            Decision::GiveUp => {
                self.clean_up().await;
                None
            }
        }
    }

    async fn report(&mut self, status: TaskStatus) {
        self.report.status = status;
        self.report.send().await;
    }

    async fn start(&mut self, staging: TaskStatus) -> Result<Handle, String> {
        self.report.status = staging;
        let starting = self.runner.driver.start(&self.task, &self.host);
        shown_if_slow(starting, &mut self.report)
            .await
            .map_err(|e| {
                tracing::info!(error = %e, "task failed to start");
                e.to_string()
            })
    }

    /// Starts the task's checks and the wait for its end.
    fn watch(&self, handle: Handle) -> Running {
        let (updates, received) = mpsc::channel(16);
        let stop_checks = CancellationToken::new();
        let app = &self.task.spec.app;
        if !app.health_checks.is_empty() {
            tokio::spawn(crate::health::run(
                self.task.clone(),
                handle.clone(),
                self.runner.driver.clone(),
                self.checks.clone(),
                updates.clone(),
                stop_checks.clone(),
            ));
        }
        if !app.readiness_checks.is_empty() {
            tokio::spawn(crate::readiness::run(
                self.task.clone(),
                self.checks.clone(),
                updates,
                stop_checks.clone(),
            ));
        }
        let (driver, waited) = (self.runner.driver.clone(), handle.clone());
        Running {
            handle,
            exit: Box::pin(async move { driver.wait(&waited).await.ok() }),
            updates: received,
            stop_checks,
        }
    }

    /// The next thing that happens to the running task.
    async fn observe(&mut self) -> Observed {
        let Runner {
            kill,
            deleted,
            resync,
            ..
        } = &self.runner;
        let Some(running) = self.running.as_mut() else {
            deleted.cancelled().await;
            return Observed::Deleted;
        };
        tokio::select! {
            code = &mut running.exit => Observed::Exited(code),
            _ = kill.cancelled() => Observed::KillAsked,
            Some(update) = running.updates.recv() => match update {
                Update::Results(results) => Observed::Health(results),
                Update::Readiness(results) => Observed::Readiness(results),
                Update::Kill(reason) => {
                    tracing::info!(%reason, "killing an unhealthy task");
                    Observed::Unhealthy(reason)
                }
            },
            _ = resync.notified() => Observed::Resync,
            _ = deleted.cancelled() => Observed::Deleted,
        }
    }

    /// Stops the running task (SIGTERM, SIGKILL after the app's grace period); its exit code.
    async fn stop(&mut self) -> Option<i64> {
        let handle = self.running.as_ref()?.handle.clone();
        let (driver, grace) = (self.runner.driver.clone(), self.grace());
        let stopping = async move {
            let _ = driver.stop(&handle, grace).await;
            driver.wait(&handle).await.ok()
        };
        shown_if_slow(stopping, &mut self.report).await
    }

    /// Waits for the record to go, then stops the task and removes what it left.
    async fn clean_up(&mut self) {
        if let Some(running) = &self.running {
            running.stop_checks.cancel();
        }
        self.runner.deleted.cancelled().await;
        let Some(running) = self.running.take() else {
            return;
        };
        let driver = &self.runner.driver;
        let _ = driver.stop(&running.handle, self.grace()).await;
        if let Err(e) = driver.remove(&running.handle).await {
            tracing::info!(error = %e, "removing the task's container failed");
        }
    }

    fn grace(&self) -> Duration {
        pacer_crd::time::secs(self.task.spec.app.task_kill_grace_period_seconds)
    }
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
    async fn send(&mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
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
                    let told = |delay| tracing::info!(error = %e, retry_in = ?delay, "writing task status failed");
                    if !backoff.pause(&self.deleted, told).await {
                        return;
                    }
                }
            }
        }
    }
}

/// The runner as a whole, with the fake driver, writing to a real etcd.
#[cfg(test)]
mod running {
    use pacer_crd::{App, Record, TaskState};
    use pacer_runtime::testing::{TestEtcd, eventually};

    use super::*;
    use crate::driver::Fake;

    const LIMIT: Duration = Duration::from_secs(20);

    struct Setup {
        etcd: TestEtcd,
        fake: Arc<Fake>,
        ctx: Ctx,
    }

    async fn setup(start_delay: Duration) -> Setup {
        let etcd = TestEtcd::start().await;
        let fake = Arc::new(Fake::new(start_delay, 0.0));
        let ctx = Ctx {
            tasks: Api::new(&etcd.client),
            drivers: Drivers::Simulated(fake.clone()),
            hostname: "h1".into(),
            writes: status_writes(),
            checks: crate::health::check_client(),
        };
        Setup { etcd, fake, ctx }
    }

    /// A new task record of an app running `cmd`, as stored.
    async fn stored(s: &Setup, cmd: &str) -> Task {
        let mut app = App::test("web");
        app.spec.cmd = Some(cmd.into());
        let mut task = Task::test(&app, "n1", TaskState::Staging);
        task.status = None;
        s.ctx.tasks.create(&task).await.expect("task created")
    }

    async fn status_of(s: &Setup, task: &Task) -> TaskStatus {
        let stored = s.ctx.tasks.get(&task.key()).await.ok().flatten();
        stored.and_then(|t| t.status).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_slow_start_shows_staging_then_runs_until_killed_and_deleted() {
        let s = setup(Duration::from_secs(3)).await;
        let task = stored(&s, "sleep 1000").await;
        let runner = Runner::spawn(task.clone(), s.ctx.clone());
        eventually(LIMIT, "TASK_STAGING", || async {
            let status = status_of(&s, &task).await;
            status.state == TaskState::Staging && status.staged_at.is_some()
        })
        .await;
        eventually(LIMIT, "TASK_RUNNING", || async {
            status_of(&s, &task).await.state == TaskState::Running
        })
        .await;
        let status = status_of(&s, &task).await;
        assert_eq!(status.host.as_deref(), Some("h1"));
        assert_eq!(
            status.container_id,
            Some(format!(
                "fake-{}",
                task.metadata.name.as_deref().unwrap_or_default()
            ))
        );
        assert!(s.fake.recover(&task).await.is_some());
        runner.kill();
        eventually(LIMIT, "TASK_KILLED", || async {
            status_of(&s, &task).await.state == TaskState::Killed
        })
        .await;
        let status = status_of(&s, &task).await;
        assert_eq!(status.message.as_deref(), Some("killed on request"));
        assert_eq!(status.exit_code, Some(143));
        // Ended, its container stays until its record goes.
        assert!(s.fake.recover(&task).await.is_some());
        s.ctx.tasks.delete(&task.key()).await.expect("deleted");
        runner.deleted();
        eventually(LIMIT, "the container removed", || async {
            s.fake.recover(&task).await.is_none()
        })
        .await;
        drop(s.etcd);
    }

    #[tokio::test]
    async fn a_task_that_exits_ends_with_its_code() {
        let s = setup(Duration::ZERO).await;
        let task = stored(&s, "exit 3").await;
        let _runner = Runner::spawn(task.clone(), s.ctx.clone());
        eventually(LIMIT, "TASK_FAILED", || async {
            status_of(&s, &task).await.state == TaskState::Failed
        })
        .await;
        let status = status_of(&s, &task).await;
        assert_eq!(status.exit_code, Some(3));
        assert_eq!(status.message.as_deref(), Some("exited with code 3"));
        assert!(status.started_at.is_some() && status.finished_at.is_some());
    }

    #[tokio::test]
    async fn a_task_an_earlier_agent_started_is_recovered_not_restarted() {
        let s = setup(Duration::ZERO).await;
        let task = stored(&s, "sleep 1000").await;
        let handle = s.fake.start(&task, "h1").await.expect("started before");
        let _runner = Runner::spawn(task.clone(), s.ctx.clone());
        eventually(LIMIT, "TASK_RUNNING", || async {
            status_of(&s, &task).await.state == TaskState::Running
        })
        .await;
        let status = status_of(&s, &task).await;
        assert!(status.recovered_at.is_some());
        assert_eq!(status.staged_at, None, "not started again");
        assert_eq!(status.container_id, Some(handle.id));
    }
}
