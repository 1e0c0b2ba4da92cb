//! Agent recovery: kill -9 of an agent running 20 containers and 3 processes, then the same
//! agent again: every task is re-adopted (same container ids, same pids), none restarts.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use pacer_crd::TaskState;
use pacer_e2e::{Cluster, IMAGE};

const PORTS: (u16, u16) = (32690, 32699);

/// task id -> (container id or pid, pid)
async fn running_on(c: &Cluster, node: &str) -> BTreeMap<String, (String, u32)> {
    let mut out = BTreeMap::new();
    for t in c.tasks().await {
        if t.spec.node != node || t.state() != TaskState::Running {
            continue;
        }
        let s = t.status.clone().unwrap_or_default();
        let pid = match &s.container_id {
            Some(id) if !t.spec.app.is_process() => docker_pid(id),
            _ => s.pid.unwrap_or(0),
        };
        let id = s.container_id.clone().unwrap_or_default();
        out.insert(t.metadata.name.clone().unwrap_or_default(), (id, pid));
    }
    out
}

fn docker_pid(container: &str) -> u32 {
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Pid}}", container])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_crashed_agent_readopts_its_containers_and_processes() {
    let mut c = Cluster::start("recover", 0.05, 16.0, (32688, 32689)).await;
    let node = c.add_agent("r", "", PORTS).await;
    // The apps listen on nothing, so they ask for no ports (23 tasks, a node lending 10).
    let apps = format!(
        "apiVersion: pacer.io/v1\nkind: App\nmetadata: {{name: boxes}}\nspec:\n  instances: 20\n  cpus: 0.1\n  mem: 16\n  cmd: exec sleep 1000\n  portDefinitions: []\n  container: {{docker: {{image: {IMAGE}}}}}\n---\napiVersion: pacer.io/v1\nkind: App\nmetadata: {{name: procs}}\nspec:\n  instances: 3\n  cpus: 0.1\n  mem: 16\n  cmd: exec sleep 1000\n  portDefinitions: []\n"
    );
    let out = c.apply("apps.yaml", &apps);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = c
        .eventually(Duration::from_secs(120), "23 running", || async {
            let now = running_on(&c, &node).await;
            (now.len() == 23 && now.values().all(|(_, pid)| *pid > 0)).then_some(now)
        })
        .await;

    c.crash_and_restart_agent("r", "", PORTS);
    // The new agent re-registers and reports every task running again, from what it found.
    let after = c
        .eventually(Duration::from_secs(60), "23 tasks re-attached", || async {
            let tasks = c.tasks().await;
            let recovered = tasks
                .iter()
                .filter(|t| t.spec.node == node)
                .filter(|t| t.status.as_ref().is_some_and(|s| s.recovered_at.is_some()))
                .count();
            let now = running_on(&c, &node).await;
            (recovered == 23 && now.len() == 23).then_some(now)
        })
        .await;
    assert_eq!(
        after, before,
        "same tasks, same containers, same pids: nothing restarted"
    );
    for (task, (_, pid)) in &after {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{task}: pid {pid} alive"
        );
    }
    let restarted = c
        .tasks()
        .await
        .iter()
        .filter(|t| t.spec.node == node && t.state().is_terminal())
        .count();
    assert_eq!(restarted, 0);
    assert_eq!(
        c.all_containers().len(),
        20,
        "no container added or left behind"
    );
}
