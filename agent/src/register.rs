//! Node registration: the Node record lives on an etcd lease kept alive by this agent.

use std::time::Duration;

use pacer_crd::{Node, NodeSpec, NodeStatus};
use pacer_runtime::lease::Lease;
use pacer_runtime::{Api, Client};
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
    let new_backoff = || {
        pacer_runtime::backoff(
            std::time::Duration::from_millis(200),
            std::time::Duration::from_secs(5),
        )
    };
    let mut backoff = new_backoff();
    while !token.is_cancelled() {
        let ttl = fitting_ttl(&nodes, &config, config.lease_ttl).await;
        match register(&client, &nodes, &config, &address, ttl, &token).await {
            Ok(lease) => {
                backoff = new_backoff();
                tracing::info!(node = %config.node_name, lease = lease.id, ttl = ttl.as_secs(), "node registered");
                let lost = keep_fitted(&client, &nodes, &config, &address, lease, ttl, &token);
                if !lost.await {
                    return;
                }
                tracing::warn!(node = %config.node_name, "node lease lost, registering again");
            }
            Err(e) => {
                let delay = backoff.next().unwrap_or(std::time::Duration::from_secs(5));
                tracing::info!(node = %config.node_name, error = %e, retry_in = ?delay, "registration failed");
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
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
    mut ttl: Duration,
    token: &CancellationToken,
) -> bool {
    loop {
        let recount = (ttl / 3 * RECOUNT_EVERY).mul_f64(0.5 + fastrand::f64());
        tokio::select! {
            _ = token.cancelled() => return false,
            _ = lease.lost() => return true,
            _ = tokio::time::sleep(recount) => {}
        }
        let fitting = fitting_ttl(nodes, config, ttl).await;
        if fitting < ttl * 2 && fitting * 2 > ttl {
            continue;
        }
        match register(client, nodes, config, address, fitting, token).await {
            Ok(moved) => {
                tracing::info!(node = %config.node_name, lease = moved.id, ttl = fitting.as_secs(), was = ttl.as_secs(), "node moved to a lease fitting the cluster's size");
                std::mem::replace(&mut lease, moved).release().await;
                ttl = fitting;
            }
            Err(e) => {
                tracing::info!(node = %config.node_name, error = %e, "moving to a new lease failed; keeping the old one")
            }
        }
    }
}

/// The lease TTL for the cluster as counted now; `otherwise` if the count fails.
async fn fitting_ttl(nodes: &Api<Node>, config: &AgentConfig, otherwise: Duration) -> Duration {
    match nodes.count("").await {
        Ok(count) => {
            let count = (count.max(0) as usize).max(config.local_nodes);
            lease_ttl(count, config.lease_ttl, config.max_lease_renewals)
        }
        Err(_) => otherwise,
    }
}

/// The lease TTL of a node in a cluster of `nodes`: `min`, unless renewing every node's
/// lease every third of that would pass `max_renewals` per second; then long enough not to.
/// Nomad sizes its heartbeat TTLs the same way (`max_heartbeats_per_second`): a large
/// cluster notices a lost node later instead of spending its store on liveness (on two
/// cores etcd spent 0.2-0.4 cores on 375 renewals/s of 5,000 nodes).
pub fn lease_ttl(nodes: usize, min: Duration, max_renewals: f64) -> Duration {
    let needed = 3.0 * nodes as f64 / max_renewals;
    min.max(Duration::from_secs(needed.ceil() as u64))
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
    ttl: Duration,
    token: &CancellationToken,
) -> Result<Lease, pacer_runtime::Error> {
    let lease = Lease::grant(client, ttl, token.child_token()).await?;
    let spec = node_spec(config, address);
    let mut node = Node::new(&config.node_name, spec);
    node.status = Some(NodeStatus {
        registered_at: Some(pacer_runtime::now()),
        agent_version: Some(env!("CARGO_PKG_VERSION").into()),
    });
    pacer_runtime::api::prepare_new(&mut node);
    let written = match nodes.put_op(&node, Some(lease.id)) {
        Ok(put) => nodes.commit(vec![], vec![put]).await.map(|_| ()),
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
    use super::lease_ttl;
    use std::time::Duration;

    #[test]
    fn leases_grow_with_the_cluster_past_the_renewal_budget() {
        let min = Duration::from_secs(40);
        // 3 nodes, 1,000 nodes: renewing 40 s leases stays within 50/s (1,000 / 13.3 s = 75/s
        // would not: 60 s leases).
        assert_eq!(lease_ttl(3, min, 50.0), min);
        assert_eq!(lease_ttl(666, min, 50.0), min);
        assert_eq!(lease_ttl(1000, min, 50.0), Duration::from_secs(60));
        // 5,000 nodes at 50/s: renewed every 100 s.
        let ttl = lease_ttl(5000, min, 50.0);
        assert_eq!(ttl, Duration::from_secs(300));
        let renewals = 5000.0 / (ttl / 3).as_secs_f64();
        assert!(renewals <= 50.0, "{renewals} renewals/s");
        // A short minimum (tests use 2 s) holds for small clusters.
        assert_eq!(
            lease_ttl(4, Duration::from_secs(2), 50.0),
            Duration::from_secs(2)
        );
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
            capacity: Resources::new(1.0, 64.0, 0.0),
            ports: vec![PortRange {
                begin: 31000,
                end: 31001,
            }],
            attributes: Default::default(),
            reservations: Default::default(),
            work_dir: std::env::temp_dir(),
            lease_ttl: Duration::from_secs(2),
            // 30 nodes at 10 renewals/s: 3 x 31 / 10 = 9.3 -> 10 s.
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
        for i in 1..=30 {
            let other = node_spec(&config(&format!("other-{i}")), "http://127.0.0.1:1");
            let mut node = Node::new(&format!("other-{i}"), other);
            pacer_runtime::api::prepare_new(&mut node);
            nodes.create(&node).await.expect("node");
        }
        // Recounted within 10 renewal periods (of 0.67 s) and a half.
        eventually(limit, "n0 on a 10 s lease", || async {
            node_lease(&h, "n0").await.is_some_and(|(_, ttl)| ttl == 10)
        })
        .await;
        // The old lease goes (revoked), and the record, now on the new one, stays.
        eventually(limit, "the first lease to go", || async {
            granted_ttl(&h, first).await == -1
        })
        .await;
        let (now, ttl) = node_lease(&h, "n0").await.expect("n0 still registered");
        assert_ne!(now, first);
        assert_eq!(ttl, 10);
        token.cancel();
        let _ = agent.await;
    }
}
