//! Weighted Dominant Resource Fairness with quota: which role gets a node's unreserved
//! resources. Pure logic; the allocator feeds it what the caches say.

use std::collections::BTreeMap;

use pacer_crd::{Resources, RoleSpec};

/// One role as the allocator sees it when deciding one node.
#[derive(Debug, Clone)]
pub struct RoleShare {
    pub weight: f64,
    /// Served before any role grows past its fair share (zero: none).
    pub guarantee: Resources,
    /// Never exceeded (infinite: none).
    pub limit: Resources,
    /// What the role holds: its live tasks plus what is offered to it on other nodes.
    pub allocated: Resources,
    /// Whether it has instances waiting that its other offers cannot hold.
    pub wants: bool,
}

impl RoleShare {
    pub fn new(spec: Option<&RoleSpec>) -> RoleShare {
        let spec = spec.cloned().unwrap_or_default();
        RoleShare {
            weight: spec.weight,
            guarantee: spec.guarantee.map(|g| g.or(0.0)).unwrap_or_default(),
            limit: spec
                .limit
                .map(|l| l.or(f64::INFINITY))
                .unwrap_or(Resources::new(f64::INFINITY, f64::INFINITY, f64::INFINITY)),
            allocated: Resources::default(),
            wants: false,
        }
    }

    /// Dominant share divided by weight: DRF serves the lowest first.
    pub fn weighted_share(&self, total: &Resources) -> f64 {
        self.allocated.dominant_share(total) / self.weight.max(f64::MIN_POSITIVE)
    }

    /// Below its guarantee in some resource it has one for.
    fn below_guarantee(&self) -> bool {
        let (a, g) = (&self.allocated, &self.guarantee);
        a.cpus < g.cpus || a.mem < g.mem || a.disk < g.disk
    }

    /// What it may still take before its limit.
    fn headroom(&self) -> Resources {
        self.limit.minus(&self.allocated).clamped()
    }
}

/// Who gets `free`, and how much of it: among roles that want more and have room under their
/// limit, those below their guarantee first, then the lowest weighted dominant share; ties go
/// to the current `holder` (no churn), then to the name. `None` when no role wants anything.
pub fn choose(
    roles: &BTreeMap<String, RoleShare>,
    total: &Resources,
    free: &Resources,
    holder: Option<&str>,
) -> Option<(String, Resources)> {
    let eligible = roles
        .iter()
        .filter(|(_, r)| r.wants && !free.min(&r.headroom()).is_empty());
    let best = eligible.min_by(|(a_name, a), (b_name, b)| {
        let key = |name: &str, r: &RoleShare| {
            (
                !r.below_guarantee(),
                r.weighted_share(total),
                Some(name) != holder,
            )
        };
        let (ka, kb) = (key(a_name, a), key(b_name, b));
        ka.0.cmp(&kb.0)
            .then(ka.1.total_cmp(&kb.1))
            .then(ka.2.cmp(&kb.2))
            .then(a_name.cmp(b_name))
    })?;
    Some((best.0.clone(), free.min(&best.1.headroom())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_crd::Quantities;

    fn role(weight: f64) -> RoleShare {
        RoleShare {
            wants: true,
            weight,
            ..RoleShare::new(None)
        }
    }

    /// Hands out `nodes` nodes of `node` one by one, as the allocator does when they register
    /// and each is filled by the role it was offered to.
    fn simulate(
        mut roles: BTreeMap<String, RoleShare>,
        nodes: usize,
        node: Resources,
    ) -> BTreeMap<String, RoleShare> {
        let total = Resources::new(
            node.cpus * nodes as f64,
            node.mem * nodes as f64,
            node.disk * nodes as f64,
        );
        for _ in 0..nodes {
            let (name, amount) = choose(&roles, &total, &node, None).expect("someone wants");
            let r = roles.get_mut(&name).unwrap();
            r.allocated = r.allocated.plus(&amount);
        }
        roles
    }

    #[test]
    fn weights_split_dominant_shares() {
        let roles = BTreeMap::from([("a".to_string(), role(1.0)), ("b".to_string(), role(2.0))]);
        let node = Resources::new(4.0, 4096.0, 0.0);
        let out = simulate(roles, 60, node);
        let total = Resources::new(240.0, 245760.0, 0.0);
        let (a, b) = (
            out["a"].allocated.dominant_share(&total),
            out["b"].allocated.dominant_share(&total),
        );
        assert!((b / a - 2.0).abs() < 0.1, "a {a} b {b}");
    }

    #[test]
    fn guarantee_comes_first_and_limit_caps() {
        let mut guaranteed = role(1.0);
        guaranteed.guarantee = Resources::new(20.0, 0.0, 0.0);
        let mut heavy = role(10.0);
        heavy.limit = Quantities {
            cpus: Some(30.0),
            ..Default::default()
        }
        .or(f64::INFINITY);
        let roles = BTreeMap::from([("g".to_string(), guaranteed), ("h".to_string(), heavy)]);
        let node = Resources::new(4.0, 100.0, 0.0);
        // The first nodes all go to g, whatever h's weight, until g holds its 20 cpus.
        let total = Resources::new(80.0, 2000.0, 0.0);
        let mut r = roles.clone();
        for _ in 0..5 {
            let (name, amount) = choose(&r, &total, &node, None).unwrap();
            assert_eq!(name, "g");
            let g = r.get_mut("g").unwrap();
            g.allocated = g.allocated.plus(&amount);
        }
        let out = simulate(roles, 20, node);
        assert!(out["g"].allocated.cpus >= 20.0);
        assert!(out["h"].allocated.cpus <= 30.0 + 1e-9, "{:?}", out["h"]);
        assert!(out["h"].allocated.cpus >= 28.0, "{:?}", out["h"]);
    }

    #[test]
    fn nobody_wanting_means_no_choice_and_holder_wins_ties() {
        let mut idle = role(1.0);
        idle.wants = false;
        let total = Resources::new(8.0, 800.0, 0.0);
        let free = Resources::new(4.0, 400.0, 0.0);
        let roles = BTreeMap::from([("a".to_string(), idle)]);
        assert!(choose(&roles, &total, &free, None).is_none());
        let roles = BTreeMap::from([("a".to_string(), role(1.0)), ("b".to_string(), role(1.0))]);
        assert_eq!(choose(&roles, &total, &free, Some("b")).unwrap().0, "b");
        assert_eq!(choose(&roles, &total, &free, None).unwrap().0, "a");
    }
}
