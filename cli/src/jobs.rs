//! Batch work from the CLI: `pacer run` (mesos-execute), job and run tables, and `pacer explain`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use comfy_table::Table;
use pacer_crd::{App, AppId, Job, JobRun, RunPhase};
use reqwest::Method;
use serde_json::json;

use crate::client::ApiClient;
use crate::show::{age, table, what_runs};

#[derive(Args)]
pub struct RunArgs {
    /// Job name (lower-case letters, digits, '-'); a fresh one when not given. An existing job
    /// of that name is updated and run again.
    #[arg(long)]
    name: Option<String>,
    /// Docker image to run the command in (default: a plain process on the node).
    #[arg(long)]
    image: Option<String>,
    #[arg(long, default_value_t = 0.1)]
    cpus: f64,
    #[arg(long, default_value_t = 32.0)]
    mem: f64,
    #[arg(long, default_value = "*")]
    role: String,
    /// Attempts after a failed one.
    #[arg(long, default_value_t = 0)]
    max_retries: u32,
    /// Give up waiting after this many seconds (the run goes on).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Runs one task to completion and exits with its exit code, printing its state changes on
/// stderr and its output on stdout.
pub async fn run(api: &ApiClient, args: RunArgs) -> anyhow::Result<i32> {
    let name = args.name.clone().unwrap_or_else(|| {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("run-{}", &id[..8])
    });
    pacer_crd::manifest::check_job_name(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let mut run_spec = json!({
        "args": args.command, "cpus": args.cpus, "mem": args.mem, "role": args.role,
    });
    if let Some(image) = &args.image {
        run_spec["container"] = json!({"type": "DOCKER", "docker": {"image": image}});
    }
    let manifest = json!({
        "apiVersion": pacer_crd::API_VERSION, "kind": "Job",
        "metadata": {"name": name},
        "spec": {"run": run_spec, "maxRetries": args.max_retries},
    });
    let applied = api
        .call(Method::PUT, &format!("/jobs/{name}"), Some(&manifest))
        .await
        .with_context(|| format!("creating job {name}"))?;
    // A new job starts its first run by itself; an existing one is asked for another.
    let run_name = if applied["result"] == "created" {
        pacer_crd::job::run_name(&name, 1)
    } else {
        let run = api
            .call(Method::POST, &format!("/jobs/{name}/runs"), None)
            .await?;
        run["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    eprintln!("run {run_name} of job {name} submitted");
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut last = String::new();
    loop {
        if Instant::now() > deadline {
            bail!(
                "run {run_name} did not finish within {}s (it goes on: pacer get jobruns {run_name})",
                args.timeout
            );
        }
        let run: Option<JobRun> = match api.get(&format!("/jobruns/{run_name}")).await {
            Ok(v) => Some(serde_json::from_value(v)?),
            Err(_) => None,
        };
        if let Some(run) = run {
            let status = run.status.clone().unwrap_or_default();
            let line = format!(
                "{} attempt {}{}{}",
                status.phase.as_str(),
                status.attempts,
                status
                    .node
                    .as_ref()
                    .map(|n| format!(" on {n}"))
                    .unwrap_or_default(),
                status
                    .message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
            if line != last {
                eprintln!("{line}");
                last = line;
            }
            if status.phase.is_finished() {
                if let Some(task) = &status.task {
                    let path = format!("/tasks/{task}/logs?tail=1000");
                    if let Ok(text) = api.call_text(Method::GET, &path, None).await {
                        print!("{text}");
                    }
                }
                return Ok(match status.phase {
                    RunPhase::Succeeded => 0,
                    _ => status.exit_code.map(|c| c as i32).unwrap_or(1).max(1),
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub fn jobs_table(jobs: &[Job]) -> Table {
    let mut t = table(&[
        "NAME", "SCHEDULE", "POLICY", "RUNS", "ACTIVE", "OK", "FAILED", "SKIPPED", "NEXT", "AGE",
    ]);
    for j in jobs {
        let s = j.status.clone().unwrap_or_default();
        let (schedule, policy) = match &j.spec.schedule {
            Some(s) => (
                format!("{} {}", s.cron, s.timezone),
                format!("{:?}", s.concurrency_policy).to_uppercase(),
            ),
            None => ("-".into(), "-".into()),
        };
        t.add_row(vec![
            j.metadata.name.clone().unwrap_or_default(),
            schedule,
            policy,
            s.runs_started.to_string(),
            s.active.len().to_string(),
            s.succeeded.to_string(),
            s.failed.to_string(),
            s.skipped.to_string(),
            s.next_run_at.unwrap_or_else(|| "-".into()),
            age(&j.metadata),
        ]);
    }
    t
}

pub fn runs_table(runs: &[JobRun]) -> Table {
    let mut t = table(&[
        "NAME", "JOB", "TRIGGER", "PHASE", "ATTEMPTS", "NODE", "EXIT", "AGE", "MESSAGE",
    ]);
    let mut runs = runs.to_vec();
    runs.sort_by_key(|r| (r.spec.job.clone(), r.spec.number));
    for r in &runs {
        let s = r.status.clone().unwrap_or_default();
        t.add_row(vec![
            r.metadata.name.clone().unwrap_or_default(),
            r.spec.job.clone(),
            r.spec.trigger.clone(),
            s.phase.as_str().to_string(),
            s.attempts.to_string(),
            s.node.unwrap_or_else(|| "-".into()),
            s.exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            age(&r.metadata),
            s.message.unwrap_or_default(),
        ]);
    }
    t
}

#[derive(Args)]
pub struct ExplainArgs {
    /// `app`
    kind: String,
    /// App id: `/prod/web` or `prod_web`.
    id: String,
}

/// Why an app's instances wait: per node, the reason its offer did not fit, in plain words.
pub async fn explain(api: &ApiClient, args: ExplainArgs) -> anyhow::Result<()> {
    if !matches!(args.kind.as_str(), "app" | "apps") {
        bail!("explain knows apps: pacer explain app ID");
    }
    let name = AppId::parse(&args.id)
        .map(|i| i.name())
        .map_err(|e| anyhow::anyhow!(e))?;
    let app: App = serde_json::from_value(api.get(&format!("/apps/{name}")).await?)?;
    let s = app.status.clone().unwrap_or_default();
    let path = pacer_crd::id::path_of(&name);
    println!(
        "App {path} (role {}, {}): cpus {}, mem {} MiB, disk {} MiB per instance",
        app.spec.role,
        what_runs(&app.spec),
        app.spec.cpus,
        app.spec.mem,
        app.spec.disk
    );
    println!(
        "{} wanted, {} running, {} pending",
        app.spec.instances, s.tasks_running, s.tasks_pending
    );
    if s.tasks_pending == 0 {
        println!("Nothing is waiting.");
        return Ok(());
    }
    if let Some(message) = &s.message {
        println!("Waiting: {message}");
    }
    let Some(report) = &s.placement else {
        return Ok(());
    };
    let counts: Vec<String> = report
        .rejected
        .iter()
        .map(|(reason, n)| format!("{reason} on {n}"))
        .collect();
    println!(
        "{} node(s) looked at: {}",
        report.nodes_considered,
        counts.join(", ")
    );
    let mut t = table(&["NODE", "REASON", "DETAIL"]);
    for n in &report.nodes {
        t.add_row(vec![n.node.clone(), n.reason.clone(), n.message.clone()]);
    }
    println!("{t}");
    Ok(())
}
