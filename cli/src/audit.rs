//! `pacer audit`: the recent entries of an audit log (on the machine of the server).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

#[derive(Args)]
pub struct AuditArgs {
    /// The audit log (`--audit-log` of the server; `pacer up` writes `.pacer/audit.log`).
    #[arg(long, env = "PACER_AUDIT_LOG", default_value = ".pacer/audit.log")]
    file: PathBuf,
    /// How many of the latest entries.
    #[arg(short = 'n', long, default_value_t = 20)]
    limit: usize,
    /// Only entries of this user (token name).
    #[arg(long)]
    user: Option<String>,
    /// The entries as JSON lines, as stored.
    #[arg(long)]
    json: bool,
}

pub fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let all = pacer_apiserver::audit::read_recent(&args.file, usize::MAX)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let mine: Vec<_> = all
        .into_iter()
        .filter(|e| args.user.as_ref().is_none_or(|u| &e.user == u))
        .collect();
    let recent = &mine[mine.len().saturating_sub(args.limit)..];
    if args.json {
        for entry in recent {
            println!("{}", serde_json::to_string(entry)?);
        }
        return Ok(());
    }
    let mut table =
        crate::show::table(&["TIME", "USER", "ROLE", "METHOD", "PATH", "STATUS", "SOURCE"]);
    for e in recent {
        table.add_row([
            e.time.as_str(),
            &e.user,
            e.role.as_deref().unwrap_or("-"),
            &e.method,
            &e.path,
            &e.status.to_string(),
            e.source.as_deref().unwrap_or("-"),
        ]);
    }
    println!("{table}");
    Ok(())
}
