//! Service ports: cluster-unique, from 10000-20000 when an app asks for 0 (Marathon's
//! `servicePort: 0` in a port mapping, `port: 0` in a port definition). Each port in use is a
//! claim key `<prefix>serviceports/<port>` holding the app's name, written in the app's own
//! transaction: two apps racing for one port cannot both get it.

use std::collections::BTreeMap;

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
    let mut before = previous.cloned();
    let kept: Vec<i64> = before
        .as_mut()
        .map(|p| slots(p).into_iter().map(|(v, _)| *v).collect())
        .unwrap_or_default();
    let mut taken: std::collections::BTreeSet<i64> = claims
        .iter()
        .filter(|(_, owner)| owner.as_str() != app)
        .map(|(port, _)| *port)
        .collect();
    let mut problems = Vec::new();
    let mut used = Vec::new();
    for (i, (port, path)) in slots(spec).into_iter().enumerate() {
        if *port == 0 {
            let reuse = kept
                .get(i)
                .copied()
                .filter(|p| *p != 0 && !taken.contains(p));
            let next = reuse.or_else(|| {
                RANGE
                    .clone()
                    .find(|p| !taken.contains(p) && !used.contains(p))
            });
            match next {
                Some(p) => *port = p,
                None => problems.push(FieldError::new(
                    path.clone(),
                    "no service port is free in 10000-20000",
                )),
            }
        } else if let Some(owner) = claims.get(port).filter(|o| o.as_str() != app) {
            problems.push(FieldError::new(
                path.clone(),
                format!(
                    "service port {port} is in use by app {}",
                    pacer_crd::id::path_of(owner)
                ),
            ));
        }
        if used.contains(port) {
            problems.push(FieldError::new(
                path,
                format!("service port {port} is given twice"),
            ));
        }
        used.push(*port);
        taken.insert(*port);
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(FieldErrors(problems)));
    }
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
