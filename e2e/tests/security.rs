//! The trust boundary of a real `pacer up`: HTTPS only, the CLI configured by what `pacer up`
//! wrote (no flags), every change audited with who made it.

use std::process::Command;
use std::time::Duration;

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
