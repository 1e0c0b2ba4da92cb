//! `/v2/eventSubscriptions`: callback URLs that Marathon's events are POSTed to, and their
//! delivery. Only URLs an admin allows (`--event-callbacks`) may subscribe, so the API cannot
//! be made to send requests anywhere. The elected replica delivers; each subscriber has a
//! bounded queue and a worker of its own, so a slow or dead one never holds the others back,
//! and one that keeps failing (or falls a whole queue behind) is unsubscribed.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use pacer_crd::{EventSubscription, EventSubscriptionSpec};
use pacer_runtime::watcher::{self, Event as Change};
use pacer_runtime::{Backoff, now};
use reqwest::Url;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::MarathonError;
use super::query::Params;
use crate::ApiState;

type Result<T> = std::result::Result<T, MarathonError>;

/// Events one subscriber may fall behind by before it is unsubscribed.
const QUEUE: usize = 256;
/// Deliveries in a row that may fail (each after its retries) before a subscriber is dropped.
const MAX_FAILURES: u32 = 3;
/// How long one POST to a callback may take.
const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per event: the first and two retries, with backoff.
const TRIES: usize = 3;

/// A callback URL an admin allows: scheme, host and path prefix, and a port or (`:*`) any.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackRule {
    base: Url,
    any_port: bool,
}

impl CallbackRule {
    /// `http://127.0.0.1:*/` (any port), `https://hooks.example.com/marathon`.
    pub fn parse(raw: &str) -> std::result::Result<CallbackRule, String> {
        let any_port = raw.contains(":*");
        let url = Url::parse(&raw.replacen(":*", "", 1))
            .map_err(|e| format!("'{raw}' is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("'{raw}' is not an http(s) URL with a host"));
        }
        Ok(CallbackRule {
            base: url,
            any_port,
        })
    }

    /// Whether `url` falls under this rule; URLs with credentials never do.
    pub fn allows(&self, url: &Url) -> bool {
        let port_ok =
            self.any_port || self.base.port_or_known_default() == url.port_or_known_default();
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && port_ok
            && url.path().starts_with(self.base.path())
            && url.username().is_empty()
            && url.password().is_none()
    }
}

fn callback_system_off() -> MarathonError {
    MarathonError::BadRequest(
        "http event callback system is not running on this Marathon instance. Please re-start \
         this instance with \"--event-callbacks URL\" (pacer server or pacer up)."
            .into(),
    )
}

fn invalid(reason: String) -> MarathonError {
    MarathonError::field("/callbackUrl", reason)
}

/// The `callbackUrl` of a request (any URL: one subscribed under rules since narrowed can
/// still be unsubscribed).
fn subscribed_url(s: &ApiState, q: Option<&str>) -> Result<Url> {
    if s.event_callbacks.is_empty() {
        return Err(callback_system_off());
    }
    let params = Params::parse(q);
    let raw = params
        .get("callbackUrl")
        .ok_or_else(|| invalid("is required".into()))?;
    Url::parse(raw).map_err(|e| invalid(format!("'{raw}' is not a URL: {e}")))
}

/// The `callbackUrl` of a request, checked against the rules.
fn callback(s: &ApiState, q: Option<&str>) -> Result<Url> {
    let url = subscribed_url(s, q)?;
    let raw = url.as_str();
    if !s.event_callbacks.iter().any(|rule| rule.allows(&url)) {
        return Err(invalid(format!(
            "'{raw}' is not among the callback URLs this cluster allows (--event-callbacks)"
        )));
    }
    Ok(url)
}

fn client_ip(headers: &HeaderMap) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn answer(url: &str, ip: &str, kind: &str) -> Json<Value> {
    Json(json!({"callbackUrl": url, "clientIp": ip, "eventType": kind, "timestamp": now()}))
}

/// `POST /v2/eventSubscriptions?callbackUrl=URL`: subscribes it (again is fine).
pub async fn subscribe(
    State(s): State<ApiState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let url = callback(&s, q.as_deref())?.to_string();
    let ip = client_ip(&headers);
    let spec = EventSubscriptionSpec {
        callback_url: url.clone(),
        client_ip: ip.clone(),
    };
    let record = EventSubscription::new(&EventSubscription::name_for(&url), spec);
    match s.subscriptions.create(&record).await {
        Ok(_) | Err(pacer_runtime::Error::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(answer(&url, &ip, "subscribe_event"))
}

/// `GET /v2/eventSubscriptions`: `{"callbackUrls": [...]}`.
pub async fn list(State(s): State<ApiState>) -> Result<Json<Value>> {
    if s.event_callbacks.is_empty() {
        return Err(callback_system_off());
    }
    let urls: Vec<String> = s
        .subscriptions
        .list("")
        .await?
        .items
        .into_iter()
        .map(|sub| sub.spec.callback_url)
        .collect();
    Ok(Json(json!({"callbackUrls": urls})))
}

/// `DELETE /v2/eventSubscriptions?callbackUrl=URL`: unsubscribes it (a URL not subscribed is
/// fine, as in Marathon).
pub async fn unsubscribe(
    State(s): State<ApiState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let url = subscribed_url(&s, q.as_deref())?.to_string();
    s.subscriptions
        .delete(&EventSubscription::name_for(&url))
        .await?;
    Ok(answer(&url, &client_ip(&headers), "unsubscribe_event"))
}

/// Delivers every event to every subscriber while this replica is the elected one, until
/// `token` is cancelled. Does nothing when no callback is allowed.
pub async fn deliver(s: ApiState, token: CancellationToken) {
    if s.event_callbacks.is_empty() {
        return;
    }
    let leads = |s: ApiState| async move {
        pacer_runtime::election::leader(s.apps.client())
            .await
            .as_deref()
            == Some(&s.identity)
    };
    while !token.is_cancelled() {
        if !leads(s.clone()).await {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        }
        let leading = token.child_token();
        let watch = async {
            while leads(s.clone()).await {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        tokio::select! {
            _ = dispatch(s.clone(), leading.clone()) => {}
            _ = watch => {}
            _ = token.cancelled() => {}
        }
        leading.cancel();
    }
}

/// One subscriber's queue.
struct Subscriber {
    url: String,
    queue: mpsc::Sender<Value>,
    /// Its own `subscribe_event` was queued when it started: the stream's copy is skipped.
    greeted: bool,
}

/// Fans the event stream out to a worker per subscription (started and stopped only by the
/// subscription records), dropping those that fail, fall behind or are no longer allowed.
/// Returns when the stream ends, so that `deliver` starts it again.
async fn dispatch(s: ApiState, token: CancellationToken) {
    let (tx, mut events) = mpsc::channel(super::events::BUFFER);
    tokio::spawn(super::events::translate(s.clone(), tx, Vec::new()));
    let mut subscriptions =
        watcher::watch_without_previous(s.subscriptions.clone(), "", token.clone());
    let (dead_tx, mut dead) = mpsc::channel::<String>(16);
    let mut fanout = Fanout::new(s, dead_tx, token.clone());
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            Some(change) = subscriptions.recv() => fanout.follow(change),
            Some(name) = dead.recv() => fanout.unsubscribe(&name, "its deliveries keep failing"),
            event = events.recv() => {
                let Some(event) = event else { return };
                for name in queue_event(&mut fanout.subscribers, &event) {
                    fanout.unsubscribe(&name, "it fell a whole queue behind");
                }
            }
        }
    }
}

/// The subscribers of one term as the elected replica, each with its worker.
struct Fanout {
    s: ApiState,
    http: reqwest::Client,
    /// Where a worker names its subscriber when its deliveries keep failing.
    dead: mpsc::Sender<String>,
    /// Cancelled when the term ends: workers stop, even between retries.
    token: CancellationToken,
    subscribers: HashMap<String, Subscriber>,
}

impl Fanout {
    fn new(s: ApiState, dead: mpsc::Sender<String>, token: CancellationToken) -> Fanout {
        pacer_runtime::install_crypto();
        // A redirect could lead anywhere: only the allowed URL itself is called. HTTPS
        // callbacks are checked against the system's CAs; a host without any gets a client
        // for plain HTTP callbacks only (HTTPS ones then fail and are retried, then dropped).
        let builder = || {
            reqwest::Client::builder()
                .timeout(POST_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
        };
        let http = builder().build().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no system CA certificates: HTTPS event callbacks will fail");
            builder()
                .use_preconfigured_tls(pacer_runtime::tls::anonymous_client_config([]))
                .build()
                .expect("an HTTP client with a preconfigured TLS setup builds")
        });
        Fanout {
            s,
            http,
            dead,
            token,
            subscribers: HashMap::new(),
        }
    }

    /// Starts and stops workers as the subscription records come and go.
    fn follow(&mut self, change: Change<EventSubscription>) {
        match change {
            Change::Restarted(all) => {
                self.subscribers
                    .retain(|name, _| all.iter().any(|a| a.metadata.name.as_deref() == Some(name)));
                for sub in &all {
                    self.start(sub, false);
                }
            }
            Change::Applied(sub) => self.start(&sub, true),
            Change::Deleted(sub) => {
                self.subscribers
                    .remove(sub.metadata.name.as_deref().unwrap_or_default());
            }
            Change::Removed { key, .. } => {
                self.subscribers.remove(&key);
            }
        }
    }

    /// A worker for a subscription that has none, if its URL is still allowed (the rules may
    /// have changed since it subscribed): one that is not is unsubscribed. A `new` one is
    /// greeted with its own `subscribe_event` first.
    fn start(&mut self, sub: &EventSubscription, new: bool) {
        let name = sub.metadata.name.clone().unwrap_or_default();
        if self.subscribers.contains_key(&name) {
            return;
        }
        let url = sub.spec.callback_url.clone();
        let allowed = Url::parse(&url)
            .is_ok_and(|u| self.s.event_callbacks.iter().any(|rule| rule.allows(&u)));
        if !allowed {
            unsubscribe_later(&self.s, &name, &url, "its URL is no longer allowed");
            return;
        }
        let (queue, rx) = mpsc::channel(QUEUE);
        if new {
            let greeting = super::events::event(
                "subscribe_event",
                json!({"callbackUrl": url, "clientIp": sub.spec.client_ip}),
            );
            let _ = queue.try_send(greeting);
        }
        let worker = Worker {
            http: self.http.clone(),
            url: url.clone(),
            name: name.clone(),
            dead: self.dead.clone(),
            token: self.token.clone(),
        };
        tokio::spawn(worker.post_events(rx));
        let subscriber = Subscriber {
            url,
            queue,
            greeted: new,
        };
        self.subscribers.insert(name, subscriber);
    }

    /// Stops a subscriber's worker and deletes its record.
    fn unsubscribe(&mut self, name: &str, why: &str) {
        if let Some(gone) = self.subscribers.remove(name) {
            unsubscribe_later(&self.s, name, &gone.url, why);
        }
    }
}

/// Queues `event` for every subscriber (but a `subscribe_event` not for the one it greets,
/// already greeted when its worker started); returns those whose queue is full.
fn queue_event(subscribers: &mut HashMap<String, Subscriber>, event: &Value) -> Vec<String> {
    let greeting = (event["eventType"] == "subscribe_event")
        .then(|| event["callbackUrl"].as_str().unwrap_or_default());
    let mut behind = Vec::new();
    for (name, subscriber) in subscribers.iter_mut() {
        if subscriber.greeted && greeting == Some(subscriber.url.as_str()) {
            subscriber.greeted = false;
            continue;
        }
        if subscriber.queue.try_send(event.clone()).is_err() {
            behind.push(name.clone());
        }
    }
    behind.sort();
    behind
}

/// Unsubscribes a subscriber (its record goes; every stream sees `unsubscribe_event`), on a
/// task of its own so that the fan-out never waits for etcd.
fn unsubscribe_later(s: &ApiState, name: &str, url: &str, why: &str) {
    tracing::warn!(callback = %url, "unsubscribing an event callback: {why}");
    let (subscriptions, name, url) = (s.subscriptions.clone(), name.to_string(), url.to_string());
    tokio::spawn(async move {
        if let Err(e) = subscriptions.delete(&name).await {
            tracing::warn!(callback = %url, error = %e, "unsubscribing failed");
        }
    });
}

/// What POSTs one subscriber's events.
struct Worker {
    http: reqwest::Client,
    url: String,
    /// The subscription's record name, to say it is dead.
    name: String,
    dead: mpsc::Sender<String>,
    token: CancellationToken,
}

impl Worker {
    /// POSTs the events in order until the queue is dropped (unsubscribed, or the replica no
    /// longer leads) or the term ends; says when it keeps failing.
    async fn post_events(self, mut queue: mpsc::Receiver<Value>) {
        let mut failures = 0;
        while let Some(event) = queue.recv().await {
            if self.post_with_retries(&event).await {
                failures = 0;
                continue;
            }
            if self.token.is_cancelled() {
                return;
            }
            failures += 1;
            if failures >= MAX_FAILURES {
                let _ = self.dead.send(self.name).await;
                return;
            }
        }
    }

    /// One event, tried [`TRIES`] times with backoff; false when all failed or the term ended.
    async fn post_with_retries(&self, event: &Value) -> bool {
        let mut delays = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 1..=TRIES {
            let sent = self.http.post(&self.url).json(event).send().await;
            if sent.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            let again = attempt < TRIES
                && delays
                    .pause(&self.token, |delay| {
                        tracing::debug!(callback = %self.url, retry_in = ?delay, "event delivery failed");
                    })
                    .await;
            if !again {
                return false;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(rule: &str, url: &str) -> bool {
        CallbackRule::parse(rule)
            .unwrap()
            .allows(&Url::parse(url).unwrap())
    }

    fn subscriber(url: &str, room: usize, greeted: bool) -> (Subscriber, mpsc::Receiver<Value>) {
        let (queue, rx) = mpsc::channel(room);
        let subscriber = Subscriber {
            url: url.into(),
            queue,
            greeted,
        };
        (subscriber, rx)
    }

    #[test]
    fn an_event_is_queued_for_every_subscriber_and_full_queues_are_named() {
        let (fast, mut fast_rx) = subscriber("http://a/", 8, false);
        let (slow, _slow_rx) = subscriber("http://b/", 1, false);
        let mut subscribers = HashMap::from([("a".to_string(), fast), ("b".to_string(), slow)]);
        let event = json!({"eventType": "status_update_event"});
        assert!(queue_event(&mut subscribers, &event).is_empty());
        assert_eq!(queue_event(&mut subscribers, &event), vec!["b".to_string()]);
        assert_eq!(fast_rx.try_recv().unwrap(), event);
        assert_eq!(fast_rx.try_recv().unwrap(), event);
    }

    #[test]
    fn a_new_subscriber_skips_the_stream_copy_of_its_own_greeting_once() {
        let (greeted, mut greeted_rx) = subscriber("http://a/", 8, true);
        let (other, mut other_rx) = subscriber("http://b/", 8, false);
        let mut subscribers = HashMap::from([("a".to_string(), greeted), ("b".to_string(), other)]);
        let greeting = json!({"eventType": "subscribe_event", "callbackUrl": "http://a/"});
        queue_event(&mut subscribers, &greeting);
        assert!(
            greeted_rx.try_recv().is_err(),
            "its own greeting came first, from its start"
        );
        assert_eq!(other_rx.try_recv().unwrap(), greeting);
        queue_event(&mut subscribers, &greeting);
        assert_eq!(
            greeted_rx.try_recv().unwrap(),
            greeting,
            "skipped once only"
        );
    }

    #[test]
    fn only_urls_under_a_rule_are_allowed() {
        for (rule, url, expected, why) in [
            (
                "http://127.0.0.1:*/",
                "http://127.0.0.1:4567/events",
                true,
                "any port",
            ),
            (
                "https://hooks.example.com/marathon",
                "https://hooks.example.com/marathon/1",
                true,
                "path prefix",
            ),
            (
                "https://hooks.example.com/marathon",
                "https://hooks.example.com/other",
                false,
                "path",
            ),
            (
                "https://hooks.example.com/",
                "http://hooks.example.com/",
                false,
                "scheme",
            ),
            (
                "http://127.0.0.1:9000/",
                "http://127.0.0.1:9001/",
                false,
                "port",
            ),
            (
                "http://127.0.0.1:9000/",
                "http://127.0.0.1:9000@169.254.169.254/",
                false,
                "userinfo trick",
            ),
            (
                "http://127.0.0.1:*/",
                "http://user:pw@127.0.0.1:80/",
                false,
                "credentials",
            ),
            ("http://127.0.0.1:*/", "http://127.0.0.2:80/", false, "host"),
        ] {
            assert_eq!(allowed(rule, url), expected, "{why}: {rule} / {url}");
        }
        assert!(CallbackRule::parse("file:///etc/passwd").is_err());
        assert!(CallbackRule::parse("not a url").is_err());
    }
}
