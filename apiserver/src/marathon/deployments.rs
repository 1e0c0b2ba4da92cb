//! `/v2/deployments`: deployments in progress, and cancelling one (stop or roll back).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::MarathonError;
use super::query::Params;
use super::view::{Snapshot, deployment_result};
use crate::ApiState;
use crate::apply::{self, path_of};

type Result<T> = std::result::Result<T, MarathonError>;

pub async fn deployments(State(s): State<ApiState>) -> Result<Json<Value>> {
    let snapshot = Snapshot::read(&s).await?;
    Ok(Json(Value::Array(
        snapshot
            .deployments
            .iter()
            .map(|d| snapshot.deployment_json(d))
            .collect(),
    )))
}

/// `DELETE /v2/deployments/{id}`: with `force=true` stop where it is (202); otherwise roll the
/// app back to the version before the deployment (a new deployment).
pub async fn cancel_deployment(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let params = Params::parse(q.as_deref());
    let deployment =
        s.deployments.get(&id).await?.ok_or_else(|| {
            MarathonError::NotFound(format!("DeploymentPlan {id} does not exist"))
        })?;
    let cancelled = pacer_crd::DeploymentStatus {
        phase: pacer_crd::deployment::DeploymentPhase::Superseded,
        message: Some("cancelled".into()),
        ..deployment.status.clone().unwrap_or_default()
    };
    s.deployments.update_status(&id, cancelled).await?;
    if params.flag("force") {
        return Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response());
    }
    let name = deployment.spec.app_id.clone();
    let versions = s.versions.list(&format!("{name}/")).await?.items;
    let Some(previous) = versions.iter().rev().nth(1) else {
        return Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response());
    };
    let mut app = s.apps.get(&name).await?.ok_or_else(|| {
        MarathonError::NotFound(format!("App '{}' does not exist", path_of(&name)))
    })?;
    app.spec = previous.spec.app.clone();
    let result = apply::apply(&s, app, false).await?;
    Ok(Json(deployment_result(
        &result.object.last_change(),
        result.deployment.as_deref(),
    ))
    .into_response())
}
