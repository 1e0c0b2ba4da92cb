//! `pacer rollout status|history|undo` and `pacer restart`: watching and steering deployments.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use pacer_crd::deployment::DeploymentPhase;
use pacer_crd::{App, AppId, Deployment, Task};
use reqwest::Method;
use serde_json::json;

use crate::client::ApiClient;

#[derive(Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    command: Rollout,
}

#[derive(Subcommand)]
enum Rollout {
    /// Progress of the app's deployment; `--wait` follows it to the end.
    Status {
        app: String,
        #[arg(long)]
        wait: bool,
        /// Seconds to wait before giving up (exit code 1).
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// The stored versions of the app, newest first.
    History { app: String },
    /// Deploy the previous version again (or `--to-version`).
    Undo {
        app: String,
        #[arg(long)]
        to_version: Option<String>,
    },
}

#[derive(Args)]
pub struct ResetDelayArgs {
    /// App id: `/prod/web` or `prod_web`.
    app: String,
}

/// Launches the next instance of a crash-looping app now instead of after its backoff delay.
pub async fn reset_delay(api: &ApiClient, args: ResetDelayArgs) -> anyhow::Result<()> {
    let id = id_of(&args.app)?;
    api.request_empty(Method::DELETE, &format!("/v2/queue{}/delay", id.path()))
        .await?;
    println!("app {} launch delay cleared", id.path());
    Ok(())
}

#[derive(Args)]
pub struct RestartArgs {
    /// App id: `/prod/web` or `prod_web`.
    app: String,
}

fn id_of(raw: &str) -> anyhow::Result<AppId> {
    AppId::parse(raw).map_err(|e| anyhow::anyhow!(e))
}

pub async fn rollout(api: &ApiClient, args: RolloutArgs) -> anyhow::Result<()> {
    match args.command {
        Rollout::Status { app, wait, timeout } => {
            status(api, &id_of(&app)?, wait, Duration::from_secs(timeout)).await
        }
        Rollout::History { app } => history(api, &id_of(&app)?).await,
        Rollout::Undo { app, to_version } => undo(api, &id_of(&app)?, to_version).await,
    }
}

pub async fn restart(api: &ApiClient, args: RestartArgs) -> anyhow::Result<()> {
    let id = id_of(&args.app)?;
    let result = api
        .marathon(
            Method::POST,
            &format!("/v2/apps{}/restart?force=true", id.path()),
            None,
        )
        .await?;
    println!(
        "app {} restarting (deployment {})",
        id.path(),
        result["deploymentId"].as_str().unwrap_or("-")
    );
    Ok(())
}

/// Where the app's rollout stands: new instances healthy, old ones left, the app's message.
struct Progress {
    wanted: u64,
    healthy_new: u64,
    old_left: u64,
    running: bool,
    message: Option<String>,
}

async fn progress(api: &ApiClient, id: &AppId) -> anyhow::Result<Progress> {
    let app: App = serde_json::from_value(api.get(&format!("/apps/{}", id.name())).await?)?;
    let tasks: Vec<Task> = serde_json::from_value(api.get("/tasks").await?["items"].clone())?;
    let deployments: Vec<Deployment> =
        serde_json::from_value(api.get("/deployments").await?["items"].clone())?;
    let mine = tasks
        .iter()
        .filter(|t| t.spec.app_id == id.name() && !t.state().is_terminal());
    let (new, old): (Vec<&Task>, Vec<&Task>) =
        mine.partition(|t| t.spec.app_version == app.version());
    let running = deployments
        .iter()
        .any(|d| d.spec.app_id == id.name() && d.phase() == DeploymentPhase::Running);
    Ok(Progress {
        wanted: u64::try_from(app.spec.instances).unwrap_or(0),
        healthy_new: new
            .iter()
            .filter(|t| t.is_healthy() && !t.spec.kill)
            .count() as u64,
        old_left: old.len() as u64,
        running,
        message: app.status.and_then(|s| s.message),
    })
}

async fn status(api: &ApiClient, id: &AppId, wait: bool, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} healthy {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(id.path());
    loop {
        let p = progress(api, id).await?;
        bar.set_length(p.wanted);
        bar.set_position(p.healthy_new.min(p.wanted));
        let note = match (&p.message, p.old_left) {
            (Some(m), _) => m.clone(),
            (None, 0) => String::new(),
            (None, n) => format!("{n} old left"),
        };
        bar.set_message(note.clone());
        if !p.running && p.old_left == 0 && p.healthy_new >= p.wanted {
            bar.finish_with_message("rolled out");
            return Ok(());
        }
        if !wait {
            bar.abandon();
            return Ok(());
        }
        if Instant::now() > deadline {
            bar.abandon();
            bail!("{} did not roll out within {timeout:?}: {note}", id.path());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn versions(api: &ApiClient, id: &AppId) -> anyhow::Result<Vec<String>> {
    let body = api
        .marathon(
            Method::GET,
            &format!("/v2/apps{}/versions", id.path()),
            None,
        )
        .await?;
    Ok(serde_json::from_value(body["versions"].clone())?)
}

async fn history(api: &ApiClient, id: &AppId) -> anyhow::Result<()> {
    let app = api
        .marathon(Method::GET, &format!("/v2/apps{}", id.path()), None)
        .await?;
    let current = app["app"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for version in versions(api, id).await? {
        let spec = api
            .marathon(
                Method::GET,
                &format!("/v2/apps{}/versions/{version}", id.path()),
                None,
            )
            .await?;
        let marker = if version == current { "*" } else { " " };
        let runs = spec["container"]["docker"]["image"]
            .as_str()
            .or(spec["cmd"].as_str())
            .unwrap_or("-");
        println!(
            "{marker} {version}  instances={}  {runs}",
            spec["instances"]
        );
    }
    Ok(())
}

async fn undo(api: &ApiClient, id: &AppId, to: Option<String>) -> anyhow::Result<()> {
    let all = versions(api, id).await?;
    let target = match to {
        Some(v) if all.contains(&v) => v,
        Some(v) => bail!(
            "{} has no version {v} (see `pacer rollout history {}`)",
            id.path(),
            id.path()
        ),
        None => match all.get(1) {
            Some(previous) => previous.clone(),
            None => bail!("{} has no earlier version", id.path()),
        },
    };
    let result = api
        .marathon(
            Method::PUT,
            &format!("/v2/apps{}?force=true", id.path()),
            Some(&json!({"version": target})),
        )
        .await?;
    println!(
        "app {} rolling back to {target} (deployment {})",
        id.path(),
        result["deploymentId"].as_str().unwrap_or("-")
    );
    Ok(())
}
