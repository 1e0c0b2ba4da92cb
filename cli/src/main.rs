//! `pacer`: the one binary. Daemons (`up`, `server`, `agent`) and the kubectl-like client.

mod audit;
mod certs;
mod client;
mod config;
mod daemons;
mod etcd;
mod explain;
mod jobs;
mod manifests;
mod nodes;
mod rollout;
mod show;
mod tokens;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pacer",
    version,
    about = "Pacer: Mesos + Marathon, rebuilt as reconcilers over etcd"
)]
struct Cli {
    /// Where the apiserver listens, for client commands (else PACER_SERVER, else the config
    /// file: PACER_CONFIG, .pacer/config, ~/.config/pacer/config).
    #[arg(long, global = true)]
    server: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A complete single-node cluster in one process: etcd, apiserver, controllers, one agent.
    Up(daemons::UpArgs),
    /// The apiserver and the controllers.
    Server(daemons::ServerArgs),
    /// A node agent.
    Agent(daemons::AgentCommand),
    /// Create or update records from YAML or JSON files or folders.
    Apply(manifests::ApplyArgs),
    /// List records: apps, tasks, nodes, offers, deployments.
    Get(show::GetArgs),
    /// Show an app in detail, with its tasks and why instances wait.
    Describe(show::DescribeArgs),
    /// Set the number of instances of an app.
    Scale(manifests::ScaleArgs),
    /// Delete an app by id, or the apps of a file.
    Delete(manifests::DeleteArgs),
    /// Print the output of a task.
    Logs(show::LogsArgs),
    /// Follow, list or undo an app's deployments.
    Rollout(rollout::RolloutArgs),
    /// Replace every task of an app with a fresh one (a new version, same definition).
    Restart(rollout::RestartArgs),
    /// Launch a crash-looping app's next instance now, not after its backoff delay.
    ResetDelay(rollout::ResetDelayArgs),
    /// Run a command once on the cluster and exit with its exit code (mesos-execute).
    Run(jobs::RunArgs),
    /// Why an app's instances are not placed: per node, the reason.
    Explain(explain::ExplainArgs),
    /// Drain a node (move its tasks away, take no new ones) or let it take tasks again.
    Node(nodes::NodeArgs),
    /// Create, list or revoke API tokens (admin).
    Token(tokens::TokenArgs),
    /// The client configuration: `pacer config env` prints it for a shell.
    Config(config::ConfigArgs),
    /// Create the cluster CA or issue certificates for servers, agents and etcd.
    Certs(certs::CertsArgs),
    /// Show recent entries of the audit log: who changed what, when, from where.
    Audit(audit::AuditArgs),
    /// Set up etcd's access control for Pacer's identities (as etcd's root).
    Etcd(etcd::EtcdCommand),
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PACER_LOG")
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    pacer_runtime::install_crypto();
    let cli = Cli::parse();
    // The daemons and `certs` need no client of the API.
    let command = match cli.command {
        Command::Up(args) => return exit_on_error(daemons::up(args).await),
        Command::Server(args) => return exit_on_error(daemons::server(args).await),
        Command::Agent(args) => return exit_on_error(daemons::agent(args).await),
        Command::Certs(args) => return exit_on_error(certs::certs(args)),
        Command::Audit(args) => return exit_on_error(audit::audit(args)),
        Command::Etcd(args) => return exit_on_error(etcd::etcd(args).await),
        client_command => client_command,
    };
    let settings = match config::ClientConfig::resolve(cli.server.as_deref()) {
        Ok(settings) => settings,
        Err(e) => return exit_on_error(Err(e)),
    };
    let api = client::ApiClient::new(&settings);
    let outcome = match command {
        Command::Up(_)
        | Command::Server(_)
        | Command::Agent(_)
        | Command::Certs(_)
        | Command::Audit(_)
        | Command::Etcd(_) => Ok(()),
        Command::Apply(args) => manifests::apply(&api, args).await,
        Command::Get(args) => show::get(&api, args).await,
        Command::Describe(args) => show::describe(&api, args).await,
        Command::Scale(args) => manifests::scale(&api, args).await,
        Command::Delete(args) => manifests::delete(&api, args).await,
        Command::Logs(args) => show::logs(&api, args).await,
        Command::Rollout(args) => rollout::rollout(&api, args).await,
        Command::Restart(args) => rollout::restart(&api, args).await,
        Command::ResetDelay(args) => rollout::reset_delay(&api, args).await,
        Command::Explain(args) => explain::explain(&api, args).await,
        Command::Node(args) => nodes::node(&api, args).await,
        Command::Token(args) => tokens::token(&api, args).await,
        Command::Config(args) => config::config(&settings, args),
        Command::Run(args) => match jobs::run(&api, args).await {
            Ok(code) => std::process::exit(code),
            Err(e) => Err(e),
        },
    };
    exit_on_error(outcome);
}

/// Prints an error the way every command does and exits with 1.
fn exit_on_error(outcome: anyhow::Result<()>) {
    if let Err(e) = outcome {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
