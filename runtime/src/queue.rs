//! A work queue of keys: de-duplicated, one worker per key at a time, delayed requeue with backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Default)]
struct State {
    queued: VecDeque<String>,
    queued_set: HashSet<String>,
    active: HashSet<String>,
    /// Keys added while being worked on: queued again when the worker is done.
    dirty: HashSet<String>,
    failures: HashMap<String, usize>,
}

/// Cheap to clone; all clones share one queue.
#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl WorkQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `key` unless it is queued already; a key being worked on is queued after it is done.
    pub fn add(&self, key: &str) {
        let mut s = self.state.lock().expect("queue lock");
        if s.active.contains(key) {
            s.dirty.insert(key.to_string());
            return;
        }
        if s.queued_set.insert(key.to_string()) {
            s.queued.push_back(key.to_string());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: &str, delay: Duration) {
        let (queue, key) = (self.clone(), key.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(&key);
        });
    }

    /// Waits for the next key and marks it active.
    pub async fn next(&self) -> String {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.state.lock().expect("queue lock");
                if let Some(key) = s.queued.pop_front() {
                    s.queued_set.remove(&key);
                    s.active.insert(key.clone());
                    if !s.queued.is_empty() {
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Marks `key` done; requeues it if it was added meanwhile.
    pub fn done(&self, key: &str) {
        let again = {
            let mut s = self.state.lock().expect("queue lock");
            s.active.remove(key);
            s.dirty.remove(key)
        };
        if again {
            self.add(key);
        }
    }

    /// Counts a failure of `key`: how many in a row now.
    pub fn failed(&self, key: &str) -> usize {
        let mut s = self.state.lock().expect("queue lock");
        let n = s.failures.entry(key.to_string()).or_default();
        *n += 1;
        *n
    }

    /// Forgets the failures of `key` after it succeeded; returns how many there were in a row.
    pub fn forget(&self, key: &str) -> usize {
        let mut s = self.state.lock().expect("queue lock");
        s.failures.remove(key).unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.state.lock().expect("queue lock").queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Failures in a row of one key after which it is said at warn level (once).
pub const REPEATED_FAILURES: usize = 5;

/// The delay before retry number `failures` (1 = first retry): 50 ms doubling up to 30 s.
pub fn failure_backoff(failures: usize) -> Duration {
    crate::backoff(Duration::from_millis(50), Duration::from_secs(30))
        .nth(failures.saturating_sub(1))
        .unwrap_or(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_in_a_row_are_counted_until_a_success() {
        let q = WorkQueue::new();
        assert_eq!((q.failed("a"), q.failed("a"), q.failed("b")), (1, 2, 1));
        assert_eq!(
            q.forget("a"),
            2,
            "a success tells how many failures it ends"
        );
        assert_eq!(q.forget("a"), 0);
        assert_eq!(q.failed("a"), 1, "counted afresh");
    }

    #[tokio::test]
    async fn deduplicates_queued_keys() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, "a");
        assert_eq!(q.next().await, "b");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_key_added_while_active_runs_again_after_done() {
        let q = WorkQueue::new();
        q.add("a");
        let key = q.next().await;
        q.add("a");
        assert!(
            q.is_empty(),
            "an active key is not handed to a second worker"
        );
        q.done(&key);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, "a");
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_add_arrives_after_the_delay() {
        let q = WorkQueue::new();
        q.add_after("a", Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(q.is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(q.next().await, "a");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(failure_backoff(1) <= Duration::from_millis(100));
        assert!(failure_backoff(4) >= Duration::from_millis(400));
        assert!(failure_backoff(100) <= Duration::from_secs(60));
    }
}
