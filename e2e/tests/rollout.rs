//! Rolling upgrades, health checks, launch backoff and dependencies on a real node. Invariants
//! are checked at every task change the watch reports, not at times.

use std::time::Duration;

use pacer_crd::meta::jiff::Timestamp;
use pacer_e2e::{Cluster, IMAGE, TaskWatch};

const LIMIT: Duration = Duration::from_secs(90);

/// An httpd app whose health check asks for `path`.
fn checked_app(
    name: &str,
    instances: i64,
    env: &str,
    path: &str,
    strategy: (f64, f64),
    grace: i64,
) -> String {
    format!(
        r#"apiVersion: pacer.io/v1
kind: App
metadata: {{name: {name}}}
spec:
  instances: {instances}
  cpus: 0.1
  mem: 16
  env: {{VERSION: "{env}"}}
  cmd: echo ok > /tmp/ok && exec httpd -f -p 8080 -h /tmp
  taskKillGracePeriodSeconds: 1
  upgradeStrategy: {{minimumHealthCapacity: {}, maximumOverCapacity: {}}}
  healthChecks:
    - {{protocol: HTTP, path: {path}, portIndex: 0, gracePeriodSeconds: {grace}, intervalSeconds: 1, timeoutSeconds: 1, maxConsecutiveFailures: 3}}
  container:
    docker: {{image: {IMAGE}}}
    portMappings: [{{containerPort: 8080, hostPort: 0}}]
  networks: [{{mode: container/bridge}}]
"#,
        strategy.0, strategy.1
    )
}

/// (healthy, live, new-version healthy, old-version live) for `app` at version `version`.
fn counts(w: &TaskWatch, app: &str, version: &str) -> (usize, usize, usize, usize) {
    let live = w.live(app);
    let healthy = live.iter().filter(|t| t.is_healthy()).count();
    let new_healthy = live
        .iter()
        .filter(|t| t.spec.app_version == version && t.is_healthy() && !t.spec.kill)
        .count();
    let old = live
        .iter()
        .filter(|t| t.spec.app_version != version)
        .count();
    (healthy, live.len(), new_healthy, old)
}

async fn current_version(c: &Cluster, app: &str) -> String {
    c.apps()
        .await
        .into_iter()
        .find(|a| a.metadata.name.as_deref() == Some(app))
        .map(|a| a.version().to_string())
        .unwrap_or_default()
}

async fn wait_healthy(c: &Cluster, w: &mut TaskWatch, app: &str, n: usize) {
    let version = current_version(c, app).await;
    while counts(w, app, &version).2 < n {
        w.next(LIMIT).await;
    }
}

async fn rolling_upgrade_keeps_bounds(strategy: (f64, f64), ports: (u16, u16), name: &str) {
    let c = Cluster::start(name, 2.0, 2048.0, ports).await;
    let n = 4;
    let mut w = c.watch_tasks().await;
    assert!(
        c.apply("v1.yaml", &checked_app("web", n, "1", "/ok", strategy, 10))
            .status
            .success()
    );
    wait_healthy(&c, &mut w, "web", n as usize).await;

    let bounds = pacer_controllers::rollout::Bounds::new(n as usize, strategy.0, strategy.1);
    assert!(
        c.apply("v2.yaml", &checked_app("web", n, "2", "/ok", strategy, 10))
            .status
            .success()
    );
    let version = current_version(&c, "web").await;
    let mut observations = 0;
    loop {
        let (healthy, live, new_healthy, old) = counts(&w, "web", &version);
        observations += 1;
        assert!(
            healthy >= bounds.min_healthy,
            "{strategy:?}: {healthy} healthy < {} at observation {observations}",
            bounds.min_healthy
        );
        if live > bounds.max_live {
            let seen: Vec<String> = w
                .live("web")
                .iter()
                .map(|t| {
                    format!(
                        "{} v={} kill={} {:?} healthy={}",
                        t.metadata.name.as_deref().unwrap_or_default(),
                        &t.spec.app_version[17..],
                        t.spec.kill,
                        t.state(),
                        t.is_healthy()
                    )
                })
                .collect();
            panic!(
                "{strategy:?}: {live} live > {} at observation {observations}:\n{}",
                bounds.max_live,
                seen.join("\n")
            );
        }
        if new_healthy == n as usize && old == 0 && live == n as usize {
            break;
        }
        w.next(LIMIT).await;
    }
    assert!(
        observations > 8,
        "the rollout was observed step by step ({observations} observations)"
    );
}

#[tokio::test]
async fn rolling_upgrade_1_0_and_0_0_keeps_bounds() {
    rolling_upgrade_keeps_bounds((1.0, 0.0), (32200, 32219), "roll10").await;
}

#[tokio::test]
async fn rolling_upgrade_0_5_and_0_5_keeps_bounds() {
    rolling_upgrade_keeps_bounds((0.5, 0.5), (32220, 32239), "roll55").await;
}

#[tokio::test]
async fn a_failing_new_version_stalls_with_a_reason_and_undo_restores() {
    let c = Cluster::start("stall", 2.0, 2048.0, (32240, 32259)).await;
    let mut w = c.watch_tasks().await;
    let strategy = (1.0, 0.5);
    assert!(
        c.apply("v1.yaml", &checked_app("web", 2, "1", "/ok", strategy, 2))
            .status
            .success()
    );
    wait_healthy(&c, &mut w, "web", 2).await;
    assert!(
        c.apply(
            "v2.yaml",
            &checked_app("web", 2, "2", "/missing", strategy, 2)
        )
        .status
        .success()
    );
    let bad = current_version(&c, "web").await;
    // Until the stall is reported, at least the old two stay healthy.
    loop {
        let (healthy, _, _, _) = counts(&w, "web", &bad);
        assert!(
            healthy >= 2,
            "healthy instances dropped below the minimum during a failing rollout"
        );
        let message = c
            .apps()
            .await
            .into_iter()
            .next()
            .and_then(|a| a.status?.message)
            .unwrap_or_default();
        if message.contains("fail their health check") {
            assert!(message.contains("404"), "{message}");
            break;
        }
        w.next(LIMIT).await;
    }
    let out = c.pacer(&["rollout", "undo", "web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = c.pacer(&["rollout", "status", "web", "--wait", "--timeout", "90"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let app = c.apps().await.remove(0);
    assert_eq!(
        app.spec.health_checks[0].path.as_deref(),
        Some("/ok"),
        "the old definition is back"
    );
    let live = c.tasks().await;
    assert!(
        live.iter()
            .all(|t| t.spec.app_version == app.version() && t.is_healthy()),
        "only healthy tasks of the restored version"
    );
}

#[tokio::test]
async fn an_instance_failing_its_health_check_is_replaced_in_time() {
    let c = Cluster::start("unhealthy", 2.0, 2048.0, (32260, 32279)).await;
    let mut w = c.watch_tasks().await;
    let manifest = checked_app("web", 1, "1", "/ok", (1.0, 1.0), 30).replace(
        "cmd: echo ok > /tmp/ok && exec httpd",
        "cmd: echo ok > /tmp/ok && (sleep 5; rm /tmp/ok) & exec httpd",
    );
    assert!(c.apply("web.yaml", &manifest).status.success());
    let killed = loop {
        let task = w.next(LIMIT).await;
        if task.state() == pacer_crd::TaskState::Killed {
            break task;
        }
    };
    let status = killed.status.clone().unwrap_or_default();
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("failed 3 health checks"),
        "{status:?}"
    );
    let started: Timestamp = status.started_at.unwrap().parse().unwrap();
    let finished: Timestamp = status.finished_at.unwrap().parse().unwrap();
    let lived = finished.duration_since(started).as_secs_f64();
    // Healthy for 5 s, then 3 failures 1 s apart (+ one interval and the 1 s stop grace of slack).
    assert!(
        (5.0..=5.0 + 3.0 + 1.0 + 2.0).contains(&lived),
        "killed after {lived} s"
    );
    let old = killed.metadata.name.clone().unwrap_or_default();
    loop {
        if w.live("web")
            .iter()
            .any(|t| t.metadata.name.as_deref() != Some(old.as_str()) && t.is_healthy())
        {
            break;
        }
        w.next(LIMIT).await;
    }
}

#[tokio::test]
async fn crash_loop_launches_back_off_and_a_new_version_starts_clean() {
    let c = Cluster::start("backoff", 2.0, 2048.0, (32280, 32299)).await;
    let mut w = c.watch_tasks().await;
    let app = |v: &str| {
        format!(
            "apiVersion: pacer.io/v1\nkind: App\nmetadata: {{name: crash}}\nspec:\n  cpus: 0.1\n  mem: 16\n  env: {{V: \"{v}\"}}\n  cmd: exit 1\n  backoffSeconds: 1\n  backoffFactor: 2\n  maxLaunchDelaySeconds: 60\n  container: {{docker: {{image: {IMAGE}}}}}\n"
        )
    };
    assert!(c.apply("crash.yaml", &app("1")).status.success());
    let mut staged: Vec<Timestamp> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    while staged.len() < 4 {
        let task = w.next(LIMIT).await;
        let name = task.metadata.name.clone().unwrap_or_default();
        if let Some(at) = task.status.as_ref().and_then(|s| s.staged_at.as_ref())
            && seen.insert(name)
        {
            staged.push(at.parse().unwrap());
        }
    }
    let gaps: Vec<f64> = staged
        .windows(2)
        .map(|p| p[1].duration_since(p[0]).as_secs_f64())
        .collect();
    // Delays after 1, 2, 3 failures: 1, 2, 4 s. A launch never comes early; each gap also holds
    // the task's short life, so the upper bound is generous (a loaded machine is slower, not wrong).
    for (gap, delay) in gaps.iter().zip([1.0, 2.0, 4.0]) {
        assert!(
            *gap >= delay - 0.05 && *gap < delay + 5.0,
            "gaps {gaps:?} do not follow 1, 2, 4 s"
        );
    }
    assert!(gaps[2] > gaps[1] && gaps[1] > gaps[0], "{gaps:?}");

    let applied = Timestamp::now();
    assert!(c.apply("crash.yaml", &app("2")).status.success());
    let version = current_version(&c, "crash").await;
    let first_new = loop {
        let task = w.next(LIMIT).await;
        if task.spec.app_version == version
            && let Some(at) = task.status.as_ref().and_then(|s| s.staged_at.clone())
        {
            break at.parse::<Timestamp>().unwrap();
        }
    };
    let wait = first_new.duration_since(applied).as_secs_f64();
    assert!(
        wait < 4.0,
        "a new version launched after {wait} s instead of at once (the pending delay was 8 s)"
    );

    // Failures of the new version build a delay again (1, 2, then 4 s); clearing it (as
    // `DELETE /v2/queue/{id}/delay` does) launches at once.
    let mut launches = std::collections::BTreeSet::new();
    while launches.len() < 3 {
        let task = w.next(LIMIT).await;
        if task.spec.app_version == version
            && task.status.as_ref().is_some_and(|s| s.staged_at.is_some())
        {
            launches.insert(task.metadata.name.clone().unwrap_or_default());
        }
    }
    c.eventually(LIMIT, "the third failure to set a 4 s delay", || async {
        let status = c.apps().await.into_iter().next()?.status?;
        (status.consecutive_failures >= 3).then_some(())
    })
    .await;
    let cleared = Timestamp::now();
    let out = c.pacer(&["reset-delay", "crash"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let next = loop {
        let task = w.next(LIMIT).await;
        let name = task.metadata.name.clone().unwrap_or_default();
        let staged = task.status.as_ref().and_then(|s| s.staged_at.clone());
        if let Some(at) = staged.filter(|_| !launches.contains(&name)) {
            break at.parse::<Timestamp>().unwrap();
        }
    };
    let wait = next.duration_since(cleared).as_secs_f64();
    assert!(
        wait < 3.0,
        "after reset-delay the next launch came after {wait} s (the delay was 4 s)"
    );
}

#[tokio::test]
async fn a_dependent_app_starts_only_after_its_dependency_is_healthy() {
    let c = Cluster::start("deps", 2.0, 2048.0, (32300, 32319)).await;
    let mut w = c.watch_tasks().await;
    let db = checked_app("db", 2, "1", "/ok", (1.0, 1.0), 10);
    let web = checked_app("web", 1, "1", "/ok", (1.0, 1.0), 10).replace(
        "  instances: 1\n",
        "  instances: 1\n  dependencies: [/db]\n",
    );
    assert!(
        c.apply("apps.yaml", &format!("{web}---\n{db}"))
            .status
            .success()
    );
    let db_version = current_version(&c, "db").await;
    loop {
        let task = w.next(LIMIT).await;
        if task.spec.app_id == "web" {
            let (_, _, db_healthy, _) = counts(&w, "db", &db_version);
            assert_eq!(db_healthy, 2, "web was placed before db was healthy");
            break;
        }
    }
    c.eventually(LIMIT, "web to have nothing pending", || async {
        let web = c
            .apps()
            .await
            .into_iter()
            .find(|a| a.metadata.name.as_deref() == Some("web"))?;
        (web.status?.tasks_pending == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_deployment_that_cannot_finish_fails_at_its_deadline_with_the_reason() {
    let c = Cluster::start("deadline", 2.0, 2048.0, (32320, 32339)).await;
    let manifest = "apiVersion: pacer.io/v1\nkind: App\nmetadata:\n  name: huge\n  annotations: {pacer.io/deployment-deadline-seconds: \"2\"}\nspec:\n  cpus: 64\n  mem: 16\n  cmd: sleep 100\n".to_string();
    assert!(c.apply("huge.yaml", &manifest).status.success());
    let status = c
        .eventually(LIMIT, "the deployment to fail", || async {
            let url = format!("{}/apis/pacer.io/v1/deployments", c.server);
            let list: serde_json::Value =
                c.http().get(&url).send().await.ok()?.json().await.ok()?;
            let d = list["items"].as_array()?.first()?.clone();
            (d["status"]["phase"] == "Failed").then_some(d["status"].clone())
        })
        .await;
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("2 s deadline") && message.contains("cpus: 64 wanted"),
        "{message}"
    );
}

/// An httpd app, healthy at once (`/ok`), ready only 2 s after it starts (`/ready`).
fn ready_app(instances: i64, env: &str) -> String {
    format!(
        r#"apiVersion: pacer.io/v1
kind: App
metadata: {{name: ready}}
spec:
  instances: {instances}
  cpus: 0.1
  mem: 16
  env: {{VERSION: "{env}"}}
  cmd: mkdir -p /tmp/w && echo ok > /tmp/w/ok && {{ (sleep 2; echo ready > /tmp/w/ready) & exec httpd -f -p 8080 -h /tmp/w; }}
  taskKillGracePeriodSeconds: 1
  upgradeStrategy: {{minimumHealthCapacity: 1.0, maximumOverCapacity: 0.0}}
  healthChecks:
    - {{protocol: HTTP, path: /ok, portIndex: 0, gracePeriodSeconds: 10, intervalSeconds: 1, timeoutSeconds: 1, maxConsecutiveFailures: 3}}
  readinessChecks:
    - {{name: ready, protocol: HTTP, path: /ready, portName: http, intervalSeconds: 1, timeoutSeconds: 1, preserveLastResponse: true}}
  container:
    docker: {{image: {IMAGE}}}
    portMappings: [{{containerPort: 8080, hostPort: 0, name: http}}]
  networks: [{{mode: container/bridge}}]
"#
    )
}

#[tokio::test]
async fn old_instances_stop_only_for_ready_new_ones() {
    let c = Cluster::start("ready", 2.0, 2048.0, (32360, 32379)).await;
    let n = 3;
    let mut w = c.watch_tasks().await;
    assert!(c.apply("v1.yaml", &ready_app(n, "1")).status.success());
    let v1 = current_version(&c, "ready").await;
    let ready = |w: &TaskWatch, version: &str| {
        w.live("ready")
            .iter()
            .filter(|t| t.spec.app_version == version && !t.spec.kill && t.is_ready())
            .count()
    };
    while ready(&w, &v1) < n as usize {
        w.next(LIMIT).await;
    }
    assert!(c.apply("v2.yaml", &ready_app(n, "2")).status.success());
    let v2 = current_version(&c, "ready").await;
    let (mut observations, mut held_back) = (0, false);
    loop {
        observations += 1;
        let live = w.live("ready");
        let old_kept = live
            .iter()
            .filter(|t| t.spec.app_version != v2 && !t.spec.kill)
            .count();
        let new_ready = ready(&w, &v2);
        let stopped = n as usize - old_kept.min(n as usize);
        assert!(
            stopped <= new_ready,
            "{stopped} old instance(s) stopped for {new_ready} ready new one(s) at observation {observations}"
        );
        held_back |= live
            .iter()
            .any(|t| t.spec.app_version == v2 && t.is_healthy() && !t.is_ready());
        if new_ready == n as usize && old_kept == 0 && live.len() == n as usize {
            break;
        }
        w.next(LIMIT).await;
    }
    assert!(
        held_back,
        "a new instance was seen healthy but not yet ready"
    );
    // The results, and the last response kept, as Marathon embeds them.
    let url = format!("{}/v2/apps/ready?embed=app.readiness", c.server);
    let app: serde_json::Value = c
        .http()
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let results = app["app"]["readinessCheckResults"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(results.len(), n as usize, "{results:?}");
    for r in &results {
        assert_eq!(
            (&r["name"], &r["ready"]),
            (&serde_json::json!("ready"), &serde_json::json!(true))
        );
        assert_eq!(r["lastResponse"]["status"], 200);
        assert_eq!(r["lastResponse"]["body"], "ready\n");
    }
}
