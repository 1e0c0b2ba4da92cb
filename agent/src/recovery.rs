//! Recovery on agent restart: re-attach to the tasks an earlier agent started, and destroy
//! only what no task wants (Nomad's client: recover handles first, destroy the rest).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pacer_crd::task::task_key;
use pacer_crd::{Task, TaskState, TaskStatus};
use pacer_runtime::Api;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::driver::{Docker, Driver, Drivers, Found, Handle, Process};

/// How often containers no task wants are looked for while the agent runs.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// How old such a container must be to go: one may be created by a start still in flight
/// when its task was deleted, after the agent's first look.
const SWEEP_GRACE: Duration = Duration::from_secs(60);

/// Before the agent runs a task: removes the containers and sandboxes no task record of
/// `node` wants (left by an earlier run), then sweeps containers until `token` is cancelled.
pub async fn clean_up(drivers: &Drivers, node: &str, tasks: &Api<Task>, token: &CancellationToken) {
    let Drivers::Real { docker, process } = drivers else {
        return;
    };
    remove_unwanted_containers(docker, node, tasks, Duration::ZERO).await;
    tokio::spawn(sweep(
        docker.clone(),
        node.to_string(),
        tasks.clone(),
        token.clone(),
    ));
    if let Ok(list) = tasks.list(&format!("{node}/")).await {
        let wanted: Vec<String> = list
            .items
            .iter()
            .filter_map(|t| t.metadata.name.clone())
            .collect();
        remove_unwanted_sandboxes(process, &wanted).await;
    }
}

async fn sweep(docker: Arc<Docker>, node: String, tasks: Api<Task>, token: CancellationToken) {
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_EVERY) => {
                remove_unwanted_containers(&docker, &node, &tasks, SWEEP_GRACE).await
            }
        }
    }
}

/// Removes this node's containers older than `grace` whose task record is gone.
async fn remove_unwanted_containers(
    docker: &Docker,
    node: &str,
    tasks: &Api<Task>,
    grace: Duration,
) {
    let Ok(containers) = docker.containers(node).await else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    for c in containers {
        if young(c.created, now, grace) {
            continue;
        }
        if !wanted(&tasks.get(&task_key(node, &c.task)).await) {
            tracing::info!(container = %c.id, task = %c.task, "removing a container no task wants");
            let _ = docker
                .remove(&Handle {
                    id: c.id,
                    pid: None,
                })
                .await;
        }
    }
}

/// Created less than `grace` before `now` (seconds since the epoch).
fn young(created: Option<i64>, now: i64, grace: Duration) -> bool {
    created.is_some_and(|created| now - created < grace.as_secs() as i64)
}

/// Whether a container is wanted, by the lookup of its task's record: a failed lookup keeps it.
fn wanted<E>(record: &Result<Option<Task>, E>) -> bool {
    matches!(record, Ok(Some(_)) | Err(_))
}

/// Stops and removes the sandboxes (and their processes) of tasks not in `wanted`: left by an
/// earlier run of this agent for tasks deleted while it was away.
async fn remove_unwanted_sandboxes(process: &Process, wanted: &[String]) {
    for sandbox in process.sandboxes() {
        if wanted.contains(&sandbox.task) {
            continue;
        }
        if let Some(pid) = sandbox.pid {
            tracing::info!(task = %sandbox.task, pid, "stopping a process no task wants");
        }
        let handle = Handle {
            id: sandbox.task,
            pid: sandbox.pid,
        };
        let _ = process.remove(&handle).await;
    }
}

/// Re-attaches to the task if an earlier agent started it. One created but never started is
/// destroyed, to start afresh; one that ran and exited meanwhile is re-attached: waiting on it
/// gives its exit code at once.
pub async fn reattach(driver: &dyn Driver, task: &Task) -> Option<Handle> {
    match driver.recover(task).await? {
        Found::Started(handle) => {
            tracing::info!(id = %handle.id, pid = ?handle.pid, "re-attached to the running task");
            Some(handle)
        }
        Found::NeverStarted(handle) => {
            let _ = driver.remove(&handle).await;
            None
        }
    }
}

/// The status of a task re-attached to at `now`: running here. It may have been started by an
/// agent stopped before it could say so, hence the fields a start would have written.
pub fn resumed(mut status: TaskStatus, handle: &Handle, host: &str, now: &str) -> TaskStatus {
    status.recovered_at = Some(now.to_string());
    status.unreachable_since = None;
    status.state = TaskState::Running;
    status.container_id = Some(handle.id.clone());
    status.pid = handle.pid.or(status.pid);
    status.host = Some(host.to_string());
    status.started_at.get_or_insert_with(|| now.to_string());
    status
}

/// Ended tasks found without a runner (after a restart): what they left (container, sandbox)
/// is removed when their record is.
#[derive(Default)]
pub struct Ended(HashMap<String, Task>);

impl Ended {
    /// Notes an ended task if its record names what it left.
    pub fn note(&mut self, task: &Task) {
        if Handle::of(task).is_some() {
            let name = task.metadata.name.clone().unwrap_or_default();
            self.0.insert(name, task.clone());
        }
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// The record of `name` is gone: removes what its task left, if it was noted.
    pub fn deleted(&mut self, name: &str, drivers: &Drivers) -> Option<JoinHandle<()>> {
        let task = self.0.remove(name)?;
        let handle = Handle::of(&task)?;
        let driver = drivers.for_task(&task);
        Some(tokio::spawn(async move {
            let _ = driver.remove(&handle).await;
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use pacer_crd::App;

    use super::*;
    use crate::driver::Fake;

    fn task(state: TaskState) -> Task {
        Task::test(&App::test("web"), "n1", state)
    }

    fn with_container(mut task: Task, id: &str) -> Task {
        task.status
            .get_or_insert_with(TaskStatus::default)
            .container_id = Some(id.into());
        task
    }

    /// A work folder of its own, empty, for one test.
    fn work_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pacer-agent-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn only_containers_past_the_grace_are_looked_at() {
        let grace = Duration::from_secs(60);
        assert!(young(Some(1_000), 1_059, grace));
        assert!(!young(Some(1_000), 1_060, grace));
        // At the agent's start nothing is young; nor is a container of unknown age.
        assert!(!young(Some(1_000), 1_000, Duration::ZERO));
        assert!(!young(None, 1_000, grace));
    }

    #[test]
    fn a_container_goes_only_when_its_record_is_known_gone() {
        assert!(wanted::<()>(&Ok(Some(task(TaskState::Running)))));
        assert!(wanted(&Err("etcd unreachable")));
        assert!(!wanted::<()>(&Ok(None)));
    }

    #[test]
    fn a_reattached_task_runs_here_since_its_recovery() {
        let before = TaskStatus {
            state: TaskState::Unreachable,
            unreachable_since: Some("t0".into()),
            pid: Some(7),
            started_at: Some("t1".into()),
            ..TaskStatus::default()
        };
        let container = Handle {
            id: "c1".into(),
            pid: None,
        };
        let status = resumed(before.clone(), &container, "h1", "t9");
        assert_eq!(status.state, TaskState::Running);
        assert_eq!(status.recovered_at.as_deref(), Some("t9"));
        assert_eq!(status.unreachable_since, None);
        assert_eq!(status.container_id.as_deref(), Some("c1"));
        assert_eq!(status.host.as_deref(), Some("h1"));
        // What the handle does not know is kept from the record.
        assert_eq!(status.pid, Some(7));
        assert_eq!(status.started_at.as_deref(), Some("t1"));
        // Started by an agent that could not say so.
        let process = Handle {
            id: "web.1".into(),
            pid: Some(42),
        };
        let status = resumed(TaskStatus::default(), &process, "h1", "t9");
        assert_eq!(status.pid, Some(42));
        assert_eq!(status.started_at.as_deref(), Some("t9"));
    }

    #[tokio::test]
    async fn what_a_driver_started_is_reattached_and_nothing_else() {
        let fake = Fake::default();
        let started = task(TaskState::Running);
        let handle = fake.start(&started, "h1").await.expect("fake start");
        assert_eq!(reattach(&fake, &started).await, Some(handle));
        let mut other = task(TaskState::Staging);
        other.metadata.name = Some("web.other".into());
        assert_eq!(reattach(&fake, &other).await, None);
    }

    #[tokio::test]
    async fn an_ended_task_leaves_its_container_until_its_record_goes() {
        let fake = Arc::new(Fake::default());
        let drivers = Drivers::Simulated(fake.clone());
        let finished = task(TaskState::Finished);
        let handle = fake.start(&finished, "h1").await.expect("fake start");
        let finished = with_container(finished, &handle.id);
        let mut ended = Ended::default();
        ended.note(&finished);
        // A record naming nothing leaves nothing to remove.
        let mut bare = task(TaskState::Failed);
        bare.metadata.name = Some("web.bare".into());
        ended.note(&bare);
        assert!(ended.deleted("web.bare", &drivers).is_none());
        assert!(fake.recover(&finished).await.is_some());
        let name = finished.metadata.name.clone().unwrap_or_default();
        let removal = ended.deleted(&name, &drivers).expect("a removal");
        removal.await.expect("removal ran");
        assert_eq!(fake.recover(&finished).await, None);
        assert!(ended.deleted(&name, &drivers).is_none(), "removed once");
    }

    #[tokio::test]
    async fn a_new_agent_kills_the_processes_of_deleted_tasks_and_keeps_the_others() {
        let dir = work_dir("sandboxes");
        let earlier = Process::new(&dir);
        // Short sleeps: a failing run leaves no process behind for long.
        let mut app = App::test("web");
        app.spec.cmd = Some("sleep 30".into());
        let task = |state| Task::test(&app, "n1", state);
        let mut kept = task(TaskState::Running);
        kept.metadata.name = Some("web.kept".into());
        let mut gone = task(TaskState::Running);
        gone.metadata.name = Some("web.gone".into());
        let kept_handle = earlier.start(&kept, "h1").await.expect("start kept");
        let gone_handle = earlier.start(&gone, "h1").await.expect("start gone");

        let later = Process::new(&dir);
        remove_unwanted_sandboxes(&later, &["web.kept".to_string()]).await;
        let code = tokio::time::timeout(Duration::from_secs(10), earlier.wait(&gone_handle))
            .await
            .expect("the unwanted process ends")
            .expect("its exit code");
        assert_eq!(code, 128 + 9, "killed");
        assert!(!dir.join("sandboxes/web.gone").exists());
        // The wanted one still runs, and the later agent re-attaches to it.
        let found = later.sandboxes();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].task, "web.kept");
        assert_eq!(found[0].pid, kept_handle.pid);
        assert_eq!(reattach(&later, &kept).await, Some(kept_handle.clone()));
        let _ = earlier.remove(&kept_handle).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
