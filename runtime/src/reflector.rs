//! An in-memory cache of one record kind, fed by a watcher, whose events others can subscribe to.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use pacer_crd::Record;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::watcher::{self, Event};

/// What a record is indexed under (its owner, say), if anything.
pub type Indexer<K> = fn(&K) -> Option<String>;

/// The records by key, and by index value when the cache has an indexer.
struct Items<K> {
    all: BTreeMap<String, Arc<K>>,
    indexer: Option<Indexer<K>>,
    index: HashMap<String, BTreeMap<String, Arc<K>>>,
}

impl<K: Record> Items<K> {
    fn insert(&mut self, key: String, obj: Arc<K>) {
        if let Some(old) = self.all.insert(key.clone(), obj.clone()) {
            self.unindex(&key, &old);
        }
        if let Some(value) = self.indexer.and_then(|f| f(&obj)) {
            self.index.entry(value).or_default().insert(key, obj);
        }
    }

    fn remove(&mut self, key: &str) -> Option<Arc<K>> {
        let old = self.all.remove(key)?;
        self.unindex(key, &old);
        Some(old)
    }

    fn unindex(&mut self, key: &str, old: &K) {
        let Some(value) = self.indexer.and_then(|f| f(old)) else {
            return;
        };
        if let Some(set) = self.index.get_mut(&value) {
            set.remove(key);
            if set.is_empty() {
                self.index.remove(&value);
            }
        }
    }
}

/// A read-only view of the cache: records by key.
pub struct Store<K> {
    items: Arc<RwLock<Items<K>>>,
    ready: watch::Receiver<bool>,
    /// The newest etcd revision the cache has applied.
    revision: Arc<watch::Sender<i64>>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            items: self.items.clone(),
            ready: self.ready.clone(),
            revision: self.revision.clone(),
        }
    }
}

impl<K: Record> Store<K> {
    /// An empty store, and the sender that marks it ready.
    fn new(indexer: Option<Indexer<K>>) -> (Store<K>, watch::Sender<bool>) {
        let (ready_tx, ready) = watch::channel(false);
        let store = Store {
            items: Arc::new(RwLock::new(Items {
                all: BTreeMap::new(),
                indexer,
                index: HashMap::new(),
            })),
            ready,
            revision: Arc::new(watch::Sender::new(0)),
        };
        (store, ready_tx)
    }

    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.items.read().expect("store lock").all.get(key).cloned()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.items
            .read()
            .expect("store lock")
            .all
            .values()
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.items.read().expect("store lock").all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records whose key starts with `prefix`.
    pub fn list_prefix(&self, prefix: &str) -> Vec<Arc<K>> {
        let items = self.items.read().expect("store lock");
        items
            .all
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Records for which `keep` holds.
    pub fn filter(&self, keep: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        self.items
            .read()
            .expect("store lock")
            .all
            .values()
            .filter(|v| keep(v))
            .cloned()
            .collect()
    }

    /// The records the cache's indexer puts under `value`, in key order (none without an
    /// indexer).
    pub fn indexed(&self, value: &str) -> Vec<Arc<K>> {
        self.items
            .read()
            .expect("store lock")
            .index
            .get(value)
            .map(|set| set.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Waits until the first full list has arrived.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// The newest revision applied: a write at revision R is in the cache once this is >= R.
    pub fn revision(&self) -> i64 {
        *self.revision.borrow()
    }

    /// Waits until the cache has applied `revision` (true), or `limit` has passed (false).
    pub async fn wait_revision(&self, revision: i64, limit: std::time::Duration) -> bool {
        let mut seen = self.revision.subscribe();
        tokio::time::timeout(limit, seen.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Applies a watcher's event and returns it with the records as the cache now shares them
    /// (no record is copied). A `Removed` key comes back as `Deleted` with the record the
    /// cache held, or as nothing if it held none.
    fn apply(&self, event: Event<K>) -> Option<Event<Arc<K>>> {
        // Records are wrapped before the lock is taken: a relist of 50,000 tasks must not
        // hold readers out while it allocates.
        let event = match event {
            Event::Restarted(all) => Event::Restarted(all.into_iter().map(Arc::new).collect()),
            Event::Applied(obj) => Event::Applied(Arc::new(obj)),
            Event::Deleted(obj) => Event::Deleted(Arc::new(obj)),
            Event::Removed { key, revision } => Event::Removed { key, revision },
        };
        let mut items = self.items.write().expect("store lock");
        let (event, seen) = match event {
            Event::Restarted(all) => {
                items.all.clear();
                items.index.clear();
                for o in &all {
                    items.insert(o.key(), o.clone());
                }
                let seen = all.iter().map(|o| revision_of(o.as_ref())).max();
                (Some(Event::Restarted(all)), seen.unwrap_or(0))
            }
            Event::Applied(obj) => {
                items.insert(obj.key(), obj.clone());
                let seen = revision_of(obj.as_ref());
                (Some(Event::Applied(obj)), seen)
            }
            Event::Deleted(obj) => {
                items.remove(&obj.key());
                let seen = revision_of(obj.as_ref());
                (Some(Event::Deleted(obj)), seen)
            }
            Event::Removed { key, revision } => {
                let gone = items.remove(&key).map(|old| {
                    let mut obj = K::clone(&old);
                    obj.meta_mut().resource_version = Some(revision.to_string());
                    Event::Deleted(Arc::new(obj))
                });
                (gone, revision)
            }
        };
        drop(items);
        self.revision.send_if_modified(|r| {
            let newer = seen > *r;
            if newer {
                *r = seen;
            }
            newer
        });
        event
    }
}

fn revision_of<K: Record>(obj: &K) -> i64 {
    obj.meta()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A watcher plus its cache; events are re-broadcast after the cache has applied them.
pub struct Reflector<K> {
    store: Store<K>,
    events: broadcast::Sender<Arc<Event<Arc<K>>>>,
}

impl<K> Clone for Reflector<K> {
    fn clone(&self) -> Self {
        Reflector {
            store: self.store.clone(),
            events: self.events.clone(),
        }
    }
}

impl<K: Record> Reflector<K> {
    /// Starts watching the records of `api` below `sub`.
    pub fn start(api: Api<K>, sub: &str, token: CancellationToken) -> Self {
        Self::start_indexed(api, sub, None, token)
    }

    /// Like `start`, and the store also keeps the records by `indexer`'s value (`indexed`).
    pub fn start_indexed(
        api: Api<K>,
        sub: &str,
        indexer: Option<Indexer<K>>,
        token: CancellationToken,
    ) -> Self {
        let (store, ready_tx) = Store::new(indexer);
        let (events, _) = broadcast::channel(4096);
        // The cache holds every record, so deletions need not carry the record (`prev_kv`).
        let mut rx = watcher::watch_without_previous(api, sub, token);
        let (cache, out) = (store.clone(), events.clone());
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let Some(event) = cache.apply(event) else {
                    continue;
                };
                if matches!(event, Event::Restarted(_)) {
                    let _ = ready_tx.send(true);
                }
                let _ = out.send(Arc::new(event));
            }
        });
        Reflector { store, events }
    }

    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Events from now on. A subscriber that falls behind gets `Lagged` and should resync from the store.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event<Arc<K>>>> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_crd::App;

    fn app(name: &str, role: &str) -> App {
        let spec = serde_json::from_value(serde_json::json!({"role": role})).expect("spec");
        App::new(name, spec)
    }

    fn names(apps: Vec<Arc<App>>) -> Vec<String> {
        apps.iter()
            .filter_map(|a| a.metadata.name.clone())
            .collect()
    }

    fn store(indexer: Option<Indexer<App>>) -> Store<App> {
        Store::new(indexer).0
    }

    #[tokio::test]
    async fn waiting_for_a_revision_ends_once_the_cache_has_applied_it() {
        let store = store(None);
        let short = std::time::Duration::from_millis(20);
        assert!(!store.wait_revision(5, short).await, "nothing applied yet");
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .wait_revision(5, std::time::Duration::from_secs(30))
                    .await
            })
        };
        let mut a = app("a", "web");
        a.metadata.resource_version = Some("4".into());
        store.apply(Event::Applied(a.clone()));
        assert!(!store.wait_revision(5, short).await, "revision 4 is not 5");
        a.metadata.resource_version = Some("7".into());
        store.apply(Event::Applied(a));
        assert!(waiter.await.expect("waiter"));
        assert_eq!(store.revision(), 7);
        assert!(
            store.wait_revision(6, short).await,
            "an older revision is there already"
        );
    }

    #[test]
    fn the_index_follows_inserts_moves_deletes_and_restarts() {
        let store = store(Some(|a: &App| Some(a.spec.role.clone())));
        store.apply(Event::Applied(app("a", "web")));
        store.apply(Event::Applied(app("b", "web")));
        store.apply(Event::Applied(app("c", "batch")));
        assert_eq!(names(store.indexed("web")), ["a", "b"]);
        // A record whose indexed value changes moves.
        store.apply(Event::Applied(app("b", "batch")));
        assert_eq!(names(store.indexed("web")), ["a"]);
        assert_eq!(names(store.indexed("batch")), ["b", "c"]);
        store.apply(Event::Deleted(app("a", "web")));
        assert!(store.indexed("web").is_empty());
        store.apply(Event::Restarted(vec![app("d", "web")]));
        assert_eq!(names(store.indexed("web")), ["d"]);
        assert!(store.indexed("batch").is_empty());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_removed_key_comes_back_as_the_record_the_cache_held() {
        let store = store(Some(|a: &App| Some(a.spec.role.clone())));
        store.apply(Event::Applied(app("a", "web")));
        let removed = Event::Removed {
            key: "a".into(),
            revision: 9,
        };
        match store.apply(removed) {
            Some(Event::Deleted(a)) => {
                assert_eq!(a.metadata.name.as_deref(), Some("a"));
                assert_eq!(a.spec.role, "web");
                assert_eq!(a.metadata.resource_version.as_deref(), Some("9"));
            }
            other => panic!("expected the deleted record, got {other:?}"),
        }
        assert!(store.get("a").is_none());
        assert!(store.indexed("web").is_empty());
        // A key the cache never held: nothing to tell, but the revision is seen.
        let unknown = Event::Removed {
            key: "b".into(),
            revision: 12,
        };
        assert!(store.apply(unknown).is_none());
        assert_eq!(store.revision(), 12);
    }
}
