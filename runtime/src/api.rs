//! Typed access to one record kind in etcd: get, list, create, replace (CAS), update_status, delete.

use std::marker::PhantomData;

use etcd_client::{GetOptions, KeyValue};
use pacer_crd::{HasStatus, Record};

use crate::client::Client;
use crate::txn::Txn;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} '{key}' does not exist")]
    NotFound { kind: String, key: String },
    #[error("{kind} '{key}' already exists")]
    AlreadyExists { kind: String, key: String },
    /// Someone else wrote the record since it was read; read again and retry.
    #[error("{kind} '{key}' was changed concurrently")]
    Conflict { kind: String, key: String },
    #[error("etcd request failed")]
    Etcd(#[from] etcd_client::Error),
    #[error("record at '{key}' is not a valid {kind}")]
    Decode {
        kind: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A read running on a task of its own did not finish (the runtime is shutting down).
    #[error("an etcd read was cut short")]
    Aborted(#[from] tokio::task::JoinError),
    #[error("{kind} cannot be encoded")]
    Encode {
        kind: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// Records of one kind and a revision they were read at.
#[derive(Debug, Clone)]
pub struct ObjectList<K> {
    pub items: Vec<K>,
    pub revision: i64,
}

/// Typed access to records of kind `K` under `<prefix><plural>/`.
pub struct Api<K> {
    client: Client,
    root: String,
    kind: String,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api {
            client: self.client.clone(),
            root: self.root.clone(),
            kind: self.kind.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K: Record> Api<K> {
    pub fn new(client: &Client) -> Self {
        let root = format!("{}{}/", client.prefix(), K::plural_name());
        Api {
            client: client.clone(),
            root,
            kind: K::kind(&()).into_owned(),
            _kind: PhantomData,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The full etcd key of a record key, e.g. `/pacer/apps/web`.
    pub(crate) fn etcd_key(&self, key: &str) -> String {
        format!("{}{key}", self.root)
    }

    /// The etcd prefix of all records below `sub` (`""` = every record of the kind).
    pub(crate) fn etcd_prefix(&self, sub: &str) -> String {
        format!("{}{sub}", self.root)
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Decodes a stored value; `resourceVersion` is the key's mod_revision.
    pub(crate) fn decode(&self, kv: &KeyValue) -> Result<K, Error> {
        let mut obj: K = serde_json::from_slice(kv.value()).map_err(|source| Error::Decode {
            kind: self.kind.clone(),
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            source,
        })?;
        obj.meta_mut().resource_version = Some(kv.mod_revision().to_string());
        Ok(obj)
    }

    /// Encodes a record for storage, without its resourceVersion (that is etcd's to say).
    pub(crate) fn encode(&self, obj: &K) -> Result<Vec<u8>, Error> {
        let mut obj = obj.clone();
        obj.meta_mut().resource_version = None;
        serde_json::to_vec(&obj).map_err(|source| Error::Encode {
            kind: self.kind.clone(),
            source,
        })
    }

    pub async fn get(&self, key: &str) -> Result<Option<K>, Error> {
        let key = self.etcd_key(key);
        let resp = crate::retry::transient(|| {
            let mut etcd = self.client.kv();
            let key = key.clone();
            async move { etcd.get(key, None).await }
        })
        .await?;
        resp.kvs().first().map(|kv| self.decode(kv)).transpose()
    }

    /// Like `get`, but a missing record is an error.
    pub async fn get_existing(&self, key: &str) -> Result<K, Error> {
        self.get(key).await?.ok_or_else(|| self.not_found(key))
    }

    /// Every record below `sub`, at one revision, read in pages (a list of tens of
    /// thousands of tasks is too big for one response).
    pub async fn list(&self, sub: &str) -> Result<ObjectList<K>, Error> {
        let prefix = self.etcd_prefix(sub);
        let end = prefix_end(prefix.as_bytes());
        // Pages are read one after the other, each on a task of its own, and each is decoded
        // on a blocking thread as soon as it is in: reading and decoding overlap.
        let page = |from: Vec<u8>, revision: i64| {
            let (end, client) = (end.clone(), self.client.clone());
            let read = crate::retry::transient(move || {
                let mut etcd = client.kv();
                let mut options = GetOptions::new()
                    .with_range(end.clone())
                    .with_limit(LIST_PAGE);
                if revision > 0 {
                    options = options.with_revision(revision);
                }
                let from = from.clone();
                async move { etcd.get(from, Some(options)).await }
            });
            let read = tokio::spawn(read);
            async move { Ok::<_, Error>(read.await??) }
        };
        let mut resp = page(prefix.into_bytes(), 0).await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        let mut decoding = Vec::new();
        loop {
            let next = match resp.kvs().last() {
                Some(last) if resp.more() => {
                    let mut from = last.key().to_vec();
                    from.push(0);
                    Some(page(from, revision))
                }
                _ => None,
            };
            let api = self.clone();
            decoding.push(tokio::task::spawn_blocking(move || {
                resp.kvs()
                    .iter()
                    .map(|kv| api.decode(kv))
                    .collect::<Result<Vec<K>, Error>>()
            }));
            match next {
                Some(next) => resp = next.await?,
                None => break,
            }
        }
        let mut items = Vec::new();
        for page in decoding {
            items.append(&mut page.await??);
        }
        Ok(ObjectList { items, revision })
    }

    /// How many records there are below `sub` (etcd counts them; nothing is read).
    pub async fn count(&self, sub: &str) -> Result<i64, Error> {
        let prefix = self.etcd_prefix(sub);
        let resp = crate::retry::transient(|| {
            let mut etcd = self.client.kv();
            let options = GetOptions::new().with_prefix().with_count_only();
            let prefix = prefix.clone();
            async move { etcd.get(prefix, Some(options)).await }
        })
        .await?;
        Ok(resp.count())
    }

    /// Stores a new record; fails if one exists at its key.
    pub async fn create(&self, obj: &K) -> Result<K, Error> {
        self.create_with_lease(obj, None).await
    }

    /// Stores a new record bound to an etcd lease: it disappears when the lease expires.
    pub async fn create_with_lease(&self, obj: &K, lease: Option<i64>) -> Result<K, Error> {
        let mut obj = obj.clone();
        prepare_new(&mut obj);
        let key = obj.key();
        let mut txn = Txn::new();
        txn.absent(self, &key).put_with_lease(self, &obj, lease)?;
        match self.client.commit(txn).await {
            Ok(rev) => Ok(with_revision(obj, rev)),
            Err(Error::Conflict { .. }) => Err(Error::AlreadyExists {
                kind: self.kind.clone(),
                key,
            }),
            Err(e) => Err(e),
        }
    }

    /// Writes `obj` if nobody changed it since it was read (compare on mod_revision).
    pub async fn replace(&self, obj: &K) -> Result<K, Error> {
        let mut txn = Txn::new();
        txn.replace(self, obj)?;
        let rev = self.client.commit(txn).await?;
        Ok(with_revision(obj.clone(), rev))
    }

    /// Deletes a record; `Ok(false)` when it was already gone.
    pub async fn delete(&self, key: &str) -> Result<bool, Error> {
        let key = self.etcd_key(key);
        let resp = crate::retry::transient(|| {
            let mut etcd = self.client.kv();
            let key = key.clone();
            async move { etcd.delete(key, None).await }
        })
        .await?;
        Ok(resp.deleted() > 0)
    }

    /// Deletes a record only if it is still the version that was read.
    pub async fn delete_unchanged(&self, obj: &K) -> Result<(), Error> {
        let mut txn = Txn::new();
        txn.delete_unchanged(self, obj);
        self.client.commit(txn).await.map(|_| ())
    }

    fn not_found(&self, key: &str) -> Error {
        Error::NotFound {
            kind: self.kind.clone(),
            key: key.to_string(),
        }
    }

    /// Reads a record, lets `change` edit it and writes it back with CAS, retrying on conflict.
    /// `change` returns false to leave the record as it is.
    pub async fn modify(&self, key: &str, change: impl FnMut(&mut K) -> bool) -> Result<K, Error> {
        // Each attempt calls `change` between its awaits; the lock is never held across one.
        let change = std::sync::Mutex::new(change);
        crate::retry::on_conflict(|| async {
            let mut obj = self.get_existing(key).await?;
            let changed = (change.lock().expect("modify lock"))(&mut obj);
            if !changed {
                return Ok(obj);
            }
            self.replace(&obj).await
        })
        .await
    }
}

impl<K: Record + HasStatus> Api<K>
where
    K::Status: Clone + PartialEq,
{
    /// Sets the status of the stored record, leaving its spec as someone else last wrote it.
    /// Writes `status` onto `known` (the writer's last copy of the record) if the record has
    /// not changed since: one transaction, no read. Otherwise reads it and writes again.
    pub async fn update_status_of(&self, known: &K, status: K::Status) -> Result<K, Error> {
        let mut next = known.clone();
        *next.status_mut() = Some(status.clone());
        let mut txn = Txn::new();
        txn.unchanged(self, known).put(self, &next)?;
        match self.client.commit(txn).await {
            Ok(revision) => Ok(with_revision(next, revision)),
            Err(e) if e.is_conflict() => self.update_status(&known.key(), status).await,
            Err(e) => Err(e),
        }
    }

    pub async fn update_status(&self, key: &str, status: K::Status) -> Result<K, Error> {
        self.modify(key, |obj| {
            if obj.status() == Some(&status) {
                return false;
            }
            *obj.status_mut() = Some(status.clone());
            true
        })
        .await
    }
}

/// Fills what a new record gets: uid, generation 1, creation time; clears resourceVersion.
pub fn prepare_new<K: Record>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.resource_version = None;
    meta.uid
        .get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
    meta.generation.get_or_insert(1);
    if meta.creation_timestamp.is_none() {
        meta.creation_timestamp = Some(k8s_time_now());
    }
}

fn k8s_time_now() -> pacer_crd::meta::Time {
    pacer_crd::meta::Time(pacer_crd::meta::jiff::Timestamp::now())
}

fn with_revision<K: Record>(mut obj: K, rev: i64) -> K {
    obj.meta_mut().resource_version = Some(rev.to_string());
    obj
}

/// Records per page of a list.
const LIST_PAGE: i64 = 1000;

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
