//! What a runner does next with its task, decided from what it observed: no I/O, no clock.

use pacer_crd::{HealthResult, ReadinessResult, TaskState, TaskStatus};

use crate::driver::Handle;
use crate::recovery;

/// What the runner learned last: the outcome of its previous step, a request or an event.
#[derive(Debug)]
pub enum Observed {
    /// The first look: the task as re-attached to if an earlier agent started it, and whether
    /// it was asked to stop (killed or deleted) already.
    Found {
        handle: Option<Handle>,
        stop_asked: bool,
    },
    /// The start's outcome (its error as the task's message).
    Started(Result<Handle, String>),
    /// The task ended by itself; its exit code if the driver could tell.
    Exited(Option<i64>),
    KillAsked,
    /// A health check failed too often.
    Unhealthy(String),
    Health(Vec<HealthResult>),
    Readiness(Vec<ReadinessResult>),
    Resync,
    /// A kill is done: the task's exit code if known, and why it was killed.
    Stopped {
        code: Option<i64>,
        message: String,
    },
    Deleted,
}

/// What the runner does next.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Start the task; `staging` is written only if the start takes a while (a quick start
    /// goes straight to TASK_RUNNING: one write fewer per task).
    Start { staging: TaskStatus },
    /// The task runs as `handle`: write `status`, start its checks, watch it.
    Run { handle: Handle, status: TaskStatus },
    /// Write `status` and go on watching.
    Report(TaskStatus),
    /// Stop the task: `killing` is written only if the stop takes a while, then TASK_KILLED
    /// with `message`.
    Kill {
        killing: TaskStatus,
        message: String,
    },
    /// Write the final `status`; what the task left goes when its record does.
    End(TaskStatus),
    /// The record is gone: stop the task and remove what it left.
    GiveUp,
}

/// What a decision needs besides the observation.
pub struct Known<'a> {
    /// The status as last reported.
    pub status: &'a TaskStatus,
    /// Where the node's task ports are reachable.
    pub host: &'a str,
    /// The time to write into the status.
    pub now: &'a str,
}

/// What to do next with a task, given what was `observed`.
pub fn decide(known: &Known, observed: Observed) -> Decision {
    let mut status = known.status.clone();
    let end = |status, state, code, message: &str| {
        Decision::End(ended(status, state, code, message, known.now))
    };
    match observed {
        Observed::Found {
            handle: Some(handle),
            ..
        } => Decision::Run {
            status: recovery::resumed(status, &handle, known.host, known.now),
            handle,
        },
        Observed::Found {
            handle: None,
            stop_asked,
        } => first_start(known, stop_asked),
        Observed::Started(Ok(handle)) => {
            status.state = TaskState::Running;
            status.container_id = Some(handle.id.clone());
            status.pid = handle.pid;
            status.started_at = Some(known.now.to_string());
            Decision::Run { handle, status }
        }
        Observed::Started(Err(message)) => end(status, TaskState::Failed, None, &message),
        Observed::Exited(code) => {
            let code = code.unwrap_or(-1);
            let state = match code {
                0 => TaskState::Finished,
                _ => TaskState::Failed,
            };
            end(
                status,
                state,
                Some(code),
                &format!("exited with code {code}"),
            )
        }
        Observed::KillAsked => kill(status, "killed on request".into()),
        Observed::Unhealthy(reason) => kill(status, format!("killed: {reason}")),
        Observed::Stopped { code, message } => end(status, TaskState::Killed, code, &message),
        Observed::Health(results) => {
            status.health = results;
            Decision::Report(status)
        }
        Observed::Readiness(results) => {
            status.readiness = results;
            Decision::Report(status)
        }
        Observed::Resync => Decision::Report(status),
        Observed::Deleted => Decision::GiveUp,
    }
}

/// Nothing was found to re-attach to: a fresh status, and a start unless a stop was asked.
fn first_start(known: &Known, stop_asked: bool) -> Decision {
    let staging = TaskStatus {
        state: TaskState::Staging,
        host: Some(known.host.to_string()),
        staged_at: Some(known.now.to_string()),
        ..Default::default()
    };
    if stop_asked {
        let message = "killed before it started";
        Decision::End(ended(staging, TaskState::Killed, None, message, known.now))
    } else {
        Decision::Start { staging }
    }
}

fn kill(mut status: TaskStatus, message: String) -> Decision {
    status.state = TaskState::Killing;
    Decision::Kill {
        killing: status,
        message,
    }
}

/// `status` ended at `now` in `state`.
fn ended(
    mut status: TaskStatus,
    state: TaskState,
    exit_code: Option<i64>,
    message: &str,
    now: &str,
) -> TaskStatus {
    status.state = state;
    status.exit_code = exit_code;
    status.message = Some(message.to_string());
    status.finished_at = Some(now.to_string());
    status
}

#[cfg(test)]
mod tests {
    use pacer_crd::{App, Task};

    use super::*;

    fn known(status: &TaskStatus) -> Known<'_> {
        Known {
            status,
            host: "h1",
            now: "t9",
        }
    }

    fn handle(id: &str, pid: Option<u32>) -> Handle {
        Handle { id: id.into(), pid }
    }

    /// The status of a task of `web` on n1 in `state`, as its record has it.
    fn status(state: TaskState) -> TaskStatus {
        let task = Task::test(&App::test("web"), "n1", state);
        task.status.unwrap_or_default()
    }

    fn running() -> TaskStatus {
        TaskStatus {
            container_id: Some("c1".into()),
            host: Some("h1".into()),
            started_at: Some("t1".into()),
            ..status(TaskState::Running)
        }
    }

    #[test]
    fn a_task_found_running_is_reported_recovered_and_watched() {
        let before = status(TaskState::Unreachable);
        let found = Observed::Found {
            handle: Some(handle("c1", Some(7))),
            stop_asked: true,
        };
        let Decision::Run { handle: h, status } = decide(&known(&before), found) else {
            panic!("not watched");
        };
        assert_eq!(h, handle("c1", Some(7)));
        assert_eq!(status.state, TaskState::Running);
        assert_eq!(status.recovered_at.as_deref(), Some("t9"));
        assert_eq!(status.container_id.as_deref(), Some("c1"));
    }

    #[test]
    fn a_task_not_found_starts_from_a_fresh_staging_status() {
        let before = TaskStatus {
            exit_code: Some(1),
            message: Some("an earlier attempt".into()),
            ..running()
        };
        let found = Observed::Found {
            handle: None,
            stop_asked: false,
        };
        let staging = TaskStatus {
            state: TaskState::Staging,
            host: Some("h1".into()),
            staged_at: Some("t9".into()),
            ..TaskStatus::default()
        };
        assert_eq!(decide(&known(&before), found), Decision::Start { staging });
    }

    #[test]
    fn a_task_asked_to_stop_before_it_started_ends_killed() {
        let before = status(TaskState::Staging);
        let found = Observed::Found {
            handle: None,
            stop_asked: true,
        };
        let ended = TaskStatus {
            state: TaskState::Killed,
            host: Some("h1".into()),
            staged_at: Some("t9".into()),
            finished_at: Some("t9".into()),
            message: Some("killed before it started".into()),
            ..TaskStatus::default()
        };
        assert_eq!(decide(&known(&before), found), Decision::End(ended));
    }

    #[test]
    fn a_start_runs_the_task_or_ends_it_failed() {
        let staging = TaskStatus {
            host: Some("h1".into()),
            staged_at: Some("t1".into()),
            ..status(TaskState::Staging)
        };
        let started = Observed::Started(Ok(handle("c1", Some(42))));
        let Decision::Run { handle: h, status } = decide(&known(&staging), started) else {
            panic!("not running");
        };
        assert_eq!(h, handle("c1", Some(42)));
        assert_eq!(status.state, TaskState::Running);
        assert_eq!(
            (status.container_id.as_deref(), status.pid),
            (Some("c1"), Some(42))
        );
        assert_eq!(status.started_at.as_deref(), Some("t9"));
        assert_eq!(status.staged_at.as_deref(), Some("t1"));

        let failed = decide(&known(&staging), Observed::Started(Err("no image".into())));
        let Decision::End(status) = failed else {
            panic!("not ended");
        };
        assert_eq!(status.state, TaskState::Failed);
        assert_eq!(status.message.as_deref(), Some("no image"));
        assert_eq!(status.finished_at.as_deref(), Some("t9"));
        assert_eq!(status.exit_code, None);
    }

    #[test]
    fn an_exit_finishes_with_code_zero_and_fails_otherwise() {
        let before = running();
        for (code, state, written) in [
            (Some(0), TaskState::Finished, 0),
            (Some(3), TaskState::Failed, 3),
            (None, TaskState::Failed, -1),
        ] {
            let Decision::End(status) = decide(&known(&before), Observed::Exited(code)) else {
                panic!("{code:?} did not end the task");
            };
            assert_eq!(status.state, state, "{code:?}");
            assert_eq!(status.exit_code, Some(written));
            let message = format!("exited with code {written}");
            assert_eq!(status.message, Some(message));
            assert_eq!(status.container_id.as_deref(), Some("c1"), "kept");
        }
    }

    #[test]
    fn a_kill_request_or_failing_health_kills_then_ends_killed() {
        let before = running();
        let killing = TaskStatus {
            state: TaskState::Killing,
            ..running()
        };
        assert_eq!(
            decide(&known(&before), Observed::KillAsked),
            Decision::Kill {
                killing: killing.clone(),
                message: "killed on request".into()
            }
        );
        let unhealthy = Observed::Unhealthy("3 failures".into());
        assert_eq!(
            decide(&known(&before), unhealthy),
            Decision::Kill {
                killing: killing.clone(),
                message: "killed: 3 failures".into()
            }
        );
        let stopped = Observed::Stopped {
            code: Some(143),
            message: "killed on request".into(),
        };
        let Decision::End(status) = decide(&known(&killing), stopped) else {
            panic!("not ended");
        };
        assert_eq!(status.state, TaskState::Killed);
        assert_eq!(status.exit_code, Some(143));
        assert_eq!(status.message.as_deref(), Some("killed on request"));
        assert_eq!(status.finished_at.as_deref(), Some("t9"));
    }

    #[test]
    fn check_results_and_resyncs_are_reported() {
        let before = running();
        let health = vec![HealthResult {
            alive: true,
            ..HealthResult::default()
        }];
        let Decision::Report(status) = decide(&known(&before), Observed::Health(health.clone()))
        else {
            panic!("not reported");
        };
        assert_eq!(status.health, health);
        assert_eq!(status.state, TaskState::Running);
        let readiness = vec![ReadinessResult {
            name: "ready".into(),
            ready: true,
            last_response: None,
        }];
        let Decision::Report(status) =
            decide(&known(&status), Observed::Readiness(readiness.clone()))
        else {
            panic!("not reported");
        };
        assert_eq!((status.health, status.readiness), (health, readiness));
        assert_eq!(
            decide(&known(&before), Observed::Resync),
            Decision::Report(before.clone())
        );
    }

    #[test]
    fn a_deleted_record_gives_up() {
        let before = running();
        assert_eq!(decide(&known(&before), Observed::Deleted), Decision::GiveUp);
    }
}
