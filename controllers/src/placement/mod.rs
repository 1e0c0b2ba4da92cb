//! Placement: a pipeline of small filters (cheapest first), then spreading; every rejected node
//! records why, ties go to the node name so results are deterministic.

mod constraints;
mod ports;
mod resources;

use std::collections::BTreeMap;

use pacer_crd::node::PortRange;
use pacer_crd::{AppSpec, Offer, Resources};

/// One node's offer as placement sees it, shrinking as instances are assigned to it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub offer: Offer,
    pub free: Resources,
    pub ports: Vec<PortRange>,
    /// Instances of this app already on the node (for spreading and constraints).
    pub app_tasks: usize,
    /// The node's attributes, `hostname` among them.
    pub attributes: BTreeMap<String, String>,
}

impl Candidate {
    pub fn new(offer: Offer, app_tasks: usize) -> Self {
        let (free, ports) = (offer.spec.resources, offer.spec.ports.clone());
        Candidate {
            offer,
            free,
            ports,
            app_tasks,
            attributes: BTreeMap::new(),
        }
    }

    pub fn node(&self) -> &str {
        &self.offer.spec.node
    }
}

/// A feasibility check: `Err(reason)` when the node cannot take one more instance now.
pub trait Filter {
    fn name(&self) -> &'static str;
    fn check(&self, app: &AppSpec, candidate: &Candidate, all: &[Candidate]) -> Result<(), String>;
}

/// An instance bound to a node with its host ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub node: String,
    pub host_ports: Vec<u16>,
}

/// The outcome: what goes where, what could not be placed and why.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub assignments: Vec<Assignment>,
    pub unplaced: usize,
    /// Per node, why the last unplaced instance did not fit there.
    pub reasons: BTreeMap<String, String>,
}

impl Plan {
    /// "node-a: cpus: 4 wanted, 1.5 free; node-b: ..." or a note that no node exists.
    pub fn explain(&self) -> String {
        if self.reasons.is_empty() {
            return "no node offers resources".into();
        }
        self.reasons
            .iter()
            .map(|(node, why)| format!("{node}: {why}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn filters() -> Vec<Box<dyn Filter + Send + Sync>> {
    vec![
        Box::new(resources::Fits),
        Box::new(ports::Free),
        Box::new(constraints::Constraints),
    ]
}

/// Places `wanted` instances of `app` on `candidates`, spreading over nodes.
pub fn plan(app: &AppSpec, wanted: usize, candidates: &mut [Candidate]) -> Plan {
    let filters = filters();
    let need = Resources::new(app.cpus, app.mem, app.disk);
    let ports_wanted = app.requested_host_ports();
    let mut result = Plan::default();
    for placed in 0..wanted {
        result.reasons.clear();
        let mut best: Option<usize> = None;
        for (i, c) in candidates.iter().enumerate() {
            if let Some(reason) = filters.iter().find_map(|f| {
                f.check(app, c, candidates)
                    .err()
                    .map(|r| format!("{} ({})", r, f.name()))
            }) {
                result.reasons.insert(c.node().to_string(), reason);
                continue;
            }
            if best.is_none_or(|b| rank(c) < rank(&candidates[b])) {
                best = Some(i);
            }
        }
        let Some(i) = best else {
            result.unplaced = wanted - placed;
            break;
        };
        let c = &mut candidates[i];
        let host_ports = pacer_crd::node::pick_ports(&c.ports, &ports_wanted).unwrap_or_default();
        c.free = c.free.minus(&need);
        c.ports = pacer_crd::node::subtract_ports(&c.ports, &host_ports);
        c.app_tasks += 1;
        result.assignments.push(Assignment {
            node: c.node().to_string(),
            host_ports,
        });
    }
    if result.unplaced == 0 {
        result.reasons.clear();
    }
    result
}

/// Lower is better: fewest instances of the app, then most free cpus and mem, then name.
fn rank(c: &Candidate) -> (usize, i64, i64, &str) {
    (
        c.app_tasks,
        -(c.free.cpus * 1000.0) as i64,
        -(c.free.mem as i64),
        c.node(),
    )
}

#[cfg(test)]
mod tests {
    use pacer_crd::{OfferSpec, PortRange};
    use serde_json::json;

    use super::*;

    fn offer(node: &str, cpus: f64, mem: f64, ports: (u16, u16)) -> Candidate {
        let spec = OfferSpec {
            node: node.into(),
            role: "*".into(),
            resources: Resources::new(cpus, mem, 1000.0),
            ports: vec![PortRange {
                begin: ports.0,
                end: ports.1,
            }],
        };
        Candidate::new(Offer::new(node, spec), 0)
    }

    fn app(v: serde_json::Value) -> AppSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn spreads_over_nodes_with_name_tie_break() {
        let spec = app(json!({"cmd": "x", "cpus": 1, "mem": 10}));
        let mut c = vec![
            offer("b", 4.0, 100.0, (1, 9)),
            offer("a", 4.0, 100.0, (1, 9)),
        ];
        let nodes: Vec<String> = plan(&spec, 3, &mut c)
            .assignments
            .into_iter()
            .map(|a| a.node)
            .collect();
        assert_eq!(nodes, vec!["a", "b", "a"]);
    }

    #[test]
    fn never_overcommits_and_explains() {
        let spec = app(json!({"cmd": "x", "cpus": 1, "mem": 10}));
        let mut c = vec![offer("a", 2.5, 100.0, (1, 9))];
        let p = plan(&spec, 4, &mut c);
        assert_eq!(p.assignments.len(), 2);
        assert_eq!(p.unplaced, 2);
        assert!(
            p.explain().starts_with("a: cpus: 1 wanted, 0.5 free"),
            "{}",
            p.explain()
        );
        assert!(c[0].free.cpus >= 0.0);
    }

    #[test]
    fn assigns_distinct_host_ports() {
        let spec = app(
            json!({"container": {"docker": {"image": "i"}, "portMappings": [{"containerPort": 80, "hostPort": 0}, {"containerPort": 81}]},
                              "networks": [{"mode": "container/bridge"}], "cpus": 0.1, "mem": 1}),
        );
        let mut c = vec![offer("a", 4.0, 100.0, (100, 104))];
        let p = plan(&spec, 3, &mut c);
        let ports: Vec<Vec<u16>> = p.assignments.iter().map(|a| a.host_ports.clone()).collect();
        assert_eq!(ports, vec![vec![100, 101], vec![102, 103]]);
        assert_eq!(p.unplaced, 1);
        assert!(p.explain().contains("ports"), "{}", p.explain());
    }
}
