//! `pacer explain app ID`: why an app's instances are not placed, per node, in plain words.

use anyhow::bail;
use clap::Args;
use pacer_crd::{App, AppId};

use crate::client::ApiClient;
use crate::show::{table, what_runs};

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
