//! The figures as a terminal table and as the run section of bench/RESULTS.md.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use comfy_table::{Table, presets::ASCII_MARKDOWN};

/// One measured figure against its baseline.
#[derive(Debug, Clone)]
pub struct Figure {
    pub bench: String,
    pub measured: String,
    pub baseline: String,
    /// measured / baseline, in the unit the target speaks of.
    pub ratio: f64,
    pub target: Target,
}

/// What the ratio must be.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Figure {
    pub fn met(&self) -> bool {
        match self.target {
            Target::AtLeast(t) => self.ratio >= t,
            Target::AtMost(t) => self.ratio <= t,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::AtLeast(t) => write!(f, ">= {t}"),
            Target::AtMost(t) => write!(f, "<= {t}"),
        }
    }
}

pub fn table(figures: &[Figure]) -> String {
    let mut table = Table::new();
    table.load_style(ASCII_MARKDOWN).set_header([
        "benchmark",
        "measured",
        "baseline (same run)",
        "ratio",
        "target",
        "met",
    ]);
    for f in figures {
        table.add_row([
            f.bench.clone(),
            f.measured.clone(),
            f.baseline.clone(),
            format!("{:.3}", f.ratio),
            f.target.to_string(),
            if f.met() { "yes" } else { "NO" }.to_string(),
        ]);
    }
    table.to_string()
}

const BEGIN: &str = "<!-- run:begin (written by pacer-bench; the rest of the file is kept) -->";
const END: &str = "<!-- run:end -->";

/// Replaces the run section of `path` (or creates the file) with this run.
pub fn write(path: &Path, figures: &[Figure], took: Duration, command: &str) -> anyhow::Result<()> {
    let section = format!(
        "{BEGIN}\n\n## Last run\n\n{}\n\nCommand: `{command}` ({:.0} s for the whole run).\n\n{}\n\n{END}",
        machine(),
        took.as_secs_f64(),
        table(figures)
    );
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{section}{}", &old[..b], &old[e + END.len()..]),
        _ => format!("# Benchmark results\n\n{section}\n{old}"),
    };
    std::fs::write(path, new)?;
    Ok(())
}

/// Machine, versions and date of the run.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let first_line = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_else(|| "not found".into())
    };
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    [
        format!(
            "- Date: {}",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
        ),
        format!("- Machine: {cores} cores ({model}), {mem_gib:.0} GiB, {os}"),
        format!(
            "- pacer {} (release build), {}",
            env!("CARGO_PKG_VERSION"),
            first_line("rustc", &["--version"])
        ),
        format!("- {}", first_line("etcd", &["--version"])),
        format!(
            "- Docker Engine {}",
            first_line("docker", &["version", "--format", "{{.Server.Version}}"])
        ),
    ]
    .join("\n")
}
