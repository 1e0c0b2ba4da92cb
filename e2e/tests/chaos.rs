//! The chaos suite: rounds of one random fault on the multi-host test bed (kill the leader's
//! host, kill or restart an agent's host, partition an agent then heal, kill an etcd member, restart
//! all of etcd) under a steady workload (apps scaled and upgraded every round). After each
//! round, with a deadline: every acknowledged write is there, every app runs its instances,
//! every running container is known to etcd and every RUNNING task has its container, and no
//! app ever runs more containers than its upgrade strategy allows (plus unreachable ones).
//!
//! `PACER_CHAOS_ROUNDS` rounds (5 by default, `make chaos` runs 30); `PACER_CHAOS_SEED`
//! replays a run. Prints rounds survived and the time to re-converge (p50, p99).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pacer_e2e::IMAGE;
use pacer_e2e::testbed::{TTL, TestBed};
use reqwest::Method;
use serde_json::{Value, json};

const APPS: [&str; 3] = ["alpha", "beta", "gamma"];

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillLeader,
    KillAgent,
    RestartAgent,
    PartitionAgent,
    KillEtcdMember,
    RestartEtcd,
}

const FAULTS: [Fault; 6] = [
    Fault::KillLeader,
    Fault::KillAgent,
    Fault::RestartAgent,
    Fault::PartitionAgent,
    Fault::KillEtcdMember,
    Fault::RestartEtcd,
];

/// What was acknowledged for each app: instances and the version marker in its env.
type Expected = BTreeMap<String, (u64, u64)>;

fn app_body(name: &str, instances: u64, version: u64) -> Value {
    json!({
        "id": format!("/{name}"), "cmd": "exec sleep 100000", "instances": instances,
        "cpus": 0.1, "mem": 16, "env": {"VERSION": version.to_string()},
        "container": {"type": "DOCKER", "docker": {"image": IMAGE}},
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.5},
        "unreachableStrategy": {"inactiveAfterSeconds": 2, "expungeAfterSeconds": 600},
        "taskKillGracePeriodSeconds": 1,
    })
}

/// Writes through any server that answers, retrying until one acknowledges (a write that got
/// no answer is retried; only acknowledged ones are expected to survive).
async fn write(bed: &TestBed, name: &str, instances: u64, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for server in &bed.servers {
            let path = format!("/v2/apps/{name}?force=true");
            let (code, _) = bed
                .call(
                    server,
                    Method::PUT,
                    &path,
                    Some(app_body(name, instances, version)),
                )
                .await;
            if (200..300).contains(&code) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no server acknowledged a write to {name}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `None` while the cluster has not converged; `Err` when an invariant is broken.
async fn check(bed: &TestBed, expected: &Expected) -> Result<Option<()>, String> {
    let Some(server) = bed.any_server().await else {
        return Ok(None);
    };
    let Some(tasks) = bed.get(&server, "/apis/pacer.io/v1/tasks").await else {
        return Ok(None);
    };
    let tasks = tasks["items"].as_array().cloned().unwrap_or_default();
    let mut converged = true;
    for (name, (instances, version)) in expected {
        let Some(app) = bed.get(&server, &format!("/v2/apps/{name}")).await else {
            return Ok(None);
        };
        let app = &app["app"];
        let stored = (
            app["instances"].as_u64().unwrap_or(u64::MAX),
            app["env"]["VERSION"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX),
        );
        if stored != (*instances, *version) {
            return Err(format!(
                "{name}: acknowledged {instances} x v{version}, stored {stored:?}"
            ));
        }
        let containers = bed.containers_of(name);
        let unreachable = tasks
            .iter()
            .filter(|t| t["spec"]["appId"] == name.as_str())
            .filter(|t| t["status"]["state"] == "TASK_UNREACHABLE")
            .count() as u64;
        // maximumOverCapacity 0.5: at most 1.5 x instances (rounded up), beyond unreachable ones.
        let allowed = instances + instances.div_ceil(2) + unreachable;
        if containers.len() as u64 > allowed {
            return Err(format!(
                "{name}: {} containers run, {allowed} allowed",
                containers.len()
            ));
        }
        let running_current = tasks
            .iter()
            .filter(|t| t["spec"]["appId"] == name.as_str())
            .filter(|t| t["status"]["state"] == "TASK_RUNNING")
            .filter(|t| t["spec"]["app"]["env"]["VERSION"] == version.to_string().as_str())
            .count() as u64;
        let live = tasks
            .iter()
            .filter(|t| t["spec"]["appId"] == name.as_str())
            .filter(|t| {
                !matches!(
                    t["status"]["state"].as_str(),
                    Some("TASK_FINISHED" | "TASK_FAILED" | "TASK_KILLED")
                )
            })
            .count() as u64;
        converged &= running_current == *instances
            && live == *instances
            && containers.len() as u64 == *instances;
    }
    if !converged {
        return Ok(None);
    }
    // Once converged: every running container is a RUNNING task in etcd, and back.
    let running_ids: Vec<String> = APPS
        .iter()
        .flat_map(|a| bed.containers_of(a))
        .map(|(id, _)| id)
        .collect();
    for t in tasks
        .iter()
        .filter(|t| t["status"]["state"] == "TASK_RUNNING")
    {
        let id = t["status"]["containerId"].as_str().unwrap_or_default();
        if !running_ids.iter().any(|c| id.starts_with(c.as_str())) {
            let name = t["metadata"]["name"].as_str().unwrap_or_default();
            let out = std::process::Command::new("docker")
                .args([
                    "ps",
                    "-a",
                    "--filter",
                    &format!("label=pacer.io/task={name}"),
                ])
                .args(["--format", "{{.ID}} {{.Status}} {{.Names}}"])
                .output()
                .expect("docker ps");
            return Err(format!(
                "task {name} ({}, {id}) is RUNNING without a container; its containers: {}",
                t["spec"]["node"],
                String::from_utf8_lossy(&out.stdout).trim()
            ));
        }
    }
    for c in &running_ids {
        let known = tasks.iter().any(|t| {
            t["status"]["containerId"]
                .as_str()
                .is_some_and(|id| id.starts_with(c.as_str()))
        });
        if !known {
            return Err(format!("container {c} runs unknown to etcd"));
        }
    }
    Ok(Some(()))
}

async fn inject(bed: &TestBed, fault: Fault, rng: &mut fastrand::Rng) {
    match fault {
        Fault::KillLeader => {
            if let Some(leader) = bed.leader().await {
                bed.kill(&leader);
                tokio::time::sleep(Duration::from_secs(TTL + 1)).await;
                bed.start_again(&leader);
            }
        }
        Fault::KillAgent => {
            let agent = &bed.agents[rng.usize(..bed.agents.len())];
            bed.kill(agent);
            tokio::time::sleep(Duration::from_secs(1)).await;
            bed.start_again(agent);
        }
        Fault::RestartAgent => {
            // SIGTERM, then started again: a planned restart.
            let agent = &bed.agents[rng.usize(..bed.agents.len())];
            bed.restart(agent);
        }
        Fault::PartitionAgent => {
            let agent = &bed.agents[rng.usize(..bed.agents.len())];
            bed.disconnect(agent);
            tokio::time::sleep(Duration::from_secs(TTL + 3)).await;
            bed.connect(agent);
        }
        Fault::KillEtcdMember => {
            let member = &bed.etcd[rng.usize(..bed.etcd.len())];
            bed.kill(member);
            tokio::time::sleep(Duration::from_secs(2)).await;
            bed.start_again(member);
        }
        Fault::RestartEtcd => {
            for member in &bed.etcd {
                bed.kill(member);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            for member in &bed.etcd {
                bed.start_again(member);
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::test]
async fn chaos_rounds_keep_every_invariant() {
    let rounds: usize = std::env::var("PACER_CHAOS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("PACER_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64);
    eprintln!("chaos: {rounds} rounds, seed {seed} (PACER_CHAOS_SEED={seed} replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let bed = TestBed::start("chaos", 3, 3).await;
    let mut expected: Expected = BTreeMap::new();
    for name in APPS {
        write(&bed, name, 2, 1).await;
        expected.insert(name.to_string(), (2, 1));
    }
    let mut times = Vec::new();
    for round in 1..=rounds {
        // The workload: one app scaled, one upgraded.
        let scaled = APPS[rng.usize(..APPS.len())];
        let entry = expected.get_mut(scaled).expect("app");
        entry.0 = rng.u64(1..=4);
        let (i, v) = *entry;
        write(&bed, scaled, i, v).await;
        let upgraded = APPS[rng.usize(..APPS.len())];
        let entry = expected.get_mut(upgraded).expect("app");
        entry.1 += 1;
        let (i, v) = *entry;
        write(&bed, upgraded, i, v).await;

        let fault = FAULTS[rng.usize(..FAULTS.len())];
        inject(&bed, fault, &mut rng).await;
        let healed = Instant::now();
        let deadline = healed + Duration::from_secs(90);
        // A violation must hold for 5 s to count: the task list and the container list are
        // two reads, and a task can move between them.
        let mut suspect: Option<(String, Instant)> = None;
        loop {
            match check(&bed, &expected).await {
                Ok(Some(())) => break,
                Ok(None) => suspect = None,
                Err(broken) => match &suspect {
                    Some((same, since)) if *same == broken => assert!(
                        since.elapsed() < Duration::from_secs(5),
                        "round {round} ({fault:?}): invariant broken for 5 s: {broken}"
                    ),
                    _ => suspect = Some((broken, Instant::now())),
                },
            }
            assert!(
                Instant::now() < deadline,
                "round {round} ({fault:?}): not converged after 90 s; expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let took = healed.elapsed();
        eprintln!("round {round}: {fault:?}, re-converged in {took:.1?}");
        times.push(took);
    }
    times.sort();
    eprintln!(
        "chaos: {rounds} of {rounds} rounds survived; re-converge p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or_default()
    );
}
