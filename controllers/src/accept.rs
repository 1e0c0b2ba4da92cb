//! Accepting offers: plan placements against the offer cache, then, in one etcd transaction,
//! compare every offer used, shrink it and write the tasks. Apps and job runs share this.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use pacer_crd::{AppSpec, Task};
use pacer_runtime::Txn;

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

/// How long a placement waits for the offer cache to show the one before it (milliseconds,
/// normally).
const CACHE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// etcd's default limit of operations per transaction (`--max-txn-ops`).
const MAX_TXN_OPS: usize = 128;
/// Below etcd's default request size limit (1.5 MiB).
const MAX_TXN_BYTES: usize = 1 << 20;

/// One transaction and the number of placements it carries.
#[derive(Default)]
struct Batch {
    txn: Txn,
    placements: usize,
}

impl Batch {
    fn fits(&self, unit: &Txn) -> bool {
        self.txn.is_empty()
            || (self.txn.conditions() + unit.conditions() <= MAX_TXN_OPS
                && self.txn.writes() + unit.writes() <= MAX_TXN_OPS
                && self.txn.bytes() + unit.bytes() <= MAX_TXN_BYTES)
    }
}

/// One candidate per node for `spec`: its offer to the app's role, or the roles it offers to;
/// ordered by node name. `live` holds the owner's tasks that have not ended (constraints
/// count them all). Built for every placement round over every node, so it allocates no
/// more than each candidate needs.
pub fn candidates(cluster: &Cluster, spec: &AppSpec, live: &[Arc<Task>]) -> Vec<Candidate> {
    let mut instances: HashMap<&str, usize> = HashMap::new();
    for t in live {
        *instances.entry(t.spec.node.as_str()).or_default() += 1;
    }
    let offers = cluster.offer_cache.store().list();
    let mut out: Vec<Candidate> = Vec::with_capacity(offers.len());
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(offers.len());
    for o in &offers {
        let node = o.spec.node.as_str();
        let here = instances.get(node).copied().unwrap_or(0);
        let mine = o.spec.role == spec.role;
        let other_role = (!mine && !o.spec.resources.is_empty()).then(|| o.spec.role.clone());
        match index.get(node) {
            Some(&i) => {
                let c = &mut out[i];
                if mine {
                    let other_roles = std::mem::take(&mut c.other_roles);
                    *c = Candidate {
                        other_roles,
                        ..Candidate::new(o.clone(), here)
                    };
                } else {
                    c.other_roles.extend(other_role);
                }
            }
            None => {
                index.insert(node, out.len());
                out.push(if mine {
                    Candidate::new(o.clone(), here)
                } else {
                    Candidate::elsewhere(node, other_role.into_iter().collect(), here)
                });
            }
        }
    }
    // Listed by key (`<node>.<role>`), which is by node name but for names that share a
    // prefix up to a dot: nearly sorted, which the sort finds cheaply.
    out.sort_by(|a, b| a.node.cmp(&b.node));
    if spec.constraints.is_empty() {
        return out;
    }
    let nodes = cluster.node_cache.store();
    for c in &mut out {
        if let Some(n) = nodes.get(&c.node) {
            c.attributes = n.spec.attributes.clone();
        }
    }
    out
}

/// Places up to `missing` instances of `spec` and writes them with `owner` (the owner's own
/// bookkeeping) in one transaction.
pub async fn accept(
    cluster: &Cluster,
    spec: &AppSpec,
    live: &[Arc<Task>],
    missing: usize,
    build: impl Fn(&Assignment) -> Task,
    owner: Txn,
) -> Result<Placed, pacer_runtime::Error> {
    // One placement at a time, planned against offers that show every earlier one: placements
    // planned at once from the same view pick the same nodes, and all but one conflict (841
    // conflicts for 113 placements of 50,000 instances on 5,000 nodes, each a plan and 500
    // task records made for nothing). A placement is a few milliseconds of work and one round
    // of transactions; the apps' reconciles around it still run side by side.
    let mut placed_at = cluster.placing.lock().await;
    // Past the patience it plans anyway: the compares keep a stale plan from being written.
    cluster
        .offer_cache
        .store()
        .wait_revision(*placed_at, CACHE_PATIENCE)
        .await;
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
        txn: owner,
        placements: 0,
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
                let need = spec.resources();
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
            unit.txn.unchanged(&cluster.offers, offer);
            unit.txn.put(&cluster.offers, &shrunk)?;
        }
        for assignment in kept {
            unit.txn.put(&cluster.tasks, &build(assignment))?;
            unit.placements += 1;
        }
        let last = batches.last_mut().expect("one batch at least");
        if last.fits(&unit.txn) {
            last.txn.append(unit.txn);
            last.placements += unit.placements;
        } else {
            batches.push(unit);
        }
    }
    // The first batch (with the owner's bookkeeping) decides; the rest follow at once.
    let mut batches = batches.into_iter();
    let first = batches.next().expect("one batch at least");
    let mut revision = match cluster.offers.client().commit(first.txn).await {
        Ok(revision) => revision,
        Err(e) if e.is_conflict() => {
            tracing::debug!(
                planned = plan.assignments.len(),
                "placement conflict: an offer changed meanwhile"
            );
            return Ok(Placed::Conflict);
        }
        Err(e) => return Err(e),
    };
    let commits =
        batches.map(|b| async move { (b.placements, cluster.offers.client().commit(b.txn).await) });
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
    *placed_at = (*placed_at).max(revision);
    tracing::debug!(
        candidates = candidates.len(),
        placed = plan.assignments.len() - lost,
        lost,
        "placed"
    );
    Ok(Placed::Done {
        plan,
        revision,
        lost,
    })
}
