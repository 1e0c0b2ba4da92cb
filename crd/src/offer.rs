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
    /// The role these resources are offered to (`*` is the default role).
    pub role: String,
    /// Everything offered: `reserved` plus the unreserved share the allocator gave the role.
    pub resources: Resources,
    /// The part of `resources` reserved for the role on this node.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reserved: Resources,
    /// Host ports go with the node's unreserved resources, to one role at a time.
    pub ports: Vec<PortRange>,
}

fn is_zero(r: &Resources) -> bool {
    *r == Resources::default()
}

/// The record name of `node`'s offer to `role`.
pub fn offer_name(node: &str, role: &str) -> String {
    format!("{node}.{role}")
}
