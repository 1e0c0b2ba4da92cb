//! The ApiToken record: an API credential (`pacer token create`). Only a hash of the secret is
//! stored; the token itself is shown once, when it is created.

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One token: who it is (its name), what it may do (its role) and on which apps (its scopes).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pacer.io",
    version = "v1",
    kind = "ApiToken",
    shortname = "token",
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase")]
pub struct ApiTokenSpec {
    /// `read`, `write` or `admin`.
    pub role: String,
    /// App id prefixes the token is limited to (`/prod/*`); none means every app.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// When the token stops working (RFC 3339); never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// SHA-256 of the token's secret, hex.
    pub hash: String,
}

/// The roles, least powerful first.
pub const ROLES: [&str; 3] = ["read", "write", "admin"];

/// Checks a scope pattern: an absolute app id prefix, optionally ending in `/*`.
pub fn check_scope(scope: &str) -> Result<(), String> {
    let prefix = scope.strip_suffix("/*").unwrap_or(scope);
    if scope == "/*" || prefix == "/" {
        return Ok(());
    }
    if !prefix.starts_with('/') {
        return Err(format!(
            "'{scope}' is not an absolute app id prefix such as /prod/*"
        ));
    }
    crate::AppId::parse(prefix)
        .map(|_| ())
        .map_err(|e| format!("'{scope}': {e}"))
}

/// Whether app id `id` (absolute, normalized) lies within a scope pattern: `/prod/*` and `/prod`
/// both mean `/prod` and everything under `/prod/`.
pub fn in_scope(scope: &str, id: &str) -> bool {
    let prefix = scope
        .strip_suffix("/*")
        .unwrap_or(scope)
        .trim_end_matches('/');
    prefix.is_empty()
        || id == prefix
        || id
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_holds_its_prefix_and_what_lies_under_it_only() {
        assert!(in_scope("/prod/*", "/prod"));
        assert!(in_scope("/prod/*", "/prod/web"));
        assert!(in_scope("/prod", "/prod/web/db"));
        assert!(!in_scope("/prod/*", "/production"));
        assert!(!in_scope("/prod/*", "/other/prod"));
        assert!(in_scope("/*", "/anything"));
        assert!(check_scope("/prod/*").is_ok());
        assert!(check_scope("/*").is_ok());
        assert!(check_scope("prod").is_err());
        assert!(check_scope("/Prod").is_err());
    }
}
