//! Several hosts on a private Docker network (3 etcd members, 3 servers, 3 agents): an agent
//! cut off longer than its lease has its tasks replaced and, once back, stops the replaced
//! ones; the leader killed hands over; an etcd member killed changes nothing visible.

use std::time::{Duration, Instant};

use pacer_e2e::IMAGE;
use pacer_e2e::testbed::{TTL, TestBed};
use reqwest::Method;
use serde_json::json;

const INACTIVE: u64 = 2;

async fn running(bed: &TestBed, server: &str) -> usize {
    bed.get(server, "/v2/apps/spread")
        .await
        .and_then(|v| v["app"]["tasksRunning"].as_u64())
        .unwrap_or(0) as usize
}

#[tokio::test]
async fn partition_leader_loss_and_etcd_member_loss_on_several_hosts() {
    let bed = TestBed::start("multi", 3, 3).await;
    let server = bed.any_server().await.expect("a server answers");
    let app = json!({
        "id": "/spread", "cmd": "exec sleep 1000", "instances": 3, "cpus": 0.1, "mem": 16,
        "container": {"type": "DOCKER", "docker": {"image": IMAGE}},
        "unreachableStrategy": {"inactiveAfterSeconds": INACTIVE, "expungeAfterSeconds": 600},
    });
    let (code, body) = bed.call(&server, Method::POST, "/v2/apps", Some(app)).await;
    assert_eq!(code, 201, "{body}");
    bed.eventually(
        Duration::from_secs(60),
        "3 running, one per agent",
        || async {
            let on: std::collections::BTreeSet<String> = bed
                .containers_of("spread")
                .into_iter()
                .map(|(_, n)| n)
                .collect();
            (running(&bed, &server).await == 3 && on.len() == 3).then_some(())
        },
    )
    .await;

    // Partition agent a1 past its lease: its task is replaced on a2/a3.
    let cut = bed.agents[0].clone();
    let before = bed.containers_of("spread");
    let (old_container, _) = before
        .iter()
        .find(|(_, n)| *n == cut)
        .cloned()
        .expect("a1's container");
    bed.disconnect(&cut);
    let t0 = Instant::now();
    bed.eventually(Duration::from_secs(30), "a replacement running", || async {
        let elsewhere = bed
            .containers_of("spread")
            .iter()
            .filter(|(_, n)| *n != cut)
            .count();
        (elsewhere == 3).then_some(())
    })
    .await;
    let replaced = t0.elapsed();
    eprintln!(
        "replaced {replaced:?} after the cut (TTL {TTL} s + inactiveAfterSeconds {INACTIVE} s)"
    );
    assert!(
        replaced <= Duration::from_secs(TTL + INACTIVE + 5),
        "{replaced:?}"
    );

    // Heal: the agent stops the replaced task; exactly 3 run.
    bed.connect(&cut);
    bed.eventually(Duration::from_secs(60), "the duplicate gone", || async {
        let now = bed.containers_of("spread");
        let dup = now.iter().any(|(id, _)| *id == old_container);
        (!dup && now.len() == 3 && running(&bed, &server).await == 3).then_some(())
    })
    .await;

    // Kill -9 the leader's host: a standby leads within TTL + 1 s and scales the app.
    let leader = bed.leader().await.expect("a leader");
    bed.kill(&leader);
    let t0 = Instant::now();
    let new_leader = bed
        .eventually(Duration::from_secs(20), "a new leader", || async {
            bed.leader().await.filter(|l| *l != leader)
        })
        .await;
    let takeover = t0.elapsed();
    eprintln!("takeover by {new_leader} {takeover:?} after kill -9 of {leader}");
    assert!(takeover <= Duration::from_secs(TTL + 2), "{takeover:?}");

    // Kill one etcd member: writes and reads go on.
    bed.kill(&bed.etcd[0]);
    let (code, body) = bed
        .call(
            &new_leader,
            Method::PUT,
            "/v2/apps/spread",
            Some(json!({"instances": 4})),
        )
        .await;
    assert!((200..300).contains(&code), "{code} {body}");
    bed.eventually(
        Duration::from_secs(60),
        "4 running with one etcd member down",
        || async {
            (running(&bed, &new_leader).await == 4 && bed.containers_of("spread").len() == 4)
                .then_some(())
        },
    )
    .await;
}
