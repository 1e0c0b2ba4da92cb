//! The AppVersion record: an immutable snapshot of an App spec, for `/versions` and rollback.

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::app::AppSpec;

/// One stored version of an app, keyed `<app>/<version>`; written with every change.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pacer.io",
    version = "v1",
    kind = "AppVersion",
    shortname = "appver",
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase")]
pub struct AppVersionSpec {
    pub app_id: String,
    /// The version timestamp, as Marathon prints it.
    pub version: String,
    pub app: AppSpec,
}
