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
    Done { plan: Plan, revision: i64 },
    /// An offer (or an extra compare) changed meanwhile: nothing was written.
    Conflict,
}

/// One candidate per node for `spec`: its offer to the app's role, or the roles it offers to.
/// `live` holds the owner's tasks that have not ended (constraints count them all).
pub fn candidates(cluster: &Cluster, spec: &AppSpec, live: &[Arc<Task>]) -> Vec<Candidate> {
    let mut by_node: BTreeMap<String, Candidate> = BTreeMap::new();
    for o in cluster.offer_cache.store().list() {
        let node = o.spec.node.clone();
        let here = live.iter().filter(|t| t.spec.node == node).count();
        if o.spec.role == spec.role {
            let mine = Candidate::new((*o).clone(), here);
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
        return Ok(Placed::Done { plan, revision: 0 });
    }
    for c in candidates
        .iter()
        .filter(|c| plan.assignments.iter().any(|a| a.node == c.node()))
    {
        let (Some(offer), Some(shrunk)) = (&c.offer, c.shrunk_offer()) else {
            continue;
        };
        compares.push(cluster.offers.unchanged(offer)?);
        ops.push(cluster.offers.put_op(&shrunk, None)?);
    }
    for assignment in &plan.assignments {
        ops.push(cluster.tasks.put_op(&build(assignment), None)?);
    }
    match cluster.offers.commit(compares, ops).await {
        Ok(revision) => Ok(Placed::Done { plan, revision }),
        Err(e) if e.is_conflict() => Ok(Placed::Conflict),
        Err(e) => Err(e),
    }
}
