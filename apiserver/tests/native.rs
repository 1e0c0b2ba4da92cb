//! The native API served in-process on a real etcd, spoken to by a real HTTP client.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

mod common;

use common::Server;

async fn server() -> Server {
    common::server("/apis/pacer.io/v1").await
}

fn app(name: &str, instances: i64) -> Value {
    json!({"apiVersion": "pacer.io/v1", "kind": "App", "metadata": {"name": name}, "spec": {"cmd": "sleep 100", "instances": instances}})
}

impl Server {
    async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .put(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or_default(),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or_default(),
        )
    }
}

#[tokio::test]
async fn apply_creates_then_configures_then_leaves_unchanged() {
    let s = server().await;
    let (code, body) = s.put("/apps/web", &app("web", 2)).await;
    assert_eq!((code, body["result"].as_str()), (201, Some("created")));
    let version = body["object"]["metadata"]["annotations"]["pacer.io/version"].clone();
    assert!(version.is_string(), "a new app gets a version");
    assert_eq!(body["object"]["spec"]["mem"], 128.0, "defaults are filled");

    let (code, body) = s.put("/apps/web", &app("web", 2)).await;
    assert_eq!((code, body["result"].as_str()), (200, Some("unchanged")));

    let (_, body) = s.put("/apps/web", &app("web", 5)).await;
    assert_eq!(body["result"], "configured");
    assert_eq!(body["object"]["metadata"]["generation"], 2);
    assert_eq!(
        body["object"]["metadata"]["annotations"]["pacer.io/version"], version,
        "a scale keeps the version"
    );

    let (code, list) = s.get("/deployments").await;
    assert_eq!(code, 200);
    let actions: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["spec"]["action"].as_str())
        .collect();
    assert_eq!(actions.len(), 2);
    assert!(
        actions.contains(&"StartApplication") && actions.contains(&"ScaleApplication"),
        "{actions:?}"
    );

    // Marathon path ids and record names address the same app.
    let (code, body) = s.get("/apps/%2Fweb").await;
    assert_eq!((code, body["spec"]["instances"].as_i64()), (200, Some(5)));
}

#[tokio::test]
async fn bad_input_is_refused_with_its_field_and_changes_nothing() {
    let s = server().await;
    let mut bad = app("web", -1);
    bad["spec"]["cpus"] = json!(-2);
    let (code, body) = s.put("/apps/web", &bad).await;
    assert_eq!(code, 422);
    let paths: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["path"].as_str())
        .collect();
    assert_eq!(paths, vec!["spec.instances", "spec.cpus"]);

    let resp = s
        .http
        .put(format!("{}/apps/web", s.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (code, _) = s.put("/apps/other", &app("web", 1)).await;
    assert_eq!(code, 422, "the name must match the URL");
    let (code, body) = s.put("/apps/web/scale", &json!({"instances": -3})).await;
    assert_eq!(
        (code, body["details"][0]["path"].as_str()),
        (422, Some("instances"))
    );
    let (code, body) = s.put("/apps/web/scale", &json!({"instances": 3})).await;
    assert_eq!(
        (code, body["message"].as_str()),
        (404, Some("App 'web' does not exist"))
    );

    let (code, list) = s.get("/apps").await;
    assert_eq!(
        (code, list["items"].as_array().map(Vec::len)),
        (200, Some(0)),
        "nothing stored"
    );
    let (code, body) = s.get("/apps/web").await;
    assert_eq!(code, 404);
    assert_eq!(body["message"], "App 'web' does not exist");
}

#[tokio::test]
async fn watch_streams_existing_records_then_changes() {
    let s = server().await;
    s.put("/apps/a", &app("a", 1)).await;
    let resp = s
        .http
        .get(format!("{}/apps?watch=true", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let stream = futures::TryStreamExt::map_err(resp.bytes_stream(), std::io::Error::other);
    let mut lines = tokio_util::io::StreamReader::new(stream).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a line within 10 s")
            .unwrap()
            .unwrap();
        serde_json::from_str(&line).unwrap()
    };
    let first = next().await;
    assert_eq!(
        (
            first["type"].as_str(),
            first["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("a"))
    );
    s.put("/apps/b", &app("b", 1)).await;
    let second = next().await;
    assert_eq!(
        (
            second["type"].as_str(),
            second["object"]["metadata"]["name"].as_str()
        ),
        (Some("MODIFIED"), Some("b"))
    );
    s.http
        .delete(format!("{}/apps/a", s.base))
        .send()
        .await
        .unwrap();
    let third = next().await;
    assert_eq!(
        (
            third["type"].as_str(),
            third["object"]["metadata"]["name"].as_str()
        ),
        (Some("DELETED"), Some("a"))
    );
}

/// Clients applying one new record at once (or a create retried after it had in fact
/// landed) all succeed: one creates it, the others find it as they want it.
#[tokio::test]
async fn concurrent_applies_of_a_new_record_create_it_once_and_leave_it_unchanged() {
    let s = server().await;
    let manifests = [
        (
            "/roles/analytics",
            json!({"apiVersion": "pacer.io/v1", "kind": "Role", "metadata": {"name": "analytics"}, "spec": {"weight": 2.0}}),
        ),
        (
            "/jobs/report",
            json!({"apiVersion": "pacer.io/v1", "kind": "Job", "metadata": {"name": "report"}, "spec": {"run": {"cmd": "true"}}}),
        ),
    ];
    for (path, manifest) in &manifests {
        let answers = futures::future::join_all((0..8).map(|_| s.put(path, manifest))).await;
        let mut outcomes: Vec<(u16, String)> = answers
            .iter()
            .map(|(code, body)| {
                (
                    *code,
                    body["result"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        outcomes.sort();
        let mut expected = vec![(200, "unchanged".to_string()); 7];
        expected.push((201, "created".to_string()));
        assert_eq!(outcomes, expected, "{path}: {answers:?}");
        let (code, stored) = s.get(path).await;
        assert_eq!(code, 200);
        assert_eq!(stored["metadata"]["generation"], 1, "{path}: written once");
        for (_, body) in &answers {
            assert_eq!(
                body["object"]["metadata"]["uid"], stored["metadata"]["uid"],
                "{path}: every answer names the stored record"
            );
        }
    }
}
