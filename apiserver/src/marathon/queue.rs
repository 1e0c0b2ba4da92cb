//! `/v2/queue`: apps waiting for instances to be placed, why, and resetting a launch delay.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::MarathonError;
use super::apps::name_of;
use super::view::Snapshot;
use crate::ApiState;
use crate::apply::path_of;

type Result<T> = std::result::Result<T, MarathonError>;

pub async fn queue(State(s): State<ApiState>) -> Result<Json<Value>> {
    let snapshot = Snapshot::read(&s).await?;
    let items: Vec<Value> = snapshot
        .apps
        .iter()
        .filter_map(|app| {
            let status = app.status.clone().unwrap_or_default();
            let delayed = status.launch_delayed_until.clone();
            if status.tasks_pending == 0 && delayed.is_none() {
                return None;
            }
            let now = pacer_crd::time::Timestamp::now();
            let ago = pacer_crd::time::seconds_since(delayed.as_deref(), now).unwrap_or(0.0);
            let left = (-ago).max(0.0) as i64;
            Some(json!({
                "count": status.tasks_pending,
                "delay": {"timeLeftSeconds": left, "overdue": left == 0},
                "since": app.last_change(),
                "app": snapshot.app_json(app, false),
                "processedOffersSummary": offers_summary(&snapshot, app, status.placement.as_ref()),
                "lastUnusedOffers": status.placement.iter().flat_map(|p| p.nodes.iter().map(|n| json!({
                    "offer": {"id": format!("{}.{}", n.node, app.spec.role), "agentId": n.node, "hostname": n.node},
                    "reason": [n.reason],
                    "timestamp": p.at.clone().unwrap_or_else(|| app.last_change()),
                }))).collect::<Vec<_>>(),
            }))
        })
        .collect();
    Ok(Json(json!({"queue": items})))
}

/// Marathon's offer funnel, in its order: each offer is counted as processed by every step it
/// reaches and declined by the first that refuses it (reasons Pacer never gives stay at 0).
const FUNNEL: [&str; 10] = [
    "UnfulfilledRole",
    "UnfulfilledConstraint",
    "NoCorrespondingReservationFound",
    "AgentMaintenance",
    "InsufficientCpus",
    "InsufficientMemory",
    "InsufficientDisk",
    "InsufficientGpus",
    "InsufficientPorts",
    "DeclinedScarceResources",
];

/// Marathon's per-reason counts of the last placement attempt: every node's offer was
/// processed; those rejected are declined, counted under the first reason that rejected them.
/// `lastUnusedOfferAt` is when the reasons were first seen, `lastUsedOfferAt` when the app's
/// newest task was placed (both left out when there is none).
fn offers_summary(
    snapshot: &Snapshot,
    app: &pacer_crd::App,
    report: Option<&pacer_crd::app::PlacementReport>,
) -> Value {
    let Some(report) = report else {
        return json!({"processedOffersCount": 0, "unusedOffersCount": 0, "rejectSummaryLastOffers": [], "rejectSummaryLaunchAttempt": []});
    };
    let last_used = snapshot
        .tasks_of(app.metadata.name.as_deref().unwrap_or_default())
        .filter_map(|t| t.metadata.creation_timestamp.as_ref())
        .max_by_key(|t| t.0)
        .map(|t| pacer_runtime::timestamp(t.0));
    let mut left = report.nodes_considered;
    let reasons: Vec<Value> = FUNNEL
        .iter()
        .map(|&reason| {
            let declined = report.rejected.get(reason).copied().unwrap_or(0);
            let entry = json!({"reason": reason, "declined": declined, "processed": left});
            left -= declined;
            entry
        })
        .collect();
    let unused: i64 = report.rejected.values().sum();
    let mut summary = json!({
        "processedOffersCount": report.nodes_considered,
        "unusedOffersCount": unused,
        "rejectSummaryLastOffers": reasons,
        "rejectSummaryLaunchAttempt": reasons,
    });
    if let Some(at) = &report.at {
        summary["lastUnusedOfferAt"] = json!(at);
    }
    if let Some(at) = last_used {
        summary["lastUsedOfferAt"] = json!(at);
    }
    summary
}

/// `DELETE /v2/queue/{id}/delay`: launch the next instance without waiting out the backoff.
pub async fn reset_delay(
    State(s): State<ApiState>,
    Path(path): Path<String>,
) -> Result<StatusCode> {
    let id = path
        .strip_suffix("/delay")
        .ok_or_else(|| MarathonError::NotFound(format!("no DELETE on /v2/queue/{path}")))?;
    let name = name_of(id)?;
    let found = s.apps.modify(&name, |app| {
        let status = app.status.get_or_insert_with(Default::default);
        let changed = status.launch_delayed_until.is_some() || status.consecutive_failures > 0;
        status.launch_delayed_until = None;
        status.consecutive_failures = 0;
        changed
    });
    match found.await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(e) if e.is_not_found() => Err(MarathonError::NotFound(format!(
            "Application {} not found in tasks queue.",
            path_of(&name)
        ))),
        Err(e) => Err(e.into()),
    }
}
