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

/// Seconds since `since`, if it parses.
pub fn seconds_since(since: Option<&str>) -> Option<f64> {
    let t: Timestamp = since?.parse().ok()?;
    Some(Timestamp::now().duration_since(t).as_secs_f64())
}

async fn reconcile(task: Arc<Task>, cluster: Arc<Cluster>) -> Result<Action, Error> {
    if task.state().is_terminal() {
        return Ok(Action::await_change());
    }
    let node = &task.spec.node;
    let present = crate::exists(&cluster.node_cache, &cluster.nodes, node)
        .await
        .map_err(|e| Error::NodeLookup(node.clone(), e))?;
    if present {
        return Ok(Action::await_change());
    }
    let key = task.key();
    let err = |e| Error::TaskWrite(key.clone(), e);
    let status = task.status.clone().unwrap_or_default();
    if task.state() != TaskState::Unreachable {
        let message = format!("node {node} is unreachable (its lease expired)");
        let result = cluster
            .tasks
            .modify(&key, |t| {
                let s = t.status.get_or_insert_with(Default::default);
                if s.state == TaskState::Unreachable || s.state.is_terminal() {
                    return false;
                }
                s.state = TaskState::Unreachable;
                s.unreachable_since = Some(now());
                s.message = Some(message.clone());
                true
            })
            .await;
        return match result {
            Ok(_) => Ok(Action::requeue(Duration::from_secs(1))),
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(Action::requeue(CONFLICT_RETRY)),
            Err(e) => Err(err(e)),
        };
    }
    let expunge = task.spec.app.unreachable_strategy.expunge_after_seconds;
    let gone_for = seconds_since(status.unreachable_since.as_deref()).unwrap_or(0.0);
    if gone_for < expunge {
        return Ok(Action::requeue(Duration::from_secs_f64(expunge - gone_for)));
    }
    match cluster.tasks.delete_unchanged(&task).await {
        Ok(()) => Ok(Action::await_change()),
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(Action::requeue(CONFLICT_RETRY)),
        Err(e) => Err(err(e)),
    }
}
