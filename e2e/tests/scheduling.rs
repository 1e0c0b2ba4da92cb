//! Scheduling across several agents on one Docker host (constraints, explain), fair sharing on
//! simulated fleets (weighted DRF, quota), and batch jobs (`pacer run`, cron with policies).

use std::collections::BTreeMap;
use std::time::Duration;

use pacer_crd::{Job, JobRun, RunPhase, Task, TaskState};
use pacer_e2e::{Cluster, IMAGE, text};

const LIMIT: Duration = Duration::from_secs(60);

fn app(name: &str, instances: i64, constraint: &str) -> String {
    format!(
        r#"apiVersion: pacer.io/v1
kind: App
metadata: {{name: {name}}}
spec:
  instances: {instances}
  cpus: 0.1
  mem: 16
  cmd: exec sleep 1000
  taskKillGracePeriodSeconds: 1
  container: {{docker: {{image: {IMAGE}}}}}
  constraints: [{constraint}]
"#
    )
}

/// Live tasks of `app` per node.
async fn per_node(c: &Cluster, app: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for t in c.tasks().await {
        if t.spec.app_id == app && t.state() == TaskState::Running {
            *out.entry(t.spec.node.clone()).or_default() += 1;
        }
    }
    out
}

#[tokio::test]
async fn constraints_spread_pin_balance_and_cap_over_agents() {
    // `pacer up`'s own node is too small for anything: the three agents take the work.
    let mut c = Cluster::start("sched", 0.05, 16.0, (32600, 32609)).await;
    let a1 = c.add_agent("a1", "rack:r1;zone:a", (32610, 32619)).await;
    let a2 = c.add_agent("a2", "rack:r1;zone:b", (32620, 32629)).await;
    let a3 = c.add_agent("a3", "rack:r2;zone:a", (32630, 32639)).await;
    let wide = text(&c.pacer(&["get", "nodes", "-o", "wide"]).stdout);
    assert!(
        wide.contains("rack:r2") && wide.contains("zone:b"),
        "{wide}"
    );

    let manifests = [
        app("unique", 3, r#"["hostname", "UNIQUE"]"#),
        app("pinned", 2, r#"["rack", "CLUSTER", "r2"]"#),
        app("grouped", 4, r#"["rack", "GROUP_BY"]"#),
        app("capped", 3, r#"["zone", "MAX_PER", "1"]"#),
        app("nowhere", 1, r#"["rack", "CLUSTER", "r9"]"#),
    ]
    .join("---\n");
    let out = c.apply("apps.yaml", &manifests);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let expect = [("unique", 3), ("pinned", 2), ("grouped", 4), ("capped", 2)];
    for (name, n) in expect {
        c.eventually(LIMIT, &format!("{n} running {name}"), || async {
            let placed: usize = per_node(&c, name).await.values().sum();
            (placed == n).then_some(())
        })
        .await;
    }
    let unique = per_node(&c, "unique").await;
    assert_eq!(
        unique.keys().cloned().collect::<Vec<_>>(),
        vec![a1.clone(), a2.clone(), a3.clone()],
        "UNIQUE hostname: one per agent"
    );
    assert_eq!(
        per_node(&c, "pinned").await,
        BTreeMap::from([(a3.clone(), 2)]),
        "CLUSTER rack r2"
    );
    let grouped = per_node(&c, "grouped").await;
    let r1 = grouped.get(&a1).unwrap_or(&0) + grouped.get(&a2).unwrap_or(&0);
    assert_eq!(
        (r1, grouped.get(&a3).copied().unwrap_or(0)),
        (2, 2),
        "GROUP_BY rack: {grouped:?}"
    );
    let capped = per_node(&c, "capped").await;
    let zone_b = capped.get(&a2).copied().unwrap_or(0);
    assert_eq!(zone_b, 1, "MAX_PER zone 1: one in zone b, {capped:?}");

    // The third capped instance and the r9 one wait, and explain says why, per node.
    let explained = c
        .eventually(LIMIT, "explain names the constraint", || async {
            let out = text(&c.pacer(&["explain", "app", "nowhere"]).stdout);
            (out.contains("UnfulfilledConstraint") && out.contains(&a3)).then_some(out)
        })
        .await;
    assert!(explained.contains("1 pending"), "{explained}");
    for node in [&a1, &a2, &a3] {
        let line = explained
            .lines()
            .find(|l| l.contains(node.as_str()))
            .unwrap_or_default();
        assert!(line.contains("rack CLUSTER r9"), "{node}: {explained}");
    }
    let capped_why = text(&c.pacer(&["explain", "app", "capped"]).stdout);
    assert!(capped_why.contains("zone MAX_PER 1"), "{capped_why}");
    // The Marathon queue counts the same rejections.
    let (_, queue) = c.marathon(reqwest::Method::GET, "/v2/queue", None).await;
    let item = queue["queue"]
        .as_array()
        .and_then(|q| q.iter().find(|i| i["app"]["id"] == "/nowhere"))
        .cloned()
        .unwrap_or_default();
    let summary = &item["processedOffersSummary"];
    assert_eq!(summary["processedOffersCount"], 4, "{item}");
    let constraint = summary["rejectSummaryLastOffers"]
        .as_array()
        .and_then(|r| r.iter().find(|e| e["reason"] == "UnfulfilledConstraint"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(constraint["declined"], 3, "{summary}");
}

/// Applies two roles and one app per role asking for far more than the cluster has, then
/// brings up 60 simulated 4-cpu nodes; the cpus each role ends with, once the cluster is full.
async fn split(name: &str, roles: &str) -> (f64, f64) {
    let mut c = Cluster::start(name, 0.01, 1.0, (32640, 32641)).await;
    let apps: String = ["alpha", "beta"]
        .iter()
        .map(|role| {
            format!(
                "apiVersion: pacer.io/v1\nkind: App\nmetadata: {{name: app-{role}}}\nspec: {{role: {role}, instances: 400, cpus: 1, mem: 64, cmd: sleep 1000}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");
    let out = c.apply("fair.yaml", &format!("{roles}---\n{apps}"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    c.eventually(LIMIT, "both apps pending", || async {
        let apps = c.apps().await;
        let pending = apps
            .iter()
            .filter(|a| a.status.as_ref().is_some_and(|s| s.tasks_pending == 400))
            .count();
        (pending == 2).then_some(())
    })
    .await;
    c.add_simulated("sim", 60, 4.0, 4096.0).await;
    let tasks: Vec<Task> = c
        .eventually(Duration::from_secs(120), "240 cpus placed", || async {
            let tasks = c.tasks().await;
            (tasks.len() == 240).then_some(tasks)
        })
        .await;
    let cpus = |app: &str| {
        tasks
            .iter()
            .filter(|t| t.spec.app_id == app)
            .map(|t| t.spec.resources.cpus)
            .sum::<f64>()
    };
    let (alpha, beta) = (cpus("app-alpha"), cpus("app-beta"));
    if !(alpha > 0.0 && beta > 0.0) {
        let explain = text(&c.pacer(&["explain", "app", "app-alpha"]).stdout);
        let offers = text(&c.pacer(&["get", "offers"]).stdout);
        panic!(
            "alpha {alpha}, beta {beta}\n{explain}\n{offers}\n{}",
            c.log()
        );
    }
    (alpha, beta)
}

#[tokio::test]
async fn weighted_drf_gives_shares_in_the_ratio_of_weights() {
    let roles = "apiVersion: pacer.io/v1\nkind: Role\nmetadata: {name: alpha}\nspec: {weight: 1}\n---\napiVersion: pacer.io/v1\nkind: Role\nmetadata: {name: beta}\nspec: {weight: 2}\n";
    let (x, y) = split("drf", roles).await;
    // cpus are the dominant resource of both (1 of 4 cpus vs 64 of 4096 MiB per instance).
    let ratio = (y / 240.0) / (x / 240.0);
    eprintln!(
        "dominant shares: x {:.3}, y {:.3}, ratio {ratio:.2}",
        x / 240.0,
        y / 240.0
    );
    assert!((1.8..=2.2).contains(&ratio), "x {x} cpus, y {y} cpus");
}

#[tokio::test]
async fn a_quota_guarantee_is_met_before_others_grow() {
    // Weight alone would give x 48 of 240 cpus (1:4); its guarantee of 100 comes first.
    let roles = "apiVersion: pacer.io/v1\nkind: Role\nmetadata: {name: alpha}\nspec: {weight: 1, guarantee: {cpus: 100}}\n---\napiVersion: pacer.io/v1\nkind: Role\nmetadata: {name: beta}\nspec: {weight: 4, limit: {cpus: 200}}\n";
    let (x, y) = split("quota", roles).await;
    eprintln!("x {x} cpus (guarantee 100), y {y} cpus");
    assert!((100.0..=104.0).contains(&x), "alpha {x}, beta {y}");
    assert!(y <= 200.0, "y stays under its limit: {y}");
}

#[tokio::test]
async fn pacer_run_exits_with_the_task_exit_code() {
    let c = Cluster::start("run", 1.0, 256.0, (32650, 32659)).await;
    let failed = c.pacer(&[
        "run",
        "--name",
        "cluster-test",
        "--",
        "sh",
        "-c",
        "echo out; exit 3",
    ]);
    assert_eq!(failed.status.code(), Some(3), "{}", text(&failed.stderr));
    assert!(
        text(&failed.stdout).contains("out"),
        "the task's output is printed"
    );
    assert!(
        text(&failed.stderr).contains("Failed"),
        "{}",
        text(&failed.stderr)
    );
    let ok = c.pacer(&["run", "--", "echo", "fine"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    // Running the same job again starts its second run; its logs are the run's.
    let again = c.pacer(&[
        "run",
        "--name",
        "cluster-test",
        "--",
        "sh",
        "-c",
        "echo again; exit 0",
    ]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let logs = text(&c.pacer(&["logs", "cluster-test-2"]).stdout);
    assert!(logs.contains("again"), "{logs}");
    let runs = text(&c.pacer(&["get", "jobruns"]).stdout);
    assert!(
        runs.contains("cluster-test-1") && runs.contains("cluster-test-2"),
        "{runs}"
    );
    // Failed attempts are retried with backoff (1 s, 2 s), then the run fails with the code.
    let flaky = c.pacer(&[
        "run",
        "--name",
        "flaky",
        "--max-retries",
        "2",
        "--",
        "sh",
        "-c",
        "exit 1",
    ]);
    assert_eq!(flaky.status.code(), Some(1), "{}", text(&flaky.stderr));
    let run = runs_of(&c, "flaky").await.pop().expect("the run");
    let status = run.status.unwrap_or_default();
    assert_eq!(status.attempts, 3, "{status:?}");
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains("failed after 3 attempt(s)")
    );
    // Bad input changes nothing and names the field.
    let bad = c.pacer(&["run", "--name", "Bad_Name", "--", "true"]);
    assert!(
        !bad.status.success() && text(&bad.stderr).contains("--name"),
        "{}",
        text(&bad.stderr)
    );
}

async fn job(c: &Cluster, name: &str) -> Option<Job> {
    let (_, body) = c
        .marathon(
            reqwest::Method::GET,
            &format!("/apis/pacer.io/v1/jobs/{name}"),
            None,
        )
        .await;
    serde_json::from_value(body).ok()
}

async fn runs_of(c: &Cluster, name: &str) -> Vec<JobRun> {
    let (_, body) = c
        .marathon(reqwest::Method::GET, "/apis/pacer.io/v1/jobruns", None)
        .await;
    let runs: Vec<JobRun> = serde_json::from_value(body["items"].clone()).unwrap_or_default();
    runs.into_iter().filter(|r| r.spec.job == name).collect()
}

#[tokio::test]
async fn cron_jobs_run_every_minute_and_forbid_skips_while_active() {
    let c = Cluster::start("cron", 1.0, 256.0, (32660, 32669)).await;
    let jobs = "apiVersion: pacer.io/v1\nkind: Job\nmetadata: {name: tick}\nspec:\n  run: {cmd: echo tick, cpus: 0.1, mem: 16}\n  schedule: {cron: '* * * * *', timezone: Europe/Berlin}\n---\napiVersion: pacer.io/v1\nkind: Job\nmetadata: {name: slow}\nspec:\n  run: {cmd: exec sleep 300, cpus: 0.1, mem: 16}\n  schedule: {cron: '* * * * *', concurrencyPolicy: FORBID}\n";
    let out = c.apply("jobs.yaml", jobs);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Two minute boundaries: tick runs twice, slow runs once and skips the second start.
    let limit = Duration::from_secs(135);
    c.eventually(limit, "two tick runs succeeded", || async {
        let ok = runs_of(&c, "tick")
            .await
            .iter()
            .filter(|r| r.phase() == RunPhase::Succeeded)
            .count();
        (ok >= 2).then_some(())
    })
    .await;
    let slow = c
        .eventually(Duration::from_secs(10), "slow skipped a start", || async {
            job(&c, "slow")
                .await
                .filter(|j| j.status.as_ref().is_some_and(|s| s.skipped >= 1))
        })
        .await;
    let status = slow.status.unwrap_or_default();
    assert_eq!(
        status.runs_started, 1,
        "FORBID: no second run while the first is active"
    );
    assert_eq!(status.active, vec!["slow-1".to_string()]);
    let runs = runs_of(&c, "slow").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].phase(), RunPhase::Running);
    let listed = text(&c.pacer(&["get", "jobruns"]).stdout);
    assert!(
        listed.contains("tick-1") && listed.contains("tick-2"),
        "{listed}"
    );
    let jobs_table = text(&c.pacer(&["get", "jobs"]).stdout);
    assert!(jobs_table.contains("FORBID"), "{jobs_table}");
    let logs = text(&c.pacer(&["logs", "tick-1"]).stdout);
    assert!(logs.contains("tick"), "{logs}");

    // Deleting the job stops its active run's task.
    let out = c.pacer(&["delete", "job", "slow"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    c.eventually(LIMIT, "slow's task gone", || async {
        let left = c
            .tasks()
            .await
            .into_iter()
            .filter(|t| t.spec.app_id == "slow")
            .count();
        (left == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn replace_kills_the_active_run_before_starting_the_next() {
    let c = Cluster::start("replace", 1.0, 256.0, (32670, 32679)).await;
    // Every 3 seconds (a 6-field pattern with seconds).
    let jobs = "apiVersion: pacer.io/v1\nkind: Job\nmetadata: {name: swap}\nspec:\n  run: {cmd: exec sleep 300, cpus: 0.1, mem: 16}\n  schedule: {cron: '*/3 * * * * *', concurrencyPolicy: REPLACE}\n";
    let out = c.apply("swap.yaml", jobs);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let runs = c
        .eventually(LIMIT, "a run replaced by the next", || async {
            let runs = runs_of(&c, "swap").await;
            let killed = runs.iter().any(|r| r.phase() == RunPhase::Killed);
            let running = runs.iter().any(|r| r.phase() == RunPhase::Running);
            (killed && running).then_some(runs)
        })
        .await;
    let first = runs.iter().find(|r| r.spec.number == 1).expect("run 1");
    assert_eq!(first.phase(), RunPhase::Killed, "run 1 made room");
    // The replaced run's task stops: one task runs.
    c.eventually(LIMIT, "one swap task left running", || async {
        let live = c
            .tasks()
            .await
            .into_iter()
            .filter(|t| t.spec.app_id == "swap" && !t.state().is_terminal())
            .count();
        (live == 1).then_some(())
    })
    .await;
    let out = c.pacer(&["delete", "job", "swap"]);
    assert!(out.status.success());
}
