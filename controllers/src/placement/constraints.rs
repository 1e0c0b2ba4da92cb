//! Filter: Marathon's constraints, with Marathon's semantics. `hostname` is the node's host
//! name; other fields are node attributes; a node lacking the attribute matches only UNLIKE.

use std::collections::BTreeMap;

use pacer_crd::AppSpec;

use super::{Candidate, Filter, Reason, Rejection};

pub struct Constraints;

impl Filter for Constraints {
    fn check(
        &self,
        app: &AppSpec,
        candidate: &Candidate,
        all: &[Candidate],
    ) -> Result<(), Rejection> {
        app.constraints
            .iter()
            .try_for_each(|c| check_one(c, candidate, all))
            .map_err(|why| Rejection::new(Reason::UnfulfilledConstraint, why))
    }
}

/// Instances of the app per value of `field`, over every node.
fn per_value(field: &str, all: &[Candidate]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for c in all {
        if let Some(value) = c.attributes.get(field) {
            *counts.entry(value.clone()).or_default() += c.app_tasks;
        }
    }
    counts
}

fn full_match(pattern: &str, value: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|r| r.is_match(value))
}

fn check_one(
    constraint: &[String],
    candidate: &Candidate,
    all: &[Candidate],
) -> Result<(), String> {
    let (field, op) = (
        constraint[0].as_str(),
        constraint.get(1).map(String::as_str).unwrap_or_default(),
    );
    let wanted = constraint.get(2).map(String::as_str);
    let Some(value) = candidate.attributes.get(field) else {
        return if op == "UNLIKE" {
            Ok(())
        } else {
            Err(format!("{field} {op}: the node has no attribute {field}"))
        };
    };
    let counts = per_value(field, all);
    let here = counts.get(value).copied().unwrap_or(0);
    let ok = match op {
        "UNIQUE" => here == 0,
        "CLUSTER" | "IS" => wanted == Some(value.as_str()),
        "LIKE" => wanted.is_some_and(|p| full_match(p, value)),
        "UNLIKE" => wanted.is_none_or(|p| !full_match(p, value)),
        "MAX_PER" => wanted
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| here < n),
        "GROUP_BY" => {
            // Even spread: this value must hold no more instances than the least used one,
            // counting values not used yet (as many groups as asked for, if said) as empty.
            let groups = wanted.and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
            let least = if counts.len() < groups {
                0
            } else {
                counts.values().copied().min().unwrap_or(0)
            };
            here <= least
        }
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let wanted_text = wanted.map(|w| format!(" {w}")).unwrap_or_default();
    Err(format!(
        "{field} {op}{wanted_text}: {field}={value} has {here} instance(s) of the app"
    ))
}

#[cfg(test)]
mod tests {
    use pacer_crd::{Offer, OfferSpec, Resources};
    use serde_json::json;

    use super::*;

    fn node(name: &str, attrs: &[(&str, &str)], app_tasks: usize) -> Candidate {
        let spec = OfferSpec {
            node: name.into(),
            role: "*".into(),
            resources: Resources::new(8.0, 8000.0, 0.0),
            reserved: Resources::default(),
            ports: vec![],
        };
        let mut attributes: BTreeMap<String, String> = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        attributes.insert("hostname".into(), name.into());
        Candidate {
            attributes,
            ..Candidate::new(Offer::new(name, spec), app_tasks)
        }
    }

    fn app(constraint: serde_json::Value) -> AppSpec {
        serde_json::from_value(json!({"cmd": "x", "constraints": [constraint]})).unwrap()
    }

    /// Which of `nodes` accept one more instance under `constraint`.
    fn accepted(constraint: serde_json::Value, nodes: &[Candidate]) -> Vec<String> {
        let spec = app(constraint);
        nodes
            .iter()
            .filter(|c| Constraints.check(&spec, c, nodes).is_ok())
            .map(|c| c.node().to_string())
            .collect()
    }

    fn cluster() -> Vec<Candidate> {
        vec![
            node("a", &[("rack", "r1"), ("ssd", "true")], 1),
            node("b", &[("rack", "r1")], 0),
            node("c", &[("rack", "r2"), ("ssd", "false")], 0),
            node("d", &[], 0),
        ]
    }

    #[test]
    fn unique_allows_one_per_value() {
        assert_eq!(
            accepted(json!(["hostname", "UNIQUE"]), &cluster()),
            vec!["b", "c", "d"]
        );
        assert_eq!(
            accepted(json!(["rack", "UNIQUE"]), &cluster()),
            vec!["c"],
            "r1 is taken; d has no rack"
        );
    }

    #[test]
    fn cluster_and_is_pin_to_a_value() {
        assert_eq!(
            accepted(json!(["rack", "CLUSTER", "r1"]), &cluster()),
            vec!["a", "b"]
        );
        assert_eq!(
            accepted(json!(["ssd", "IS", "true"]), &cluster()),
            vec!["a"]
        );
        assert_eq!(
            accepted(json!(["hostname", "CLUSTER", "c"]), &cluster()),
            vec!["c"]
        );
    }

    #[test]
    fn like_and_unlike_match_whole_values_and_missing_attributes_only_unlike() {
        assert_eq!(
            accepted(json!(["rack", "LIKE", "r[12]"]), &cluster()),
            vec!["a", "b", "c"]
        );
        assert_eq!(
            accepted(json!(["rack", "LIKE", "r"]), &cluster()),
            Vec::<String>::new(),
            "a partial match is no match"
        );
        assert_eq!(
            accepted(json!(["rack", "UNLIKE", "r1"]), &cluster()),
            vec!["c", "d"]
        );
        assert_eq!(
            accepted(json!(["ssd", "UNLIKE", "true"]), &cluster()),
            vec!["b", "c", "d"]
        );
    }

    #[test]
    fn max_per_caps_each_value() {
        assert_eq!(
            accepted(json!(["rack", "MAX_PER", "1"]), &cluster()),
            vec!["c"]
        );
        assert_eq!(
            accepted(json!(["rack", "MAX_PER", "2"]), &cluster()),
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn group_by_balances_over_values() {
        assert_eq!(
            accepted(json!(["rack", "GROUP_BY"]), &cluster()),
            vec!["c"],
            "r1 has one, r2 none"
        );
        let even = vec![
            node("a", &[("rack", "r1")], 1),
            node("c", &[("rack", "r2")], 1),
        ];
        assert_eq!(accepted(json!(["rack", "GROUP_BY"]), &even), vec!["a", "c"]);
        // With 3 groups expected and only 2 seen, an empty third group is the least used.
        assert_eq!(
            accepted(json!(["rack", "GROUP_BY", "3"]), &even),
            Vec::<String>::new()
        );
    }

    #[test]
    fn rejections_name_the_constraint() {
        let spec = app(json!(["rack", "CLUSTER", "r9"]));
        let nodes = cluster();
        let why = Constraints
            .check(&spec, &nodes[0], &nodes)
            .unwrap_err()
            .message;
        assert_eq!(why, "rack CLUSTER r9: rack=r1 has 1 instance(s) of the app");
        let why = Constraints
            .check(&spec, &nodes[3], &nodes)
            .unwrap_err()
            .message;
        assert!(why.contains("has no attribute rack"), "{why}");
    }
}
