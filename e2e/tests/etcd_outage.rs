//! etcd fully down: running containers keep running, agents and controllers retry with
//! backoff, and everything resumes without help when etcd returns.

use std::time::Duration;

use pacer_e2e::{Cluster, web_app};

#[tokio::test]
async fn running_work_survives_an_etcd_outage_and_everything_resumes() {
    let mut c = Cluster::start("outage", 2.0, 1024.0, (32700, 32709)).await;
    let out = c.apply("web.yaml", &web_app("web", 2));
    assert!(out.status.success());
    let before = c
        .eventually(Duration::from_secs(60), "2 running", || async {
            let running = c.running("web").await;
            (running.len() == 2).then_some(running)
        })
        .await;
    let containers = c.containers(Some("web"));
    assert_eq!(containers.len(), 2);

    // 8 s without etcd: longer than the node's lease would last if etcd counted it.
    c.etcd_outage(Duration::from_secs(8)).await;
    let running_now = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", "label=pacer.io/app=web"])
        .output()
        .expect("docker ps");
    assert_eq!(
        String::from_utf8_lossy(&running_now.stdout).lines().count(),
        2,
        "containers kept running while etcd was down"
    );

    // Back: the same tasks run, and new work is done (the API, controllers and agent resumed).
    let out = c.pacer(&["scale", "app", "web", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = c
        .eventually(
            Duration::from_secs(60),
            "3 running after the outage",
            || async {
                let running = c.running("web").await;
                (running.len() == 3).then_some(running)
            },
        )
        .await;
    for task in &before {
        assert!(
            after.iter().any(|t| t.metadata.name == task.metadata.name),
            "{:?} kept running through the outage",
            task.metadata.name
        );
    }
}
