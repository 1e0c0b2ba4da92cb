//! API tokens in the native API (admin only): create (the token is in that one answer and
//! nowhere else), list (without hashes), revoke.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use pacer_crd::{ApiToken, ApiTokenSpec};
use pacer_runtime::Api;
use serde_json::{Value, json};

use crate::access::{Need, Routes};
use crate::auth::{self, Role};
use crate::native::PREFIX;
use crate::{ApiError, ApiState};

pub fn routes() -> Routes {
    use Method as M;
    Routes::under(PREFIX)
        .on(M::GET, "/apitokens", Need::ADMIN, list)
        .on(M::POST, "/apitokens", Need::ADMIN, create)
        .on(M::DELETE, "/apitokens/{name}", Need::ADMIN, revoke)
}

/// `POST /apitokens`: `{"name", "role", "scopes"?, "ttl"?}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: String,
    #[serde(default)]
    scopes: Vec<String>,
    /// `24h`, `30m`, `7d`: how long the token works.
    #[serde(default)]
    ttl: Option<String>,
}

/// The record of a new token, checked field by field.
fn new_record(req: &NewToken, hash: String) -> Result<ApiToken, ApiError> {
    auth::check_token_name(&req.name).map_err(|e| ApiError::field("name", e))?;
    if Role::parse(&req.role).is_none() {
        return Err(ApiError::field(
            "role",
            format!("'{}' is not one of read, write, admin", req.role),
        ));
    }
    for (i, scope) in req.scopes.iter().enumerate() {
        pacer_crd::token::check_scope(scope)
            .map_err(|e| ApiError::field(format!("scopes[{i}]"), e))?;
    }
    let expires = match &req.ttl {
        None => None,
        Some(ttl) => {
            let d = humantime::parse_duration(ttl)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    ApiError::field(
                        "ttl",
                        format!("'{ttl}' is not a duration such as 24h or 30m"),
                    )
                })?;
            let span = pacer_crd::time::Timestamp::now()
                .checked_add(d)
                .map_err(|_| ApiError::field("ttl", format!("'{ttl}' is too long")))?;
            Some(span.to_string())
        }
    };
    let spec = ApiTokenSpec {
        role: req.role.clone(),
        scopes: req.scopes.clone(),
        expires,
        hash,
    };
    Ok(ApiToken::new(&req.name, spec))
}

async fn create(State(s): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    let req: NewToken = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"name\", \"role\", \"scopes\", \"ttl\"}}: {e}"
        ))
    })?;
    let (token, hash) = auth::new_token(&req.name);
    let record = s.tokens.create(&new_record(&req, hash)?).await?;
    let mut shown = summary(&record);
    shown["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(shown)).into_response())
}

/// A token record without its hash.
fn summary(t: &ApiToken) -> Value {
    json!({
        "name": t.metadata.name,
        "role": t.spec.role,
        "scopes": t.spec.scopes,
        "expires": t.spec.expires,
        "created": t.metadata.creation_timestamp,
    })
}

async fn list(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let items: Vec<Value> = s.tokens.list("").await?.items.iter().map(summary).collect();
    Ok(Json(json!({"kind": "ApiTokenList", "items": items})).into_response())
}

async fn revoke(State(s): State<ApiState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    if s.tokens.delete(&name).await? {
        Ok(Json(json!({"result": "revoked", "name": name})).into_response())
    } else {
        Err(ApiError::NotFound(format!(
            "ApiToken '{name}' does not exist"
        )))
    }
}

/// Makes `token` (`admin.<secret>`, from a file the operator keeps) a valid admin token: the
/// record is created when absent, left alone when it holds this token, and replaced when it
/// holds another (the file is the admin's credential: rewriting it rotates the token).
pub async fn ensure_admin(api: &Api<ApiToken>, token: &str) -> Result<(), ApiError> {
    let Some((name, secret)) = auth::split_token(token.trim()) else {
        return Err(ApiError::BadRequest(
            "the admin token is not <name>.<secret>".into(),
        ));
    };
    auth::check_token_name(name).map_err(ApiError::BadRequest)?;
    let spec = ApiTokenSpec {
        role: "admin".into(),
        scopes: Vec::new(),
        expires: None,
        hash: auth::hash_secret(secret),
    };
    match api.get(name).await? {
        Some(existing) if existing.spec == spec => Ok(()),
        Some(mut existing) => {
            existing.spec = spec;
            api.replace(&existing).await?;
            Ok(())
        }
        None => match api.create(&ApiToken::new(name, spec)).await {
            Ok(_) => Ok(()),
            // Another replica wrote it first: fine when it wrote the same token.
            Err(pacer_runtime::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, role: &str, scopes: &[&str], ttl: Option<&str>) -> NewToken {
        NewToken {
            name: name.into(),
            role: role.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ttl: ttl.map(str::to_string),
        }
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::Invalid(errors) => errors.0[0].path.clone(),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn a_token_request_is_checked_field_by_field() {
        let ok = new_record(&req("ci", "write", &["/prod/*"], Some("24h")), "h".into())
            .expect("a valid request");
        assert!(ok.spec.expires.is_some());
        let cases = [
            (req("CI", "read", &[], None), "name"),
            (req("ci", "root", &[], None), "role"),
            (req("ci", "read", &["prod"], None), "scopes[0]"),
            (req("ci", "read", &[], Some("soon")), "ttl"),
            (req("ci", "read", &[], Some("0s")), "ttl"),
        ];
        for (request, field) in cases {
            let e = new_record(&request, "h".into()).expect_err("refused");
            assert_eq!(field_of(e), field);
        }
    }
}
