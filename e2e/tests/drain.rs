//! SIGTERM on an agent leaves its tasks running; `pacer node drain` moves them away first
//! (a new instance elsewhere, then the old one stops) and keeps the node empty.

use std::time::Duration;

use pacer_e2e::{Cluster, text, web_app};

#[tokio::test]
async fn sigterm_leaves_tasks_running_and_drain_moves_them_away() {
    let mut c = Cluster::start("drain", 0.05, 16.0, (32710, 32711)).await;
    let d1 = c.add_agent("d1", "", (32712, 32719)).await;
    let d2 = c.add_agent("d2", "", (32720, 32729)).await;
    let out = c.apply("web.yaml", &web_app("web", 2));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let running = c
        .eventually(Duration::from_secs(60), "one task per agent", || async {
            let r = c.running("web").await;
            let on = |n: &str| r.iter().filter(|t| t.spec.node == n).count();
            (on(&d1) == 1 && on(&d2) == 1).then_some(r)
        })
        .await;
    let on_d1 = running
        .iter()
        .find(|t| t.spec.node == d1)
        .cloned()
        .expect("a task on d1");

    // SIGTERM: the agent goes, its container stays.
    c.signal_agent("d1", "TERM");
    let id = on_d1
        .status
        .clone()
        .unwrap_or_default()
        .container_id
        .unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let state = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", &id])
        .output()
        .expect("docker inspect");
    assert_eq!(
        text(&state.stdout).trim(),
        "true",
        "SIGTERM on the agent left the container running"
    );
    c.crash_and_restart_agent("d1", "", (32712, 32719));

    // Drain d1: its task moves to d2 and the command waits until d1 is empty.
    let drained = c.pacer(&["node", "drain", &d1, "--timeout", "60"]);
    assert!(
        drained.status.success(),
        "{}{}",
        text(&drained.stdout),
        text(&drained.stderr)
    );
    assert!(
        text(&drained.stdout).contains("is empty"),
        "{}",
        text(&drained.stdout)
    );
    let after = c
        .eventually(Duration::from_secs(30), "2 running on d2", || async {
            let r = c.running("web").await;
            (r.len() == 2 && r.iter().all(|t| t.spec.node == d2)).then_some(r)
        })
        .await;
    assert!(after.iter().all(|t| t.metadata.name != on_d1.metadata.name));
    let nodes = text(&c.pacer(&["get", "nodes"]).stdout);
    let line = nodes
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{d1} ")))
        .unwrap_or_default();
    assert!(line.contains("Drained"), "{nodes}");
    // Nothing new goes there while drained; undrain lets it take tasks again.
    let out = c.pacer(&["scale", "app", "web", "3"]);
    assert!(out.status.success());
    c.eventually(Duration::from_secs(30), "3 running on d2", || async {
        let r = c.running("web").await;
        (r.len() == 3 && r.iter().all(|t| t.spec.node == d2)).then_some(())
    })
    .await;
    let out = c.pacer(&["node", "undrain", &d1]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let nodes = text(&c.pacer(&["get", "nodes"]).stdout);
    let line = nodes
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{d1} ")))
        .unwrap_or_default();
    assert!(line.contains("Ready"), "{nodes}");
}
