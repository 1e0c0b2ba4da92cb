//! API errors as JSON bodies with a message and, for invalid input, every field problem.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pacer_crd::FieldErrors;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("object is not valid")]
    Invalid(FieldErrors),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("storage is unavailable")]
    Storage(#[source] pacer_runtime::Error),
}

impl From<pacer_runtime::Error> for ApiError {
    fn from(e: pacer_runtime::Error) -> Self {
        match e {
            pacer_runtime::Error::NotFound { .. } => ApiError::NotFound(e.to_string()),
            pacer_runtime::Error::AlreadyExists { .. } => ApiError::AlreadyExists(e.to_string()),
            other => ApiError::Storage(other),
        }
    }
}

impl ApiError {
    /// A 422 for one field and why.
    pub fn field(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::Invalid(FieldErrors(vec![pacer_crd::FieldError::new(path, reason)]))
    }
}

/// A write that lost a race is tried again (`pacer_runtime::retry::on_conflict`).
impl pacer_runtime::retry::Conflicting for ApiError {
    fn is_conflict(&self) -> bool {
        matches!(self, ApiError::Storage(e) if e.is_conflict())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, json!({"message": m})),
            ApiError::AlreadyExists(m) => (StatusCode::CONFLICT, json!({"message": m})),
            ApiError::Invalid(errors) => {
                let details: Vec<_> = errors
                    .0
                    .iter()
                    .map(|e| json!({"path": e.path, "reason": e.reason}))
                    .collect();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "Object is not valid", "details": details}),
                )
            }
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, json!({"message": m})),
            ApiError::BadGateway(m) => (StatusCode::BAD_GATEWAY, json!({"message": m})),
            ApiError::Storage(e) => {
                tracing::warn!(error = %e, source = ?std::error::Error::source(e), "storage request failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"message": "storage is unavailable, retry later"}),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}
