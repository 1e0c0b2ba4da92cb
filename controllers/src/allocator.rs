//! The allocator: one Offer per node holding what its tasks leave free (capacity, ports).

use std::sync::Arc;

use etcd_client::{Compare, CompareOp, GetOptions, TxnOp};
use pacer_crd::node::subtract_ports;
use pacer_crd::{Node, Offer, OfferSpec, Resources, Task};
use pacer_runtime::api::get_response;
use pacer_runtime::{Action, Api, Controller};
use tokio_util::sync::CancellationToken;

use crate::{CONFLICT_RETRY, Cluster};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading node {0} failed")]
    Snapshot(String, #[source] pacer_runtime::Error),
    #[error("writing the offer of node {0} failed")]
    OfferWrite(String, #[source] pacer_runtime::Error),
}

pub async fn run(cluster: Cluster, token: CancellationToken) {
    let nodes = Controller::new(&cluster.node_cache, token.clone())
        .watches(&cluster.offer_cache, |o: &Offer| vec![o.spec.node.clone()])
        .watches(&cluster.task_cache, |t: &Task| vec![t.spec.node.clone()]);
    let orphans = Controller::new(&cluster.offer_cache, token.clone());
    let ctx = Arc::new(cluster);
    tokio::join!(
        nodes.run(
            reconcile_node,
            |_, _, _| Action::await_change(),
            ctx.clone()
        ),
        orphans.run(reconcile_offer, |_, _, _| Action::await_change(), ctx),
    );
}

/// What a node has free: capacity minus the resources and ports of its live tasks.
pub fn free_on(node: &Node, tasks: &[Task]) -> OfferSpec {
    let live: Vec<&Task> = tasks.iter().filter(|t| !t.state().is_terminal()).collect();
    let used = live.iter().fold(Resources::default(), |sum, t| {
        let r = &t.spec.resources;
        Resources::new(sum.cpus + r.cpus, sum.mem + r.mem, sum.disk + r.disk)
    });
    let ports: Vec<u16> = live
        .iter()
        .flat_map(|t| t.spec.host_ports.iter().copied())
        .collect();
    OfferSpec {
        node: node.metadata.name.clone().unwrap_or_default(),
        role: "*".into(),
        resources: node.spec.capacity.minus(&used),
        ports: subtract_ports(&node.spec.ports, &ports),
    }
}

/// Rewrites a node's offer from one consistent read of the node, its offer and its tasks.
/// The write compares the offer's revision: every placement shrinks the offer in the same
/// transaction that adds its tasks, so a stale view can never grow an offer past the truth.
async fn reconcile_node(node: Arc<Node>, cluster: Arc<Cluster>) -> Result<Action, Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let (offers, tasks, nodes) = (&cluster.offers, &cluster.tasks, &cluster.nodes);
    let reads = vec![
        TxnOp::get(nodes.etcd_key(&name), None),
        TxnOp::get(offers.etcd_key(&name), None),
        TxnOp::get(
            tasks.etcd_prefix(&format!("{name}/")),
            Some(GetOptions::new().with_prefix()),
        ),
    ];
    let snapshot = offers
        .client()
        .etcd()
        .txn(etcd_client::Txn::new().and_then(reads))
        .await
        .map_err(|e| Error::Snapshot(name.clone(), e.into()))?;
    let responses = snapshot.op_responses();
    let kvs = |i: usize| {
        responses
            .get(i)
            .and_then(get_response)
            .map(|g| g.kvs().to_vec())
            .unwrap_or_default()
    };
    let decode_err = |e| Error::Snapshot(name.clone(), e);
    let current_node = kvs(0)
        .first()
        .map(|kv| nodes.decode(kv))
        .transpose()
        .map_err(decode_err)?;
    let offer = kvs(1)
        .first()
        .map(|kv| offers.decode(kv))
        .transpose()
        .map_err(decode_err)?;
    let node_tasks = kvs(2)
        .iter()
        .map(|kv| tasks.decode(kv))
        .collect::<Result<Vec<_>, _>>()
        .map_err(decode_err)?;

    let Some(current_node) = current_node else {
        if let Some(offer) = offer {
            delete_offer(offers, &offer).await?;
        }
        return Ok(Action::await_change());
    };
    let spec = free_on(&current_node, &node_tasks);
    if offer.as_ref().is_some_and(|o| o.spec == spec) {
        return Ok(Action::await_change());
    }
    let compare = match &offer {
        Some(o) => offers
            .unchanged(o)
            .map_err(|e| Error::OfferWrite(name.clone(), e))?,
        None => Compare::create_revision(offers.etcd_key(&name), CompareOp::Equal, 0),
    };
    let mut new_offer = Offer::new(&name, spec);
    if let Some(o) = &offer {
        new_offer.metadata = o.metadata.clone();
    }
    let put = offers
        .put_op(&new_offer, None)
        .map_err(|e| Error::OfferWrite(name.clone(), e))?;
    match offers.commit(vec![compare], vec![put]).await {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if e.is_conflict() => Ok(Action::requeue(CONFLICT_RETRY)),
        Err(e) => Err(Error::OfferWrite(name, e)),
    }
}

/// Removes offers whose node is gone.
async fn reconcile_offer(offer: Arc<Offer>, cluster: Arc<Cluster>) -> Result<Action, Error> {
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
