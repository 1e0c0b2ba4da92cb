//! The trust boundary of a real `pacer up`: HTTPS only, the CLI configured by what `pacer up`
//! wrote (no flags), every change audited with who made it.

use std::process::Command;
use std::time::Duration;

use pacer_crd::Record;
use pacer_e2e::{Cluster, pacer_bin, text};

/// Runs the CLI in `cwd` with no PACER_* variable: it must find `.pacer/config` itself.
fn bare_cli(cwd: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(pacer_bin());
    cmd.args(args).current_dir(cwd);
    for (key, _) in std::env::vars() {
        if key.starts_with("PACER_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("HOME", cwd).output().expect("pacer runs")
}

#[tokio::test]
async fn the_cli_finds_server_ca_and_token_itself_and_plain_http_is_refused() {
    let c = Cluster::start("security", 1.0, 512.0, (32740, 32749)).await;
    // A folder where `.pacer` is the cluster's data folder, as after `make run`.
    let home = tempfile::tempdir().expect("a temp dir");
    std::os::unix::fs::symlink(c.dir(), home.path().join(".pacer")).expect("symlink");
    let out = bare_cli(home.path(), &["get", "nodes"]);
    assert!(
        out.status.success(),
        "pacer get nodes: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains(&c.node), "{}", text(&out.stdout));
    let env = text(&bare_cli(home.path(), &["config", "env"]).stdout);
    assert!(
        env.contains(&format!("export PACER_SERVER='{}'", c.server)),
        "{env}"
    );
    assert!(env.contains("export PACER_CACERT=") && env.contains("export PACER_TOKEN='admin."));

    // Elsewhere, with no config, the CLI is refused, and says where it looked.
    let nowhere = tempfile::tempdir().expect("a temp dir");
    let out = bare_cli(nowhere.path(), &["--server", &c.server, "get", "nodes"]);
    assert!(
        !out.status.success(),
        "a CLI without the CA must not connect"
    );

    // Plain HTTP on the API's port gets no answer; HTTPS without the cluster's CA neither.
    let plain = c.server.replace("https://", "http://");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");
    let answer = http.get(format!("{plain}/v2/info")).send().await;
    assert!(
        answer.as_ref().map_or(true, |r| !r.status().is_success()),
        "plain HTTP answered: {answer:?}"
    );
    let untrusted = http.get(format!("{}/v2/info", c.server)).send().await;
    assert!(
        untrusted.is_err(),
        "a client without the CA trusted the server: {untrusted:?}"
    );
}

#[tokio::test]
async fn every_change_is_audited_with_its_caller_and_no_secret() {
    let c = Cluster::start("audit", 1.0, 512.0, (32750, 32759)).await;
    let (status, _) = c
        .marathon(
            reqwest::Method::POST,
            "/v2/apps",
            Some(serde_json::json!({"id": "/audited", "cmd": "sleep 100", "cpus": 0.1, "mem": 16, "instances": 0})),
        )
        .await;
    assert_eq!(status, 201);
    let anonymous =
        pacer_apiserver::tls::client(Some(&c.dir().join("ca.crt")), None, Duration::from_secs(10))
            .expect("a client");
    let resp = anonymous
        .delete(format!("{}/v2/apps/audited", c.server))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status(), 401);
    let log = c.dir().join("audit.log");
    let entries = c
        .eventually(
            Duration::from_secs(10),
            "both requests in the audit log",
            || async {
                let out = Command::new(pacer_bin())
                    .args(["audit", "--json", "--file"])
                    .arg(&log)
                    .output()
                    .ok()?;
                let lines: Vec<serde_json::Value> = text(&out.stdout)
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect();
                (lines.len() >= 2).then_some(lines)
            },
        )
        .await;
    assert_eq!(entries[0]["user"], "admin");
    assert_eq!(entries[0]["method"], "POST");
    assert_eq!(entries[0]["path"], "/v2/apps");
    assert_eq!(entries[0]["status"], 201);
    assert!(
        entries[0]["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:"))
    );
    assert_eq!(entries[1]["user"], "anonymous");
    assert_eq!(entries[1]["status"], 401);
    let whole = std::fs::read_to_string(&log).expect("the audit log");
    let secret = c.token.split_once('.').expect("name.secret").1;
    assert!(!whole.contains(secret), "the audit log holds no token");
    assert!(!c.log().contains(secret), "pacer's own log holds no token");
}

#[tokio::test]
async fn an_agent_identity_writes_its_own_node_records_only() {
    let c = Cluster::start("least", 1.0, 512.0, (32760, 32769)).await;
    let out = c.apply("web.yaml", &pacer_e2e::web_app("least", 1));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let task = c
        .eventually(
            Duration::from_secs(60),
            "a task of the cluster's node",
            || async { c.tasks().await.into_iter().find(|t| t.spec.node == c.node) },
        )
        .await;
    let etcd = c.etcd_as(&c.node_identity("intruder")).await;
    let tasks: pacer_runtime::Api<pacer_crd::Task> = pacer_runtime::Api::new(&etcd);
    // It reads the cluster...
    let read = tasks
        .get(&task.key())
        .await
        .expect("an agent may read")
        .expect("the task");
    // ...but writes no other node's task status, and no app.
    let mut status = read.status.clone().unwrap_or_default();
    status.message = Some("forged".into());
    let forged = tasks.update_status_of(&read, status).await;
    assert!(
        forged.is_err(),
        "another node's task status was written: {forged:?}"
    );
    let apps: pacer_runtime::Api<pacer_crd::App> = pacer_runtime::Api::new(&etcd);
    let app = apps.get("least").await.expect("read").expect("the app");
    let mut bigger = app.clone();
    bigger.spec.instances = 100;
    assert!(
        apps.replace(&bigger).await.is_err(),
        "an agent changed an app"
    );
    // Its own tasks' records it may write.
    let mut own = read.clone();
    own.spec.node = "intruder".into();
    own.metadata.resource_version = None;
    tasks
        .create(&own)
        .await
        .expect("an agent writes tasks bound to its own node");
    let root = pacer_runtime::client::EtcdTls::in_dir(c.dir(), "root");
    let admin = c.etcd_as(&root).await;
    let again: pacer_runtime::Api<pacer_crd::Task> = pacer_runtime::Api::new(&admin);
    let unchanged = again
        .get(&task.key())
        .await
        .expect("read")
        .expect("the task");
    assert_ne!(
        unchanged.status.and_then(|s| s.message).as_deref(),
        Some("forged")
    );
    assert!(
        again.delete(&own.key()).await.expect("root deletes"),
        "the intruder's own task was written"
    );
}

#[tokio::test]
async fn a_task_on_the_host_network_gets_nothing_from_etcd_or_the_api_without_credentials() {
    let c = Cluster::start("probe", 2.0, 1024.0, (32770, 32779)).await;
    let etcd_port = c
        .etcd_endpoint
        .rsplit(':')
        .next()
        .expect("a port")
        .to_string();
    let api_port = c.server.rsplit(':').next().expect("a port").to_string();
    // Each probe prints one word per target: `open` if it got a real answer back (etcd's
    // version, the API's app list), `refused` if not (a plain-HTTP client reads rustls's
    // alert as an HTTP/0.9 body: that is no answer).
    // etcd: plain HTTP and HTTPS without a client certificate; the API: plain HTTP and
    // HTTPS without a token (the server's certificate not even checked).
    let probe = format!(
        "echo uid=$(id -u); for u in http://127.0.0.1:{etcd_port}/version https://127.0.0.1:{etcd_port}/version \
         http://127.0.0.1:{api_port}/v2/apps https://127.0.0.1:{api_port}/v2/apps; do \
         out=$(timeout 5 wget -q --no-check-certificate -O - $u 2>/dev/null); \
         if echo \"$out\" | grep -q -e etcdserver -e '\"apps\"'; then echo open $u; else echo refused $u; fi; done; sleep 600"
    );
    let process = serde_json::json!({"id": "/probe-process", "cmd": probe, "cpus": 0.1, "mem": 32, "instances": 1, "portDefinitions": []});
    let docker = serde_json::json!({"id": "/probe-docker", "cmd": probe, "cpus": 0.1, "mem": 32, "instances": 1, "portDefinitions": [],
        "container": {"type": "DOCKER", "docker": {"image": pacer_e2e::IMAGE, "network": "HOST"}}});
    for app in [process, docker] {
        let (status, body) = c
            .marathon(reqwest::Method::POST, "/v2/apps", Some(app))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    for app in ["probe-process", "probe-docker"] {
        let output = c
            .eventually(
                Duration::from_secs(90),
                "the probe's four answers",
                || async {
                    let task = c.running(app).await.into_iter().next()?;
                    let name = task.metadata.name.clone()?;
                    let out = c.pacer(&["logs", &name]);
                    let log = text(&out.stdout);
                    (log.matches("refused").count() + log.matches("open").count() >= 4)
                        .then_some(log)
                },
            )
            .await;
        assert_eq!(
            output.matches("refused").count(),
            4,
            "{app} reached something:\n{output}"
        );
        if app == "probe-process" {
            // A process task that names no user runs as nobody, not as the agent's root.
            assert!(output.contains("uid=65534"), "{app} ran as:\n{output}");
        }
    }
}

#[tokio::test]
async fn an_agent_endpoint_serves_only_clients_with_a_cluster_certificate() {
    let c = Cluster::start("agentep", 1.0, 512.0, (32780, 32789)).await;
    let node = c
        .nodes()
        .await
        .into_iter()
        .find(|n| n.metadata.name.as_deref() == Some(c.node.as_str()))
        .expect("the node");
    let address = node.spec.address.clone();
    assert!(
        address.starts_with("https://"),
        "the agent endpoint is HTTPS: {address}"
    );
    let url = format!("{address}/ping");
    // Trusting the CA is not enough: the endpoint wants a client certificate of it.
    let no_cert = pacer_apiserver::tls::client(
        Some(&c.dir().join("ca.crt")),
        Some(&c.token),
        Duration::from_secs(5),
    )
    .expect("a client");
    let refused = no_cert.get(&url).send().await;
    assert!(
        refused.is_err(),
        "a client without a certificate was served: {refused:?}"
    );
    let server = pacer_runtime::client::EtcdTls::in_dir(c.dir(), "pacer-server");
    let with_cert = reqwest::Client::builder()
        .use_preconfigured_tls(pacer_runtime::tls::client_config(&server).expect("a TLS config"))
        .build()
        .expect("a client");
    let pong = with_cert
        .get(&url)
        .send()
        .await
        .expect("served")
        .text()
        .await
        .expect("a body");
    assert_eq!(pong, "pong");
}
