//! A controller's memory of its own writes: which ones its caches have not shown yet, and
//! when it last wrote a record (for writes made at most once per interval).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A controller's own writes, by key, that a cache has not shown yet. Acting on a cache that
/// lacks them would undo or repeat them (place tasks twice, write back a stale status).
#[derive(Clone, Default)]
pub struct OwnWrites(Arc<Mutex<HashMap<String, i64>>>);

impl OwnWrites {
    /// Records a write of `key` at etcd `revision`.
    pub fn record(&self, key: &str, revision: i64) {
        if revision > 0 {
            self.0
                .lock()
                .expect("own writes lock")
                .insert(key.to_string(), revision);
        }
    }

    /// Whether a cache at `revision` holds the last write of `key` (which is then forgotten).
    pub fn seen(&self, key: &str, revision: i64) -> bool {
        let mut writes = self.0.lock().expect("own writes lock");
        let seen = writes.get(key).is_none_or(|written| revision >= *written);
        if seen {
            writes.remove(key);
        }
        seen
    }
}

/// When a controller last wrote each record, for writes made at most once per interval.
#[derive(Clone, Default)]
pub struct WriteTimes(Arc<Mutex<HashMap<String, std::time::Instant>>>);

impl WriteTimes {
    /// `None` when `key` may be written now (recorded as written now), else how long until
    /// it may. A key not seen before may be written at once, or, with `from_first_sight`, one
    /// interval from now.
    pub fn held_back(
        &self,
        key: &str,
        every: Duration,
        from_first_sight: bool,
    ) -> Option<Duration> {
        let mut times = self.0.lock().expect("write times lock");
        let now = std::time::Instant::now();
        let ago = match times.get(key) {
            Some(at) => now.duration_since(*at),
            None if from_first_sight => {
                times.insert(key.to_string(), now);
                Duration::ZERO
            }
            None => every,
        };
        if ago < every {
            return Some(every - ago);
        }
        times.insert(key.to_string(), now);
        None
    }

    /// Records a write of `key` made now.
    pub fn written(&self, key: &str) {
        let now = std::time::Instant::now();
        self.0
            .lock()
            .expect("write times lock")
            .insert(key.to_string(), now);
    }

    pub fn forget(&self, key: &str) {
        self.0.lock().expect("write times lock").remove(key);
    }
}
