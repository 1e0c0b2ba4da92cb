//! Accepting offers: plan placements against the offer cache, then, in one etcd transaction,
//! compare every offer used, shrink it and write the tasks. Apps and job runs share this.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use pacer_crd::{AppSpec, Task};
use pacer_runtime::Txn;

use crate::Cluster;
use crate::placement::{self, Assignment, Candidate, Plan};

/// How a placement went.
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

/// What one transaction may hold: its conditions, its writes, its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Size {
    pub conditions: usize,
    pub writes: usize,
    pub bytes: usize,
}

impl Size {
    fn of(txn: &Txn) -> Size {
        Size {
            conditions: txn.conditions(),
            writes: txn.writes(),
            bytes: txn.bytes(),
        }
    }

    fn plus(self, other: Size) -> Size {
        Size {
            conditions: self.conditions + other.conditions,
            writes: self.writes + other.writes,
            bytes: self.bytes + other.bytes,
        }
    }

    fn fits(self) -> bool {
        self.conditions <= MAX_TXN_OPS && self.writes <= MAX_TXN_OPS && self.bytes <= MAX_TXN_BYTES
    }
}

/// Which units go in which transaction: in order, each transaction filled up to etcd's limits,
/// the first one after `owner` (the owner's own writes). A unit too big alone still gets a
/// transaction of its own (etcd then refuses it, and its placements count as lost).
pub fn pack(owner: Size, units: &[Size]) -> Vec<Vec<usize>> {
    let mut batches: Vec<(Size, Vec<usize>)> = vec![(owner, Vec::new())];
    for (i, unit) in units.iter().enumerate() {
        let (size, members) = batches.last_mut().expect("one batch at least");
        let empty = size.writes == 0;
        if empty || size.plus(*unit).fits() {
            *size = size.plus(*unit);
            members.push(i);
        } else {
            batches.push((*unit, vec![i]));
        }
    }
    batches.into_iter().map(|(_, members)| members).collect()
}

/// Places for apps and job runs, one placement at a time: placements planned at once from
/// the same view pick the same nodes, and all but one conflict. Shared by the app and job
/// controllers.
#[derive(Clone, Default)]
pub struct Placer {
    /// Held while placing; the revision of the last offers written.
    placing: Arc<tokio::sync::Mutex<i64>>,
}

/// Up to `missing` instances of `spec` to place, made into tasks by `build`, written with
/// `owner` (the owner's own bookkeeping) in the first transaction.
pub struct Request<'a, B> {
    pub spec: &'a AppSpec,
    /// The owner's tasks that have not ended (constraints count them all).
    pub live: &'a [Arc<Task>],
    pub missing: usize,
    pub build: B,
    pub owner: Txn,
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

impl Placer {
    /// Plans against the offer cache, then writes the plan: per node, its offer compared and
    /// shrunk and its new tasks, packed into transactions within etcd's limits.
    pub async fn accept<B: Fn(&Assignment) -> Task>(
        &self,
        cluster: &Cluster,
        request: Request<'_, B>,
    ) -> Result<Placed, pacer_runtime::Error> {
        // A placement is a few milliseconds of work and one round of transactions; the
        // owners' reconciles around it still run side by side (841 conflicts for 113
        // placements of 50,000 instances on 5,000 nodes when they planned at once).
        let mut placed_at = self.placing.lock().await;
        // Past the patience it plans anyway: the compares keep a stale plan from being written.
        cluster
            .offer_cache
            .store()
            .wait_revision(*placed_at, CACHE_PATIENCE)
            .await;
        let mut candidates = candidates(cluster, request.spec, request.live);
        let plan = placement::plan(request.spec, request.missing, &mut candidates);
        if plan.assignments.is_empty() {
            return Ok(Placed::Done {
                plan,
                revision: 0,
                lost: 0,
            });
        }
        let (batches, dropped) = batches(cluster, request, &plan, &candidates)?;
        let Some((revision, lost)) = commit(cluster, batches, plan.assignments.len()).await? else {
            return Ok(Placed::Conflict);
        };
        *placed_at = (*placed_at).max(revision);
        let lost = lost + dropped;
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
}

/// The plan's writes as transactions (each with the placements it carries), and how many
/// placements were left out: a node's offer and its new tasks go in one transaction, and
/// more than that holds are left for the next round (as if they had lost a race).
fn batches<B: Fn(&Assignment) -> Task>(
    cluster: &Cluster,
    request: Request<'_, B>,
    plan: &Plan,
    candidates: &[Candidate],
) -> Result<(Vec<(Txn, usize)>, usize), pacer_runtime::Error> {
    let mut owner = request.owner;
    let mut by_node: BTreeMap<&str, Vec<&Assignment>> = BTreeMap::new();
    for a in &plan.assignments {
        by_node.entry(a.node.as_str()).or_default().push(a);
    }
    let mut units = Vec::new();
    let mut dropped = 0;
    for c in candidates {
        let Some(assignments) = by_node.get(c.node()) else {
            continue;
        };
        let (kept, left) = assignments.split_at(assignments.len().min(MAX_TXN_OPS - 1));
        dropped += left.len();
        let mut unit = Txn::new();
        if let (Some(offer), Some(shrunk)) = (&c.offer, shrunk_offer(c, request.spec, kept, left)) {
            unit.unchanged(&cluster.offers, offer)
                .put(&cluster.offers, &shrunk)?;
        }
        for assignment in kept {
            unit.put(&cluster.tasks, &(request.build)(assignment))?;
        }
        units.push((unit, kept.len()));
    }
    let sizes: Vec<Size> = units.iter().map(|(txn, _)| Size::of(txn)).collect();
    // `pack` keeps the units in order: each transaction takes the next ones.
    let mut units = units.into_iter();
    let mut out = Vec::new();
    for (i, members) in pack(Size::of(&owner), &sizes).into_iter().enumerate() {
        let mut txn = if i == 0 {
            std::mem::take(&mut owner)
        } else {
            Txn::new()
        };
        let mut placements = 0;
        for (unit, n) in units.by_ref().take(members.len()) {
            txn.append(unit);
            placements += n;
        }
        out.push((txn, placements));
    }
    Ok((out, dropped))
}

/// The candidate's offer after the placements kept on it (replayed when some were left out).
fn shrunk_offer(
    c: &Candidate,
    spec: &AppSpec,
    kept: &[&Assignment],
    left: &[&Assignment],
) -> Option<pacer_crd::Offer> {
    let offer = c.offer.as_ref()?;
    if left.is_empty() {
        return c.shrunk_offer();
    }
    let need = spec.resources();
    let mut replay = Candidate::new(offer.clone(), 0);
    for a in kept {
        replay.place(spec, &need, &a.host_ports);
    }
    replay.shrunk_offer()
}

/// Commits the batches: the first (with the owner's bookkeeping) decides, `None` when it lost
/// a race; the rest follow at once (they touch distinct offers). Returns the highest revision
/// written and how many placements were lost.
async fn commit(
    cluster: &Cluster,
    batches: Vec<(Txn, usize)>,
    planned: usize,
) -> Result<Option<(i64, usize)>, pacer_runtime::Error> {
    let client = cluster.offers.client();
    let mut batches = batches.into_iter();
    let (first, _) = batches.next().expect("one batch at least");
    let mut revision = match client.commit(first).await {
        Ok(revision) => revision,
        Err(e) if e.is_conflict() => {
            tracing::debug!(planned, "placement conflict: an offer changed meanwhile");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let commits =
        batches.map(|(txn, placements)| async move { (placements, client.commit(txn).await) });
    let mut lost = 0;
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
    Ok(Some((revision, lost)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(writes: usize, bytes: usize) -> Size {
        Size {
            conditions: 1,
            writes,
            bytes,
        }
    }

    #[test]
    fn units_fill_transactions_in_order_within_etcds_limits() {
        // The owner's write and 3 nodes of 60 writes: 1 + 60 + 60 fit in 128, the third not.
        let owner = size(1, 100);
        assert_eq!(
            pack(owner, &[size(60, 10), size(60, 10), size(60, 10)]),
            vec![vec![0, 1], vec![2]]
        );
        // Bytes count too: two units of 600 KiB cannot share a transaction of 1 MiB.
        let big = size(2, 600 << 10);
        assert_eq!(pack(Size::default(), &[big, big]), vec![vec![0], vec![1]]);
        // 128 operations of each kind at most: the owner's and 127 nodes' offers.
        let packed = pack(size(1, 0), &vec![size(1, 0); 129]);
        assert_eq!(packed.len(), 2);
        assert_eq!(
            packed[0].len(),
            127,
            "the owner's condition is one of the 128"
        );
    }

    #[test]
    fn the_first_transaction_carries_the_owner_even_when_nothing_else_fits() {
        let owner = size(100, 10);
        assert_eq!(pack(owner, &[size(60, 10)]), vec![vec![], vec![0]]);
        // With no writes of its own the first batch takes the first unit whatever its size.
        assert_eq!(pack(Size::default(), &[size(500, 10)]), vec![vec![0]]);
    }
}
