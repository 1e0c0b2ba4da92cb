//! Node lifecycle: when a node's lease expires (its record is gone), its tasks become
//! TASK_UNREACHABLE; after the app's `expungeAfterSeconds` their records are removed (an
//! agent coming back then stops them). The app controller replaces them after
//! `inactiveAfterSeconds`.

use std::sync::Arc;
use std::time::Duration;

use pacer_crd::meta::jiff::Timestamp;
use pacer_crd::{Node, Record, Task, TaskState};
use pacer_runtime::{Action, Controller, now};
use tokio_util::sync::CancellationToken;

use crate::{CONFLICT_RETRY, Cluster};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("looking up node {0} failed")]
    NodeLookup(String, #[source] pacer_runtime::Error),
    #[error("writing task {0} failed")]
    TaskWrite(String, #[source] pacer_runtime::Error),
}

pub async fn run(cluster: Cluster, token: CancellationToken) {
    let tasks = cluster.task_cache.store();
    let controller = Controller::new(&cluster.task_cache, token).watches(
        &cluster.node_cache,
        move |node: &Node| {
            let name = node.key();
            tasks
                .filter(|t| t.spec.node == name)
                .iter()
                .map(|t| t.key())
                .collect()
        },
    );
    controller
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_secs(1)),
            Arc::new(cluster),
        )
        .await;
}

/// What becomes of a task whose node may be gone.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeLoss {
    /// Its node is there, or it has ended.
    Keep,
    /// The node's lease expired: the task is unreachable from now on.
    Unreachable,
    /// Unreachable for less than expungeAfterSeconds: look again then.
    Wait(Duration),
    /// Unreachable for expungeAfterSeconds: its record goes.
    Expunge,
}

/// The fate of a task, given whether its node is registered, at `now`.
pub fn node_loss(task: &Task, node_present: bool, now: Timestamp) -> NodeLoss {
    if node_present || task.state().is_terminal() {
        return NodeLoss::Keep;
    }
    if task.state() != TaskState::Unreachable {
        return NodeLoss::Unreachable;
    }
    let expunge = task.spec.app.unreachable_strategy.expunge_after_seconds;
    let since = task
        .status
        .as_ref()
        .and_then(|s| s.unreachable_since.as_deref());
    let gone_for = pacer_crd::time::seconds_since(since, now).unwrap_or(0.0);
    if gone_for < expunge {
        NodeLoss::Wait(pacer_crd::time::secs(expunge - gone_for))
    } else {
        NodeLoss::Expunge
    }
}

async fn reconcile(task: Arc<Task>, cluster: Arc<Cluster>) -> Result<Action, Error> {
    if task.state().is_terminal() {
        return Ok(Action::await_change());
    }
    let node = &task.spec.node;
    let present = crate::exists(&cluster.node_cache, &cluster.nodes, node)
        .await
        .map_err(|e| Error::NodeLookup(node.clone(), e))?;
    let key = task.key();
    let err = |e| Error::TaskWrite(key.clone(), e);
    let result = match node_loss(&task, present, Timestamp::now()) {
        NodeLoss::Keep => return Ok(Action::await_change()),
        NodeLoss::Wait(left) => return Ok(Action::requeue(left)),
        NodeLoss::Unreachable => mark_unreachable(&cluster, &key, node)
            .await
            .map(|()| Action::requeue(Duration::from_secs(1))),
        NodeLoss::Expunge => cluster
            .tasks
            .delete_unchanged(&task)
            .await
            .map(|()| Action::await_change()),
    };
    match result {
        Ok(action) => Ok(action),
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(Action::requeue(CONFLICT_RETRY)),
        Err(e) => Err(err(e)),
    }
}

async fn mark_unreachable(
    cluster: &Cluster,
    key: &str,
    node: &str,
) -> Result<(), pacer_runtime::Error> {
    let message = format!("node {node} is unreachable (its lease expired)");
    cluster
        .tasks
        .modify(key, |t| {
            let s = t.status.get_or_insert_with(Default::default);
            if s.state == TaskState::Unreachable || s.state.is_terminal() {
                return false;
            }
            s.state = TaskState::Unreachable;
            s.unreachable_since = Some(now());
            s.message = Some(message.clone());
            true
        })
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_of_a_lost_node_is_unreachable_then_expunged() {
        let app = pacer_crd::App::test("web");
        let now: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let running = Task::test(&app, "n1", TaskState::Running);
        assert_eq!(node_loss(&running, true, now), NodeLoss::Keep);
        assert_eq!(node_loss(&running, false, now), NodeLoss::Unreachable);
        let ended = Task::test(&app, "n1", TaskState::Finished);
        assert_eq!(node_loss(&ended, false, now), NodeLoss::Keep);
        let mut lost = Task::test(&app, "n1", TaskState::Unreachable);
        // expungeAfterSeconds is 300 by default.
        let since = |ago: u64| Some(pacer_runtime::timestamp(now - Duration::from_secs(ago)));
        lost.status.as_mut().unwrap().unreachable_since = since(100);
        assert_eq!(
            node_loss(&lost, false, now),
            NodeLoss::Wait(Duration::from_secs(200))
        );
        lost.status.as_mut().unwrap().unreachable_since = since(300);
        assert_eq!(node_loss(&lost, false, now), NodeLoss::Expunge);
        assert_eq!(
            node_loss(&lost, true, now),
            NodeLoss::Keep,
            "its node came back"
        );
    }
}
