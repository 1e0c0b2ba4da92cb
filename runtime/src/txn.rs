//! Several typed records written, or read, in one etcd transaction: the only way the rest of
//! Pacer writes more than one record at once, so no crate above this one speaks etcd.
//!
//! A [`Txn`] holds conditions (a record unchanged since it was read, a key still free) and
//! writes (put, delete); it commits all or nothing, and a failed condition is a
//! [`Error::Conflict`]. A [`Reads`] gathers gets and lists answered at one revision.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, TxnOp, TxnOpResponse};
use pacer_crd::Record;

use crate::{Api, Client, Error};

/// Conditions and writes committed together.
#[derive(Default, Clone)]
pub struct Txn {
    compares: Vec<Compare>,
    ops: Vec<TxnOp>,
    bytes: usize,
    /// The first record it touches, to name in a conflict.
    first: Option<(String, String)>,
}

impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }

    fn touch<K: Record>(&mut self, api: &Api<K>, key: &str) {
        self.first
            .get_or_insert_with(|| (api.kind().to_string(), key.to_string()));
    }

    /// Writes `obj` at its key, whatever is stored there.
    pub fn put<K: Record>(&mut self, api: &Api<K>, obj: &K) -> Result<&mut Txn, Error> {
        self.put_with_lease(api, obj, None)
    }

    /// Writes `obj` bound to an etcd lease: it disappears when the lease expires.
    pub fn put_with_lease<K: Record>(
        &mut self,
        api: &Api<K>,
        obj: &K,
        lease: Option<i64>,
    ) -> Result<&mut Txn, Error> {
        let record = obj.key();
        let (key, value) = (api.etcd_key(&record), api.encode(obj)?);
        self.bytes += key.len() + value.len();
        self.touch(api, &record);
        let options = lease.map(|id| PutOptions::new().with_lease(id));
        self.ops.push(TxnOp::put(key, value, options));
        Ok(self)
    }

    /// Writes a new record: the transaction fails if one exists at its key.
    pub fn create<K: Record>(&mut self, api: &Api<K>, obj: &K) -> Result<&mut Txn, Error> {
        self.absent(api, &obj.key());
        self.put(api, obj)
    }

    /// Writes `obj` if it is still the version that was read.
    pub fn replace<K: Record>(&mut self, api: &Api<K>, obj: &K) -> Result<&mut Txn, Error> {
        self.unchanged(api, obj);
        self.put(api, obj)
    }

    /// Deletes the record at `key` (nothing if there is none).
    pub fn delete<K: Record>(&mut self, api: &Api<K>, key: &str) -> &mut Txn {
        self.touch(api, key);
        self.ops.push(TxnOp::delete(api.etcd_key(key), None));
        self
    }

    /// Deletes `obj` if it is still the version that was read.
    pub fn delete_unchanged<K: Record>(&mut self, api: &Api<K>, obj: &K) -> &mut Txn {
        self.unchanged(api, obj);
        self.delete(api, &obj.key())
    }

    /// Holds while `obj` is the version that was read (its resourceVersion).
    pub fn unchanged<K: Record>(&mut self, api: &Api<K>, obj: &K) -> &mut Txn {
        let revision = obj
            .meta()
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        let key = obj.key();
        self.touch(api, &key);
        self.compares.push(Compare::mod_revision(
            api.etcd_key(&key),
            CompareOp::Equal,
            revision,
        ));
        self
    }

    /// Holds while no record exists at `key`.
    pub fn absent<K: Record>(&mut self, api: &Api<K>, key: &str) -> &mut Txn {
        self.touch(api, key);
        self.compares.push(Compare::create_revision(
            api.etcd_key(key),
            CompareOp::Equal,
            0,
        ));
        self
    }

    /// Claims `name` in `claims` for `owner`: the transaction fails if someone holds it.
    pub fn claim(&mut self, claims: &Claims, name: &str, owner: &str) -> &mut Txn {
        let key = claims.key(name);
        self.bytes += key.len() + owner.len();
        self.compares
            .push(Compare::create_revision(key.clone(), CompareOp::Equal, 0));
        self.ops.push(TxnOp::put(key, owner, None));
        self
    }

    /// Gives up the claim on `name`.
    pub fn release(&mut self, claims: &Claims, name: &str) -> &mut Txn {
        self.ops.push(TxnOp::delete(claims.key(name), None));
        self
    }

    /// Adds everything `other` holds.
    pub fn append(&mut self, other: Txn) -> &mut Txn {
        self.compares.extend(other.compares);
        self.ops.extend(other.ops);
        self.bytes += other.bytes;
        if self.first.is_none() {
            self.first = other.first;
        }
        self
    }

    /// Whether it writes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// How many conditions it holds.
    pub fn conditions(&self) -> usize {
        self.compares.len()
    }

    /// How many writes it holds.
    pub fn writes(&self) -> usize {
        self.ops.len()
    }

    /// The bytes its writes send (keys and values), for filling transactions up to etcd's
    /// request size.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Client {
    /// Commits `txn`; a failed condition is a `Conflict`. Returns the revision it wrote.
    pub async fn commit(&self, txn: Txn) -> Result<i64, Error> {
        let request = etcd_client::Txn::new().when(txn.compares).and_then(txn.ops);
        // A retried transaction that had been applied fails its compares: a conflict, which
        // every caller already answers by reading again.
        let resp = crate::retry::transient(|| {
            let mut etcd = self.kv();
            let request = request.clone();
            async move { etcd.txn(request).await }
        })
        .await?;
        if !resp.succeeded() {
            let (kind, key) = txn.first.unwrap_or_default();
            return Err(Error::Conflict { kind, key });
        }
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    /// Answers every read of `reads` at one revision.
    pub async fn read(&self, reads: Reads) -> Result<Snapshot, Error> {
        let request = etcd_client::Txn::new().and_then(reads.ops);
        let resp = crate::retry::transient(|| {
            let mut etcd = self.kv();
            let request = request.clone();
            async move { etcd.txn(request).await }
        })
        .await?;
        let responses = resp
            .op_responses()
            .into_iter()
            .map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().to_vec(),
                _ => Vec::new(),
            })
            .collect();
        Ok(Snapshot { responses })
    }
}

/// Reads to answer at one revision; each returns a handle to take its answer from the
/// [`Snapshot`].
#[derive(Default)]
pub struct Reads {
    ops: Vec<TxnOp>,
}

/// One read of a [`Reads`], typed.
pub struct Read<K> {
    index: usize,
    api: Api<K>,
    _kind: PhantomData<fn() -> K>,
}

impl Reads {
    pub fn new() -> Reads {
        Reads::default()
    }

    fn push<K: Record>(&mut self, api: &Api<K>, op: TxnOp) -> Read<K> {
        self.ops.push(op);
        Read {
            index: self.ops.len() - 1,
            api: api.clone(),
            _kind: PhantomData,
        }
    }

    /// The record at `key`.
    pub fn get<K: Record>(&mut self, api: &Api<K>, key: &str) -> Read<K> {
        self.push(api, TxnOp::get(api.etcd_key(key), None))
    }

    /// Every record whose key starts with `sub`.
    pub fn list<K: Record>(&mut self, api: &Api<K>, sub: &str) -> Read<K> {
        let options = GetOptions::new().with_prefix();
        self.push(api, TxnOp::get(api.etcd_prefix(sub), Some(options)))
    }
}

/// The answers to a [`Reads`], all at one revision.
pub struct Snapshot {
    responses: Vec<Vec<etcd_client::KeyValue>>,
}

impl Snapshot {
    fn kvs<K>(&self, read: &Read<K>) -> &[etcd_client::KeyValue] {
        self.responses.get(read.index).map_or(&[], Vec::as_slice)
    }

    /// The answer to a `get`.
    pub fn one<K: Record>(&self, read: &Read<K>) -> Result<Option<K>, Error> {
        self.kvs(read)
            .first()
            .map(|kv| read.api.decode(kv))
            .transpose()
    }

    /// The answer to a `list`.
    pub fn all<K: Record>(&self, read: &Read<K>) -> Result<Vec<K>, Error> {
        self.kvs(read)
            .iter()
            .map(|kv| read.api.decode(kv))
            .collect()
    }
}

/// Names held exclusively, each by one owner, under `<prefix><kind>/` (service ports, by the
/// app that uses them): a claim is taken in the same transaction as the owner's write.
#[derive(Clone)]
pub struct Claims {
    client: Client,
    root: String,
}

impl Claims {
    pub fn new(client: &Client, kind: &str) -> Claims {
        Claims {
            client: client.clone(),
            root: format!("{}{kind}/", client.prefix()),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.root)
    }

    /// Every claim: name -> owner.
    pub async fn list(&self) -> Result<BTreeMap<String, String>, Error> {
        let resp = crate::retry::transient(|| {
            let (mut etcd, root) = (self.client.kv(), self.root.clone());
            async move { etcd.get(root, Some(GetOptions::new().with_prefix())).await }
        })
        .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let name = kv.key_str().ok()?.strip_prefix(&self.root)?;
                Some((name.to_string(), kv.value_str().ok()?.to_string()))
            })
            .collect())
    }
}
