//! Accepting offers: plan placements against the offer cache, then, in one etcd transaction,
//! compare every offer used, shrink it and write the tasks. Apps and job runs share this.

use std::collections::BTreeMap;
use std::sync::Arc;

use etcd_client::{Compare, TxnOp};
use pacer_crd::{AppSpec, Task};

use crate::Cluster;
use crate::placement::{self, Assignment, Candidate, Plan};

pub enum Placed {
    /// Written at this etcd revision (0 when nothing could be placed and nothing was written).
    /// `lost` assignments of the plan were not written: their batch lost a race for an offer
    /// (place them again once the cache has caught up).
    Done {
        plan: Plan,
        revision: i64,
        lost: usize,
    },
    /// An offer (or an extra compare) changed meanwhile: nothing was written.
    Conflict,
}

/// etcd's default limit of operations per transaction (`--max-txn-ops`).
const MAX_TXN_OPS: usize = 128;
/// Below etcd's default request size limit (1.5 MiB).
const MAX_TXN_BYTES: usize = 1 << 20;

/// Operations of one transaction and the number of placements it carries.
#[derive(Default)]
struct Batch {
    compares: Vec<Compare>,
    ops: Vec<TxnOp>,
    bytes: usize,
    placements: usize,
}

impl Batch {
    fn fits(&self, compares: usize, ops: usize, bytes: usize) -> bool {
        self.ops.is_empty()
            || (self.compares.len() + compares <= MAX_TXN_OPS
                && self.ops.len() + ops <= MAX_TXN_OPS
                && self.bytes + bytes <= MAX_TXN_BYTES)
    }
}

/// One candidate per node for `spec`: its offer to the app's role, or the roles it offers to.
/// `live` holds the owner's tasks that have not ended (constraints count them all).
pub fn candidates(cluster: &Cluster, spec: &AppSpec, live: &[Arc<Task>]) -> Vec<Candidate> {
    let mut by_node: BTreeMap<String, Candidate> = BTreeMap::new();
    let mut instances: std::collections::HashMap<&str, usize> = Default::default();
    for t in live {
        *instances.entry(t.spec.node.as_str()).or_default() += 1;
    }
    for o in cluster.offer_cache.store().list() {
        let node = o.spec.node.clone();
        let here = instances.get(node.as_str()).copied().unwrap_or(0);
        if o.spec.role == spec.role {
            let mine = Candidate::new(o.clone(), here);
            let other_roles = by_node
                .remove(&node)
                .map(|c| c.other_roles)
                .unwrap_or_default();
            by_node.insert(
                node,
                Candidate {
                    other_roles,
                    ..mine
                },
            );
        } else {
            let c = by_node
                .entry(node.clone())
                .or_insert_with(|| Candidate::elsewhere(&node, Vec::new(), here));
            if !o.spec.resources.is_empty() {
                c.other_roles.push(o.spec.role.clone());
            }
        }
    }
    if spec.constraints.is_empty() {
        return by_node.into_values().collect();
    }
    let nodes = cluster.node_cache.store();
    by_node
        .into_values()
        .map(|mut c| {
            if let Some(n) = nodes.get(&c.node) {
                c.attributes = n.spec.attributes.clone();
            }
            c
        })
        .collect()
}

/// Places up to `missing` instances of `spec` and writes them with `compares` and `ops` (the
/// owner's own bookkeeping) in one transaction.
pub async fn accept(
    cluster: &Cluster,
    spec: &AppSpec,
    live: &[Arc<Task>],
    missing: usize,
    build: impl Fn(&Assignment) -> Task,
    mut compares: Vec<Compare>,
    mut ops: Vec<TxnOp>,
) -> Result<Placed, pacer_runtime::Error> {
    let mut candidates = candidates(cluster, spec, live);
    let plan = placement::plan(spec, missing, &mut candidates);
    if plan.assignments.is_empty() {
        return Ok(Placed::Done {
            plan,
            revision: 0,
            lost: 0,
        });
    }
    // One unit per node: its offer compared and shrunk, and the node's new tasks. Units are
    // packed into transactions within etcd's limits; the first one carries the owner's own
    // compares and operations, so a plan too big for one transaction is written in several,
    // all at once (they touch distinct offers).
    let mut by_node: BTreeMap<&str, Vec<&Assignment>> = BTreeMap::new();
    for a in &plan.assignments {
        by_node.entry(a.node.as_str()).or_default().push(a);
    }
    let mut batches = vec![Batch {
        compares: std::mem::take(&mut compares),
        ops: std::mem::take(&mut ops),
        ..Batch::default()
    }];
    let mut lost = 0;
    for c in &candidates {
        let Some(assignments) = by_node.get(c.node()) else {
            continue;
        };
        // A node's offer and its new tasks go in one transaction: more than that holds are
        // left for the next round (as if they had lost a race).
        let (kept, dropped) = assignments.split_at(assignments.len().min(MAX_TXN_OPS - 1));
        lost += dropped.len();
        let shrunk = match (&c.offer, dropped.is_empty()) {
            (Some(_), true) => c.shrunk_offer(),
            (Some(offer), false) => {
                let need = pacer_crd::Resources::new(spec.cpus, spec.mem, spec.disk);
                let mut replay = Candidate::new(offer.clone(), 0);
                for a in kept {
                    replay.place(spec, &need, &a.host_ports);
                }
                replay.shrunk_offer()
            }
            (None, _) => None,
        };
        let mut unit = Batch::default();
        if let (Some(offer), Some(shrunk)) = (&c.offer, shrunk) {
            unit.compares.push(cluster.offers.unchanged(offer)?);
            let (op, size) = cluster.offers.sized_put_op(&shrunk, None)?;
            unit.ops.push(op);
            unit.bytes += size;
        }
        for assignment in kept {
            let (op, size) = cluster.tasks.sized_put_op(&build(assignment), None)?;
            unit.ops.push(op);
            unit.bytes += size;
            unit.placements += 1;
        }
        let last = batches.last_mut().expect("one batch at least");
        if last.fits(unit.compares.len(), unit.ops.len(), unit.bytes) {
            last.compares.append(&mut unit.compares);
            last.ops.append(&mut unit.ops);
            last.bytes += unit.bytes;
            last.placements += unit.placements;
        } else {
            batches.push(unit);
        }
    }
    // The first batch (with the owner's bookkeeping) decides; the rest follow at once.
    let mut batches = batches.into_iter();
    let first = batches.next().expect("one batch at least");
    let mut revision = match cluster.offers.commit(first.compares, first.ops).await {
        Ok(revision) => revision,
        Err(e) if e.is_conflict() => return Ok(Placed::Conflict),
        Err(e) => return Err(e),
    };
    let commits = batches
        .map(|b| async move { (b.placements, cluster.offers.commit(b.compares, b.ops).await) });
    for (placements, result) in futures::future::join_all(commits).await {
        match result {
            Ok(r) => revision = revision.max(r),
            Err(e) => {
                if !e.is_conflict() {
                    tracing::warn!(error = %e, placements, "writing a batch of placements failed");
                }
                lost += placements;
            }
        }
    }
    Ok(Placed::Done {
        plan,
        revision,
        lost,
    })
}
