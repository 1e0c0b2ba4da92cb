//! The Role record: a share of the cluster (weight) and quota (guarantee, limit) for the apps and
//! jobs that carry its name. A role without a record has weight 1 and no quota.

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::node::Resources;

/// Weighted Dominant Resource Fairness splits unreserved resources between roles that want more:
/// a role with weight 2 ends with twice the dominant share of a role with weight 1. A guarantee
/// is served before any role grows past its fair share; a limit is never exceeded.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pacer.io",
    version = "v1",
    kind = "Role",
    shortname = "ro",
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleSpec {
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Resources the role gets before others grow (a missing resource is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guarantee: Option<Quantities>,
    /// Resources the role never exceeds (a missing resource is unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Quantities>,
}

impl Default for RoleSpec {
    fn default() -> Self {
        RoleSpec {
            weight: 1.0,
            guarantee: None,
            limit: None,
        }
    }
}

fn default_weight() -> f64 {
    1.0
}

/// Some of cpus, mem (MiB) and disk (MiB).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Quantities {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<f64>,
}

impl Quantities {
    /// As resources, a missing one counting as `missing`.
    pub fn or(&self, missing: f64) -> Resources {
        Resources::new(
            self.cpus.unwrap_or(missing),
            self.mem.unwrap_or(missing),
            self.disk.unwrap_or(missing),
        )
    }
}

/// Mesos' rules for role names: not empty, not `.` or `..`, no leading `-`, no `/`, no
/// whitespace or control characters. `*` is the default role.
pub fn check_name(name: &str) -> Result<(), String> {
    if name == "*" {
        return Ok(());
    }
    let bad = if name.is_empty() {
        Some("must not be empty")
    } else if name == "." || name == ".." {
        Some("must not be '.' or '..'")
    } else if name.starts_with('-') {
        Some("must not start with '-'")
    } else if name.contains('/') || name.contains('*') {
        Some("must not contain '/' or '*'")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("must not contain whitespace")
    } else {
        None
    };
    match bad {
        Some(why) => Err(format!("role '{name}' {why}")),
        None => Ok(()),
    }
}

impl RoleSpec {
    /// Every problem, with its path.
    pub fn validate(&self) -> Vec<crate::FieldError> {
        let mut found = Vec::new();
        if !(self.weight.is_finite() && self.weight > 0.0) {
            found.push(crate::FieldError::new(
                "spec.weight",
                format!("must be > 0 (got {})", self.weight),
            ));
        }
        for (name, q) in [("guarantee", &self.guarantee), ("limit", &self.limit)] {
            let Some(q) = q else { continue };
            for (field, v) in [("cpus", q.cpus), ("mem", q.mem), ("disk", q.disk)] {
                if let Some(v) = v.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                    found.push(crate::FieldError::new(
                        format!("spec.{name}.{field}"),
                        format!("must be >= 0 (got {v})"),
                    ));
                }
            }
        }
        if let (Some(g), Some(l)) = (&self.guarantee, &self.limit) {
            let (g, l) = (g.or(0.0), l.or(f64::INFINITY));
            for (field, g, l) in [
                ("cpus", g.cpus, l.cpus),
                ("mem", g.mem, l.mem),
                ("disk", g.disk, l.disk),
            ] {
                if g > l && l >= 0.0 {
                    found.push(crate::FieldError::new(
                        format!("spec.guarantee.{field}"),
                        format!("{g} is above the limit {l}"),
                    ));
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_follow_mesos() {
        for ok in ["*", "ads", "team.a", "a-b_c"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "-x", "a/b", "a b", "a*"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quota_checks_name_the_field() {
        let spec: RoleSpec = serde_json::from_value(serde_json::json!({
            "weight": 0, "guarantee": {"cpus": 4}, "limit": {"cpus": 2, "mem": -1}
        }))
        .unwrap();
        let paths: Vec<String> = spec.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            ["spec.weight", "spec.limit.mem", "spec.guarantee.cpus"]
        );
    }
}
