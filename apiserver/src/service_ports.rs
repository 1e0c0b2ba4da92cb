//! Service ports: cluster-unique, from 10000-20000 when an app asks for 0 (Marathon's
//! `servicePort: 0` in a port mapping, `port: 0` in a port definition). Each port in use is a
//! claim key `<prefix>serviceports/<port>` holding the app's name, written in the app's own
//! transaction: two apps racing for one port cannot both get it.

use std::collections::{BTreeMap, BTreeSet};

use pacer_crd::{AppSpec, FieldError, FieldErrors, NetworkMode};

use pacer_runtime::{Claims, Txn};

use crate::{ApiError, ApiState};

pub const RANGE: std::ops::RangeInclusive<i64> = 10000..=20000;

/// The app's service port slots, in order.
fn slots(spec: &mut AppSpec) -> Vec<(&mut i64, String)> {
    let bridge = spec.networks.iter().any(|n| n.mode == NetworkMode::Bridge);
    if bridge {
        spec.container
            .iter_mut()
            .flat_map(|c| c.port_mappings.iter_mut())
            .enumerate()
            .map(|(i, m)| {
                (
                    &mut m.service_port,
                    format!("spec.container.portMappings[{i}].servicePort"),
                )
            })
            .collect()
    } else {
        spec.port_definitions
            .iter_mut()
            .enumerate()
            .map(|(i, p)| (&mut p.port, format!("spec.portDefinitions[{i}].port")))
            .collect()
    }
}

/// Current claims: port -> app name.
pub async fn claims(state: &ApiState) -> Result<BTreeMap<i64, String>, ApiError> {
    let claims = claim_names(state).list().await?;
    Ok(claims
        .into_iter()
        .filter_map(|(port, app)| Some((port.parse().ok()?, app)))
        .collect())
}

fn claim_names(state: &ApiState) -> Claims {
    Claims::new(state.apps.client(), "serviceports")
}

/// Fills the app's zero service ports (keeping the ones `previous` had in the same place),
/// refuses fixed ones another app holds, and returns the compares and writes that claim them
/// and release the app's ports it no longer uses.
pub fn assign(
    state: &ApiState,
    app: &str,
    spec: &mut AppSpec,
    previous: Option<&AppSpec>,
    claims: &BTreeMap<i64, String>,
) -> Result<Txn, ApiError> {
    let used = fill(app, spec, previous, claims).map_err(ApiError::Invalid)?;
    let names = claim_names(state);
    let mut txn = Txn::new();
    for port in used.iter().filter(|p| **p != 0) {
        if claims.get(port).is_none() {
            txn.claim(&names, &port.to_string(), app);
        }
    }
    txn.append(release(state, app, claims, &used));
    Ok(txn)
}

/// The ports of [`assign`], in slot order, zero ones filled; or every slot's problem.
fn fill(
    app: &str,
    spec: &mut AppSpec,
    previous: Option<&AppSpec>,
    claims: &BTreeMap<i64, String>,
) -> Result<Vec<i64>, FieldErrors> {
    let kept: Vec<i64> = previous
        .cloned()
        .as_mut()
        .map(|p| slots(p).into_iter().map(|(v, _)| *v).collect())
        .unwrap_or_default();
    let mut taken: BTreeSet<i64> = claims
        .iter()
        .filter(|(_, owner)| owner.as_str() != app)
        .map(|(port, _)| *port)
        .collect();
    let mut problems = Vec::new();
    let mut used = Vec::new();
    for (i, (port, path)) in slots(spec).into_iter().enumerate() {
        if *port == 0 {
            match free_port(kept.get(i).copied(), &taken, &used) {
                Some(p) => *port = p,
                None => problems.push(FieldError::new(
                    path.clone(),
                    "no service port is free in 10000-20000",
                )),
            }
        } else if let Some(owner) = claims.get(port).filter(|o| o.as_str() != app) {
            let owner = pacer_crd::id::path_of(owner);
            let reason = format!("service port {port} is in use by app {owner}");
            problems.push(FieldError::new(path.clone(), reason));
        }
        if used.contains(port) {
            let reason = format!("service port {port} is given twice");
            problems.push(FieldError::new(path, reason));
        }
        used.push(*port);
        taken.insert(*port);
    }
    if problems.is_empty() {
        Ok(used)
    } else {
        Err(FieldErrors(problems))
    }
}

/// The port for a zero slot: the one it had (`kept`) if nobody took it since, else the lowest
/// of [`RANGE`] neither taken nor used by an earlier slot.
fn free_port(kept: Option<i64>, taken: &BTreeSet<i64>, used: &[i64]) -> Option<i64> {
    kept.filter(|p| *p != 0 && !taken.contains(p)).or_else(|| {
        RANGE
            .clone()
            .find(|p| !taken.contains(p) && !used.contains(p))
    })
}

/// Deletes the app's claims on ports not in `keep`.
pub fn release(state: &ApiState, app: &str, claims: &BTreeMap<i64, String>, keep: &[i64]) -> Txn {
    let names = claim_names(state);
    let mut txn = Txn::new();
    for (port, _) in claims
        .iter()
        .filter(|(port, owner)| owner.as_str() == app && !keep.contains(port))
    {
        txn.release(&names, &port.to_string());
    }
    txn
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ports: &[i64]) -> AppSpec {
        let definitions: Vec<_> = ports
            .iter()
            .map(|p| serde_json::json!({"port": p}))
            .collect();
        serde_json::from_value(
            serde_json::json!({"cmd": "sleep 1", "portDefinitions": definitions}),
        )
        .unwrap()
    }

    fn claims(held: &[(i64, &str)]) -> BTreeMap<i64, String> {
        held.iter().map(|(p, app)| (*p, app.to_string())).collect()
    }

    fn ports(spec: &AppSpec) -> Vec<i64> {
        spec.port_definitions.iter().map(|p| p.port).collect()
    }

    #[test]
    fn zero_ports_get_the_lowest_free_ones_and_keep_theirs_across_updates() {
        let mut web = spec(&[0, 0]);
        let used = fill("web", &mut web, None, &claims(&[(10000, "db")])).unwrap();
        assert_eq!(
            (used, ports(&web)),
            (vec![10001, 10002], vec![10001, 10002])
        );

        let before = spec(&[10005, 10002]);
        let mut again = spec(&[0, 0]);
        let held = claims(&[(10005, "web"), (10002, "web"), (10000, "db")]);
        fill("web", &mut again, Some(&before), &held).unwrap();
        assert_eq!(
            ports(&again),
            vec![10005, 10002],
            "an app keeps its own ports"
        );
    }

    #[test]
    fn a_port_held_by_another_app_or_given_twice_is_refused_at_its_slot() {
        let mut web = spec(&[10000, 10007, 10007]);
        let problems = fill("web", &mut web, None, &claims(&[(10000, "prod_db")])).unwrap_err();
        let found: Vec<(&str, &str)> = problems
            .0
            .iter()
            .map(|p| (p.path.as_str(), p.reason.as_str()))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "spec.portDefinitions[0].port",
                    "service port 10000 is in use by app /prod/db"
                ),
                (
                    "spec.portDefinitions[2].port",
                    "service port 10007 is given twice"
                ),
            ]
        );
    }
}
