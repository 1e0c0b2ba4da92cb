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
    /// An id in the URL that is not one: a plain 400, as Marathon's HTTP layer answered
    /// before any of its JSON handlers ran (clients print the body only when it is JSON).
    #[error("{0}")]
    BadPath(String),
    /// A well-formed request Marathon refuses with only a message (a malformed version).
    #[error("{0}")]
    Unprocessable(String),
    #[error("storage failed")]
    Api(#[from] ApiError),
}

impl MarathonError {
    /// A 422 naming one field (its JSON path, `/scaleBy`) and the reason.
    pub fn field(path: impl Into<String>, reason: impl Into<String>) -> Self {
        MarathonError::Invalid(FieldErrors(vec![pacer_crd::FieldError::new(path, reason)]))
    }
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
            MarathonError::Invalid(errors) => return invalid(errors),
            MarathonError::BadRequest(_) => (StatusCode::BAD_REQUEST, json!({"message": message})),
            MarathonError::BadPath(_) => return (StatusCode::BAD_REQUEST, message).into_response(),
            MarathonError::Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": message}),
            ),
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

/// Marathon's 422 (`{"message","details":[{"path","errors"}]}`, keys in that order: clients
/// print the body as it came and their tests compare it). Problems found reading the JSON
/// (a value of the wrong type) are Play JSON's "Invalid JSON", others "Object is not valid".
fn invalid(errors: FieldErrors) -> Response {
    #[derive(serde::Serialize)]
    struct Detail<'a> {
        path: &'a str,
        errors: [&'a str; 1],
    }
    #[derive(serde::Serialize)]
    struct Body<'a> {
        message: &'a str,
        details: Vec<Detail<'a>>,
    }
    let reading = errors
        .0
        .iter()
        .all(|e| pacer_crd::marathon::is_json_error(&e.reason));
    let body = Body {
        message: if reading {
            "Invalid JSON"
        } else {
            "Object is not valid"
        },
        details: errors
            .0
            .iter()
            .map(|e| Detail {
                path: &e.path,
                errors: [&e.reason],
            })
            .collect(),
    };
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}
