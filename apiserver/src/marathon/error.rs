//! Marathon's error shapes: 404/409 `{"message"}`, 422 with `details`, 400 for malformed JSON.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pacer_crd::FieldErrors;
use serde_json::json;

use crate::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum MarathonError {
    #[error("{0}")]
    NotFound(String),
    /// A write refused because running deployments hold the app.
    #[error(
        "App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'."
    )]
    Locked(Vec<String>),
    #[error("{0}")]
    Conflict(String),
    #[error("Object is not valid")]
    Invalid(FieldErrors),
    #[error("{0}")]
    BadRequest(String),
    #[error("storage failed")]
    Api(#[from] ApiError),
}

impl From<pacer_runtime::Error> for MarathonError {
    fn from(e: pacer_runtime::Error) -> Self {
        MarathonError::Api(e.into())
    }
}

impl IntoResponse for MarathonError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let (status, body) = match self {
            MarathonError::NotFound(_) => (StatusCode::NOT_FOUND, json!({"message": message})),
            MarathonError::Locked(ids) => {
                let deployments: Vec<_> = ids.iter().map(|id| json!({"id": id})).collect();
                (
                    StatusCode::CONFLICT,
                    json!({"message": message, "deployments": deployments}),
                )
            }
            MarathonError::Conflict(_) => (StatusCode::CONFLICT, json!({"message": message})),
            MarathonError::Invalid(errors) => {
                let details: Vec<_> = errors
                    .0
                    .iter()
                    .map(|e| json!({"path": e.path, "errors": [e.reason]}))
                    .collect();
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": message, "details": details}),
                )
            }
            MarathonError::BadRequest(_) => (StatusCode::BAD_REQUEST, json!({"message": message})),
            MarathonError::Api(ApiError::NotFound(m)) => {
                (StatusCode::NOT_FOUND, json!({"message": m}))
            }
            MarathonError::Api(ApiError::AlreadyExists(m)) => {
                (StatusCode::CONFLICT, json!({"message": m}))
            }
            MarathonError::Api(ApiError::Invalid(errors)) => {
                return MarathonError::Invalid(errors).into_response();
            }
            MarathonError::Api(other) => return other.into_response(),
        };
        (status, Json(body)).into_response()
    }
}
