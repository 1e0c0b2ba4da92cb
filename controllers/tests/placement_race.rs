//! Many frameworks racing for the same offers on a real etcd: every placement compares the
//! offers it shrinks, so no host port and no cpu is ever booked twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pacer_controllers::Cluster;
use pacer_controllers::accept::{self, Placed};
use pacer_crd::{AppSpec, Node, NodeSpec, PortRange, Resources, Task, TaskSpec};
use pacer_runtime::testing::{TestEtcd, eventually};
use pacer_runtime::{Api, Client};
use tokio_util::sync::CancellationToken;

const NODES: usize = 2;
const PORTS_PER_NODE: u16 = 20;
const FRAMEWORKS: usize = 8;
const EACH_WANTS: usize = 8;

fn node(i: usize) -> Node {
    let begin = 41000 + i as u16 * 100;
    let spec = NodeSpec {
        hostname: format!("race-{i}"),
        address: "simulated".into(),
        capacity: Resources::new(100.0, 100_000.0, 1000.0),
        ports: vec![PortRange {
            begin,
            end: begin + PORTS_PER_NODE - 1,
        }],
        attributes: BTreeMap::from([("hostname".to_string(), format!("race-{i}"))]),
        reservations: BTreeMap::new(),
    };
    let mut n = Node::new(&format!("race-{i}"), spec);
    pacer_runtime::api::prepare_new(&mut n);
    n
}

/// One framework: places its instances one transaction at a time until it has them all or
/// the cluster's ports are all taken, retrying lost races.
async fn framework(id: usize, client: Client, token: CancellationToken) -> (usize, usize) {
    let cluster = Cluster::watch(&client, &token);
    // A placer of its own: each framework is a scheduler apart from the others.
    let placer = accept::Placer::default();
    let tasks: Api<Task> = Api::new(&client);
    let spec: AppSpec = serde_json::from_value(serde_json::json!({
        "cmd": "sleep 1000", "cpus": 0.5, "mem": 16, "portDefinitions": [{"port": 0}]
    }))
    .expect("spec");
    let (mut placed, mut conflicts) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while placed < EACH_WANTS && Instant::now() < deadline {
        let build = |a: &pacer_controllers::placement::Assignment| {
            let task_spec = TaskSpec {
                app_id: format!("fw{id}"),
                app_version: "v1".into(),
                node: a.node.clone(),
                resources: spec.resources(),
                host_ports: a.host_ports.clone(),
                kill: false,
                app: spec.clone(),
                run: None,
            };
            let mut t = Task::new(&format!("fw{id}.{}", uuid::Uuid::new_v4()), task_spec);
            pacer_runtime::api::prepare_new(&mut t);
            t
        };
        let request = accept::Request {
            spec: &spec,
            live: &[],
            missing: 1,
            build,
            owner: pacer_runtime::Txn::new(),
        };
        match placer.accept(&cluster, request).await {
            Ok(Placed::Done { plan, .. }) if plan.unplaced == 0 => placed += 1,
            Ok(Placed::Conflict) => conflicts += 1,
            Ok(Placed::Done { .. }) | Err(_) => {
                // No room in this framework's view: done if etcd agrees every port is taken.
                let all = tasks.list("").await.map(|l| l.items.len()).unwrap_or(0);
                if all >= NODES * PORTS_PER_NODE as usize {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    (placed, conflicts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_frameworks_never_double_book() {
    let etcd = TestEtcd::start().await;
    let nodes: Api<Node> = Api::new(&etcd.client);
    for i in 0..NODES {
        nodes.create(&node(i)).await.expect("node");
    }
    let token = CancellationToken::new();
    let allocator = Cluster::watch(&etcd.client, &token);
    tokio::spawn(pacer_controllers::allocator::run(allocator, token.clone()));

    let mut racers = Vec::new();
    for id in 0..FRAMEWORKS {
        racers.push(tokio::spawn(framework(
            id,
            etcd.client.clone(),
            token.clone(),
        )));
    }
    let mut placed = 0;
    let mut conflicts = 0;
    for r in racers {
        let (p, c) = r.await.expect("framework");
        placed += p;
        conflicts += c;
    }
    let capacity = NODES * PORTS_PER_NODE as usize;
    let tasks: Api<Task> = Api::new(&etcd.client);
    let all = Arc::new(tasks.list("").await.expect("list").items);
    assert_eq!(placed, all.len(), "every acknowledged placement is stored");
    assert_eq!(all.len(), capacity, "the ports are all used, none twice");
    let mut seen = std::collections::HashSet::new();
    for t in all.iter() {
        let range = node(t.spec.node.trim_start_matches("race-").parse().unwrap())
            .spec
            .ports[0];
        for p in &t.spec.host_ports {
            assert!(range.contains(*p), "{p} outside {range:?}");
            assert!(
                seen.insert((t.spec.node.clone(), *p)),
                "port {p} on {} booked twice",
                t.spec.node
            );
        }
    }
    eprintln!(
        "{placed} placements by {FRAMEWORKS} racing frameworks, {conflicts} lost races retried"
    );
    assert!(conflicts > 0, "the frameworks did race");
    // The allocator's offers agree: nothing left on either node.
    let offers: Api<pacer_crd::Offer> = Api::new(&etcd.client);
    eventually(
        Duration::from_secs(10),
        "offers show no free port",
        || async {
            offers.list("").await.is_ok_and(|l| {
                l.items.len() == NODES && l.items.iter().all(|o| o.spec.ports.is_empty())
            })
        },
    )
    .await;
    token.cancel();
}
