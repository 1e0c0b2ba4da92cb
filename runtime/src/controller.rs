//! `Controller::new(reflector).watches(..).run(reconcile, error_policy, ctx)`: keys from watch
//! events go on a work queue; each key is reconciled by at most one worker at a time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pacer_crd::Record;
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::queue::{REPEATED_FAILURES, WorkQueue, failure_backoff};
use crate::reflector::{Reflector, Store};
use crate::watcher::Event;

/// Reconciles that panicked in this process (caught; each retried with backoff).
static PANICS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many reconciles have panicked in this process, every controller counted.
pub fn panics_caught() -> u64 {
    PANICS.load(std::sync::atomic::Ordering::Relaxed)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// What to do after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile again after `delay` even if nothing changes.
    pub fn requeue(delay: Duration) -> Self {
        Action {
            requeue_after: Some(delay),
        }
    }

    /// Reconcile again only when something watched changes. From an error policy: retry with
    /// the key's exponential backoff.
    pub fn await_change() -> Self {
        Action {
            requeue_after: None,
        }
    }

    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }

    /// This action, but reconciling again within `delay` at the latest.
    pub fn within(self, delay: Duration) -> Self {
        Action::requeue(self.requeue_after.map_or(delay, |d| d.min(delay)))
    }
}

/// Queues the keys a watched kind maps to.
type Resync = Box<dyn Fn(&WorkQueue) + Send + Sync>;

/// Drives reconciles of records of kind `K`.
pub struct Controller<K> {
    store: Store<K>,
    queue: WorkQueue,
    token: CancellationToken,
    concurrency: usize,
    /// Fills the queue with every key we should reconcile (on start and periodic resync).
    resyncs: Vec<Resync>,
    resync_every: Duration,
}

impl<K: Record> Controller<K> {
    /// A controller of the records in `reflector`, reconciled by their key.
    pub fn new(reflector: &Reflector<K>, token: CancellationToken) -> Self {
        let controller = Controller {
            store: reflector.store(),
            queue: WorkQueue::new(),
            token,
            concurrency: 4,
            resyncs: Vec::new(),
            resync_every: Duration::from_secs(300),
        };
        controller.watches(reflector, |obj: &K| vec![obj.key()])
    }

    /// Also reconciles the keys `mapper` names whenever a record of kind `O` changes.
    pub fn watches<O: Record>(
        mut self,
        reflector: &Reflector<O>,
        mapper: impl Fn(&O) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        let mapper = Arc::new(mapper);
        let store = reflector.store();
        let resync_mapper = mapper.clone();
        self.resyncs.push(Box::new(move |queue: &WorkQueue| {
            for obj in store.list() {
                resync_mapper(&obj).iter().for_each(|k| queue.add(k));
            }
        }));
        let (mut rx, queue, token, store) = (
            reflector.subscribe(),
            self.queue.clone(),
            self.token.clone(),
            reflector.store(),
        );
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    _ = token.cancelled() => return,
                    r = rx.recv() => r,
                };
                match received {
                    Ok(event) => keys_of(&event, mapper.as_ref())
                        .iter()
                        .for_each(|k| queue.add(k)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        store
                            .list()
                            .iter()
                            .flat_map(|o| mapper(o))
                            .for_each(|k| queue.add(&k));
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        self
    }

    /// How many keys may be reconciled at once (default 4).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The queue, for code outside the watches that wants a key reconciled.
    pub fn queue(&self) -> WorkQueue {
        self.queue.clone()
    }

    /// Runs until the token is cancelled, then waits for reconciles in flight.
    pub async fn run<Ctx, E, F, Fut, P>(mut self, reconcile: F, error_policy: P, ctx: Arc<Ctx>)
    where
        Ctx: Send + Sync + 'static,
        E: std::fmt::Display + Send + 'static,
        F: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(Arc<K>, &E, Arc<Ctx>) -> Action + Send + Sync + 'static,
    {
        self.store.wait_ready().await;
        self.spawn_resync();
        let (reconcile, error_policy) = (Arc::new(reconcile), Arc::new(error_policy));
        let permits = Arc::new(Semaphore::new(self.concurrency));
        // Shared by every reconcile's task (a String clone per reconcile is a hot-path allocation).
        let kind: Arc<str> = K::kind(&()).into();
        loop {
            let key = tokio::select! {
                _ = self.token.cancelled() => break,
                key = self.queue.next() => key,
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let Some(obj) = self.store.get(&key) else {
                self.queue.done(&key);
                continue;
            };
            let kind = kind.clone();
            let (queue, ctx, reconcile, error_policy) = (
                self.queue.clone(),
                ctx.clone(),
                reconcile.clone(),
                error_policy.clone(),
            );
            // Debug: at the default level the span and its formatted fields are not built at
            // all (built for every reconcile they were 7% of the server's CPU while placing).
            let span = tracing::debug_span!("reconcile", kind = %kind, name = %key);
            tokio::spawn(
                async move {
                    // Boxed: a reconcile's future is large, and spawning copies the whole
                    // future it is part of (4-6% of the server's CPU when placing).
                    // A reconcile that panics must not wedge its key: caught, counted, retried
                    // with backoff like a failure, and the key is let go (`done`) as always.
                    let attempt = std::panic::AssertUnwindSafe(Box::pin(reconcile(obj.clone(), ctx.clone())));
                    let outcome = match futures::FutureExt::catch_unwind(attempt).await {
                        Ok(outcome) => outcome,
                        Err(panic) => {
                            PANICS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let failures = queue.failed(&key);
                            let delay = failure_backoff(failures);
                            queue.add_after(&key, delay);
                            let message = panic_message(&panic);
                            if failures == 1 || failures == REPEATED_FAILURES {
                                tracing::error!(%kind, %key, panic = %message, failures, retry_in = ?delay, "reconcile panicked");
                            }
                            queue.done(&key);
                            drop(permit);
                            return;
                        }
                    };
                    match outcome {
                        Ok(action) => {
                            if queue.forget(&key) >= REPEATED_FAILURES {
                                tracing::info!(%kind, %key, "reconcile succeeds again");
                            }
                            if let Some(delay) = action.requeue_after {
                                queue.add_after(&key, delay);
                            }
                        }
                        Err(error) => {
                            let failures = queue.failed(&key);
                            let delay = error_policy(obj, &error, ctx)
                                .requeue_after
                                .unwrap_or_else(|| failure_backoff(failures));
                            queue.add_after(&key, delay);
                            // Each failure at debug; one that keeps coming back once, where an
                            // operator sees it.
                            if failures == REPEATED_FAILURES {
                                tracing::warn!(%kind, %key, %error, failures, retry_in = ?delay, "reconcile keeps failing");
                            } else {
                                tracing::debug!(%error, failures, retry_in = ?delay, "reconcile failed");
                            }
                        }
                    }
                    queue.done(&key);
                    drop(permit);
                }
                .instrument(span),
            );
        }
        let _ = permits.acquire_many(self.concurrency as u32).await;
    }

    /// Queues every key now and again every `resync_every`, so that drift nobody announced is repaired.
    fn spawn_resync(&mut self) {
        let resyncs = std::mem::take(&mut self.resyncs);
        let (queue, token, every) = (self.queue.clone(), self.token.clone(), self.resync_every);
        tokio::spawn(async move {
            loop {
                resyncs.iter().for_each(|resync| resync(&queue));
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
    }
}

fn keys_of<O: Record>(event: &Event<Arc<O>>, mapper: &dyn Fn(&O) -> Vec<String>) -> Vec<String> {
    match event {
        Event::Restarted(all) => all.iter().flat_map(|o| mapper(o)).collect(),
        Event::Applied(obj) | Event::Deleted(obj) => mapper(obj),
        // A reflector resolves these to `Deleted`.
        Event::Removed { .. } => Vec::new(),
    }
}
