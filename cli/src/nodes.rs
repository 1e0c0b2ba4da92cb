//! `pacer node drain|undrain NODE`: take a node out of scheduling and wait (with progress and
//! a deadline) until its apps' tasks have moved elsewhere.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, Subcommand};
use pacer_crd::Task;
use reqwest::Method;
use serde_json::json;

use crate::client::ApiClient;
use crate::show::items;

#[derive(Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Subcommand)]
enum NodeCommand {
    /// No new tasks on NODE; its apps' tasks start elsewhere, then stop here.
    Drain {
        node: String,
        #[arg(long)]
        reason: Option<String>,
        /// Seconds to wait for the node to empty (0: do not wait).
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Let NODE take tasks again.
    Undrain { node: String },
}

pub async fn node(api: &ApiClient, args: NodeArgs) -> anyhow::Result<()> {
    match args.command {
        NodeCommand::Drain {
            node,
            reason,
            timeout,
        } => {
            api.call(
                Method::PUT,
                &format!("/nodes/{node}/drain"),
                Some(&json!({"reason": reason})),
            )
            .await?;
            println!("node {node} drained: no new tasks");
            let deadline = Instant::now() + Duration::from_secs(timeout);
            let mut last = usize::MAX;
            loop {
                let tasks: Vec<Task> = items(api.get("/tasks").await?)?;
                let left = tasks
                    .iter()
                    .filter(|t| t.spec.node == node && t.spec.run.is_none())
                    .filter(|t| !t.state().is_terminal())
                    .count();
                if left == 0 {
                    println!("node {node} is empty");
                    return Ok(());
                }
                if left != last {
                    eprintln!("{left} task(s) still on {node}");
                    last = left;
                }
                if Instant::now() > deadline {
                    bail!("{left} task(s) still on {node} after {timeout}s (the drain goes on)");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        NodeCommand::Undrain { node } => {
            api.call(Method::DELETE, &format!("/nodes/{node}/drain"), None)
                .await?;
            println!("node {node} takes tasks again");
            Ok(())
        }
    }
}
