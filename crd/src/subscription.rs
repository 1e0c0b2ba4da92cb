//! The EventSubscription record: a URL Marathon's events are POSTed to
//! (`POST /v2/eventSubscriptions?callbackUrl=...`), shared by every apiserver replica.

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One callback subscribed to every event; its name is derived from the URL, so subscribing
/// the same URL twice is one subscription.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pacer.io",
    version = "v1",
    kind = "EventSubscription",
    shortname = "sub",
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase")]
pub struct EventSubscriptionSpec {
    pub callback_url: String,
    /// Who subscribed it (Marathon's `clientIp`).
    #[serde(default)]
    pub client_ip: String,
}

impl EventSubscription {
    /// The record name of a callback URL: the same URL, the same record.
    pub fn name_for(url: &str) -> String {
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, url.as_bytes()).to_string()
    }
}
