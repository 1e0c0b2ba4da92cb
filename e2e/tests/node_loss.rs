//! Node loss: an agent frozen (SIGSTOP, as a partition would) past its lease: its tasks become
//! TASK_UNREACHABLE and are replaced elsewhere after `inactiveAfterSeconds`; when it comes back
//! (SIGCONT) it stops the replaced ones and the app runs exactly its instances.

use std::time::{Duration, Instant};

use pacer_crd::TaskState;
use pacer_e2e::Cluster;

const TTL: u64 = 2;
const INACTIVE: u64 = 2;

#[tokio::test]
async fn a_lost_node_s_tasks_are_replaced_and_stopped_when_it_returns() {
    let mut c = Cluster::start("lost", 0.01, 1.0, (32680, 32681)).await;
    let flags = ["--lease-ttl", "2"];
    c.add_simulated_with("a", 1, 4.0, 1024.0, &flags).await;
    c.add_simulated_with("b", 1, 4.0, 1024.0, &flags).await;
    // Room for the replacement: UNIQUE hostname keeps it off b.
    c.add_simulated_with("c", 1, 4.0, 1024.0, &flags).await;
    let app = format!(
        "apiVersion: pacer.io/v1\nkind: App\nmetadata: {{name: keep}}\nspec:\n  cmd: sleep 1000\n  instances: 2\n  cpus: 1\n  mem: 64\n  constraints: [[hostname, UNIQUE]]\n  unreachableStrategy: {{inactiveAfterSeconds: {INACTIVE}, expungeAfterSeconds: 600}}\n"
    );
    let out = c.apply("keep.yaml", &app);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.eventually(
        Duration::from_secs(30),
        "2 running, on two nodes",
        || async { (c.running("keep").await.len() == 2).then_some(()) },
    )
    .await;
    let node_a = format!("{}-a-0001", c.node);
    let lost_task = c
        .running("keep")
        .await
        .into_iter()
        .find(|t| t.spec.node == node_a)
        .and_then(|t| t.metadata.name)
        .expect("a task on node a");

    c.signal_agent("a", "STOP");
    let frozen = Instant::now();
    let unreachable = c
        .eventually(Duration::from_secs(30), "the task unreachable", || async {
            let t = c
                .tasks()
                .await
                .into_iter()
                .find(|t| t.metadata.name.as_deref() == Some(&lost_task))?;
            (t.state() == TaskState::Unreachable).then_some(frozen.elapsed())
        })
        .await;
    eprintln!("TASK_UNREACHABLE {unreachable:?} after the agent froze (lease TTL {TTL} s)");
    let replaced = c
        .eventually(Duration::from_secs(30), "a replacement running", || async {
            let tasks = c.tasks().await;
            let lost = tasks
                .iter()
                .find(|t| t.metadata.name.as_deref() == Some(&lost_task))?;
            let others = tasks
                .iter()
                .filter(|t| {
                    t.spec.app_id == "keep" && t.metadata.name.as_deref() != Some(&lost_task)
                })
                .filter(|t| t.state() == TaskState::Running)
                .count();
            (lost.spec.kill && others == 2).then_some(frozen.elapsed())
        })
        .await;
    eprintln!(
        "replaced {replaced:?} after the agent froze (TTL {TTL} s + inactiveAfterSeconds {INACTIVE} s)"
    );
    assert!(
        replaced <= Duration::from_secs(TTL + INACTIVE + 5),
        "{replaced:?}"
    );

    // Heal: the agent comes back, stops the replaced task, nothing runs twice.
    c.signal_agent("a", "CONT");
    c.eventually(
        Duration::from_secs(30),
        "the replaced task gone",
        || async {
            let tasks = c.tasks().await;
            let gone = !tasks
                .iter()
                .any(|t| t.metadata.name.as_deref() == Some(&lost_task));
            let live = tasks
                .iter()
                .filter(|t| t.spec.app_id == "keep" && !t.state().is_terminal())
                .count();
            (gone && live == 2).then_some(())
        },
    )
    .await;
    let nodes = c.nodes().await;
    assert!(
        nodes
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(node_a.as_str())),
        "a registered again"
    );
}
