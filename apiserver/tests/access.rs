//! Authentication and authorization over the whole router, as the authorization table lists
//! it: no route answers without credentials (but `/ping`), none that changes anything answers
//! a read token, none of an admin's answers a writer; and a revoked token stops working on a
//! second replica within a second.

mod common;

use std::time::{Duration, Instant};

use pacer_apiserver::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A concrete URL path for a route's pattern: `{*path}` and `{name}` become an app `/prod/web`.
fn concrete(pattern: &str) -> String {
    pattern
        .replace("{*path}", "prod/web")
        .replace("{name}", "prod_web")
        .replace("{id}", "some-deployment")
}

/// Creates a token through the API as the admin; the token.
async fn token(s: &common::Server, name: &str, role: &str, scopes: &[&str]) -> String {
    let resp = s
        .http
        .post(format!("{}/apis/pacer.io/v1/apitokens", s.root))
        .json(&json!({"name": name, "role": role, "scopes": scopes}))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(resp.status(), StatusCode::CREATED, "creating token {name}");
    let body: Value = resp.json().await.expect("JSON");
    body["token"]
        .as_str()
        .expect("the token, shown once")
        .to_string()
}

async fn status(client: &reqwest::Client, method: &Method, url: &str) -> (StatusCode, Value) {
    let resp = client
        .request(method.clone(), url)
        .json(&json!({"id": "/prod/web"}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the API answers");
    let status = resp.status();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn every_route_refuses_callers_without_the_role_it_needs() {
    let s = common::server("").await;
    let read = common::client_with(&token(&s, "reader", "read", &[]).await);
    let write = common::client_with(&token(&s, "writer", "write", &[]).await);
    let anonymous = reqwest::Client::new();
    let wrong = common::client_with("admin.0000");
    let table = pacer_apiserver::route_table();
    assert!(
        table.len() >= 40,
        "the table lists every route ({} found)",
        table.len()
    );
    let mut checked = 0;
    for route in &table {
        // Watches and event streams would not end: their access is the same either way.
        if route.path.ends_with("/events") {
            continue;
        }
        let url = format!("{}{}", s.root, concrete(&route.path));
        let what = format!("{} {}", route.method, route.path);
        let Some(role) = route.need.role else {
            let (code, _) = status(&anonymous, &route.method, &url).await;
            assert!(code.is_success(), "{what} is public, got {code}");
            continue;
        };
        let (code, body) = status(&anonymous, &route.method, &url).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{what} without credentials");
        if route.path.starts_with("/apis/") {
            assert_eq!(body["kind"], "Status", "{what}: a Kubernetes Status");
            assert_eq!(body["code"], 401);
        } else {
            assert_eq!(
                body,
                json!({"message": "Invalid username or password."}),
                "{what}"
            );
        }
        let (code, _) = status(&wrong, &route.method, &url).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{what} with a wrong token");
        let mutating = route.method != Method::GET;
        if mutating {
            assert!(
                role >= Role::Write,
                "{what} changes something: read may not call it"
            );
        }
        for (client, has) in [(&read, Role::Read), (&write, Role::Write)] {
            let (code, body) = status(client, &route.method, &url).await;
            if has < role {
                assert_eq!(code, StatusCode::FORBIDDEN, "{what} as {has:?}");
                if !route.path.starts_with("/apis/") {
                    assert_eq!(
                        body,
                        json!({"message": "Not Authorized to perform this action!"})
                    );
                }
            } else {
                assert!(
                    code != StatusCode::UNAUTHORIZED && code != StatusCode::FORBIDDEN,
                    "{what} as {has:?}: {code}"
                );
            }
        }
        let (code, _) = status(&s.http, &route.method, &url).await;
        assert!(
            code != StatusCode::UNAUTHORIZED && code != StatusCode::FORBIDDEN,
            "{what} as admin: {code}"
        );
        checked += 1;
    }
    assert!(checked >= 40, "{checked} routes checked");
}

#[tokio::test]
async fn a_scoped_token_changes_only_apps_under_its_scope() {
    let s = common::server("").await;
    let prod = common::client_with(&token(&s, "prod-deployer", "write", &["/prod/*"]).await);
    let app = |id: &str| json!({"id": id, "cmd": "sleep 100", "cpus": 0.1, "mem": 16, "instances": 0, "portDefinitions": []});
    let post =
        |c: &reqwest::Client, body: Value| c.post(format!("{}/v2/apps", s.root)).json(&body).send();
    assert_eq!(
        post(&prod, app("/prod/web"))
            .await
            .expect("answers")
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        post(&prod, app("/staging/web"))
            .await
            .expect("answers")
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&s.http, app("/staging/web"))
            .await
            .expect("answers")
            .status(),
        StatusCode::CREATED
    );
    // By path: its own app yes, another's no, and `..` does not climb out of the scope.
    for (path, expected) in [
        ("/v2/apps/prod/web?force=true", StatusCode::OK),
        ("/v2/apps/staging/web?force=true", StatusCode::FORBIDDEN),
        (
            "/v2/apps/prod/../staging/web?force=true",
            StatusCode::FORBIDDEN,
        ),
    ] {
        let resp = prod
            .put(format!("{}{path}", s.root))
            .json(&json!({"instances": 0}))
            .send()
            .await
            .expect("answers");
        assert_eq!(resp.status(), expected, "PUT {path}");
    }
    // Reading lists is allowed; cluster-wide changes are not.
    let resp = prod
        .get(format!("{}/v2/apps", s.root))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = prod
        .post(format!("{}/v2/tasks/delete", s.root))
        .json(&json!({"ids": []}))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn basic_credentials_and_dcos_tokens_authenticate() {
    let etcd = pacer_runtime::testing::TestEtcd::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let root = format!("http://{}", listener.local_addr().expect("an address"));
    let basic = vec![pacer_apiserver::auth::BasicUser::parse("marathon:s3cret").expect("ok")];
    let state = pacer_apiserver::ApiState::new(&etcd.client).with_authentication(basic, false);
    tokio::spawn(pacer_apiserver::serve(
        listener,
        state,
        std::future::pending(),
    ));
    let (admin, _) = pacer_apiserver::auth::new_token("admin");
    pacer_apiserver::ensure_admin_token(&pacer_runtime::Api::new(&etcd.client), &admin)
        .await
        .expect("stored");
    let http = reqwest::Client::new();
    let get =
        |req: reqwest::RequestBuilder| async move { req.send().await.expect("answers").status() };
    let url = format!("{root}/v2/apps");
    assert_eq!(
        get(http.get(&url).basic_auth("marathon", Some("s3cret"))).await,
        StatusCode::OK
    );
    assert_eq!(
        get(http.get(&url).basic_auth("marathon", Some("wrong"))).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(http
            .get(&url)
            .header("Authorization", format!("token={admin}")))
        .await,
        StatusCode::OK
    );
    assert_eq!(
        get(http.get(&url).header("Authorization", "token=admin.bad")).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_revoked_token_is_refused_by_another_replica_within_a_second() {
    let s = common::server("").await;
    let other = common::replica(&s.etcd).await;
    let doomed = common::client_with(&token(&s, "doomed", "read", &[]).await);
    let info = format!("{other}/v2/info");
    let ok = |c: &reqwest::Client| {
        let c = c.clone();
        let url = info.clone();
        async move { c.get(url).send().await.expect("answers").status() }
    };
    // The second replica's cache has the token before it is revoked.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok(&doomed).await != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the other replica never accepted the token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let revoked = Instant::now();
    let resp = s
        .http
        .delete(format!("{}/apis/pacer.io/v1/apitokens/doomed", s.root))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), StatusCode::OK);
    while ok(&doomed).await != StatusCode::UNAUTHORIZED {
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "the other replica still accepts a token revoked {:?} ago",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "revocation seen by a second replica after {:?}",
        revoked.elapsed()
    );
}

#[tokio::test]
async fn the_default_policy_refuses_what_breaks_out_of_a_container_and_changes_nothing() {
    let s = common::server("").await;
    let docker = |extra: Value| {
        let mut app = json!({"id": "/esc", "cpus": 0.1, "mem": 16, "instances": 0,
            "container": {"type": "DOCKER", "docker": {"image": "pacer/busybox"}}});
        merge(&mut app, extra);
        app
    };
    let cases = [
        (
            json!({"container": {"docker": {"privileged": true}}}),
            "spec.container.docker.privileged",
        ),
        (
            json!({"container": {"volumes": [{"hostPath": "/", "containerPath": "/host", "mode": "RW"}]}}),
            "spec.container.volumes[0].hostPath",
        ),
        (
            json!({"container": {"docker": {"parameters": [{"key": "pid", "value": "host"}]}}}),
            "spec.container.docker.parameters[0].key",
        ),
        (json!({"user": "root"}), "spec.user"),
    ];
    for (extra, field) in cases {
        let resp = s
            .http
            .post(format!("{}/v2/apps", s.root))
            .json(&docker(extra))
            .send()
            .await
            .expect("answers");
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        let body: Value = resp.json().await.expect("JSON");
        let paths: Vec<&str> = body["details"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["path"].as_str())
            .collect();
        assert!(
            paths.iter().any(|p| p.contains(field)),
            "{field} named in {body}"
        );
    }
    let apps: Value = s
        .http
        .get(format!("{}/v2/apps", s.root))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(apps["apps"], json!([]), "nothing was written");
    // An admin's exception for /infra lets a privileged app there, and there only.
    let policy = json!({"spec": {"exceptions": [{"appIds": ["/infra/*"], "allow": {"allowPrivileged": true}}]}});
    let resp = s
        .http
        .put(format!("{}/apis/pacer.io/v1/policies/cluster", s.root))
        .json(&policy)
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let mut infra = docker(json!({"container": {"docker": {"privileged": true}}}));
    infra["id"] = json!("/infra/agent");
    let resp = s
        .http
        .post(format!("{}/v2/apps", s.root))
        .json(&infra)
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = s
        .http
        .post(format!("{}/v2/apps", s.root))
        .json(&docker(
            json!({"container": {"docker": {"privileged": true}}}),
        ))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// Merges `extra` into `base`, objects key by key.
fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}
