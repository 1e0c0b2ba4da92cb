//! High availability of the control plane: three `pacer server` replicas on one etcd, exactly
//! one runs the controllers; kill -9 of the leader hands over within the lease TTL, and the
//! new leader carries on with what was asked meanwhile.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pacer_e2e::pacer_bin;
use pacer_runtime::etcd_process::free_port;
use serde_json::{Value, json};

const TTL: u64 = 3;

struct Replica {
    addr: String,
    process: Child,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn server(etcd: &str, dir: &std::path::Path, i: usize) -> Replica {
    let addr = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join(format!("server-{i}.log"))).expect("log");
    let process = Command::new(pacer_bin())
        .args(["server", "--etcd", etcd, "--listen", &addr])
        .args(["--leader-ttl", &TTL.to_string()])
        .args(pacer_e2e::etcd_flags(dir, "pacer-server"))
        .arg("--admin-token-file")
        .arg(dir.join("admin.token"))
        .arg("--tls-cert")
        .arg(dir.join("server.crt"))
        .arg("--tls-key")
        .arg(dir.join("server.key"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("pacer server starts");
    Replica { addr, process }
}

async fn get(http: &reqwest::Client, addr: &str, path: &str) -> Option<Value> {
    let resp = http
        .get(format!("https://{addr}{path}"))
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

async fn running(http: &reqwest::Client, addr: &str) -> usize {
    get(http, addr, "/v2/apps/ha")
        .await
        .and_then(|v| v["app"]["tasksRunning"].as_u64())
        .unwrap_or(0) as usize
}

async fn wait_for<T, F, Fut>(limit: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match pacer_e2e::poll(limit, check).await {
        Some(v) => v,
        None => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

#[tokio::test]
async fn killing_the_leader_hands_over_within_the_lease_ttl() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = pacer_e2e::write_admin_token(dir.path());
    let ca = pacer_e2e::make_ca(&pacer_bin(), dir.path());
    pacer_e2e::issue_cert(&pacer_bin(), dir.path(), "server", "127.0.0.1");
    let etcd = pacer_e2e::secure_etcd(&pacer_bin(), dir.path()).await;
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| server(&etcd.endpoint, dir.path(), i))
        .collect();
    let mut agent = Command::new(pacer_bin())
        .args(["agent", "--etcd", &etcd.endpoint, "--node-name", "ha-sim"])
        .args(pacer_e2e::etcd_flags(dir.path(), "pacer-server"))
        .args(["--simulate", "2"])
        .args([
            "--cpus", "4", "--mem", "4096", "--disk", "100", "--ports", "1-100",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("agent.log")).expect("log"))
        .spawn()
        .expect("agent");
    let http = pacer_e2e::client_with(&ca, &token);
    let addrs: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
    // Elected: the replica named as leader says so itself.
    let leader = wait_for(Duration::from_secs(30), "a leader", || async {
        let answer = get(&http, &addrs[0], "/v2/leader").await?;
        let leader = answer["leader"].as_str()?.to_string();
        let info = get(&http, &leader, "/v2/info").await?;
        (addrs.contains(&leader) && info["elected"] == json!(true)).then_some(leader)
    })
    .await;
    // Every replica names the same leader; only the leader says it is elected.
    for addr in &addrs {
        let info = wait_for(Duration::from_secs(10), "info", || {
            get(&http, addr, "/v2/info")
        })
        .await;
        assert_eq!(info["leader"], leader.as_str(), "{addr}");
        assert_eq!(info["elected"], json!(addr == &leader), "{addr}");
    }
    let standby = addrs
        .iter()
        .find(|a| **a != leader)
        .expect("a standby")
        .clone();
    let app = json!({"id": "/ha", "cmd": "sleep 1000", "instances": 4, "cpus": 0.5, "mem": 64});
    let resp = http
        .post(format!("https://{standby}/v2/apps"))
        .json(&app)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 201, "any replica takes writes");
    wait_for(
        Duration::from_secs(30),
        "4 running, deployment done",
        || async {
            let done = get(&http, &standby, "/v2/deployments")
                .await
                .is_some_and(|d| d.as_array().is_some_and(Vec::is_empty));
            (running(&http, &standby).await == 4 && done).then_some(())
        },
    )
    .await;

    // kill -9 the leader, then ask for more at once: the next leader must do it.
    let index = replicas
        .iter()
        .position(|r| r.addr == leader)
        .expect("leader replica");
    let killed_at = Instant::now();
    let mut old = replicas.remove(index);
    old.process.kill().expect("kill -9");
    let _ = old.process.wait();
    let resp = http
        .put(format!("https://{standby}/v2/apps/ha"))
        .json(&json!({"instances": 6}))
        .send()
        .await
        .expect("scale");
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    let survivors: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
    let new_leader = wait_for(Duration::from_secs(TTL + 10), "a new leader", || async {
        let answer = get(&http, &survivors[0], "/v2/leader").await?;
        let l = answer["leader"].as_str()?.to_string();
        let info = get(&http, &l, "/v2/info").await?;
        (survivors.contains(&l) && info["elected"] == json!(true)).then_some(l)
    })
    .await;
    let takeover = killed_at.elapsed();
    eprintln!("takeover by {new_leader} {takeover:?} after kill -9 (lease TTL {TTL} s)");
    assert!(
        takeover <= Duration::from_secs(TTL + 1),
        "takeover took {takeover:?}, more than TTL + 1 s"
    );
    wait_for(
        Duration::from_secs(30),
        "6 running under the new leader",
        || async { (running(&http, &new_leader).await == 6).then_some(()) },
    )
    .await;
    let _ = agent.kill();
    let _ = agent.wait();
}
