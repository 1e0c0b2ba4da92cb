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

/// Campaigns as `identity` with `lease`: returns once elected (or with the error that ended
/// the campaign). Leadership lasts while the lease does.
pub async fn campaign(client: &Client, identity: &str, lease: i64) -> Result<(), crate::Error> {
    let mut election = client.etcd().election_client();
    election.campaign(name(client), identity, lease).await?;
    Ok(())
}
