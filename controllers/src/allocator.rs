//! The allocator: Offers hold what nodes' tasks leave free. A role's reservation on a node is
//! offered to that role; the unreserved rest (and the free ports) goes to one role at a time,
//! chosen by weighted DRF with quota among roles that have instances waiting.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use pacer_crd::node::subtract_ports;
use pacer_crd::offer::offer_name;
use pacer_crd::{App, Node, Offer, OfferSpec, PortRange, Resources, Role, Task};
use pacer_runtime::reflector::Store;
use pacer_runtime::{Action, Api, Controller};
use pacer_runtime::{Reads, Txn};
use tokio_util::sync::CancellationToken;

use crate::{CONFLICT_RETRY, Cluster, drf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading node {0} failed")]
    Snapshot(String, #[source] pacer_runtime::Error),
    #[error("writing the offer of node {0} failed")]
    OfferWrite(String, #[source] pacer_runtime::Error),
}

/// Per node, the (role, resources) the allocator last offered.
pub type OfferBook = HashMap<String, Vec<(String, Resources)>>;

/// The allocator's context: the shared caches, and its own last offers per node: its writes
/// count before the offer cache shows them, so two nodes decided in a row see each other.
pub struct Context {
    pub cluster: Cluster,
    offer_book: std::sync::Mutex<OfferBook>,
}

pub async fn run(cluster: Cluster, token: CancellationToken) {
    let offers = cluster.offer_cache.store();
    let offers_for_roles = cluster.offer_cache.store();
    let wanting = Arc::new(std::sync::Mutex::new(HashMap::<String, bool>::new()));
    let nodes = Controller::new(&cluster.node_cache, token.clone())
        .watches(&cluster.offer_cache, |o: &Offer| vec![o.spec.node.clone()])
        .watches(&cluster.task_cache, |t: &Task| vec![t.spec.node.clone()])
        // When an app starts or stops wanting instances, unreserved resources may move between
        // roles: every node with something left to offer is looked at again.
        .watches(&cluster.app_cache, move |app: &App| {
            let name = app.metadata.name.clone().unwrap_or_default();
            let wants = app.status.as_ref().is_some_and(|s| s.tasks_pending > 0);
            let flipped = wanting
                .lock()
                .expect("wanting lock")
                .insert(name, wants)
                .is_none_or(|before| before != wants);
            if flipped {
                nodes_with_room(&offers)
            } else {
                Vec::new()
            }
        })
        .watches(&cluster.drain_cache, |d: &pacer_crd::Drain| {
            d.metadata.name.iter().cloned().collect()
        })
        .watches(&cluster.role_cache, move |_: &Role| {
            nodes_with_room(&offers_for_roles)
        });
    let orphans = Controller::new(&cluster.offer_cache, token.clone());
    let ctx = Arc::new(Context {
        cluster,
        offer_book: Default::default(),
    });
    tokio::join!(
        nodes.run(
            reconcile_node,
            |_, _, _| Action::await_change(),
            ctx.clone()
        ),
        orphans.run(reconcile_offer, |_, _, _| Action::await_change(), ctx),
    );
}

fn nodes_with_room(offers: &Store<Offer>) -> Vec<String> {
    let mut nodes: Vec<String> = offers
        .filter(|o| !o.spec.resources.is_empty())
        .iter()
        .map(|o| o.spec.node.clone())
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// What a node has free: capacity minus the resources of its live tasks, and its free ports.
pub fn free_on(node: &Node, tasks: &[impl Borrow<Task>]) -> (Resources, Vec<PortRange>) {
    let live: Vec<&Task> = tasks
        .iter()
        .map(|t| t.borrow())
        .filter(|t| !t.state().is_terminal())
        .collect();
    let used = live
        .iter()
        .fold(Resources::default(), |sum, t| sum.plus(&t.spec.resources));
    let ports: Vec<u16> = live
        .iter()
        .flat_map(|t| t.spec.host_ports.iter().copied())
        .collect();
    (
        node.spec.capacity.minus(&used).clamped(),
        subtract_ports(&node.spec.ports, &ports),
    )
}

/// The offers a node should have: each role's unused reservation goes to that role; the
/// unreserved rest and the free ports go to `holder`.
pub fn node_offers(
    node: &Node,
    tasks: &[impl Borrow<Task>],
    holder: &dyn Fn(&Resources) -> (String, Resources),
) -> BTreeMap<String, OfferSpec> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let (free, ports) = free_on(node, tasks);
    let mut left = free;
    let mut offers = BTreeMap::new();
    for (role, reserved) in &node.spec.reservations {
        let used = tasks
            .iter()
            .map(|t| t.borrow())
            .filter(|t| !t.state().is_terminal() && &t.spec.app.role == role)
            .fold(Resources::default(), |sum, t| sum.plus(&t.spec.resources));
        let unused = reserved.minus(&used).clamped().min(&left);
        left = left.minus(&unused).clamped();
        offers.insert(
            role.clone(),
            OfferSpec {
                node: name.clone(),
                role: role.clone(),
                resources: unused,
                reserved: unused,
                ports: Vec::new(),
            },
        );
    }
    let (role, amount) = holder(&left);
    let entry = offers.entry(role.clone()).or_insert_with(|| OfferSpec {
        node: name.clone(),
        role,
        resources: Resources::default(),
        reserved: Resources::default(),
        ports: Vec::new(),
    });
    entry.resources = entry.resources.plus(&amount);
    entry.ports = ports;
    offers
}

/// Rewrites a node's offers from one consistent read of the node, its offers and its tasks.
/// The write compares every offer's revision: each placement shrinks an offer in the same
/// transaction that adds its tasks, so a stale view can never grow an offer past the truth.
async fn reconcile_node(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let cluster = &ctx.cluster;
    // The caches first: when they say the offers are right there is nothing to read or write
    // (a resync of thousands of nodes costs no etcd round trip); if they lag, the events that
    // bring them up to date queue this node again.
    let mut cached_offers = cluster.offer_cache.store().list_prefix(&format!("{name}."));
    cached_offers.retain(|o| o.spec.node == name);
    let cached_tasks = cluster.task_cache.store().list_prefix(&format!("{name}/"));
    let expected = wanted_offers(&ctx, &name, Some(&node), &cached_offers, &cached_tasks);
    if offer_changes(&name, &cached_offers, &expected).is_empty() {
        return Ok(Action::await_change());
    }
    let (offers, tasks, nodes) = (&cluster.offers, &cluster.tasks, &cluster.nodes);
    let mut reads = Reads::new();
    let node_read = reads.get(nodes, &name);
    let offers_read = reads.list(offers, &format!("{name}."));
    let tasks_read = reads.list(tasks, &format!("{name}/"));
    let snapshot_err = |e| Error::Snapshot(name.clone(), e);
    let snapshot = offers.client().read(reads).await.map_err(snapshot_err)?;
    let current_node = snapshot.one(&node_read).map_err(snapshot_err)?;
    let mut existing = snapshot.all(&offers_read).map_err(snapshot_err)?;
    existing.retain(|o| o.spec.node == name);
    let node_tasks = snapshot.all(&tasks_read).map_err(snapshot_err)?;
    let wanted = wanted_offers(&ctx, &name, current_node.as_ref(), &existing, &node_tasks);
    if current_node.is_none() {
        ctx.offer_book
            .lock()
            .expect("offer book lock")
            .remove(&name);
    }
    let changes = offer_changes(&name, &existing, &wanted);
    if changes.is_empty() {
        return Ok(Action::await_change());
    }
    let err = |e| Error::OfferWrite(name.clone(), e);
    let mut txn = Txn::new();
    for offer in &changes.deleted {
        txn.delete_unchanged(offers, offer);
    }
    for offer in &changes.updated {
        txn.replace(offers, offer).map_err(err)?;
    }
    for offer in &changes.created {
        txn.create(offers, offer).map_err(err)?;
    }
    match offers.client().commit(txn).await {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if e.is_conflict() => Ok(Action::requeue(CONFLICT_RETRY)),
        Err(e) => Err(Error::OfferWrite(name, e)),
    }
}

/// The writes that turn a node's `existing` offers into the `wanted` ones (by role).
#[derive(Debug, Default, PartialEq)]
pub struct OfferChanges {
    /// Offers to roles no longer offered anything here.
    pub deleted: Vec<Offer>,
    /// Existing offers with their new terms.
    pub updated: Vec<Offer>,
    pub created: Vec<Offer>,
}

impl OfferChanges {
    pub fn is_empty(&self) -> bool {
        self.deleted.is_empty() && self.updated.is_empty() && self.created.is_empty()
    }
}

pub fn offer_changes(
    node: &str,
    existing: &[impl Borrow<Offer>],
    wanted: &BTreeMap<String, OfferSpec>,
) -> OfferChanges {
    let mut changes = OfferChanges::default();
    for offer in existing.iter().map(Borrow::borrow) {
        match wanted.get(&offer.spec.role) {
            None => changes.deleted.push(offer.clone()),
            Some(spec) if spec != &offer.spec => {
                let mut updated = offer.clone();
                updated.spec = spec.clone();
                changes.updated.push(updated);
            }
            Some(_) => {}
        }
    }
    for (role, spec) in wanted {
        if !existing.iter().any(|o| &o.borrow().spec.role == role) {
            let mut offer = Offer::new(&offer_name(node, role), spec.clone());
            pacer_runtime::api::prepare_new(&mut offer);
            changes.created.push(offer);
        }
    }
    changes
}

/// The offers `node` should have (none when it is gone or drained), noted in the offer book.
fn wanted_offers(
    ctx: &Context,
    name: &str,
    current_node: Option<&Node>,
    existing: &[impl Borrow<Offer>],
    node_tasks: &[impl Borrow<Task>],
) -> BTreeMap<String, OfferSpec> {
    let cluster = &ctx.cluster;
    let Some(n) = current_node.filter(|_| !cluster.drained(name)) else {
        // A drained or gone node offers nothing.
        return BTreeMap::new();
    };
    let holder = existing
        .iter()
        .map(|o| o.borrow())
        .find(|o| !o.spec.ports.is_empty() || o.spec.resources != o.spec.reserved)
        .map(|o| o.spec.role.clone());
    let mut book = ctx.offer_book.lock().expect("offer book lock");
    let keep = || holder.clone().unwrap_or_else(|| "*".into());
    let single_role = only_default_role(cluster);
    // Shares are read from every task and offer: only worth it when there is something to
    // hand out to one of several roles (a full node, the usual case under load, keeps its
    // holder; with no roles but the default one there is nothing to choose).
    let choose = |free: &Resources| {
        if free.is_empty() || single_role {
            return (keep(), *free);
        }
        let roles = role_shares(cluster, name, &book);
        let total = cluster
            .node_cache
            .store()
            .list()
            .iter()
            .fold(Resources::default(), |sum, n| sum.plus(&n.spec.capacity));
        // Nobody wants more: the current holder (or the default role) keeps it.
        drf::choose(&roles, &total, free, holder.as_deref()).unwrap_or_else(|| (keep(), *free))
    };
    let wanted = node_offers(n, node_tasks, &choose);
    tracing::debug!(
        node = %name,
        offers = ?wanted.values().map(|o| (&o.role, o.resources.cpus)).collect::<Vec<_>>(),
        "offers decided"
    );
    book.insert(
        name.to_string(),
        wanted
            .values()
            .map(|o| (o.role.clone(), o.resources))
            .collect(),
    );
    wanted
}

/// No Role records and every app and job in the default role `*`: the unreserved resources
/// of every node go to `*`, no shares to weigh.
fn only_default_role(cluster: &Cluster) -> bool {
    cluster.role_cache.store().is_empty()
        && cluster
            .app_cache
            .store()
            .filter(|a| a.spec.role != "*")
            .is_empty()
        && cluster
            .job_cache
            .store()
            .filter(|j| j.spec.run.role != "*")
            .is_empty()
}

/// Every role's share as seen when deciding `node`: live tasks, plus what is offered to it on
/// other nodes (the allocator's own book first: the offer cache may not show its last writes),
/// and whether it has instances waiting.
fn role_shares(
    cluster: &Cluster,
    node: &str,
    book: &OfferBook,
) -> BTreeMap<String, drf::RoleShare> {
    let mut roles: BTreeMap<String, drf::RoleShare> = cluster
        .role_cache
        .store()
        .list()
        .iter()
        .map(|r| {
            let name = r.metadata.name.clone().unwrap_or_default();
            (name, drf::RoleShare::new(Some(&r.spec)))
        })
        .collect();
    let mut used: HashMap<String, Resources> = HashMap::new();
    for t in cluster.task_cache.store().list() {
        if !t.state().is_terminal() {
            let r = share_of(&mut roles, &t.spec.app.role);
            r.allocated = r.allocated.plus(&t.spec.resources);
            let u = used.entry(t.spec.node.clone()).or_default();
            *u = u.plus(&t.spec.resources);
        }
    }
    let mut offered: OfferBook = book.clone();
    for o in cluster.offer_cache.store().list() {
        if !book.contains_key(&o.spec.node) {
            offered
                .entry(o.spec.node.clone())
                .or_default()
                .push((o.spec.role.clone(), o.spec.resources));
        }
    }
    offered.remove(node);
    let nodes = cluster.node_cache.store();
    let capacity = |name: &str| nodes.get(name).map(|n| n.spec.capacity).unwrap_or_default();
    let offered = counted_offers(offered, &capacity, &used);
    let smallest = demand(cluster, &mut roles);
    // An offer counts as held while it is of use to its role: a leftover no instance fits
    // (a node's spare disk, a fraction of a cpu) does not make a role look richer.
    for (role, resources) in &offered {
        let useful = smallest
            .get(role)
            .is_none_or(|need| resources.fits(need).is_ok());
        if useful {
            let r = share_of(&mut roles, role);
            r.allocated = r.allocated.plus(resources);
        }
    }
    roles
}

/// Offers elsewhere as they count: an offer the task cache already shows as taken is not
/// counted twice, so each node's offers count only up to what its tasks leave free.
pub fn counted_offers(
    offered: OfferBook,
    capacity: &dyn Fn(&str) -> Resources,
    used: &HashMap<String, Resources>,
) -> Vec<(String, Resources)> {
    offered
        .into_iter()
        .flat_map(|(name, offers)| {
            let mut free = capacity(&name)
                .minus(&used.get(&name).copied().unwrap_or_default())
                .clamped();
            offers
                .into_iter()
                .map(|(role, r)| {
                    let counted = r.min(&free);
                    free = free.minus(&counted).clamped();
                    (role, counted)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Marks the roles that want more (one of their apps or job runs has instances waiting) and
/// returns each one's smallest waiting instance: it tells which offers are of use to it.
fn demand(
    cluster: &Cluster,
    roles: &mut BTreeMap<String, drf::RoleShare>,
) -> HashMap<String, Resources> {
    let mut smallest: HashMap<String, Resources> = HashMap::new();
    for app in cluster.app_cache.store().list() {
        if app.status.as_ref().is_some_and(|s| s.tasks_pending > 0) {
            wants(roles, &mut smallest, &app.spec);
        }
    }
    for run in cluster.run_cache.store().list() {
        let waiting = run.phase() == pacer_crd::RunPhase::Pending && !run.spec.kill;
        if waiting {
            wants(roles, &mut smallest, &run.spec.template.run);
        }
    }
    smallest
}

/// Removes offers whose node is gone.
async fn reconcile_offer(offer: Arc<Offer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let cluster = &ctx.cluster;
    let node = &offer.spec.node;
    if cluster.node_cache.store().get(node).is_some() {
        return Ok(Action::await_change());
    }
    let exists = cluster
        .nodes
        .get(node)
        .await
        .map_err(|e| Error::Snapshot(node.clone(), e))?
        .is_some();
    if !exists {
        delete_offer(&cluster.offers, &offer).await?;
    }
    Ok(Action::await_change())
}

async fn delete_offer(offers: &Api<Offer>, offer: &Offer) -> Result<(), Error> {
    match offers.delete_unchanged(offer).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_conflict() => Ok(()),
        Err(e) => Err(Error::OfferWrite(offer.spec.node.clone(), e)),
    }
}

/// Notes that `spec`'s role has an instance waiting, and the smallest such instance.
fn wants(
    roles: &mut BTreeMap<String, drf::RoleShare>,
    smallest: &mut HashMap<String, Resources>,
    spec: &pacer_crd::AppSpec,
) {
    let need = spec.resources();
    smallest
        .entry(spec.role.clone())
        .and_modify(|m| *m = m.min(&need))
        .or_insert(need);
    share_of(roles, &spec.role).wants = true;
}

fn share_of<'a>(
    roles: &'a mut BTreeMap<String, drf::RoleShare>,
    role: &str,
) -> &'a mut drf::RoleShare {
    roles
        .entry(role.to_string())
        .or_insert_with(|| drf::RoleShare::new(None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_crd::{NodeSpec, TaskSpec};

    fn task(role: &str, cpus: f64, port: u16) -> Task {
        let mut app = pacer_crd::App::test("t").spec;
        app.role = role.into();
        Task::new(
            &format!("t.{role}"),
            TaskSpec {
                app_id: "t".into(),
                app_version: "v".into(),
                node: "n".into(),
                resources: Resources::new(cpus, 100.0, 0.0),
                host_ports: vec![port],
                kill: false,
                app,
                run: None,
            },
        )
    }

    #[test]
    fn reservations_go_to_their_role_and_the_rest_to_the_holder() {
        let spec = NodeSpec {
            hostname: "n".into(),
            address: "x".into(),
            capacity: Resources::new(4.0, 1000.0, 0.0),
            ports: vec![PortRange { begin: 10, end: 12 }],
            attributes: BTreeMap::new(),
            reservations: BTreeMap::from([("ads".to_string(), Resources::new(2.0, 200.0, 0.0))]),
        };
        let node = Node::new("n", spec);
        let tasks = vec![task("ads", 1.0, 10), task("*", 1.0, 11)];
        let offers = node_offers(&node, &tasks, &|free: &Resources| {
            ("web".to_string(), *free)
        });
        let ads = &offers["ads"];
        assert_eq!(
            (ads.resources.cpus, ads.reserved.cpus),
            (1.0, 1.0),
            "2 reserved, 1 used"
        );
        assert!(ads.ports.is_empty());
        let web = &offers["web"];
        assert_eq!(
            (web.resources.cpus, web.reserved.cpus),
            (1.0, 0.0),
            "4 - 2 used - 1 reserved"
        );
        assert_eq!(web.ports, vec![PortRange { begin: 12, end: 12 }]);
    }

    fn spec(role: &str, cpus: f64) -> OfferSpec {
        OfferSpec {
            node: "n".into(),
            role: role.into(),
            resources: Resources::new(cpus, 100.0, 0.0),
            reserved: Resources::default(),
            ports: Vec::new(),
        }
    }

    #[test]
    fn offers_are_rewritten_by_role_only_where_they_differ() {
        let existing = [
            Offer::new(&offer_name("n", "*"), spec("*", 2.0)),
            Offer::new(&offer_name("n", "ads"), spec("ads", 1.0)),
            Offer::new(&offer_name("n", "ml"), spec("ml", 1.0)),
        ];
        let wanted = BTreeMap::from([
            ("*".to_string(), spec("*", 2.0)),
            ("ads".to_string(), spec("ads", 0.5)),
            ("web".to_string(), spec("web", 1.0)),
        ]);
        let changes = offer_changes("n", &existing, &wanted);
        let roles = |offers: &[Offer]| {
            offers
                .iter()
                .map(|o| o.spec.role.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(roles(&changes.deleted), ["ml"]);
        assert_eq!(roles(&changes.updated), ["ads"]);
        assert_eq!(changes.updated[0].spec.resources.cpus, 0.5);
        assert_eq!(roles(&changes.created), ["web"]);
        assert_eq!(
            changes.created[0].metadata.name.as_deref(),
            Some(offer_name("n", "web").as_str())
        );
        let settled = BTreeMap::from([("*".to_string(), spec("*", 2.0))]);
        assert!(offer_changes("n", &existing[..1], &settled).is_empty());
    }

    #[test]
    fn offers_elsewhere_count_only_up_to_what_their_node_has_free() {
        // n1 has 4 cpus, 3 used by tasks the cache shows: of its two offers of 2, one counts
        // 1 and the other nothing.
        let offered: OfferBook = HashMap::from([(
            "n1".to_string(),
            vec![
                ("web".to_string(), Resources::new(2.0, 0.0, 0.0)),
                ("ads".to_string(), Resources::new(2.0, 0.0, 0.0)),
            ],
        )]);
        let used = HashMap::from([("n1".to_string(), Resources::new(3.0, 0.0, 0.0))]);
        let capacity = |_: &str| Resources::new(4.0, 0.0, 0.0);
        let counted = counted_offers(offered, &capacity, &used);
        let cpus: Vec<(String, f64)> = counted.into_iter().map(|(r, x)| (r, x.cpus)).collect();
        assert_eq!(cpus, [("web".to_string(), 1.0), ("ads".to_string(), 0.0)]);
    }
}
