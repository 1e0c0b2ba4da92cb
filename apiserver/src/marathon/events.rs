//! `/v2/events`: Server-Sent Events made from the etcd watch. A client too slow to keep up is
//! disconnected: it never gets a stream with holes.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use pacer_crd::deployment::DeploymentPhase;
use pacer_crd::marathon::task_to_marathon;
use pacer_crd::{App, Deployment, EventSubscription, Task, TaskState};
use pacer_runtime::now;
use pacer_runtime::watcher::{self, Event as Change};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::query::Params;
use super::view::deployment_json;
use crate::ApiState;
use crate::apply::path_of;

/// Events a client may fall behind by before it is cut off.
pub(super) const BUFFER: usize = 1024;

pub async fn stream(
    State(s): State<ApiState>,
    headers: axum::http::HeaderMap,
    RawQuery(q): RawQuery,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let filters: Vec<String> = Params::parse(q.as_deref())
        .all("event_type")
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (tx, rx) = mpsc::channel(BUFFER);
    let remote = headers
        .get("x-forwarded-for")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let attached =
        json!({"remoteAddress": remote, "eventType": "event_stream_attached", "timestamp": now()});
    let _ = tx.try_send(attached);
    tokio::spawn(translate(s, tx, filters));
    let events = ReceiverStream::new(rx).map(|v: Value| {
        let kind = v["eventType"].as_str().unwrap_or("event").to_string();
        Ok(Event::default().event(kind).data(v.to_string()))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// Follows apps, tasks, deployments and event subscriptions and sends Marathon's events for
/// their changes.
pub(super) async fn translate(s: ApiState, tx: mpsc::Sender<Value>, filters: Vec<String>) {
    let token = CancellationToken::new();
    let _stop_watches = token.clone().drop_guard();
    // Deletions need only the name: no previous values (etcd reads one per change for them).
    let mut apps = watcher::watch_without_previous(s.apps.clone(), "", token.clone());
    let mut tasks = watcher::watch_without_previous(s.tasks.clone(), "", token.clone());
    let mut deployments = watcher::watch_without_previous(s.deployments.clone(), "", token.clone());
    let mut subscriptions =
        watcher::watch_without_previous(s.subscriptions.clone(), "", token.clone());
    let mut seen = Seen::default();
    loop {
        let out = tokio::select! {
            _ = tx.closed() => return,
            Some(change) = apps.recv() => seen.app(change),
            Some(change) = tasks.recv() => seen.task(change),
            Some(change) = deployments.recv() => seen.deployment(change),
            Some(change) = subscriptions.recv() => seen.subscription(change),
            else => return,
        };
        for event in out {
            let kind = event["eventType"].as_str().unwrap_or_default();
            if !filters.is_empty() && !filters.iter().any(|f| f == kind) {
                continue;
            }
            if tx.try_send(event).is_err() {
                tracing::info!(
                    "dropping a Marathon event subscriber that fell {BUFFER} events behind"
                );
                return;
            }
        }
    }
}

/// What the stream has reported so far, to turn record changes into events.
#[derive(Default)]
struct Seen {
    apps: HashMap<String, String>,
    /// Each task's state and, once checked, whether it passes its health checks.
    tasks: HashMap<String, (TaskState, Option<bool>)>,
    deployments: HashMap<String, DeploymentPhase>,
    /// Each subscription's callback URL and who subscribed it.
    subscriptions: HashMap<String, (String, String)>,
}

/// The name of a record a change deleted.
fn deleted<K: pacer_crd::Record>(change: &Change<K>) -> Option<String> {
    match change {
        Change::Deleted(obj) => Some(obj.meta().name.clone().unwrap_or_default()),
        Change::Removed { key, .. } => Some(K::name_of_key(key).to_string()),
        Change::Restarted(_) | Change::Applied(_) => None,
    }
}

/// A Marathon event of `kind`: `body` with its type and time.
pub(super) fn event(kind: &str, mut body: Value) -> Value {
    body["eventType"] = json!(kind);
    body["timestamp"] = json!(now());
    body
}

impl Seen {
    fn app(&mut self, change: Change<App>) -> Vec<Value> {
        if let Some(name) = deleted(&change) {
            self.apps.remove(&name);
            return vec![event(
                "app_terminated_event",
                json!({"appId": path_of(&name)}),
            )];
        }
        match change {
            Change::Restarted(all) => {
                self.apps = all
                    .iter()
                    .map(|a| (a.metadata.name.clone().unwrap_or_default(), a.last_change()))
                    .collect();
                vec![]
            }
            Change::Applied(app) => {
                let name = app.metadata.name.clone().unwrap_or_default();
                let version = app.last_change();
                if self.apps.insert(name.clone(), version.clone()).as_ref() == Some(&version) {
                    return vec![];
                }
                let definition = pacer_crd::marathon::app_to_marathon(&app, &Default::default());
                vec![event(
                    "api_post_event",
                    json!({"clientIp": "", "uri": format!("/v2/apps{}", path_of(&name)), "appDefinition": definition}),
                )]
            }
            Change::Deleted(_) | Change::Removed { .. } => vec![],
        }
    }

    fn task(&mut self, change: Change<Task>) -> Vec<Value> {
        if let Some(name) = deleted(&change) {
            self.tasks.remove(&name);
            return vec![];
        }
        let task = match change {
            Change::Restarted(all) => {
                self.tasks = all
                    .iter()
                    .map(|t| {
                        (
                            t.metadata.name.clone().unwrap_or_default(),
                            (t.state(), alive(t)),
                        )
                    })
                    .collect();
                return vec![];
            }
            Change::Applied(task) => task,
            Change::Deleted(_) | Change::Removed { .. } => return vec![],
        };
        let id = task.metadata.name.clone().unwrap_or_default();
        let now_seen = (task.state(), alive(&task));
        let before = self.tasks.insert(id.clone(), now_seen);
        let shown = task_to_marathon(&task);
        let mut out = Vec::new();
        if let (Some(alive), true) = (now_seen.1, before.map(|b| b.1) != Some(now_seen.1)) {
            out.push(event(
                "health_status_changed_event",
                json!({"appId": shown["appId"], "taskId": id, "instanceId": id, "version": shown["version"], "alive": alive}),
            ));
        }
        if before.map(|b| b.0) == Some(now_seen.0) {
            return out;
        }
        let message = task
            .status
            .as_ref()
            .and_then(|s| s.message.clone())
            .unwrap_or_default();
        let update = json!({
            "slaveId": shown["slaveId"], "taskId": id, "taskStatus": task.state().as_str(), "message": message,
            "appId": shown["appId"], "host": shown["host"], "ipAddresses": shown["ipAddresses"],
            "ports": shown["ports"], "version": shown["version"],
        });
        let instance = json!({
            "instanceId": id, "condition": condition(task.state()), "runSpecId": shown["appId"], "agentId": shown["slaveId"],
            "host": shown["host"], "runSpecVersion": shown["version"],
        });
        out.push(event("status_update_event", update));
        out.push(event("instance_changed_event", instance));
        out
    }

    fn deployment(&mut self, change: Change<Deployment>) -> Vec<Value> {
        if let Some(name) = deleted(&change) {
            self.deployments.remove(&name);
            return vec![];
        }
        let d = match change {
            Change::Restarted(all) => {
                self.deployments = all
                    .iter()
                    .map(|d| (d.metadata.name.clone().unwrap_or_default(), d.phase()))
                    .collect();
                return vec![];
            }
            Change::Applied(d) => d,
            Change::Deleted(_) | Change::Removed { .. } => return vec![],
        };
        let id = d.metadata.name.clone().unwrap_or_default();
        let before = self.deployments.insert(id.clone(), d.phase());
        if before == Some(d.phase()) {
            return vec![];
        }
        let plan = deployment_json(&d);
        let step = plan["steps"][0].clone();
        match d.phase() {
            DeploymentPhase::Running => vec![event(
                "deployment_info",
                json!({"plan": plan, "currentStep": step}),
            )],
            DeploymentPhase::Succeeded => vec![
                event(
                    "deployment_step_success",
                    json!({"plan": plan, "currentStep": step}),
                ),
                event("deployment_success", json!({"id": id, "plan": plan})),
            ],
            DeploymentPhase::Failed => {
                vec![event("deployment_failed", json!({"id": id, "plan": plan}))]
            }
            DeploymentPhase::Superseded => vec![],
        }
    }
}

impl Seen {
    fn subscription(&mut self, change: Change<EventSubscription>) -> Vec<Value> {
        let subscribed = |url: &str, ip: &str, kind: &str| {
            event(kind, json!({"callbackUrl": url, "clientIp": ip}))
        };
        if let Some(name) = deleted(&change) {
            return match self.subscriptions.remove(&name) {
                Some((url, ip)) => vec![subscribed(&url, &ip, "unsubscribe_event")],
                None => vec![],
            };
        }
        match change {
            Change::Restarted(all) => {
                self.subscriptions = all
                    .into_iter()
                    .map(|s| {
                        let name = s.metadata.name.clone().unwrap_or_default();
                        (name, (s.spec.callback_url, s.spec.client_ip))
                    })
                    .collect();
                vec![]
            }
            Change::Applied(s) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                let entry = (s.spec.callback_url.clone(), s.spec.client_ip.clone());
                match self.subscriptions.insert(name, entry) {
                    Some(_) => vec![],
                    None => vec![subscribed(
                        &s.spec.callback_url,
                        &s.spec.client_ip,
                        "subscribe_event",
                    )],
                }
            }
            Change::Deleted(_) | Change::Removed { .. } => vec![],
        }
    }
}

/// Whether a task passes all its health checks, once it has results.
fn alive(task: &Task) -> Option<bool> {
    let results = &task.status.as_ref()?.health;
    (!results.is_empty()).then(|| results.iter().all(|r| r.alive))
}

/// Marathon's instance condition for a task state.
fn condition(state: TaskState) -> &'static str {
    match state {
        TaskState::Staging => "Staging",
        TaskState::Starting => "Starting",
        TaskState::Running => "Running",
        TaskState::Killing => "Killing",
        TaskState::Finished => "Finished",
        TaskState::Failed => "Failed",
        TaskState::Killed => "Killed",
        TaskState::Error => "Error",
        TaskState::Lost => "Gone",
        TaskState::Unreachable => "Unreachable",
    }
}

#[cfg(test)]
mod tests {
    use pacer_crd::{App, HealthResult, Resources, TaskSpec, TaskStatus};

    use super::*;

    fn task(state: TaskState, health: &[bool]) -> Task {
        let spec = TaskSpec {
            app_id: "web".into(),
            app_version: "v1".into(),
            node: "n".into(),
            resources: Resources::default(),
            host_ports: vec![],
            kill: false,
            app: App::test("web").spec,
            run: None,
        };
        let mut t = Task::new("web.1", spec);
        let health = health
            .iter()
            .map(|alive| HealthResult {
                alive: *alive,
                ..Default::default()
            })
            .collect();
        t.status = Some(TaskStatus {
            state,
            health,
            ..Default::default()
        });
        t
    }

    fn kinds(events: &[Value]) -> Vec<&str> {
        events
            .iter()
            .filter_map(|e| e["eventType"].as_str())
            .collect()
    }

    #[test]
    fn state_and_health_changes_become_events_once() {
        let mut seen = Seen::default();
        assert!(
            seen.task(Change::Restarted(vec![task(TaskState::Staging, &[])]))
                .is_empty()
        );
        let running = seen.task(Change::Applied(task(TaskState::Running, &[])));
        assert_eq!(
            kinds(&running),
            vec!["status_update_event", "instance_changed_event"]
        );
        assert_eq!(running[0]["taskStatus"], "TASK_RUNNING");
        let healthy = seen.task(Change::Applied(task(TaskState::Running, &[true])));
        assert_eq!(kinds(&healthy), vec!["health_status_changed_event"]);
        assert_eq!(healthy[0]["alive"], true);
        assert!(
            seen.task(Change::Applied(task(TaskState::Running, &[true])))
                .is_empty(),
            "no change, no event"
        );
        let sick = seen.task(Change::Applied(task(TaskState::Running, &[true, false])));
        assert_eq!(
            (kinds(&sick), sick[0]["alive"].clone()),
            (vec!["health_status_changed_event"], json!(false))
        );
    }

    #[test]
    fn subscriptions_become_subscribe_and_unsubscribe_events() {
        use pacer_crd::{EventSubscription, EventSubscriptionSpec};
        let sub = |url: &str| {
            let spec = EventSubscriptionSpec {
                callback_url: url.into(),
                client_ip: "10.0.0.1".into(),
            };
            EventSubscription::new(&EventSubscription::name_for(url), spec)
        };
        let mut seen = Seen::default();
        let old = sub("http://127.0.0.1:1/old");
        assert!(
            seen.subscription(Change::Restarted(vec![old.clone()]))
                .is_empty()
        );
        let added = seen.subscription(Change::Applied(sub("http://127.0.0.1:2/new")));
        assert_eq!(kinds(&added), vec!["subscribe_event"]);
        assert_eq!(added[0]["callbackUrl"], "http://127.0.0.1:2/new");
        assert!(
            seen.subscription(Change::Applied(old.clone())).is_empty(),
            "known already"
        );
        let removed = seen.subscription(Change::Removed {
            key: old.metadata.name.clone().unwrap(),
            revision: 9,
        });
        assert_eq!(kinds(&removed), vec!["unsubscribe_event"]);
        assert_eq!(
            (
                removed[0]["callbackUrl"].clone(),
                removed[0]["clientIp"].clone()
            ),
            (json!("http://127.0.0.1:1/old"), json!("10.0.0.1"))
        );
    }
}
