//! Placement: a pipeline of small filter plugins (cheapest first), then score plugins
//! (spreading, then least allocated); every rejected node records why, ties go to the node
//! name so results are deterministic.

mod constraints;
mod ports;
mod resources;
mod roles;

use std::collections::BTreeMap;

use pacer_crd::app::{NodeRejection, PlacementReport};
use pacer_crd::node::PortRange;
use pacer_crd::{AppSpec, Offer, Resources};

/// One node as placement sees it for one app: the part of the node's offer to the app's role
/// the app may use, shrinking as instances are assigned to it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    /// The node's offer to the app's role, as read (shared with the cache); `None` if the node
    /// offers nothing to it.
    pub offer: Option<std::sync::Arc<Offer>>,
    /// Free resources reserved for the app's role (usable if the app accepts its role).
    pub reserved: Resources,
    /// Free unreserved resources offered to the app's role (usable if the app accepts `*`).
    pub unreserved: Resources,
    pub ports: Vec<PortRange>,
    /// Instances of this app already on the node (for spreading and constraints).
    pub app_tasks: usize,
    /// The node's attributes, `hostname` among them (left empty for apps without constraints,
    /// the only thing reading them).
    pub attributes: BTreeMap<String, String>,
    /// Roles the node's resources are offered to instead, when not to the app's.
    pub other_roles: Vec<String>,
}

impl Candidate {
    /// A node whose offer goes to the app's role.
    pub fn new(offer: impl Into<std::sync::Arc<Offer>>, app_tasks: usize) -> Self {
        let offer = offer.into();
        let spec = &offer.spec;
        Candidate {
            node: spec.node.clone(),
            reserved: spec.reserved,
            unreserved: spec.resources.minus(&spec.reserved).clamped(),
            ports: spec.ports.clone(),
            offer: Some(offer),
            app_tasks,
            attributes: BTreeMap::new(),
            other_roles: Vec::new(),
        }
    }

    /// A node whose offers go to other roles only.
    pub fn elsewhere(node: &str, roles: Vec<String>, app_tasks: usize) -> Self {
        Candidate {
            node: node.to_string(),
            offer: None,
            reserved: Resources::default(),
            unreserved: Resources::default(),
            ports: Vec::new(),
            app_tasks,
            attributes: BTreeMap::new(),
            other_roles: roles,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// What `app` may use here: the reservation if it accepts its role, the rest if it accepts `*`.
    pub fn usable(&self, app: &AppSpec) -> Resources {
        let (reserved, unreserved) = accepts(app);
        let zero = Resources::default();
        (if reserved { self.reserved } else { zero }).plus(&if unreserved {
            self.unreserved
        } else {
            zero
        })
    }

    /// Puts one instance here: free host ports picked, resources and ports taken.
    fn assign(&mut self, app: &AppSpec, need: &Resources, ports_wanted: &[u16]) -> Assignment {
        let host_ports = pacer_crd::node::pick_ports(&self.ports, ports_wanted).unwrap_or_default();
        self.place(app, need, &host_ports);
        Assignment {
            node: self.node.clone(),
            host_ports,
        }
    }

    /// Takes one instance's resources and `host_ports` from what is left here.
    pub fn place(&mut self, app: &AppSpec, need: &Resources, host_ports: &[u16]) {
        self.take(app, need);
        self.ports = pacer_crd::node::subtract_ports(&self.ports, host_ports);
        self.app_tasks += 1;
    }

    /// Takes one instance's resources: from the reservation first, then the rest.
    fn take(&mut self, app: &AppSpec, need: &Resources) {
        let (reserved, _) = accepts(app);
        let from_reserved = if reserved {
            self.reserved.min(need)
        } else {
            Resources::default()
        };
        self.reserved = self.reserved.minus(&from_reserved);
        self.unreserved = self.unreserved.minus(&need.minus(&from_reserved));
    }

    /// The offer as it stands after the assignments, for the accepting transaction.
    pub fn shrunk_offer(&self) -> Option<Offer> {
        let mut offer = Offer::clone(self.offer.as_ref()?);
        offer.spec.resources = self.reserved.plus(&self.unreserved).clamped();
        offer.spec.reserved = self.reserved.clamped();
        offer.spec.ports = self.ports.clone();
        Some(offer)
    }
}

/// Whether `app` takes (resources reserved for its role, unreserved resources).
fn accepts(app: &AppSpec) -> (bool, bool) {
    match &app.accepted_resource_roles {
        None => (true, true),
        Some(roles) => (
            roles.iter().any(|r| r == &app.role),
            roles.iter().any(|r| r == "*"),
        ),
    }
}

pub use pacer_crd::app::Reason;

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: Reason,
    pub message: String,
}

impl Rejection {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
        }
    }
}

/// A feasibility check: `Err` when the node cannot take one more instance now.
pub trait Filter {
    fn check(
        &self,
        app: &AppSpec,
        candidate: &Candidate,
        all: &[Candidate],
    ) -> Result<(), Rejection>;
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
    pub reasons: BTreeMap<String, Rejection>,
}

/// Nodes listed by name in a report; the counts cover all of them.
const REPORTED_NODES: usize = 50;

impl Plan {
    /// "node-a: cpus: 4 wanted, 1.5 free; node-b: ..." or a note that no node exists.
    pub fn explain(&self) -> String {
        if self.reasons.is_empty() {
            return "no node offers resources".into();
        }
        self.reasons
            .iter()
            .map(|(node, why)| format!("{node}: {}", why.message))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The record of why instances wait, for the app's status (`pacer explain`, `/v2/queue`).
    pub fn report(&self) -> Option<PlacementReport> {
        if self.unplaced == 0 {
            return None;
        }
        let mut rejected = BTreeMap::new();
        for r in self.reasons.values() {
            *rejected.entry(r.reason.as_str().to_string()).or_insert(0) += 1;
        }
        Some(PlacementReport {
            at: None,
            nodes_considered: self.reasons.len() as i64,
            rejected,
            nodes: self
                .reasons
                .iter()
                .take(REPORTED_NODES)
                .map(|(node, r)| NodeRejection {
                    node: node.clone(),
                    reason: r.reason.as_str().into(),
                    message: r.message.clone(),
                })
                .collect(),
        })
    }
}

/// A preference among nodes that pass every filter: lower is better. Scores are compared in
/// the order of `scores()`, then by node name, so placement is deterministic.
pub trait Score {
    fn score(&self, app: &AppSpec, candidate: &Candidate) -> i64;
}

/// Spreading: fewer instances of the app on the node first.
struct Spread;

impl Score for Spread {
    fn score(&self, _app: &AppSpec, candidate: &Candidate) -> i64 {
        candidate.app_tasks as i64
    }
}

/// Least allocated: more free cpus, then more free mem (what the app may use) first.
struct MostFree;

impl Score for MostFree {
    fn score(&self, app: &AppSpec, candidate: &Candidate) -> i64 {
        let free = candidate.usable(app);
        -((free.cpus * 1000.0) as i64) * 1_000_000_000 - free.mem as i64
    }
}

/// A node's scores, in the order of `scores()`.
type Rank = [i64; 2];

fn scores() -> [Box<dyn Score + Send + Sync>; 2] {
    [Box::new(Spread), Box::new(MostFree)]
}

/// Cheapest first: roles, resources, ports, then constraints (which look at every node).
fn filters() -> Vec<Box<dyn Filter + Send + Sync>> {
    vec![
        Box::new(roles::Offered),
        Box::new(resources::Fits),
        Box::new(ports::Free),
        Box::new(constraints::Constraints),
    ]
}

/// Places `wanted` instances of `app` on `candidates`, spreading over nodes.
pub fn plan(app: &AppSpec, wanted: usize, candidates: &mut [Candidate]) -> Plan {
    if app.constraints.is_empty() {
        plan_independent(app, wanted, candidates)
    } else {
        plan_scan(app, wanted, candidates)
    }
}

/// Every instance placed by a scan of every node: constraints look at where the others went.
fn plan_scan(app: &AppSpec, wanted: usize, candidates: &mut [Candidate]) -> Plan {
    let filters = filters();
    let scores = scores();
    let rank = |c: &Candidate| -> Rank { scores.each_ref().map(|s| s.score(app, c)) };
    let need = app.resources();
    let ports_wanted = app.requested_host_ports();
    let mut result = Plan::default();
    for placed in 0..wanted {
        result.reasons.clear();
        let mut best: Option<usize> = None;
        for (i, c) in candidates.iter().enumerate() {
            if let Some(rejection) = filters
                .iter()
                .find_map(|f| f.check(app, c, candidates).err())
            {
                result.reasons.insert(c.node().to_string(), rejection);
                continue;
            }
            let better = best.is_none_or(|b| {
                let other = &candidates[b];
                (rank(c), c.node()) < (rank(other), other.node())
            });
            if better {
                best = Some(i);
            }
        }
        let Some(i) = best else {
            result.unplaced = wanted - placed;
            break;
        };
        result
            .assignments
            .push(candidates[i].assign(app, &need, &ports_wanted));
    }
    if result.unplaced == 0 {
        result.reasons.clear();
    }
    result
}

/// `plan` for an app without constraints: then a node's fitness and rank change only when
/// an instance goes to that node, so nodes are ranked once and kept in order (O(n log n)
/// instead of a scan of every node per instance). Same choices as the scan.
fn plan_independent(app: &AppSpec, wanted: usize, candidates: &mut [Candidate]) -> Plan {
    let filters = filters();
    let scores = scores();
    let rank = |c: &Candidate| -> Rank { scores.each_ref().map(|s| s.score(app, c)) };
    let rejection =
        |c: &Candidate, all: &[Candidate]| filters.iter().find_map(|f| f.check(app, c, all).err());
    let need = app.resources();
    let ports_wanted = app.requested_host_ports();
    // Ties go to the node name: each candidate's place in name order stands in for it (no
    // copy of every name per round).
    let mut by_name: Vec<usize> = (0..candidates.len()).collect();
    by_name.sort_by(|&a, &b| candidates[a].node.cmp(&candidates[b].node));
    let mut ranked: std::collections::BTreeSet<(Rank, usize)> = by_name
        .iter()
        .enumerate()
        .filter(|&(_, &i)| rejection(&candidates[i], candidates).is_none())
        .map(|(place, &i)| (rank(&candidates[i]), place))
        .collect();
    let mut result = Plan::default();
    for placed in 0..wanted {
        let Some((_, place)) = ranked.pop_first() else {
            result.unplaced = wanted - placed;
            for c in candidates.iter() {
                if let Some(r) = rejection(c, candidates) {
                    result.reasons.insert(c.node().to_string(), r);
                }
            }
            break;
        };
        let i = by_name[place];
        result
            .assignments
            .push(candidates[i].assign(app, &need, &ports_wanted));
        if rejection(&candidates[i], candidates).is_none() {
            ranked.insert((rank(&candidates[i]), place));
        }
    }
    result
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
            reserved: Resources::default(),
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
        assert!(c[0].unreserved.cpus >= 0.0);
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

    fn reserved_offer(node: &str, role: &str, total: f64, reserved: f64) -> Candidate {
        let spec = OfferSpec {
            node: node.into(),
            role: role.into(),
            resources: Resources::new(total, 1000.0, 0.0),
            reserved: Resources::new(reserved, if reserved > 0.0 { 500.0 } else { 0.0 }, 0.0),
            // Every app asks for one port by default: the node lends a range, as agents do.
            ports: vec![PortRange {
                begin: 31000,
                end: 31099,
            }],
        };
        Candidate::new(Offer::new(node, spec), 0)
    }

    #[test]
    fn accepted_resource_roles_pick_the_reserved_or_the_unreserved_part() {
        let only_reserved = app(json!({"cmd": "x", "cpus": 1, "mem": 10, "role": "ads",
                                       "acceptedResourceRoles": ["ads"]}));
        let mut c = vec![reserved_offer("a", "ads", 4.0, 2.0)];
        let p = plan(&only_reserved, 3, &mut c);
        assert_eq!((p.assignments.len(), p.unplaced), (2, 1));
        assert_eq!(
            p.reasons["a"].reason,
            Reason::InsufficientCpus,
            "the reservation is used up"
        );
        // What is left is the unreserved part, for apps that take it.
        let shrunk = c[0].shrunk_offer().unwrap().spec;
        assert_eq!((shrunk.resources.cpus, shrunk.reserved.cpus), (2.0, 0.0));
        let mut none_reserved = vec![reserved_offer("b", "ads", 4.0, 0.0)];
        let p = plan(&only_reserved, 1, &mut none_reserved);
        assert_eq!(
            p.reasons["b"].reason,
            Reason::NoCorrespondingReservationFound
        );

        let only_unreserved = app(json!({"cmd": "x", "cpus": 1, "mem": 10, "role": "ads",
                                         "acceptedResourceRoles": ["*"]}));
        let mut c = vec![reserved_offer("a", "ads", 4.0, 3.0)];
        let p = plan(&only_unreserved, 2, &mut c);
        assert_eq!((p.assignments.len(), p.unplaced), (1, 1));
        assert_eq!(p.reasons["a"].reason, Reason::InsufficientCpus);

        // Both (the default): the reservation is used first.
        let both = app(json!({"cmd": "x", "cpus": 1, "mem": 10, "role": "ads"}));
        let mut c = vec![reserved_offer("a", "ads", 4.0, 3.0)];
        let p = plan(&both, 4, &mut c);
        assert_eq!(p.assignments.len(), 4);
        assert_eq!(c[0].reserved.cpus, 0.0);
    }

    #[test]
    fn a_node_offered_to_another_role_is_refused_with_the_role() {
        let spec = app(json!({"cmd": "x", "cpus": 1, "mem": 10, "role": "web"}));
        let mut c = vec![Candidate::elsewhere("a", vec!["ads".into()], 0)];
        let p = plan(&spec, 1, &mut c);
        assert_eq!(p.reasons["a"].reason, Reason::UnfulfilledRole);
        assert!(
            p.explain()
                .contains("offered to role(s) ads, not to role web"),
            "{}",
            p.explain()
        );
        let report = p.report().unwrap();
        assert_eq!(report.rejected["UnfulfilledRole"], 1);
    }

    fn with_constraints(v: serde_json::Value) -> AppSpec {
        app(json!({"cmd": "x", "cpus": 1, "mem": 10, "constraints": v}))
    }

    /// Nodes a..e, racks r1 (a, b) and r2 (c, d), e without a rack.
    fn racks() -> Vec<Candidate> {
        ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| {
                let mut c = offer(n, 8.0, 1000.0, (1, 99));
                c.attributes.insert("hostname".into(), n.to_string());
                let rack = match *n {
                    "a" | "b" => Some("r1"),
                    "c" | "d" => Some("r2"),
                    _ => None,
                };
                if let Some(rack) = rack {
                    c.attributes.insert("rack".into(), rack.into());
                }
                c
            })
            .collect()
    }

    fn nodes_of(p: &Plan) -> Vec<&str> {
        p.assignments.iter().map(|a| a.node.as_str()).collect()
    }

    #[test]
    fn unique_places_one_per_value_and_says_why_the_rest_waits() {
        let spec = with_constraints(json!([["hostname", "UNIQUE"]]));
        let mut c = racks();
        c[1].app_tasks = 1;
        let p = plan(&spec, 6, &mut c);
        assert_eq!(nodes_of(&p), ["a", "c", "d", "e"], "b has one already");
        assert_eq!(p.unplaced, 2);
        assert_eq!(p.reasons.len(), 5);
        assert!(
            p.reasons
                .values()
                .all(|r| r.reason == Reason::UnfulfilledConstraint)
        );
        assert_eq!(p.report().unwrap().rejected["UnfulfilledConstraint"], 5);
    }

    #[test]
    fn cluster_and_like_pin_and_group_by_balances_as_instances_go() {
        let pinned = with_constraints(json!([["rack", "CLUSTER", "r2"]]));
        assert_eq!(
            nodes_of(&plan(&pinned, 4, &mut racks())),
            ["c", "d", "c", "d"]
        );
        let like = with_constraints(json!([["rack", "LIKE", "r1"]]));
        assert_eq!(nodes_of(&plan(&like, 3, &mut racks())), ["a", "b", "a"]);
        // Over the two racks: each instance goes to the rack with fewer so far.
        let grouped = with_constraints(json!([["rack", "GROUP_BY", "2"]]));
        let mut c = racks();
        c[0].app_tasks = 2;
        let p = plan(&grouped, 4, &mut c);
        let r2 = nodes_of(&p)
            .iter()
            .filter(|n| ["c", "d"].contains(n))
            .count();
        assert_eq!(r2, 3, "r1 had two: three of four go to r2 to even them out");
        let capped = with_constraints(json!([["rack", "MAX_PER", "1"]]));
        let p = plan(&capped, 3, &mut racks());
        assert_eq!((nodes_of(&p), p.unplaced), (vec!["a", "c"], 1));
    }

    #[test]
    fn score_plugins_spread_then_prefer_free_nodes() {
        let spec = app(json!({"cmd": "x", "cpus": 1, "mem": 10}));
        let mut c = vec![
            offer("a", 2.0, 100.0, (1, 9)),
            offer("b", 8.0, 100.0, (1, 9)),
        ];
        c[1].app_tasks = 1;
        let nodes: Vec<String> = plan(&spec, 3, &mut c)
            .assignments
            .into_iter()
            .map(|a| a.node)
            .collect();
        // a has none of the app: first; then both have one and b has more free cpus; then a
        // has fewer again.
        assert_eq!(nodes, vec!["a", "b", "a"]);
    }

    mod agree {
        use proptest::prelude::*;

        use super::*;

        fn fleet() -> impl Strategy<Value = Vec<Candidate>> {
            let node = (0u8..16, 0u8..10, 0u16..4, 0usize..3, 0u8..6);
            proptest::collection::vec(node, 0..24).prop_map(|nodes| {
                nodes
                    .into_iter()
                    .enumerate()
                    .map(|(i, (halves, tenths, ports, here, kind))| {
                        let name = format!("n{:02}", (i * 7) % 31);
                        let cpus = f64::from(halves) / 2.0;
                        let mem = f64::from(tenths) * 100.0;
                        let mut c = match kind {
                            // A node offered to another role only.
                            0 => Candidate::elsewhere(&name, vec!["ads".into()], here),
                            _ => offer(&name, cpus, mem, (31000, 31000 + ports)),
                        };
                        c.app_tasks = here;
                        c.attributes.insert("zone".into(), format!("z{}", kind % 3));
                        c
                    })
                    .collect()
            })
        }

        fn app_of(cpus: u8, mem: u8, ports: usize, zone: Option<u8>) -> AppSpec {
            let defs: Vec<_> = (0..ports).map(|_| json!({"port": 0})).collect();
            let mut v = json!({"cmd": "x", "cpus": f64::from(cpus) / 4.0,
                               "mem": f64::from(mem) * 50.0, "portDefinitions": defs,
                               "requirePorts": false});
            if let Some(z) = zone {
                // A constraint on the node alone: it rejects the same nodes whatever is placed.
                v["constraints"] = json!([["zone", "UNLIKE", format!("z{z}")]]);
            }
            serde_json::from_value(v).unwrap()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]
            #[test]
            fn the_scan_and_the_ranked_path_make_the_same_choices(
                fleet in fleet(),
                (cpus, mem, ports) in (1u8..12, 0u8..8, 0usize..3),
                zone in proptest::option::of(0u8..3),
                wanted in 0usize..40,
            ) {
                let spec = app_of(cpus, mem, ports, zone);
                let (mut scanned, mut ranked) = (fleet.clone(), fleet);
                let a = plan_scan(&spec, wanted, &mut scanned);
                let b = plan_independent(&spec, wanted, &mut ranked);
                prop_assert_eq!(&a.assignments, &b.assignments);
                prop_assert_eq!(a.unplaced, b.unplaced);
                prop_assert_eq!(&a.reasons, &b.reasons);
                let left = |c: &[Candidate]| c.iter().map(|c| (c.unreserved, c.ports.clone())).collect::<Vec<_>>();
                prop_assert_eq!(left(&scanned), left(&ranked));
            }
        }
    }
}
