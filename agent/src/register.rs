//! Node registration: the Node record lives on an etcd lease kept alive by this agent.

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
        match register(&client, &nodes, &config, &address, &token).await {
            Ok(lease) => {
                backoff = new_backoff();
                tracing::info!(node = %config.node_name, lease = lease.id, "node registered");
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = lease.lost() => tracing::warn!(node = %config.node_name, "node lease lost, registering again"),
                }
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

/// Writes the Node bound to a fresh lease. A record left by an earlier run of this agent is
/// overwritten, which moves it onto the new lease.
async fn register(
    client: &Client,
    nodes: &Api<Node>,
    config: &AgentConfig,
    address: &str,
    token: &CancellationToken,
) -> Result<Lease, pacer_runtime::Error> {
    let lease = Lease::grant(client, config.lease_ttl, token.child_token()).await?;
    let mut attributes = config.attributes.clone();
    // Constraints on `hostname` tell nodes apart: the node's name, which is the machine's host
    // name unless several agents share a machine (then `--hostname` is only where ports are).
    attributes
        .entry("hostname".into())
        .or_insert_with(|| config.node_name.clone());
    let spec = NodeSpec {
        hostname: config.hostname.clone(),
        address: address.to_string(),
        capacity: config.capacity,
        ports: config.ports.clone(),
        attributes,
        reservations: config.reservations.clone(),
    };
    let mut node = Node::new(&config.node_name, spec);
    node.status = Some(NodeStatus {
        registered_at: Some(pacer_runtime::now()),
        agent_version: Some(env!("CARGO_PKG_VERSION").into()),
    });
    pacer_runtime::api::prepare_new(&mut node);
    nodes
        .commit(vec![], vec![nodes.put_op(&node, Some(lease.id))?])
        .await?;
    Ok(lease)
}
