//! Marathon's v2 API in-process on a real etcd (no controllers: deployments stay running, which
//! is what the lock checks need): every endpoint and every error code.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

mod common;

use common::Server;

async fn server() -> Server {
    common::server("").await
}

impl Server {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        (status, headers, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (code, _, body) = self.call(Method::GET, path, None).await;
        (code, body)
    }
}

fn fixture(path: &str) -> Value {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/marathon-fixtures")
        .join(path);
    serde_json::from_str(
        &std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
    )
    .unwrap()
}

fn cent() -> Value {
    json!({"id": "cent", "cmd": "while sleep 10; do date -u +%T; done", "cpus": 0.5, "mem": 512, "instances": 1,
           "container": {"type": "DOCKER", "docker": {"image": "centos"}}, "uris": []})
}

fn webserver() -> Value {
    json!({"id": "webserver", "cmd": "python3 -m http.server 8080", "cpus": 0.5, "mem": 64, "instances": 1,
           "container": {"type": "DOCKER", "docker": {"image": "python:3", "network": "BRIDGE",
               "portMappings": [{"containerPort": 8080, "hostPort": 0, "servicePort": 9000, "protocol": "tcp"}]}}})
}

/// Marathon's app schema (1.7), which forbids keys it does not define; response-only keys are
/// removed first, as its README says.
fn check_schema(app: &Value) {
    let mut schema = fixture("marathon-schema-v1.7/AppDefinition.json");
    schema.as_object_mut().unwrap().remove("$schema");
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&schema)
        .unwrap();
    let mut app = app.clone();
    for key in [
        "tasks",
        "tasksStaged",
        "tasksRunning",
        "tasksHealthy",
        "tasksUnhealthy",
        "deployments",
        "lastTaskFailure",
    ] {
        app.as_object_mut().unwrap().remove(key);
    }
    let errors: Vec<String> = validator
        .iter_errors(&app)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{app:#}");
}

#[tokio::test]
async fn classic_guide_posts_answer_201_with_marathon_shapes() {
    let s = server().await;
    for (body, id) in [(cent(), "/cent"), (webserver(), "/webserver")] {
        let (code, headers, app) = s.call(Method::POST, "/v2/apps", Some(body)).await;
        assert_eq!(code, 201, "{app}");
        assert_eq!(headers["location"], format!("/v2/apps{id}").as_str());
        let deployment = headers["marathon-deployment-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(app["deployments"][0]["id"], deployment);
        assert_eq!(app["id"], id);
        assert_eq!(app["backoffFactor"], 1.15, "defaults are filled in");
        assert!(app["version"].as_str().unwrap().ends_with('Z'));
        check_schema(&app);
    }
    let (_, web) = s.get("/v2/apps/webserver").await;
    let web = &web["app"];
    assert_eq!(
        web["networks"][0]["mode"], "container/bridge",
        "legacy docker.network is normalized"
    );
    assert_eq!(web["container"]["portMappings"][0]["servicePort"], 9000);
    assert!(web["container"]["docker"].get("network").is_none() && web.get("uris").is_none());
    check_schema(web);

    let (code, _, body) = s.call(Method::POST, "/v2/apps", Some(cent())).await;
    assert_eq!(
        (code, body["message"].as_str()),
        (409, Some("An app with id [/cent] already exists."))
    );
}

#[tokio::test]
async fn errors_have_marathon_codes_and_shapes() {
    let s = server().await;
    let resp = s
        .http
        .post(format!("{}/v2/apps", s.base))
        .body("{\"id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let mut bad = cent();
    bad["mem"] = json!(-1);
    bad["container"]["docker"]["image"] = json!("");
    let (code, _, body) = s.call(Method::POST, "/v2/apps", Some(bad)).await;
    assert_eq!(
        (code, body["message"].as_str()),
        (422, Some("Object is not valid"))
    );
    let paths: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["path"].as_str())
        .collect();
    assert_eq!(paths, vec!["/mem", "/container/docker/image"]);
    assert!(body["details"][0]["errors"][0].is_string());
    let (code, apps) = s.get("/v2/apps").await;
    assert_eq!(
        (code, apps["apps"].as_array().map(Vec::len)),
        (200, Some(0)),
        "nothing stored"
    );

    let (code, body) = s.get("/v2/apps/x").await;
    assert_eq!(
        (code, body),
        (404, json!({"message": "App '/x' does not exist"}))
    );
    for (method, path) in [
        (Method::DELETE, "/v2/apps/x"),
        (Method::GET, "/v2/apps/x/tasks"),
        (Method::GET, "/v2/apps/x/versions"),
    ] {
        assert_eq!(s.call(method, path, None).await.0, 404, "{path}");
    }
    assert_eq!(
        s.call(Method::DELETE, "/v2/deployments/nope", None).await.0,
        404
    );
    assert_eq!(
        s.call(Method::DELETE, "/v2/queue/x/delay", None).await.0,
        404
    );
    assert_eq!(s.get("/v2/groups/nope").await.0, 404);
}

/// The answers clients print as they came and compare byte for byte (the DC/OS CLI's tests).
#[tokio::test]
async fn error_bodies_are_marathons_bytes() {
    let s = server().await;
    let text = |path: &str, method: Method, body: Option<Value>| {
        let mut req = s.http.request(method, format!("{}{path}", s.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let mut typo = cent();
    typo["cpus"] = json!("https://a string");
    assert_eq!(
        text("/v2/apps", Method::POST, Some(typo)).await,
        (422, r#"{"message":"Invalid JSON","details":[{"path":"/cpus","errors":["error.expected.jsnumber"]}]}"#.into())
    );
    let bogus = json!({"id": "/test", "cmd": "ls", "cpus": 1.0, "mem": 128.0,
        "container": {"type": "DOCKER", "docker": {"image": "busybox", "network": "bogus"}}});
    assert_eq!(
        text("/v2/apps", Method::POST, Some(bogus)).await,
        (422, r#"{"message":"Invalid JSON","details":[{"path":"/container/docker/network","errors":["error.unknown.enum.literal"]}]}"#.into())
    );
    let group = json!({"id": "/g", "groups": [{"id": "inner", "apps": [{}]}]});
    assert_eq!(
        text("/v2/groups", Method::POST, Some(group)).await,
        (422, r#"{"message":"Invalid JSON","details":[{"path":"/groups(0)/apps(0)/id","errors":["'id' is undefined on object: {}"]}]}"#.into())
    );
    let (code, body) = text("/v2/apps/%7B", Method::GET, None).await;
    assert_eq!(code, 400);
    assert!(
        serde_json::from_str::<Value>(&body).is_err(),
        "a plain 400: {body}"
    );
    assert_eq!(
        text("/v2/apps/x/versions/20:39:32.972Z", Method::GET, None).await,
        (422, r#"{"message":"Invalid timestamp provided '20:39:32.972Z'. Expecting ISO-8601 datetime string."}"#.into())
    );
    // Ids in a body are checked as fields (422), a cycle among apps written together too.
    let bad_id = json!({"id": "/Bad Group", "apps": []});
    let (code, _, body) = s.call(Method::POST, "/v2/groups", Some(bad_id)).await;
    assert_eq!(
        (code, body["details"][0]["path"].clone()),
        (422, json!("/id"))
    );
    let cycle = json!([{"id": "/a", "cmd": "x", "dependencies": ["/b"]},
                       {"id": "/b", "cmd": "x", "dependencies": ["/a"]}]);
    let (code, _, body) = s.call(Method::PUT, "/v2/apps", Some(cycle)).await;
    assert_eq!(
        (code, body["details"][0]["path"].clone()),
        (422, json!("/dependencies"))
    );
    assert_eq!(
        s.get("/v2/apps").await.1["apps"],
        json!([]),
        "nothing stored"
    );
}

#[tokio::test]
async fn updates_lock_force_rollback_restart_and_delete() {
    let s = server().await;
    s.call(Method::POST, "/v2/apps", Some(cent())).await;
    let (code, _, body) = s
        .call(Method::PUT, "/v2/apps/cent", Some(json!({"instances": 2})))
        .await;
    assert_eq!(code, 409, "a running deployment locks the app: {body}");
    assert!(body["deployments"][0]["id"].is_string());

    let (code, _, body) = s
        .call(
            Method::PUT,
            "/v2/apps//cent?force=TRUE",
            Some(json!({"instances": 2})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(body["deploymentId"].is_string() && body["version"].is_string());
    let (_, app) = s.get("/v2/apps/cent").await;
    assert_eq!(app["app"]["instances"], 2);
    assert_eq!(
        app["app"]["mem"], 512.0,
        "a PUT is a partial update by default"
    );

    let (code, _, _) = s
        .call(
            Method::PATCH,
            "/v2/apps/cent?force=true",
            Some(json!({"env": {"A": "1"}})),
        )
        .await;
    assert_eq!(code, 200);
    let (_, versions) = s.get("/v2/apps/cent/versions").await;
    let versions: Vec<String> = serde_json::from_value(versions["versions"].clone()).unwrap();
    assert_eq!(versions.len(), 3, "{versions:?}");
    let (code, first) = s
        .get(&format!("/v2/apps/cent/versions/{}", versions[2]))
        .await;
    assert_eq!((code, first["instances"].as_i64()), (200, Some(1)));

    let rollback = json!({"version": versions[2]});
    let (code, _, _) = s
        .call(Method::PUT, "/v2/apps/cent?force=true", Some(rollback))
        .await;
    assert_eq!(code, 200);
    let (_, app) = s.get("/v2/apps/cent").await;
    assert_eq!(
        (app["app"]["instances"].as_i64(), app["app"]["env"].clone()),
        (Some(1), json!({}))
    );

    let (code, _, body) = s
        .call(Method::POST, "/v2/apps/cent/restart?force=true", None)
        .await;
    assert_eq!(code, 200);
    assert!(body["deploymentId"].is_string());

    let replaced = json!({"cmd": "sleep 1", "partialUpdate": false});
    let (code, _, _) = s
        .call(
            Method::PUT,
            "/v2/apps/cent?force=true&partialUpdate=false",
            Some(replaced.clone()),
        )
        .await;
    assert_eq!(code, 422, "partialUpdate is not an app field");
    let (code, _, _) = s
        .call(
            Method::PUT,
            "/v2/apps/cent?force=true&partialUpdate=false",
            Some(json!({"cmd": "sleep 1"})),
        )
        .await;
    assert_eq!(code, 200);
    let (_, app) = s.get("/v2/apps/cent").await;
    assert_eq!(
        (app["app"]["mem"].as_f64(), app["app"].get("container")),
        (Some(128.0), None),
        "a full PUT replaces"
    );

    let (code, _, body) = s
        .call(
            Method::PUT,
            "/v2/apps/fresh",
            Some(json!({"cmd": "sleep 1"})),
        )
        .await;
    assert_eq!(
        (code, body["id"].as_str()),
        (201, Some("/fresh")),
        "PUT creates a missing app"
    );

    let (code, _, _) = s.call(Method::DELETE, "/v2/apps/cent", None).await;
    assert_eq!(code, 409, "deleting a locked app needs force");
    let (code, _, body) = s
        .call(Method::DELETE, "/v2/apps/cent?force=true", None)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(s.get("/v2/apps/cent").await.0, 404);
}

#[tokio::test]
async fn lists_filters_groups_deployments_queue_and_info() {
    let s = server().await;
    let mut labelled = cent();
    labelled["id"] = json!("/prod/web");
    labelled["labels"] = json!({"tier": "front"});
    s.call(Method::POST, "/v2/apps", Some(labelled)).await;
    s.call(Method::POST, "/v2/apps", Some(cent())).await;
    let ids = |v: &Value| -> Vec<String> {
        v["apps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(&s.get("/v2/apps?label=tier==front").await.1),
        vec!["/prod/web"]
    );
    assert_eq!(
        ids(&s.get("/v2/apps?label=tier!=front").await.1),
        vec!["/cent"]
    );
    assert_eq!(ids(&s.get("/v2/apps?id=prod").await.1), vec!["/prod/web"]);
    assert_eq!(
        ids(&s
            .get("/v2/apps?cmd=date&embed=apps.tasks&embed=apps.counts")
            .await
            .1)
        .len(),
        2
    );
    assert_eq!(ids(&s.get("/v2/apps/prod/*").await.1), vec!["/prod/web"]);
    assert_eq!(
        s.get("/v2/apps?embed=apps.tasks").await.1["apps"][0]["tasks"],
        json!([])
    );

    let (_, root) = s.get("/v2/groups").await;
    assert_eq!(root["id"], "/");
    assert_eq!(root["groups"][0]["id"], "/prod");
    assert_eq!(root["groups"][0]["apps"][0]["id"], "/prod/web");
    let (code, group) = s.get("/v2/groups/prod").await;
    assert_eq!(
        (code, group["apps"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    let plan = json!({"id": "/batch", "apps": [{"id": "one", "cmd": "sleep 1", "dependencies": ["two"]}, {"id": "two", "cmd": "sleep 1"}]});
    let (code, _, body) = s
        .call(Method::POST, "/v2/groups?dryRun=true", Some(plan.clone()))
        .await;
    assert_eq!(code, 200);
    let steps: Vec<&str> = body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["actions"][0]["app"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        vec!["/batch/two", "/batch/one"],
        "dependencies first"
    );
    let cycle = json!({"id": "/loop", "apps": [{"id": "a", "cmd": "x", "dependencies": ["b"]}, {"id": "b", "cmd": "x", "dependencies": ["a"]}]});
    let (code, _, body) = s.call(Method::POST, "/v2/groups", Some(cycle)).await;
    assert_eq!(
        (code, body["details"][0]["path"].as_str()),
        (422, Some("/dependencies"))
    );
    assert_eq!(
        s.get("/v2/apps/loop/a").await.0,
        404,
        "a refused group writes nothing"
    );
    assert_eq!(
        s.get("/v2/apps/batch/one").await.0,
        404,
        "a dry run changes nothing"
    );
    let (code, _, _) = s.call(Method::POST, "/v2/groups", Some(plan)).await;
    assert_eq!(code, 201);
    assert_eq!(s.get("/v2/apps/batch/one").await.0, 200);
    let (code, _, _) = s
        .call(Method::PUT, "/v2/groups/batch", Some(json!({"scaleBy": 3})))
        .await;
    assert_eq!(code, 200);
    assert_eq!(s.get("/v2/apps/batch/one").await.1["app"]["instances"], 3);
    for (factor, message, reason) in [
        (json!(-2), "Object is not valid", "must be >= 0"),
        (json!("1.a"), "Invalid JSON", "error.expected.jsnumber"),
    ] {
        let (code, _, body) = s
            .call(
                Method::PUT,
                "/v2/groups/batch",
                Some(json!({"scaleBy": factor})),
            )
            .await;
        assert_eq!(
            (code, body),
            (
                422,
                json!({"message": message, "details": [{"path": "/scaleBy", "errors": [reason]}]})
            )
        );
    }
    assert_eq!(
        s.get("/v2/apps/batch/one").await.1["app"]["instances"],
        3,
        "a refused scale changes nothing"
    );
    assert_eq!(
        s.get("/v2/apps/batch/one").await.1["app"]["dependencies"],
        json!(["/batch/two"])
    );
    assert_eq!(
        s.call(Method::DELETE, "/v2/groups/batch", None).await.0,
        200
    );
    assert_eq!(s.get("/v2/apps/batch/one").await.0, 404);

    let (_, deployments) = s.get("/v2/deployments").await;
    let first = &deployments.as_array().unwrap()[0];
    for key in [
        "id",
        "version",
        "affectedApps",
        "steps",
        "currentActions",
        "currentStep",
        "totalSteps",
    ] {
        assert!(first.get(key).is_some(), "deployment has {key}: {first}");
    }
    let id = first["id"].as_str().unwrap();
    assert_eq!(
        s.call(
            Method::DELETE,
            &format!("/v2/deployments/{id}?force=true"),
            None
        )
        .await
        .0,
        202
    );

    let (code, tasks) = s.get("/v2/tasks?status=running").await;
    assert_eq!((code, tasks["tasks"].clone()), (200, json!([])));
    assert_eq!(
        s.call(Method::POST, "/v2/tasks/delete", Some(json!({"ids": []})))
            .await
            .0,
        200
    );
    let (code, queue) = s.get("/v2/queue").await;
    assert_eq!((code, queue["queue"].clone()), (200, json!([])));
    assert_eq!(
        s.call(Method::DELETE, "/v2/queue/cent/delay", None).await.0,
        204
    );

    let (_, info) = s.get("/v2/info").await;
    assert_eq!(info["name"], "marathon");
    assert_eq!(s.get("/v2/leader").await.1["leader"], info["leader"]);
    let ping = s
        .http
        .get(format!("{}/ping", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(ping, "pong");
    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("pacer_apps 2"), "{metrics}");
}

#[tokio::test]
async fn hundred_real_apps_post_and_echo_normalized() {
    let s = server().await;
    let doc = fixture("marathon-benchmark-real/155_100.json");
    // These real apps ask for what the default policy refuses (privileged containers, host
    // volumes, Docker options): an admin allows it for them, as the cluster they ran on did.
    let keys: std::collections::BTreeSet<String> = doc["apps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| {
            a["container"]["docker"]["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| p["key"].as_str().map(str::to_string))
        .collect();
    let policy = json!({"spec": {"allowPrivileged": true, "allowedHostPaths": ["/"], "allowRoot": true,
        "allowedDockerParameters": keys}});
    let (code, _, body) = s
        .call(
            Method::PUT,
            "/apis/pacer.io/v1/policies/cluster",
            Some(policy),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    for original in doc["apps"].as_array().unwrap() {
        let (code, _, created) = s
            .call(Method::POST, "/v2/apps", Some(original.clone()))
            .await;
        let id = original["id"].as_str().unwrap();
        assert_eq!(code, 201, "{id}: {created}");
        for key in [
            "id",
            "cmd",
            "instances",
            "cpus",
            "mem",
            "constraints",
            "env",
            "labels",
            "killSelection",
        ] {
            assert_eq!(
                created.get(key),
                original.get(key).or(created.get(key)),
                "{id}: {key}"
            );
        }
        check_schema(&created);
        let (_, fetched) = s.get(&format!("/v2/apps{id}")).await;
        assert_eq!(fetched["app"]["container"], created["container"], "{id}");
    }
}

#[tokio::test]
async fn event_stream_starts_attached_and_filters() {
    let s = server().await;
    let resp = s
        .http
        .get(format!(
            "{}/v2/events?event_type=api_post_event&event_type=event_stream_attached&event_type=app_terminated_event",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let stream = futures::TryStreamExt::map_err(resp.bytes_stream(), std::io::Error::other);
    let mut lines = tokio_util::io::StreamReader::new(stream).lines();
    let mut next_event = async || -> (String, Value) {
        let mut kind = String::new();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .unwrap();
            if let Some(k) = line.strip_prefix("event: ") {
                kind = k.to_string();
            } else if let Some(data) = line.strip_prefix("data: ") {
                return (kind, serde_json::from_str(data).unwrap());
            }
        }
    };
    let (kind, first) = next_event().await;
    assert_eq!(
        (kind.as_str(), first["eventType"].as_str()),
        ("event_stream_attached", Some("event_stream_attached"))
    );
    s.call(Method::POST, "/v2/apps", Some(cent())).await;
    let (kind, posted) = next_event().await;
    assert_eq!(kind, "api_post_event", "deployment_info is filtered out");
    assert_eq!(posted["appDefinition"]["id"], "/cent");
    assert!(posted["timestamp"].as_str().unwrap().ends_with('Z'));
    // A deletion reaches the stream by its key alone (the watch asks for no previous values).
    // (forced: no controller runs here to finish the deployment that created it)
    let (code, _, _) = s
        .call(Method::DELETE, "/v2/apps/cent?force=true", None)
        .await;
    assert_eq!(code, 200);
    let (kind, gone) = next_event().await;
    assert_eq!(kind, "app_terminated_event");
    assert_eq!(gone["appId"], "/cent");
}

#[tokio::test]
async fn service_ports_are_cluster_unique_and_freed_on_delete() {
    let s = server().await;
    let web = |id: &str, service_port: i64| {
        json!({"id": id, "cmd": "x", "networks": [{"mode": "container/bridge"}],
               "container": {"docker": {"image": "i"},
                             "portMappings": [{"containerPort": 80, "servicePort": service_port}]}})
    };
    let host = json!({"id": "/host", "cmd": "x", "portDefinitions": [{"port": 0}, {"port": 0, "name": "admin"}]});
    let mut assigned = Vec::new();
    for body in [web("/a", 0), web("/b", 0), host] {
        let (code, _, app) = s.call(Method::POST, "/v2/apps", Some(body)).await;
        assert_eq!(code, 201, "{app}");
        let ports: Vec<i64> = match app["container"]["portMappings"].as_array() {
            Some(m) => m
                .iter()
                .map(|m| m["servicePort"].as_i64().unwrap())
                .collect(),
            None => app["portDefinitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["port"].as_i64().unwrap())
                .collect(),
        };
        assigned.extend(ports);
    }
    assert_eq!(
        assigned,
        vec![10000, 10001, 10002, 10003],
        "lowest free, each once"
    );
    // An update that leaves the port at 0 keeps the one it had.
    let (code, _, _) = s
        .call(Method::PUT, "/v2/apps/a?force=true", Some(web("/a", 0)))
        .await;
    assert_eq!(code, 200);
    let (_, a) = s.get("/v2/apps/a").await;
    assert_eq!(
        a["app"]["container"]["portMappings"][0]["servicePort"],
        10000
    );
    // A fixed port another app holds is refused with the field, and nothing is written.
    let (code, _, body) = s
        .call(Method::POST, "/v2/apps", Some(web("/c", 10001)))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body.to_string().contains("10001 is in use by app /b"),
        "{body}"
    );
    assert_eq!(s.get("/v2/apps/c").await.0, 404);
    // Deleting /b frees its port for others.
    let (code, _, _) = s.call(Method::DELETE, "/v2/apps/b?force=true", None).await;
    assert_eq!(code, 200);
    let (code, _, body) = s
        .call(Method::POST, "/v2/apps", Some(web("/c", 10001)))
        .await;
    assert_eq!(code, 201, "{body}");
}

/// A scale is checked as a create is: no count a create would refuse is stored, whatever
/// path it comes by.
#[tokio::test]
async fn scaling_past_the_limits_is_refused_and_changes_nothing() {
    let s = server().await;
    let app = json!({"id": "/grp/big", "cmd": "sleep 100", "cpus": 0, "mem": 0, "instances": 1, "portDefinitions": []});
    let (code, _, body) = s.call(Method::POST, "/v2/apps", Some(app)).await;
    assert_eq!(code, 201, "{body}");
    let (code, _, body) = s
        .call(
            Method::PUT,
            "/v2/apps/grp/big?force=true",
            Some(json!({"instances": 1_000_000_000_i64})),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(body.to_string().contains("instances"), "{body}");
    let (code, _, body) = s
        .call(
            Method::PUT,
            "/v2/groups/grp?force=true",
            Some(json!({"scaleBy": 1e12})),
        )
        .await;
    assert_eq!(code, 422, "scaleBy past the limit: {body}");
    let (_, _, app) = s.call(Method::GET, "/v2/apps/grp/big", None).await;
    assert_eq!(app["app"]["instances"], 1, "nothing was stored");
}
