//! The control plane's election key: read by every apiserver replica (`/v2/leader`), won by
//! the controllers' leader (see `pacer_controllers::election`).

use crate::Client;

/// The election's name: `<prefix>leader`.
pub fn name(client: &Client) -> String {
    format!("{}leader", client.prefix())
}

/// Who leads now (the identity the leader campaigned with), if anyone.
pub async fn leader(client: &Client) -> Option<String> {
    let resp = client
        .etcd()
        .election_client()
        .leader(name(client))
        .await
        .ok()?;
    resp.kv()
        .and_then(|kv| kv.value_str().ok())
        .map(str::to_string)
}
