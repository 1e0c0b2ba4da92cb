//! The cluster's admission policy (`Policy` record `cluster`, an admin's): every write of an
//! app or a job is checked against it, with a 422 naming each field and the rule. Without a
//! record the strict default applies (no privileged containers, no host paths, no Docker
//! options beyond a harmless few, no explicit root).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use pacer_crd::policy::{CLUSTER, Policy, PolicySpec};
use pacer_crd::{AppSpec, JobSpec};

use crate::access::{self, Need, Routes};
use crate::native::PREFIX;
use crate::{ApiError, ApiState};

pub fn routes() -> Routes {
    use Method as M;
    Routes::under(PREFIX)
        .readable("/policies", |s| s.policies.clone())
        .on(M::PUT, "/policies/{name}", Need::ADMIN, put)
        .on(M::DELETE, "/policies/{name}", Need::ADMIN, delete)
}

/// The policy in effect: the record, or the strict default.
pub async fn current(state: &ApiState) -> Result<PolicySpec, ApiError> {
    Ok(state
        .policies
        .get(CLUSTER)
        .await?
        .map(|p| p.spec)
        .unwrap_or_default())
}

/// Checks an app `name` about to be written by the request's caller against `policy`.
pub fn admit_app(policy: &PolicySpec, name: &str, spec: &AppSpec) -> Result<(), ApiError> {
    policy
        .admit(name, access::caller_role(), spec)
        .map_err(ApiError::Invalid)
}

/// Checks a job about to be written by the request's caller.
pub async fn admit_job(state: &ApiState, name: &str, spec: &JobSpec) -> Result<(), ApiError> {
    current(state)
        .await?
        .admit_job(name, access::caller_role(), spec)
        .map_err(ApiError::Invalid)
}

async fn put(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if name != CLUSTER {
        return Err(ApiError::field(
            "metadata.name",
            format!("the cluster has one policy, named '{CLUSTER}' (got '{name}')"),
        ));
    }
    let doc: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    let spec: PolicySpec =
        serde_path_to_error::deserialize(doc.get("spec").cloned().unwrap_or_default())
            .map_err(|e| ApiError::field(format!("spec.{}", e.path()), e.inner().to_string()))?;
    spec.validate().map_err(ApiError::Invalid)?;
    let stored = pacer_runtime::retry::on_conflict(|| async {
        match s.policies.get(CLUSTER).await? {
            Some(mut existing) => {
                existing.spec = spec.clone();
                Ok::<_, ApiError>((StatusCode::OK, s.policies.replace(&existing).await?))
            }
            None => Ok((
                StatusCode::CREATED,
                s.policies
                    .create(&Policy::new(CLUSTER, spec.clone()))
                    .await?,
            )),
        }
    })
    .await?;
    Ok((stored.0, Json(stored.1)).into_response())
}

async fn delete(State(s): State<ApiState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    if s.policies.delete(&name).await? {
        Ok(Json(serde_json::json!({"result": "deleted", "name": name, "inEffect": "the strict default"})).into_response())
    } else {
        Err(ApiError::NotFound(format!(
            "Policy '{name}' does not exist"
        )))
    }
}
