//! `pacer etcd setup|grant-node`: etcd's access control for a cluster of several machines,
//! run as etcd's `root` (a client certificate named `root`: `pacer certs issue root --usage
//! client`).

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::daemons::EtcdArgs;

#[derive(Args)]
pub struct EtcdCommand {
    #[command(flatten)]
    etcd: EtcdArgs,
    #[command(subcommand)]
    command: EtcdSubcommand,
}

#[derive(Subcommand)]
enum EtcdSubcommand {
    /// Create the `root` and `pacer-server` users and turn authentication on (again: no
    /// change). Servers then connect with a certificate named `pacer-server`.
    Setup,
    /// Let the agent of node NAME (certificate `node-NAME`) write its own Node record and its
    /// own tasks' status, and read the rest.
    GrantNode { name: String },
}

pub async fn etcd(args: EtcdCommand) -> anyhow::Result<()> {
    let Some(root) = args.etcd.tls.identity() else {
        bail!("--etcd-cacert, --etcd-cert and --etcd-key: the root identity is needed");
    };
    let endpoints = args.etcd.endpoints();
    match args.command {
        EtcdSubcommand::Setup => {
            pacer_runtime::etcd_auth::enable(endpoints, &root, &args.etcd.prefix)
                .await
                .context("setting up etcd's access control")?;
            println!(
                "etcd: users root and {} exist, authentication is on",
                pacer_runtime::etcd_auth::SERVER_USER
            );
        }
        EtcdSubcommand::GrantNode { name } => {
            pacer_runtime::etcd_auth::grant_node(endpoints, &root, &args.etcd.prefix, &name)
                .await
                .with_context(|| format!("granting node {name}"))?;
            println!(
                "etcd: user {} may write node {name}'s records",
                pacer_runtime::etcd_auth::node_user(&name)
            );
        }
    }
    Ok(())
}
