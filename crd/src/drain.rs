//! The Drain record: a node taken out of scheduling (`pacer node drain NODE`). It outlives the
//! node's lease-bound record, so a drained node stays drained across agent restarts.

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// No new task goes to the node, and the tasks on it are moved away within their apps'
/// upgrade strategies (new instance elsewhere first, then the old one stops).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pacer.io",
    version = "v1",
    kind = "Drain",
    shortname = "dr",
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase")]
pub struct DrainSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
