//! `pacer`: the one binary. Daemons (`up`, `server`, `agent`) and the kubectl-like client.

mod client;
mod daemons;
mod explain;
mod jobs;
mod manifests;
mod nodes;
mod rollout;
mod show;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pacer",
    version,
    about = "Pacer: Mesos + Marathon, rebuilt as reconcilers over etcd"
)]
struct Cli {
    /// Where the apiserver listens, for client commands.
    #[arg(
        long,
        env = "PACER_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
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
    let cli = Cli::parse();
    let api = client::ApiClient::new(&cli.server);
    let outcome = match cli.command {
        Command::Up(args) => daemons::up(args).await,
        Command::Server(args) => daemons::server(args).await,
        Command::Agent(args) => daemons::agent(args).await,
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
        Command::Run(args) => match jobs::run(&api, args).await {
            Ok(code) => std::process::exit(code),
            Err(e) => Err(e),
        },
    };
    if let Err(e) = outcome {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
