//! Who may call which route. Every route is declared with what it needs ([`Need`]) through
//! [`Routes`], which builds the axum router and the authorization table from the same lines:
//! a route cannot exist without an entry, and the table is what tests walk.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawPathParams, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use pacer_crd::AppId;
use serde_json::{Value, json};

use crate::ApiState;
use crate::audit::Entry;
use crate::auth::{Principal, Role};

/// What a route needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Need {
    /// `None`: anyone, without credentials (`/ping`).
    pub role: Option<Role>,
    pub target: Target,
}

/// Which apps a call touches, for callers limited to some (scoped tokens).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// No app in particular: lists can be read with any scope; anything else needs an
    /// unscoped caller.
    Cluster,
    /// The app id in this path parameter (Marathon's `{*path}`, the native `{name}`).
    AppPath(&'static str),
    /// The app ids in the JSON body (`id`, nested `apps` and `groups`, arrays of apps).
    Body,
}

impl Need {
    pub const PUBLIC: Need = Need {
        role: None,
        target: Target::Cluster,
    };
    pub const READ: Need = Need::of(Role::Read, Target::Cluster);
    pub const WRITE: Need = Need::of(Role::Write, Target::Cluster);
    pub const ADMIN: Need = Need::of(Role::Admin, Target::Cluster);

    pub const fn of(role: Role, target: Target) -> Need {
        Need {
            role: Some(role),
            target,
        }
    }
}

/// One line of the authorization table.
#[derive(Clone, Debug)]
pub struct RouteAccess {
    pub method: Method,
    /// The route as declared, with its parameters (`/v2/apps/{*path}`).
    pub path: String,
    pub need: Need,
}

/// Builds the router and the authorization table together.
pub struct Routes {
    prefix: &'static str,
    router: Router<ApiState>,
    table: Vec<RouteAccess>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::under("")
    }

    /// Routes whose paths all start with `prefix` (`/apis/pacer.io/v1`).
    pub fn under(prefix: &'static str) -> Routes {
        Routes {
            prefix,
            router: Router::new(),
            table: Vec::new(),
        }
    }

    /// Serves `method path` with `handler` to callers with what `need` asks.
    pub fn on<H, T>(mut self, method: Method, path: &str, need: Need, handler: H) -> Routes
    where
        H: Handler<T, ApiState>,
        T: 'static,
    {
        let path = format!("{}{path}", self.prefix);
        let filter = MethodFilter::try_from(method.clone()).expect("a method axum routes");
        let endpoint =
            on(filter, handler).route_layer(middleware::from_fn_with_state(need, require));
        self.router = self.router.route(&path, endpoint);
        self.table.push(RouteAccess { method, path, need });
        self
    }

    pub fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    pub fn into_parts(self) -> (Router<ApiState>, Vec<RouteAccess>) {
        (self.router, self.table)
    }
}

impl Default for Routes {
    fn default() -> Self {
        Routes::new()
    }
}

tokio::task_local! {
    /// The caller of the request being handled, set by [`authenticate`] (`None`: no
    /// credentials): for [`require`], and for checks deep in a write (admission policy
    /// exceptions by role) without handing it down every call.
    static CALLER: Option<Principal>;
}

/// The caller of the request being handled.
fn caller() -> Option<Principal> {
    CALLER.try_with(Clone::clone).ok().flatten()
}

/// The role of the caller of the request being handled (`read` outside of one).
pub fn caller_role() -> &'static str {
    caller().map_or("read", |p| p.role.as_str())
}

/// Reads the credentials of every request (401 at once for wrong ones) and leaves the caller
/// for [`require`] and the audit log.
pub async fn authenticate(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let authenticated = state.auth.authenticate(header).await;
    let audit = Entry::audited(req.method()).then(|| {
        let source = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0);
        let principal = authenticated.as_ref().ok().and_then(Option::as_ref);
        Entry {
            time: pacer_crd::time::Timestamp::now().to_string(),
            user: principal.map_or("anonymous".into(), |p| p.name.clone()),
            role: principal.map(|p| p.role.as_str().to_string()),
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
            status: 0,
            source: Entry::source_of(source),
        }
    });
    let response = match authenticated {
        Ok(principal) => CALLER.scope(principal, next.run(req)).await,
        Err(refused) => {
            tracing::info!(path = %req.uri().path(), reason = %refused, "credentials refused");
            denied(StatusCode::UNAUTHORIZED, req.uri().path())
        }
    };
    if let Some(mut entry) = audit {
        entry.status = response.status().as_u16();
        state.audit.record(entry).await;
    }
    response
}

/// Lets a request through only if its caller has the role `need` asks, and covers the apps
/// the call touches.
async fn require(
    State(need): State<Need>,
    params: RawPathParams,
    req: Request,
    next: Next,
) -> Response {
    let Some(role) = need.role else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_string();
    let Some(caller) = caller() else {
        return denied(StatusCode::UNAUTHORIZED, &path);
    };
    if caller.role < role {
        return denied(StatusCode::FORBIDDEN, &path);
    }
    if !caller.is_scoped() {
        return next.run(req).await;
    }
    let covered = match need.target {
        Target::Cluster => role == Role::Read,
        Target::AppPath(name) => params
            .iter()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| AppId::parse(v).ok())
            .is_some_and(|id| caller.covers(&id.path())),
        Target::Body => {
            let (parts, body) = req.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
                return denied(StatusCode::FORBIDDEN, &path);
            };
            if !body_covered(&caller, &bytes) {
                return denied(StatusCode::FORBIDDEN, &path);
            }
            return next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
        }
    };
    if covered {
        next.run(req).await
    } else {
        denied(StatusCode::FORBIDDEN, &path)
    }
}

/// The largest body a scoped caller's request is read for its ids (a group of many apps).
const BODY_LIMIT: usize = 16 << 20;

/// Whether every app id in a JSON body lies in the caller's scopes. Malformed JSON passes: the
/// handler refuses it and nothing is written. A body naming no app is not covered.
fn body_covered(caller: &Principal, bytes: &Bytes) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return true;
    };
    let mut ids = Vec::new();
    body_ids(&value, "/", &mut ids);
    !ids.is_empty()
        && ids
            .iter()
            .all(|id| id.as_ref().is_some_and(|id| caller.covers(id)))
}

/// Collects the absolute app and group ids of a body (relative ones resolved against their
/// group, as Marathon's groups are); `None` for one that is not an id.
fn body_ids(value: &Value, group: &str, out: &mut Vec<Option<String>>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| body_ids(v, group, out)),
        Value::Object(fields) => {
            let own = match fields.get("id").map(|id| id.as_str()) {
                None => group.to_string(),
                Some(Some(id)) => {
                    let full = if id.starts_with('/') {
                        id.to_string()
                    } else {
                        format!("{}/{id}", group.trim_end_matches('/'))
                    };
                    let id = AppId::parse(&full).ok().map(|id| id.path());
                    out.push(id.clone());
                    id.unwrap_or_default()
                }
                Some(None) => {
                    out.push(None);
                    String::new()
                }
            };
            // The native API names an app by its record name (`prod_web`).
            if let Some(name) = value.pointer("/metadata/name").and_then(Value::as_str) {
                out.push(AppId::parse(name).ok().map(|id| id.path()));
            }
            for nested in ["apps", "groups"] {
                if let Some(v) = fields.get(nested) {
                    body_ids(v, &own, out);
                }
            }
        }
        _ => {}
    }
}

/// A 401 or 403 in the shape of the API asked: a Kubernetes `Status` on the native API,
/// Marathon's message on the rest (the texts of Marathon's RAML).
pub fn denied(status: StatusCode, path: &str) -> Response {
    let unauthenticated = status == StatusCode::UNAUTHORIZED;
    let body = if path.starts_with("/apis/") {
        let (reason, message) = if unauthenticated {
            ("Unauthorized", "Unauthorized")
        } else {
            (
                "Forbidden",
                "the caller's role or scope does not allow this request",
            )
        };
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": status.as_u16()})
    } else if unauthenticated {
        json!({"message": "Invalid username or password."})
    } else {
        json!({"message": "Not Authorized to perform this action!"})
    };
    let mut response = (status, axum::Json(body)).into_response();
    if unauthenticated {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"pacer\", Basic realm=\"Mesosphere Marathon\""),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoped(scope: &str) -> Principal {
        Principal {
            name: "t".into(),
            role: Role::Write,
            scopes: vec![scope.into()],
        }
    }

    fn covered(scope: &str, body: Value) -> bool {
        body_covered(&scoped(scope), &Bytes::from(body.to_string()))
    }

    #[test]
    fn every_id_of_a_body_must_lie_in_scope() {
        assert!(covered("/prod/*", json!({"id": "/prod/web"})));
        assert!(!covered("/prod/*", json!({"id": "/staging/web"})));
        assert!(covered(
            "/prod/*",
            json!([{"id": "/prod/a"}, {"id": "/prod/b"}])
        ));
        assert!(!covered(
            "/prod/*",
            json!([{"id": "/prod/a"}, {"id": "/other"}])
        ));
        // Relative ids of a group resolve against it; `..` cannot climb out unseen.
        assert!(covered(
            "/prod/*",
            json!({"id": "/prod", "apps": [{"id": "web"}]})
        ));
        assert!(!covered(
            "/prod/*",
            json!({"id": "/prod", "apps": [{"id": "../other"}]})
        ));
        assert!(!covered(
            "/prod/*",
            json!({"id": "/prod", "groups": [{"id": "/x", "apps": [{"id": "a"}]}]})
        ));
        assert!(covered(
            "/prod/*",
            json!({"metadata": {"name": "prod_web"}})
        ));
        assert!(!covered("/prod/*", json!({"metadata": {"name": "web"}})));
        // A body naming no app, or an id that is not a string, is not covered.
        assert!(!covered("/prod/*", json!({"instances": 3})));
        assert!(!covered("/prod/*", json!({"id": 7})));
    }

    #[test]
    fn denials_take_the_shape_of_their_api() {
        let marathon = denied(StatusCode::FORBIDDEN, "/v2/apps");
        assert_eq!(marathon.status(), StatusCode::FORBIDDEN);
        let native = denied(StatusCode::UNAUTHORIZED, "/apis/pacer.io/v1/apps");
        assert!(native.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
