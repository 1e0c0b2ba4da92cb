//! The Node record: a machine an agent offers, alive as long as the agent's etcd lease.

use std::collections::BTreeMap;

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A machine running a Pacer agent. The record is bound to the agent's lease: it disappears
/// when the agent stops renewing it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pacer.io",
    version = "v1",
    kind = "Node",
    status = "NodeStatus",
    shortname = "no",
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    /// Host name or address where the node's task ports are reachable.
    pub hostname: String,
    /// URL of the agent's own HTTP endpoint (logs).
    pub address: String,
    pub capacity: Resources,
    /// Host ports the node lends to tasks (Mesos' default is 31000-32000).
    pub ports: Vec<PortRange>,
    /// Mesos-style attributes (`rack:r1;zone:a`); `hostname` is always present.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Resources reserved for a role (Mesos' `cpus(ads):2`): offered to that role only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reservations: BTreeMap<String, Resources>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
}

/// Scalar resources: cpus (shares of a core), mem and disk (MiB).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, JsonSchema)]
pub struct Resources {
    pub cpus: f64,
    pub mem: f64,
    pub disk: f64,
}

/// Rounding slack so that 10 x 0.1 cpus fit in 1 cpu.
const EPSILON: f64 = 1e-9;

impl Resources {
    pub fn new(cpus: f64, mem: f64, disk: f64) -> Self {
        Self { cpus, mem, disk }
    }

    /// Whether `need` fits in `self`; if not, which resource is short, in plain words.
    pub fn fits(&self, need: &Resources) -> Result<(), String> {
        let short = [
            ("cpus", self.cpus, need.cpus),
            ("mem", self.mem, need.mem),
            ("disk", self.disk, need.disk),
        ]
        .into_iter()
        .filter(|(_, have, want)| want - have > EPSILON)
        .map(|(name, have, want)| format!("{name}: {want} wanted, {have} free"))
        .collect::<Vec<_>>();
        if short.is_empty() {
            Ok(())
        } else {
            Err(short.join(", "))
        }
    }

    pub fn plus(&self, other: &Resources) -> Resources {
        Resources::new(
            self.cpus + other.cpus,
            self.mem + other.mem,
            self.disk + other.disk,
        )
    }

    /// Each resource the smaller of the two.
    pub fn min(&self, other: &Resources) -> Resources {
        Resources::new(
            self.cpus.min(other.cpus),
            self.mem.min(other.mem),
            self.disk.min(other.disk),
        )
    }

    /// Negative amounts (from rounding or an overcommitted node) as zero.
    pub fn clamped(&self) -> Resources {
        Resources::new(self.cpus.max(0.0), self.mem.max(0.0), self.disk.max(0.0))
    }

    /// Whether there is nothing of cpus and mem to use.
    pub fn is_empty(&self) -> bool {
        self.cpus <= EPSILON && self.mem <= EPSILON
    }

    /// The largest share of `total` this takes, over cpus, mem and disk (DRF's dominant share).
    pub fn dominant_share(&self, total: &Resources) -> f64 {
        [
            (self.cpus, total.cpus),
            (self.mem, total.mem),
            (self.disk, total.disk),
        ]
        .into_iter()
        .filter(|(_, t)| *t > EPSILON)
        .map(|(v, t)| v / t)
        .fold(0.0, f64::max)
    }

    pub fn minus(&self, other: &Resources) -> Resources {
        Resources::new(
            self.cpus - other.cpus,
            self.mem - other.mem,
            self.disk - other.disk,
        )
    }
}

/// Parses Mesos' reservation syntax `cpus(ads):2;mem(ads):1024;disk(ads):100` into resources per
/// role. Unreserved entries (`cpus:4` or `cpus(*):4`) are refused: capacity is set apart.
pub fn parse_reservations(text: &str) -> Result<BTreeMap<String, Resources>, String> {
    let mut out: BTreeMap<String, Resources> = BTreeMap::new();
    for item in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, amount) = item
            .split_once(':')
            .ok_or_else(|| format!("'{item}' is not NAME(ROLE):AMOUNT"))?;
        let (resource, role) = name
            .strip_suffix(')')
            .and_then(|n| n.split_once('('))
            .ok_or_else(|| format!("'{item}' names no role: write {name}(ROLE):{amount}"))?;
        crate::role::check_name(role)?;
        if role == "*" {
            return Err(format!(
                "'{item}': '*' is the unreserved role, not a reservation"
            ));
        }
        let value: f64 = amount
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("'{item}': '{amount}' is not a number >= 0"))?;
        let entry = out.entry(role.to_string()).or_default();
        match resource.trim() {
            "cpus" => entry.cpus += value,
            "mem" => entry.mem += value,
            "disk" => entry.disk += value,
            other => {
                return Err(format!(
                    "'{item}': unknown resource '{other}' (cpus, mem, disk)"
                ));
            }
        }
    }
    Ok(out)
}

/// An inclusive range of ports.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub struct PortRange {
    pub begin: u16,
    pub end: u16,
}

impl PortRange {
    /// Parses Mesos' `31000-32000`.
    pub fn parse(text: &str) -> Result<PortRange, String> {
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| format!("port range '{text}' is not BEGIN-END"))?;
        let parse = |s: &str| {
            s.trim()
                .parse::<u16>()
                .map_err(|e| format!("port '{s}' in '{text}': {e}"))
        };
        let (begin, end) = (parse(a)?, parse(b)?);
        if begin > end {
            return Err(format!("port range '{text}' ends before it begins"));
        }
        Ok(PortRange { begin, end })
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.begin..=self.end).contains(&port)
    }
}

/// Free ports: `ranges` minus `used`, as sorted ranges.
pub fn subtract_ports(ranges: &[PortRange], used: &[u16]) -> Vec<PortRange> {
    let mut used: Vec<u16> = used.to_vec();
    used.sort_unstable();
    let mut out = Vec::new();
    for range in ranges {
        let mut start = u32::from(range.begin);
        for &port in used.iter().filter(|p| range.contains(**p)) {
            if u32::from(port) > start {
                out.push(PortRange {
                    begin: start as u16,
                    end: port - 1,
                });
            }
            start = start.max(u32::from(port) + 1);
        }
        if start <= u32::from(range.end) {
            out.push(PortRange {
                begin: start as u16,
                end: range.end,
            });
        }
    }
    out
}

/// Picks host ports for `wanted` (0 = any) from `free`, lowest first; `None` if they do not fit.
pub fn pick_ports(free: &[PortRange], wanted: &[u16]) -> Result<Vec<u16>, String> {
    let mut taken: Vec<u16> = Vec::new();
    for &port in wanted.iter().filter(|p| **p != 0) {
        if !free.iter().any(|r| r.contains(port)) || taken.contains(&port) {
            return Err(format!("host port {port} is not free"));
        }
        taken.push(port);
    }
    let mut candidates = free
        .iter()
        .flat_map(|r| r.begin..=r.end)
        .filter(|p| !wanted.contains(p));
    let mut picked = Vec::with_capacity(wanted.len());
    for &port in wanted {
        if port != 0 {
            picked.push(port);
            continue;
        }
        match candidates.next() {
            Some(p) => picked.push(p),
            None => return Err(format!("{} host ports wanted, fewer free", wanted.len())),
        }
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(begin: u16, end: u16) -> PortRange {
        PortRange { begin, end }
    }

    #[test]
    fn subtract_splits_ranges() {
        assert_eq!(
            subtract_ports(&[r(10, 20)], &[10, 15, 20]),
            vec![r(11, 14), r(16, 19)]
        );
        assert_eq!(subtract_ports(&[r(10, 12)], &[10, 11, 12]), vec![]);
        assert_eq!(
            subtract_ports(&[r(10, 12), r(30, 30)], &[99]),
            vec![r(10, 12), r(30, 30)]
        );
        assert_eq!(
            subtract_ports(&[r(65535, 65535)], &[]),
            vec![r(65535, 65535)]
        );
    }

    #[test]
    fn pick_takes_fixed_and_lowest_free() {
        assert_eq!(
            pick_ports(&[r(10, 20)], &[0, 12, 0]).unwrap(),
            vec![10, 12, 11]
        );
        assert!(pick_ports(&[r(10, 11)], &[0, 0, 0]).is_err());
        assert!(pick_ports(&[r(10, 11)], &[30]).is_err());
        assert!(pick_ports(&[r(10, 11)], &[10, 10]).is_err());
    }

    #[test]
    fn fits_names_the_short_resource() {
        let have = Resources::new(1.0, 512.0, 0.0);
        assert!(have.fits(&Resources::new(0.1 * 10.0, 512.0, 0.0)).is_ok());
        let err = have.fits(&Resources::new(2.0, 64.0, 0.0)).unwrap_err();
        assert!(err.contains("cpus: 2 wanted, 1 free"), "{err}");
    }

    #[test]
    fn reservations_parse_mesos_syntax() {
        let r = parse_reservations("cpus(ads):2; mem(ads):1024;cpus(ml):0.5").unwrap();
        assert_eq!(r["ads"], Resources::new(2.0, 1024.0, 0.0));
        assert_eq!(r["ml"], Resources::new(0.5, 0.0, 0.0));
        for bad in [
            "cpus:2",
            "cpus(*):2",
            "gpus(a):1",
            "cpus(a):x",
            "cpus(a):-1",
            "cpus(a/b):1",
        ] {
            assert!(parse_reservations(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dominant_share_is_the_largest() {
        let total = Resources::new(10.0, 1000.0, 0.0);
        assert_eq!(Resources::new(1.0, 500.0, 5.0).dominant_share(&total), 0.5);
        assert_eq!(Resources::default().dominant_share(&total), 0.0);
    }

    #[test]
    fn port_range_parse() {
        assert_eq!(PortRange::parse("31000-32000").unwrap(), r(31000, 32000));
        assert!(PortRange::parse("32000-31000").is_err());
        assert!(PortRange::parse("abc").is_err());
    }
}
