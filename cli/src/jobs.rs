//! Batch work from the CLI: `pacer run` (mesos-execute), job and run tables.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use comfy_table::Table;
use pacer_crd::{Job, JobRun, JobRunStatus, RunPhase};
use reqwest::Method;
use serde_json::json;

use crate::client::ApiClient;
use crate::show::{age, table};

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
    let run_name = submit(api, &name, &job_manifest(&args, &name)).await?;
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
            let status = run.status.unwrap_or_default();
            let line = progress(&status);
            if line != last {
                eprintln!("{line}");
                last = line;
            }
            if status.phase.is_finished() {
                return Ok(finish(api, &status).await);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The job `pacer run` applies: the command as its run, `--max-retries` attempts after a
/// failed one.
fn job_manifest(args: &RunArgs, name: &str) -> serde_json::Value {
    let mut run_spec = json!({
        "args": args.command, "cpus": args.cpus, "mem": args.mem, "role": args.role,
    });
    if let Some(image) = &args.image {
        run_spec["container"] = json!({"type": "DOCKER", "docker": {"image": image}});
    }
    json!({
        "apiVersion": pacer_crd::API_VERSION, "kind": "Job",
        "metadata": {"name": name},
        "spec": {"run": run_spec, "maxRetries": args.max_retries},
    })
}

/// Applies the job and returns the name of the run that will carry the command.
async fn submit(
    api: &ApiClient,
    name: &str,
    manifest: &serde_json::Value,
) -> anyhow::Result<String> {
    let applied = api
        .call(Method::PUT, &format!("/jobs/{name}"), Some(manifest))
        .await
        .with_context(|| format!("creating job {name}"))?;
    // A new job starts its first run by itself; an existing one is asked for another.
    if applied["result"] == "created" {
        return Ok(pacer_crd::job::run_name(name, 1));
    }
    let run = api
        .call(Method::POST, &format!("/jobs/{name}/runs"), None)
        .await?;
    Ok(run["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// A run's state in one line: `Running attempt 1 on node-1: ...`.
fn progress(status: &JobRunStatus) -> String {
    format!(
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
    )
}

/// Prints a finished run's output and returns the code `pacer run` exits with.
async fn finish(api: &ApiClient, status: &JobRunStatus) -> i32 {
    if let Some(task) = &status.task {
        let path = format!("/tasks/{task}/logs?tail=1000");
        if let Ok(text) = api.call_text(Method::GET, &path, None).await {
            print!("{text}");
        }
    }
    exit_code(status)
}

/// 0 for a run that succeeded; otherwise its task's own code, at least 1 (a killed task, or
/// one that exited 0 and still counts as failed, must not look like a success).
fn exit_code(status: &JobRunStatus) -> i32 {
    match status.phase {
        RunPhase::Succeeded => 0,
        _ => status.exit_code.map(|c| c as i32).unwrap_or(1).max(1),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: RunPhase, exit_code: Option<i64>) -> JobRunStatus {
        JobRunStatus {
            phase,
            exit_code,
            ..JobRunStatus::default()
        }
    }

    #[test]
    fn only_a_run_that_succeeded_exits_zero() {
        for (phase, code, expected) in [
            (RunPhase::Succeeded, Some(0), 0),
            (RunPhase::Failed, Some(3), 3),
            (RunPhase::Failed, Some(0), 1),
            (RunPhase::Killed, None, 1),
        ] {
            assert_eq!(
                exit_code(&status(phase, code)),
                expected,
                "{phase:?} {code:?}"
            );
        }
    }

    #[test]
    fn progress_names_the_node_and_the_message_when_there_are_some() {
        let mut running = status(RunPhase::Running, None);
        running.attempts = 2;
        assert_eq!(progress(&running), "Running attempt 2");
        running.node = Some("node-1".into());
        running.message = Some("pulling image".into());
        assert_eq!(
            progress(&running),
            "Running attempt 2 on node-1: pulling image"
        );
    }
}
