//! Watching a prefix: list at revision R, watch from R+1, resume after errors, relist after compaction.

use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use pacer_crd::Record;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::{Api, Error};
use crate::retry::Backoff;

/// What a watcher reports, in revision order.
#[derive(Debug, Clone)]
pub enum Event<K> {
    /// A full list: everything that exists now. Replaces whatever was known before.
    Restarted(Vec<K>),
    Applied(K),
    Deleted(K),
    /// A record deleted, known by its key below the kind's prefix and the revision of its
    /// deletion: how a watch `without_previous` values reports it (a cache knows the rest).
    Removed {
        key: String,
        revision: i64,
    },
}

/// The receiving end of a watcher. Events travel boxed: a channel allocates room for 32 of
/// its items at once, and a task is over a kilobyte, which made every idle watch (one per
/// simulated node) cost 40 KiB.
pub struct Events<K>(mpsc::Receiver<Box<Event<K>>>);

impl<K> Events<K> {
    /// The next event; `None` once the watcher has stopped.
    pub async fn recv(&mut self) -> Option<Event<K>> {
        self.0.recv().await.map(|event| *event)
    }

    /// The events as a stream.
    pub fn into_stream(self) -> impl futures::Stream<Item = Event<K>> {
        futures::stream::unfold(self, |mut events| async move {
            events.recv().await.map(|event| (event, events))
        })
    }
}

type Sender<K> = mpsc::Sender<Box<Event<K>>>;

/// Why a watch stream ended.
enum Ended {
    /// The start revision was compacted away: only a relist can recover.
    Compacted,
    /// A transport error or a closed stream: resume from the last revision seen.
    Broken(Error),
    Cancelled,
}

/// What a watch asks etcd for with each change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Previous {
    /// The record as it was before (`prev_kv`), so that a deletion comes as `Deleted` with
    /// the whole record. etcd reads it from its backend for every change but a creation.
    Values,
    /// Nothing more: a deletion comes as `Removed` with the key alone. For watchers that
    /// hold what they watch (a cache, an agent's runners): the read per change was a good
    /// part of etcd's work while agents reported 10,000 tasks running.
    Nothing,
}

/// Spawns a watcher of the records below `sub` and returns its events. Errors are retried
/// with backoff inside; the stream ends only when `token` is cancelled.
pub fn watch<K: Record>(api: Api<K>, sub: &str, token: CancellationToken) -> Events<K> {
    watch_from(api, sub, None, Previous::Values, token)
}

/// Like `watch`, but deletions come as `Removed`: the key alone.
pub fn watch_without_previous<K: Record>(
    api: Api<K>,
    sub: &str,
    token: CancellationToken,
) -> Events<K> {
    watch_from(api, sub, None, Previous::Nothing, token)
}

/// Like `watch`, but starts by following changes after `revision` (if given) instead of
/// listing; if that revision was compacted it lists, as it would after any compaction.
pub fn watch_from<K: Record>(
    api: Api<K>,
    sub: &str,
    revision: Option<i64>,
    previous: Previous,
    token: CancellationToken,
) -> Events<K> {
    let (tx, rx) = mpsc::channel(1024);
    let sub = sub.to_string();
    let watch = Watch { api, sub, previous };
    tokio::spawn(async move { run(watch, revision, tx, token).await });
    Events(rx)
}

/// What one watcher follows.
struct Watch<K> {
    api: Api<K>,
    sub: String,
    previous: Previous,
}

async fn run<K: Record>(
    watch: Watch<K>,
    mut revision: Option<i64>,
    tx: Sender<K>,
    token: CancellationToken,
) {
    let (api, sub) = (&watch.api, &watch.sub);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        if token.is_cancelled() || tx.is_closed() {
            return;
        }
        let start = match revision {
            Some(rev) => rev,
            None => match timed(api.list(sub)).await {
                (Ok(list), took) => {
                    tracing::debug!(kind = api.kind(), items = list.items.len(), ?took, "listed");
                    if tx
                        .send(Box::new(Event::Restarted(list.items)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    list.revision
                }
                (Err(e), _) => {
                    tracing::debug!(kind = api.kind(), error = %e, "list failed, retrying");
                    if !backoff.pause(&token, |_| {}).await {
                        return;
                    } else {
                        continue;
                    }
                }
            },
        };
        revision = Some(start);
        match follow(&watch, start, &tx, &token, &mut revision, &mut backoff).await {
            Ended::Cancelled => return,
            Ended::Compacted => {
                tracing::info!(
                    kind = api.kind(),
                    revision = start,
                    "watch revision compacted, relisting"
                );
                revision = None;
            }
            Ended::Broken(e) => {
                tracing::debug!(kind = api.kind(), error = %e, "watch broke, resuming");
                if !backoff.pause(&token, |_| {}).await {
                    return;
                }
            }
        }
    }
}

/// Follows the watch from `start + 1`, updating `revision` as events arrive.
async fn follow<K: Record>(
    watch: &Watch<K>,
    start: i64,
    tx: &Sender<K>,
    token: &CancellationToken,
    revision: &mut Option<i64>,
    backoff: &mut Backoff,
) -> Ended {
    let api = &watch.api;
    let mut options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(start + 1)
        .with_progress_notify();
    if watch.previous == Previous::Values {
        options = options.with_prev_key();
    }
    let root = api.etcd_prefix("");
    let mut stream = api.client().watch(api.etcd_prefix(&watch.sub), options);
    loop {
        let message = tokio::select! {
            _ = token.cancelled() => return Ended::Cancelled,
            m = stream.message() => m,
        };
        let resp = match message {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                return Ended::Broken(
                    etcd_client::Error::WatchError("watch stream closed".into()).into(),
                );
            }
            Err(e) => return Ended::Broken(e.into()),
        };
        if resp.compact_revision() > 0 {
            return Ended::Compacted;
        }
        if resp.canceled() {
            return Ended::Broken(
                etcd_client::Error::WatchError(resp.cancel_reason().to_string()).into(),
            );
        }
        backoff.reset();
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let decoded = match event.event_type() {
                EventType::Put => api.decode(kv).map(Event::Applied),
                // A deleted record carries the revision of its deletion.
                EventType::Delete => match event.prev_kv() {
                    Some(prev) => api.decode(prev).map(|mut obj| {
                        obj.meta_mut().resource_version = Some(kv.mod_revision().to_string());
                        Event::Deleted(obj)
                    }),
                    None if watch.previous == Previous::Nothing => {
                        let key = String::from_utf8_lossy(kv.key());
                        Ok(Event::Removed {
                            key: key.strip_prefix(&root).unwrap_or(&key).to_string(),
                            revision: kv.mod_revision(),
                        })
                    }
                    None => continue,
                },
            };
            *revision = Some(kv.mod_revision());
            match decoded {
                Ok(ev) => {
                    if tx.send(Box::new(ev)).await.is_err() {
                        return Ended::Cancelled;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "skipping a record that does not decode"),
            }
        }
        let progress = Response {
            events: resp.events().len(),
            created: resp.created(),
            header: resp.header().map_or(0, |h| h.revision()),
        };
        *revision = progress.resume_after(revision.unwrap_or(start)).into();
    }
}

/// What of a watch response decides where a resumed watch starts.
struct Response {
    events: usize,
    created: bool,
    header: i64,
}

impl Response {
    /// The revision a watch may resume after once this response is handled (its events
    /// already moved `last`). Only a progress notification (no events, not the `created`
    /// answer) moves it to the header's revision: etcd stamps a `created` answer, and each
    /// batch of a watcher catching up, with the store's current revision while older events
    /// are still to come, so resuming from that would skip them. (etcd's Go client does the
    /// same: `IsProgressNotify`.) This lost a node's new tasks when the shared stream broke
    /// between a watch's `created` answer and its events.
    fn resume_after(&self, last: i64) -> i64 {
        if self.events == 0 && !self.created {
            last.max(self.header)
        } else {
            last
        }
    }
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, std::time::Duration) {
    let start = std::time::Instant::now();
    let out = f.await;
    (out, start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::Response;

    #[test]
    fn only_progress_notifications_move_the_resume_revision_to_the_header() {
        // A watch from revision 10 is created while the store is at 50: events 11..50 follow.
        let created = Response {
            events: 0,
            created: true,
            header: 50,
        };
        assert_eq!(created.resume_after(10), 10);
        // A catching-up batch ending at 30, stamped with the current revision.
        let batch = Response {
            events: 3,
            created: false,
            header: 50,
        };
        assert_eq!(batch.resume_after(30), 30);
        // Nothing more for this watch up to 60.
        let progress = Response {
            events: 0,
            created: false,
            header: 60,
        };
        assert_eq!(progress.resume_after(30), 60);
        // A stale header never moves it back.
        assert_eq!(progress.resume_after(70), 70);
    }
}
