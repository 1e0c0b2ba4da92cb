//! Node registration: the Node record lives on an etcd lease kept alive by this agent.

use std::time::Duration;

use pacer_crd::{Node, NodeSpec, NodeStatus};
use pacer_runtime::lease::{Lease, Terms};
use pacer_runtime::{Api, Backoff, Client};
use tokio_util::sync::CancellationToken;

use crate::AgentConfig;

/// Registers the node and registers it again whenever its lease is lost, until cancelled.
pub async fn keep_registered(
    client: Client,
    config: AgentConfig,
    address: String,
    token: CancellationToken,
) {
    let nodes: Api<Node> = Api::new(&client);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while !token.is_cancelled() {
        let terms = fitting_terms(&nodes, &config, None).await;
        match register(&client, &nodes, &config, &address, terms, &token).await {
            Ok(lease) => {
                backoff.reset();
                tracing::info!(node = %config.node_name, lease = lease.id, ttl = ?terms.ttl, renew_every = ?terms.renew_every, "node registered");
                let lost = keep_fitted(&client, &nodes, &config, &address, lease, terms, &token);
                if !lost.await {
                    return;
                }
                tracing::warn!(node = %config.node_name, "node lease lost, registering again");
            }
            Err(e) => {
                let told = |delay| tracing::info!(node = %config.node_name, error = %e, retry_in = ?delay, "registration failed");
                if !backoff.pause(&token, told).await {
                    return;
                }
            }
        }
    }
}

/// Renewals between two looks at the cluster's size.
const RECOUNT_EVERY: u32 = 10;

/// Holds the node's lease until it is lost (true) or the agent stops (false). Every
/// `RECOUNT_EVERY` renewal periods it counts the nodes again; when the cluster has grown or
/// shrunk so much that the lease's TTL should be twice or half what it is, the node moves to
/// a new lease of the fitting TTL (its record is written on the new one, the old one revoked).
async fn keep_fitted(
    client: &Client,
    nodes: &Api<Node>,
    config: &AgentConfig,
    address: &str,
    mut lease: Lease,
    mut terms: Terms,
    token: &CancellationToken,
) -> bool {
    loop {
        let recount = (terms.renew_every * RECOUNT_EVERY).mul_f64(0.5 + fastrand::f64());
        tokio::select! {
            _ = token.cancelled() => return false,
            _ = lease.lost() => return true,
            _ = tokio::time::sleep(recount) => {}
        }
        let fitting = fitting_terms(nodes, config, Some(terms)).await;
        let (now, was) = (fitting.renew_every, terms.renew_every);
        if now < was * 2 && now * 2 > was {
            continue;
        }
        match register(client, nodes, config, address, fitting, token).await {
            Ok(moved) => {
                tracing::info!(node = %config.node_name, lease = moved.id, ttl = ?fitting.ttl, was = ?terms.ttl, "node moved to a lease fitting the cluster's size");
                std::mem::replace(&mut lease, moved).release().await;
                terms = fitting;
            }
            Err(e) => {
                tracing::info!(node = %config.node_name, error = %e, "moving to a new lease failed; keeping the old one")
            }
        }
    }
}

/// The lease terms for the cluster as counted now; `otherwise` if the count fails (the
/// smallest cluster's terms if there is nothing else).
async fn fitting_terms(nodes: &Api<Node>, config: &AgentConfig, otherwise: Option<Terms>) -> Terms {
    let count = match (nodes.count("").await, otherwise) {
        (Ok(count), _) => count.max(0) as usize,
        (Err(_), Some(terms)) => return terms,
        (Err(_), None) => 0,
    };
    let count = count.max(config.local_nodes);
    lease_terms(count, config.lease_ttl, config.max_lease_renewals)
}

/// The lease terms of a node in a cluster of `nodes`. A small cluster's node renews a lease
/// of `min` every third of that. Once all renewals together would pass `max_renewals` per
/// second, each node renews less often, and its lease lasts a renewal period plus the same
/// grace a small cluster's node has (two thirds of `min`) to get a failed renewal through.
/// Nomad sizes its heartbeats the same way (`max_heartbeats_per_second`, a TTL plus
/// `heartbeat_grace`): a large cluster notices a lost node later instead of spending its
/// store on liveness (on two cores each renewal costs etcd 3.4 about 0.8 ms).
pub fn lease_terms(nodes: usize, min: Duration, max_renewals: f64) -> Terms {
    let smallest = Terms::thirds(min);
    let needed = Duration::from_secs_f64(nodes as f64 / max_renewals);
    if needed <= smallest.renew_every {
        return smallest;
    }
    Terms {
        ttl: needed + smallest.grace(),
        renew_every: needed,
    }
}

/// What the agent says of its node.
fn node_spec(config: &AgentConfig, address: &str) -> NodeSpec {
    let mut attributes = config.attributes.clone();
    // Constraints on `hostname` tell nodes apart: the node's name, which is the machine's host
    // name unless several agents share a machine (then `--hostname` is only where ports are).
    attributes
        .entry("hostname".into())
        .or_insert_with(|| config.node_name.clone());
    NodeSpec {
        hostname: config.hostname.clone(),
        address: address.to_string(),
        capacity: config.capacity,
        ports: config.ports.clone(),
        attributes,
        reservations: config.reservations.clone(),
    }
}

/// Writes the Node bound to a fresh lease. A record left by an earlier run of this agent is
/// overwritten, which moves it onto the new lease.
async fn register(
    client: &Client,
    nodes: &Api<Node>,
    config: &AgentConfig,
    address: &str,
    terms: Terms,
    token: &CancellationToken,
) -> Result<Lease, pacer_runtime::Error> {
    let lease = Lease::grant(client, terms, token.child_token()).await?;
    let spec = node_spec(config, address);
    let mut node = Node::new(&config.node_name, spec);
    node.status = Some(NodeStatus {
        registered_at: Some(pacer_runtime::now()),
        agent_version: Some(env!("CARGO_PKG_VERSION").into()),
    });
    pacer_runtime::api::prepare_new(&mut node);
    let mut txn = pacer_runtime::Txn::new();
    let written = match txn.put_with_lease(nodes, &node, Some(lease.id)) {
        Ok(_) => client.commit(txn).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match written {
        Ok(()) => Ok(lease),
        Err(e) => {
            // Nothing is bound to it: renewing it on would cost etcd for nothing.
            lease.release().await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Terms, lease_terms};
    use std::time::Duration;

    #[test]
    fn leases_grow_with_the_cluster_past_the_renewal_budget() {
        let min = Duration::from_secs(40);
        let smallest = lease_terms(3, min, 25.0);
        assert_eq!(smallest, Terms::thirds(min));
        // 333 nodes renewing every 13.3 s stay within 25/s.
        assert_eq!(lease_terms(333, min, 25.0), smallest);
        // 1,000 nodes: every 40 s, and the small cluster's 26.7 s of grace on top.
        let thousand = lease_terms(1000, min, 25.0);
        assert_eq!(thousand.renew_every, Duration::from_secs(40));
        assert_eq!(thousand.grace(), smallest.grace());
        // 5,000 nodes: 25 renewals/s, a lost node noticed within 227 s.
        let big = lease_terms(5000, min, 25.0);
        assert_eq!(5000.0 / big.renew_every.as_secs_f64(), 25.0);
        assert_eq!(big.ttl.as_secs(), 226);
        // A short minimum (tests use 2 s) holds for small clusters.
        let short = Duration::from_secs(2);
        assert_eq!(lease_terms(4, short, 25.0), Terms::thirds(short));
    }
}

/// Against a real etcd: a node registered in a small cluster moves to a longer lease once the
/// cluster has grown past its renewal budget, and its record stays.
#[cfg(test)]
mod moving {
    use super::*;
    use pacer_crd::{PortRange, Resources};
    use pacer_runtime::testing::{TestEtcd, eventually};

    fn config(name: &str) -> AgentConfig {
        AgentConfig {
            node_name: name.into(),
            hostname: name.into(),
            listen: "127.0.0.1:0".parse().expect("address"),
            tls: None,
            task_user: None,
            capacity: Resources::new(1.0, 64.0, 0.0),
            ports: vec![PortRange {
                begin: 31000,
                end: 31001,
            }],
            attributes: Default::default(),
            reservations: Default::default(),
            work_dir: std::env::temp_dir(),
            lease_ttl: Duration::from_secs(2),
            // 31 nodes at 10 renewals/s: every 3.1 s, 1.33 s of grace -> a 5 s lease.
            max_lease_renewals: 10.0,
            local_nodes: 1,
        }
    }

    /// The lease the node's record is bound to, and the TTL etcd granted it.
    async fn node_lease(h: &TestEtcd, name: &str) -> Option<(i64, i64)> {
        let key = format!("/pacer-test/nodes/{name}");
        let lease = h
            .client
            .etcd()
            .get(key, None)
            .await
            .ok()?
            .kvs()
            .first()?
            .lease();
        Some((lease, granted_ttl(h, lease).await))
    }

    /// The TTL etcd granted `lease`, or -1 once it is gone.
    async fn granted_ttl(h: &TestEtcd, lease: i64) -> i64 {
        match h.client.leases().time_to_live(lease, None).await {
            Ok(ttl) if ttl.ttl() > 0 => ttl.granted_ttl(),
            _ => -1,
        }
    }

    #[tokio::test]
    async fn a_node_moves_to_a_longer_lease_when_the_cluster_grows() {
        let h = TestEtcd::start().await;
        let token = CancellationToken::new();
        let agent = tokio::spawn(keep_registered(
            h.client.clone(),
            config("n0"),
            "http://127.0.0.1:1".into(),
            token.clone(),
        ));
        let limit = Duration::from_secs(20);
        eventually(limit, "n0 registered on a 2 s lease", || async {
            node_lease(&h, "n0").await.is_some_and(|(_, ttl)| ttl == 2)
        })
        .await;
        let (first, _) = node_lease(&h, "n0").await.expect("n0 registered");
        let nodes: Api<Node> = Api::new(&h.client);
        // All at once: a count between two creations would move n0 to a lease in between.
        let mut others = pacer_runtime::Txn::new();
        for i in 1..=30 {
            let other = node_spec(&config(&format!("other-{i}")), "http://127.0.0.1:1");
            let mut node = Node::new(&format!("other-{i}"), other);
            pacer_runtime::api::prepare_new(&mut node);
            others.put(&nodes, &node).expect("node");
        }
        h.client.commit(others).await.expect("nodes");
        // Recounted within 10 renewal periods (of 0.67 s) and a half.
        eventually(limit, "n0 on a 5 s lease", || async {
            node_lease(&h, "n0").await.is_some_and(|(_, ttl)| ttl == 5)
        })
        .await;
        // The old lease goes (revoked), and the record, now on the new one, stays.
        eventually(limit, "the first lease to go", || async {
            granted_ttl(&h, first).await == -1
        })
        .await;
        let (now, ttl) = node_lease(&h, "n0").await.expect("n0 still registered");
        assert_ne!(now, first);
        assert_eq!(ttl, 5);
        token.cancel();
        let _ = agent.await;
    }
}
