//! The Offer record: a node's unallocated resources, kept by the allocator, shrunk by whoever accepts it.

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::node::{PortRange, Resources};

/// What is free on one node. A framework accepts (part of) it by shrinking it in the same etcd
/// transaction that writes its tasks, comparing the offer's revision: no overcommit, ever.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pacer.io",
    version = "v1",
    kind = "Offer",
    shortname = "of",
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase")]
pub struct OfferSpec {
    pub node: String,
    /// The role these resources are offered to (`*` = any).
    pub role: String,
    pub resources: Resources,
    pub ports: Vec<PortRange>,
}
