//! Marathon's API on a real node: the classic getting-started guide, sent as curl sends it.

use std::time::Duration;

use pacer_e2e::{Cluster, web_app};
use reqwest::Method;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn classic_guide_apps_run_and_both_apis_see_each_other() {
    let c = Cluster::start("guide", 2.0, 2048.0, (32160, 32179)).await;
    let cent = json!({"id": "cent", "cmd": "while sleep 10; do date -u +%T; done", "cpus": 0.5, "mem": 512, "instances": 1,
                      "container": {"type": "DOCKER", "docker": {"image": "centos"}}, "uris": []});
    let webserver = json!({"id": "webserver", "cmd": "echo served > /tmp/index.html && exec httpd -f -p 8080 -h /tmp",
                           "cpus": 0.5, "mem": 64, "instances": 1,
                           "container": {"type": "DOCKER", "docker": {"image": "python:3", "network": "BRIDGE",
                               "portMappings": [{"containerPort": 8080, "hostPort": 0, "servicePort": 9000, "protocol": "tcp"}]}}});
    for app in [cent, webserver] {
        let (code, body) = c.marathon(Method::POST, "/v2/apps", Some(app)).await;
        assert_eq!(code, 201, "{body}");
        assert!(body["deployments"][0]["id"].is_string());
    }
    let task = c
        .eventually(LIMIT, "the webserver task to run", || async {
            let (_, body) = c.marathon(Method::GET, "/v2/apps/webserver", None).await;
            let task = body["app"]["tasks"].as_array()?.first()?.clone();
            (task["state"] == "TASK_RUNNING").then_some(task)
        })
        .await;
    assert_eq!(task["servicePorts"], json!([9000]));
    let port = task["ports"][0].as_u64().expect("a host port");
    let url = format!("http://127.0.0.1:{port}/");
    let page = c
        .eventually(LIMIT, "the webserver to answer", || async {
            reqwest::get(&url).await.ok()?.text().await.ok()
        })
        .await;
    assert_eq!(page.trim(), "served");
    c.eventually(LIMIT, "cent to run", || async {
        (c.running("cent").await.len() == 1).then_some(())
    })
    .await;

    // One set of records behind both APIs.
    let listed = String::from_utf8_lossy(&c.pacer(&["get", "apps"]).stdout).into_owned();
    assert!(
        listed.contains("/cent") && listed.contains("/webserver"),
        "{listed}"
    );
    assert!(c.apply("hello.yaml", &web_app("hello", 1)).status.success());
    let (_, apps) = c.marathon(Method::GET, "/v2/apps", None).await;
    let ids: Vec<&str> = apps["apps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert!(ids.contains(&"/hello"), "{ids:?}");

    let (code, _) = c
        .marathon(Method::DELETE, "/v2/apps/webserver?force=true", None)
        .await;
    assert_eq!(code, 200);
    c.eventually(LIMIT, "the webserver's container to go", || async {
        c.containers(Some("webserver")).is_empty().then_some(())
    })
    .await;
}
