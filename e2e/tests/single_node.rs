//! A single node against the real Docker engine: apply, scale, delete, failures, bad input.

use std::collections::BTreeSet;
use std::time::Duration;

use pacer_crd::TaskState;
use pacer_e2e::{Cluster, IMAGE, web_app};

const LIMIT: Duration = Duration::from_secs(60);

fn ids(tasks: &[pacer_crd::Task]) -> BTreeSet<String> {
    tasks
        .iter()
        .filter_map(|t| t.metadata.name.clone())
        .collect()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn apply_three_runs_three_reachable_and_reapply_changes_nothing() {
    let c = Cluster::start("apply", 2.0, 1024.0, (32000, 32019)).await;
    let out = c.apply("web.yaml", &web_app("web", 3));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("app /web created"),
        "{}",
        stdout(&out)
    );

    let running = c
        .eventually(LIMIT, "3 running tasks", || async {
            Some(c.running("web").await).filter(|t| t.len() == 3)
        })
        .await;
    assert_eq!(c.containers(Some("web")).len(), 3, "one container per task");
    let mut ports = BTreeSet::new();
    for task in &running {
        let status = task.status.clone().unwrap_or_default();
        assert_eq!(status.host.as_deref(), Some("127.0.0.1"));
        assert!(status.container_id.is_some());
        let port = task.spec.host_ports[0];
        assert!(
            (32000..=32019).contains(&port),
            "host port {port} from the node's range"
        );
        ports.insert(port);
    }
    assert_eq!(ports.len(), 3, "distinct host ports");

    // The CLI lists them with host and ports; etcd holds readable JSON.
    let listed = stdout(&c.pacer(&["get", "tasks"]));
    assert_eq!(listed.matches("TASK_RUNNING").count(), 3, "{listed}");
    assert!(
        ports.iter().all(|p| listed.contains(&p.to_string())),
        "{listed}"
    );
    let admin = pacer_runtime::client::EtcdTls::in_dir(c.dir(), "root");
    let etcd = std::process::Command::new("etcdctl")
        .env("ETCDCTL_CACERT", &admin.ca)
        .env("ETCDCTL_CERT", &admin.cert)
        .env("ETCDCTL_KEY", &admin.key)
        .args([
            "--endpoints",
            &c.etcd_endpoint,
            "get",
            "--prefix",
            "/pacer/apps/",
            "--print-value-only",
        ])
        .output()
        .expect("etcdctl runs");
    let record: serde_json::Value =
        serde_json::from_slice(&etcd.stdout).expect("the app record is JSON");
    assert_eq!(record["spec"]["instances"], 3);

    // The port mapping answers on the host port with the task's own page.
    let task = &running[0];
    let url = format!("http://127.0.0.1:{}/", task.spec.host_ports[0]);
    let body = c
        .eventually(LIMIT, "the web server to answer", || async {
            let resp = reqwest::get(&url).await.ok()?;
            resp.text().await.ok()
        })
        .await;
    assert_eq!(
        body.trim(),
        format!(
            "hello from {}",
            task.metadata.name.as_deref().unwrap_or_default()
        )
    );

    // Applying the same file again writes nothing.
    let before = c.apps().await[0].metadata.resource_version.clone();
    let again = c.apply("web.yaml", &web_app("web", 3));
    assert!(
        stdout(&again).contains("app /web unchanged"),
        "{}",
        stdout(&again)
    );
    assert_eq!(c.apps().await[0].metadata.resource_version, before);
    assert_eq!(
        ids(&c.running("web").await),
        ids(&running),
        "no task was replaced"
    );
}

#[tokio::test]
async fn scale_up_then_down_kills_the_youngest() {
    let c = Cluster::start("scale", 2.0, 1024.0, (32020, 32039)).await;
    assert!(c.apply("web.yaml", &web_app("web", 3)).status.success());
    let first = c
        .eventually(LIMIT, "3 running", || async {
            Some(c.running("web").await).filter(|t| t.len() == 3)
        })
        .await;

    assert!(c.pacer(&["scale", "app", "/web", "5"]).status.success());
    let five = c
        .eventually(LIMIT, "5 running", || async {
            Some(c.running("web").await).filter(|t| t.len() == 5)
        })
        .await;
    assert!(
        ids(&first).is_subset(&ids(&five)),
        "scaling up keeps the running tasks"
    );

    assert!(c.pacer(&["scale", "app", "web", "1"]).status.success());
    let left = c
        .eventually(LIMIT, "1 task and 1 container left", || async {
            let tasks: Vec<_> = c
                .tasks()
                .await
                .into_iter()
                .filter(|t| t.spec.app_id == "web")
                .collect();
            (tasks.len() == 1 && c.containers(Some("web")).len() == 1).then_some(tasks)
        })
        .await;
    assert_eq!(left[0].state(), TaskState::Running);
    let survivor = left[0].metadata.name.clone().unwrap_or_default();
    assert!(
        ids(&first).contains(&survivor),
        "the survivor {survivor} is one of the oldest three"
    );
}

#[tokio::test]
async fn delete_leaves_no_container_and_no_task() {
    let c = Cluster::start("delete", 2.0, 1024.0, (32040, 32059)).await;
    assert!(c.apply("web.yaml", &web_app("web", 2)).status.success());
    c.eventually(LIMIT, "2 running", || async {
        Some(c.running("web").await).filter(|t| t.len() == 2)
    })
    .await;
    let out = c.pacer(&["delete", "app", "/web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.eventually(LIMIT, "no task and no container", || async {
        (c.tasks().await.is_empty() && c.containers(None).is_empty()).then_some(())
    })
    .await;
    assert!(c.apps().await.is_empty());
    let offer = &c.offers().await[0];
    assert_eq!(
        offer.spec.resources.cpus, 2.0,
        "all resources offered again"
    );
}

#[tokio::test]
async fn a_killed_container_is_replaced_by_a_new_task() {
    let c = Cluster::start("kill", 2.0, 1024.0, (32060, 32079)).await;
    assert!(c.apply("web.yaml", &web_app("web", 1)).status.success());
    let first = c
        .eventually(LIMIT, "1 running", || async {
            c.running("web").await.into_iter().next()
        })
        .await;
    let container = first
        .status
        .clone()
        .unwrap_or_default()
        .container_id
        .unwrap_or_default();
    let killed = std::process::Command::new("docker")
        .args(["kill", &container])
        .output()
        .expect("docker kill");
    assert!(killed.status.success());

    let old_id = first.metadata.name.clone().unwrap_or_default();
    let replacement = c
        .eventually(LIMIT, "a replacement task", || async {
            c.running("web")
                .await
                .into_iter()
                .find(|t| t.metadata.name.as_deref() != Some(old_id.as_str()))
        })
        .await;
    assert_ne!(
        replacement
            .status
            .unwrap_or_default()
            .container_id
            .as_deref(),
        Some(container.as_str())
    );
    c.eventually(LIMIT, "the dead task and container to go", || async {
        let tasks = c.tasks().await;
        (tasks.len() == 1 && c.containers(Some("web")).len() == 1).then_some(())
    })
    .await;
    let app = &c.apps().await[0];
    let failure = app
        .status
        .clone()
        .unwrap_or_default()
        .last_task_failure
        .expect("the failure is recorded");
    assert_eq!(failure.task_id, old_id);
    assert_eq!(failure.state, "TASK_FAILED");
}

#[tokio::test]
async fn more_than_the_node_holds_stays_pending_with_a_reason() {
    let c = Cluster::start("pending", 2.0, 1024.0, (32080, 32099)).await;
    let manifest = web_app("big", 3).replace("cpus: 0.1", "cpus: 0.8");
    assert!(c.apply("big.yaml", &manifest).status.success());
    c.eventually(LIMIT, "2 running", || async {
        Some(c.running("big").await).filter(|t| t.len() == 2)
    })
    .await;
    let status = c
        .eventually(LIMIT, "the pending reason", || async {
            let app = c.apps().await.into_iter().next()?;
            app.status
                .filter(|s| s.tasks_pending == 1 && s.message.is_some())
        })
        .await;
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains(&c.node) && message.contains("cpus: 0.8 wanted"),
        "{message}"
    );
    let tasks = c.tasks().await;
    assert_eq!(tasks.len(), 2, "nothing is overcommitted");
    let used: f64 = tasks.iter().map(|t| t.spec.resources.cpus).sum();
    assert!(used <= 2.0 + 1e-9);
    assert!(c.offers().await[0].spec.resources.cpus >= 0.0);
    let describe = stdout(&c.pacer(&["describe", "app", "big"]));
    assert!(
        describe.contains("1 pending") && describe.contains("cpus: 0.8 wanted"),
        "{describe}"
    );
}

#[tokio::test]
async fn a_command_app_runs_as_a_process() {
    let c = Cluster::start("process", 2.0, 1024.0, (32100, 32119)).await;
    let manifest = r#"apiVersion: pacer.io/v1
kind: App
metadata: {name: /tools/ticker}
spec:
  instances: 1
  cpus: 0.1
  mem: 16
  portDefinitions: [{port: 0}]
  cmd: echo "port $PORT0 task $MESOS_TASK_ID"; exec sleep 600
"#;
    let out = c.apply("ticker.yaml", manifest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let task = c
        .eventually(LIMIT, "the process task to run", || async {
            c.running("tools_ticker").await.into_iter().next()
        })
        .await;
    let status = task.status.clone().unwrap_or_default();
    let pid = status.pid.expect("a process task reports its pid");
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} runs"
    );
    assert!(
        c.containers(None).is_empty(),
        "no container for a command task"
    );

    let id = task.metadata.name.clone().unwrap_or_default();
    let expected = format!("port {} task {id}", task.spec.host_ports[0]);
    c.eventually(LIMIT, "the task's output in pacer logs", || async {
        let out = c.pacer(&["logs", &id]);
        stdout(&out).contains(&expected).then_some(())
    })
    .await;

    assert!(
        c.pacer(&["delete", "app", "/tools/ticker"])
            .status
            .success()
    );
    c.eventually(LIMIT, "the process to be gone", || async {
        let gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
        (gone && c.tasks().await.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_missing_image_fails_the_task_with_a_message() {
    let c = Cluster::start("noimage", 2.0, 1024.0, (32120, 32139)).await;
    let manifest = web_app("ghost", 1).replace(IMAGE, "pacer/does-not-exist:1");
    assert!(c.apply("ghost.yaml", &manifest).status.success());
    let failure = c
        .eventually(LIMIT, "the failure to be recorded", || async {
            c.apps().await.into_iter().next()?.status?.last_task_failure
        })
        .await;
    assert_eq!(failure.state, "TASK_FAILED");
    assert!(
        failure.message.contains("pacer/does-not-exist:1")
            && failure.message.contains("not available"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn bad_manifests_fail_with_the_field_and_store_nothing() {
    let c = Cluster::start("bad", 2.0, 1024.0, (32140, 32159)).await;
    let good = web_app("web", 1);
    let cases = [
        (
            "wrong-type.yaml",
            good.replace("instances: 1", "instances: three"),
            "spec.instances",
        ),
        (
            "negative.yaml",
            good.replace("instances: 1", "instances: -2"),
            "spec.instances: must be from 0 to 1000000",
        ),
        (
            "unknown-kind.yaml",
            good.replace("kind: App", "kind: Pod"),
            "kind: unknown kind 'Pod'",
        ),
        (
            "no-image.yaml",
            good.replace(&format!("image: {IMAGE}"), "forcePullImage: false"),
            "spec.container.docker.image",
        ),
        (
            "two-docs.yaml",
            format!(
                "{}---\n{}",
                web_app("fine", 1),
                good.replace("cpus: 0.1", "cpus: -1")
            ),
            "spec.cpus",
        ),
    ];
    for (file, text, expected) in cases {
        let out = c.apply(file, &text);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file} was accepted");
        assert!(
            stderr.contains(expected),
            "{file}: expected '{expected}' in:\n{stderr}"
        );
    }
    assert!(c.apps().await.is_empty(), "nothing was stored");

    // The server checks as well: a body sent past the CLI is refused with the field path.
    let body = serde_json::json!({"apiVersion": "pacer.io/v1", "kind": "App", "metadata": {"name": "web"}, "spec": {"cmd": "x", "instances": -1}});
    let resp = c
        .http()
        .put(format!("{}/apis/pacer.io/v1/apps/web", c.server))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(err["details"][0]["path"], "spec.instances");
    assert!(c.apps().await.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn a_unique_hostname_constraint_leaves_the_second_instance_pending_with_the_reason() {
    let c = Cluster::start("unique", 2.0, 1024.0, (32340, 32359)).await;
    let manifest = web_app("solo", 2).replace(
        "  instances: 2\n",
        "  instances: 2\n  constraints: [[hostname, UNIQUE]]\n",
    );
    assert!(c.apply("solo.yaml", &manifest).status.success());
    c.eventually(LIMIT, "1 running", || async {
        (c.running("solo").await.len() == 1).then_some(())
    })
    .await;
    let message = c
        .eventually(LIMIT, "the pending reason", || async {
            let status = c.apps().await.into_iter().next()?.status?;
            status.message.filter(|_| status.tasks_pending == 1)
        })
        .await;
    assert!(
        message.contains("hostname UNIQUE") && message.contains(&format!("hostname={}", c.node)),
        "{message}"
    );
    assert_eq!(c.tasks().await.len(), 1, "the constraint holds");
}
