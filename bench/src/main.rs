//! `pacer-bench` (`make bench`): Pacer's figures at scale, each printed with the ratio to a
//! baseline measured in the same run, and written into bench/RESULTS.md.

mod baseline;
mod bed;
mod report;
mod suite;

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Measures Pacer against baselines taken in the same run")]
struct Args {
    /// The `pacer` binary to drive (a release build for real figures).
    #[arg(long, default_value = "target/release/pacer")]
    pacer: PathBuf,
    /// A tiny run of every benchmark (seconds, not minutes): checks the harness, not Pacer.
    #[arg(long)]
    smoke: bool,
    /// Only these benchmarks (1-8), comma-separated.
    #[arg(long, value_delimiter = ',')]
    only: Vec<u8>,
    /// Where to write the results (the part between the run markers is replaced).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Placement runs as NODESxINSTANCES (e.g. `--placement 1000x10000`), replacing the
    /// scale's own (1000x10000 and 5000x50000; 20x200 with --smoke).
    #[arg(long, value_parser = parse_placement)]
    placement: Vec<(usize, usize)>,
    /// The image of container benchmarks (built by `make images`).
    #[arg(long, default_value = "pacer/busybox:latest")]
    image: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.pacer.exists(),
        "{} is missing: build it first (`cargo build --release -p pacer-cli`)",
        args.pacer.display()
    );
    let mut scale = if args.smoke {
        suite::Scale::smoke()
    } else {
        suite::Scale::full()
    };
    if !args.placement.is_empty() {
        scale.placements = args.placement.clone();
    }
    let started = std::time::Instant::now();
    let run = suite::Run {
        pacer: args.pacer.clone(),
        image: args.image.clone(),
        scale,
        only: args.only.clone(),
    };
    let figures = run.all().await?;
    let took = started.elapsed();
    let table = report::table(&figures);
    println!("{table}");
    println!("whole run: {:.0} s", took.as_secs_f64());
    if let Some(out) = &args.out {
        report::write(
            out,
            &figures,
            took,
            &std::env::args().collect::<Vec<_>>().join(" "),
        )?;
        println!("written to {}", out.display());
    }
    Ok(())
}

fn parse_placement(s: &str) -> Result<(usize, usize), String> {
    let (nodes, instances) = s
        .split_once('x')
        .ok_or_else(|| format!("{s:?} is not NODESxINSTANCES"))?;
    let number = |v: &str, what: &str| match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{what} {v:?} is not a positive number")),
    };
    Ok((number(nodes, "nodes")?, number(instances, "instances")?))
}
