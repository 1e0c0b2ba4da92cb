//! The seven benchmarks. Each measures its baseline in the same run, on the same machine, as
//! close in time to the figure as it can.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::baseline;
use crate::bed::{Bed, TaskEvents, cpu_seconds, rss_kib, wait_for};
use crate::report::{Figure, Target};

/// How big each benchmark is.
pub struct Scale {
    /// (simulated nodes, instances) of the placement runs.
    pub placements: Vec<(usize, usize)>,
    /// Instances per app in placement runs.
    per_app: usize,
    latency_rounds: usize,
    burst: usize,
    containers: usize,
    idle_window: Duration,
    lifecycle_tasks: usize,
    /// Apps listed by benchmark 8, and how long each of its rounds lasts.
    api_apps: usize,
    api_round: Duration,
}

impl Scale {
    pub fn full() -> Scale {
        Scale {
            placements: vec![(1000, 10_000), (5000, 50_000)],
            per_app: 500,
            latency_rounds: 20,
            burst: 200,
            containers: 100,
            idle_window: Duration::from_secs(20),
            lifecycle_tasks: 100,
            api_apps: 100,
            api_round: Duration::from_secs(5),
        }
    }

    pub fn smoke() -> Scale {
        Scale {
            placements: vec![(20, 200)],
            per_app: 100,
            latency_rounds: 2,
            burst: 4,
            containers: 2,
            idle_window: Duration::from_secs(2),
            lifecycle_tasks: 10,
            api_apps: 5,
            api_round: Duration::from_millis(500),
        }
    }
}

pub struct Run {
    pub pacer: PathBuf,
    pub image: String,
    pub scale: Scale,
    pub only: Vec<u8>,
}

/// Concurrency of the app controller (its workers), which the etcd baseline copies.
const CONTROLLER_WORKERS: usize = 4;
/// Restarts of the control plane in benchmark 7 (the medians are compared).
const RESTART_ROUNDS: usize = 3;
/// Transitions of a task a user sees: created, running, killed, removed.
const VISIBLE_TRANSITIONS: f64 = 4.0;

fn step(what: &str) {
    eprintln!("== {what}");
}

impl Run {
    fn wants(&self, n: u8) -> bool {
        self.only.is_empty() || self.only.contains(&n)
    }

    pub async fn all(&self) -> Result<Vec<Figure>> {
        let mut figures = Vec::new();
        let mut per_node_kib = None;
        let runs = self.scale.placements.clone();
        for (i, (nodes, instances)) in runs.iter().copied().enumerate() {
            let first = i == 0;
            let last = i + 1 == runs.len();
            let wanted = self.wants(1) || (first && self.wants(7)) || (last && self.wants(5));
            if !wanted {
                continue;
            }
            let (mut bed, capacity) = self
                .placement(nodes, instances, false, &mut figures, &mut per_node_kib)
                .await?;
            if first && self.wants(7) {
                self.restart(&mut bed, instances, &mut figures).await?;
            }
            if last && self.wants(5) {
                self.idle(&mut bed, nodes, instances, capacity, &mut figures)
                    .await?;
            }
        }
        // The same runs with the agents paused while placing: what the scheduler and its
        // writes alone achieve, as Kubernetes' scheduler_perf measures it (no kubelets).
        if self.wants(1) {
            for (nodes, instances) in runs.iter().copied() {
                let (bed, _) = self
                    .placement(nodes, instances, true, &mut figures, &mut None)
                    .await?;
                drop(bed);
            }
        }
        if self.wants(2) || self.wants(3) || self.wants(4) {
            self.containers(&mut figures, per_node_kib).await?;
        }
        if self.wants(6) {
            self.lifecycle(&mut figures).await?;
        }
        if self.wants(8) {
            self.api_cost(&mut figures).await?;
        }
        Ok(figures)
    }

    /// Benchmark 1: Placements per second from pending to bound, against raw etcd compare-and-put
    /// transactions of the same value size and concurrency, measured just before. `paused`
    /// stops (SIGSTOP) the simulated agents while placing, so that their status writes do not
    /// compete with the placements; they carry on (SIGCONT) once every instance is bound.
    async fn placement(
        &self,
        nodes: usize,
        instances: usize,
        paused: bool,
        figures: &mut Vec<Figure>,
        per_node_kib: &mut Option<f64>,
    ) -> Result<(Bed, Capacity)> {
        let alone = if paused {
            ", scheduler alone (agents paused)"
        } else {
            ""
        };
        step(&format!(
            "placement{alone}: {nodes} simulated nodes, {instances} instances"
        ));
        let mut bed = Bed::start(&self.pacer).await?;
        bed.start_server().await?;
        let sim = bed.start_simulated("sim", nodes, &[]).await?;
        // Memory per simulated node: this process against one simulating a single node.
        let one = bed.start_simulated("one", 1, &[]).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss_n, rss_1) = (
            rss_kib(bed.agents[sim].pid())?,
            rss_kib(bed.agents[one].pid())?,
        );
        if nodes > 1 {
            *per_node_kib = Some(rss_n.saturating_sub(rss_1) as f64 / (nodes - 1) as f64);
        }
        // Warm up and learn the size of a task record.
        bed.post_app(&sim_app("/bench/warmup", 1)).await?;
        let value_size = wait_for(Duration::from_secs(30), "the warm-up task", || async {
            let mut c = bed.client.clone();
            let r = c
                .get(
                    "/pacer/tasks/",
                    Some(etcd_client::GetOptions::new().with_prefix()),
                )
                .await
                .ok()?;
            r.kvs().first().map(|kv| kv.value().len())
        })
        .await?;
        bed.delete_app("/bench/warmup").await?;
        wait_for(
            Duration::from_secs(30),
            "the warm-up task to go",
            || async { (bed.count("/pacer/tasks/").await.ok()? == 0).then_some(()) },
        )
        .await?;
        let etcd_cpu = cpu_seconds(bed.etcd.pid())?;
        let run_for = Duration::from_secs(3);
        let txn_rate =
            baseline::cas_rate(&bed.client, CONTROLLER_WORKERS, value_size, run_for).await?;
        let etcd_cores = (cpu_seconds(bed.etcd.pid())? - etcd_cpu) / run_for.as_secs_f64();
        eprintln!(
            "  baseline: {txn_rate:.0} compare-and-put txn/s ({CONTROLLER_WORKERS} workers, {value_size} B values), etcd using {etcd_cores:.2} cores"
        );

        let apps = instances.div_ceil(self.scale.per_app);
        let pids = [
            ("etcd", bed.etcd.pid()),
            ("server", bed.server.as_ref().expect("started").pid()),
            ("agents", bed.agents[sim].pid()),
        ];
        let cpu_before = pids.map(|(_, pid)| cpu_seconds(pid).unwrap_or(0.0));
        let revision_before = bed.revision().await?;
        // Writes by kind while placing (PACER_BENCH_KINDS=1; the extra watch costs etcd a little).
        let kinds = match std::env::var_os("PACER_BENCH_KINDS") {
            Some(_) => Some(KindCounter::watch(&bed).await?),
            None => None,
        };
        let agents = bed.agents[sim].pid().to_string();
        if paused {
            signal("STOP", &agents)?;
        }
        let start = Instant::now();
        for a in 0..apps {
            let n = self.scale.per_app.min(instances - a * self.scale.per_app);
            bed.post_app(&sim_app(&format!("/bench/p{a}"), n)).await?;
        }
        let limit = Duration::from_secs(60 + instances as u64 / 100);
        let progress = Progress::new(instances);
        wait_for(limit, &format!("{instances} placements"), || async {
            let placed = bed.count("/pacer/tasks/").await.ok()? as usize;
            progress.show(placed);
            (placed >= instances || progress.stalled(placed, STALL)).then_some(())
        })
        .await
        .with_context(|| bed.log("server"))?;
        let placed = bed.count("/pacer/tasks/").await? as usize;
        anyhow::ensure!(
            placed >= instances,
            "placements stalled at {placed} of {instances} for {STALL:?}\n{}",
            bed.log("server")
        );
        let bound = start.elapsed().as_secs_f64();
        let rate = instances as f64 / bound;
        let cores: Vec<String> = pids
            .iter()
            .zip(cpu_before)
            .map(|((name, pid), before)| {
                let used = cpu_seconds(*pid).unwrap_or(before) - before;
                format!("{name} {:.2}", used / bound)
            })
            .collect();
        if paused {
            signal("CONT", &agents)?;
        }
        let revisions = bed.revision().await? - revision_before;
        eprintln!(
            "  {instances} bound in {bound:.1} s: {rate:.0} placements/s (cores used: {}; {:.2} etcd revisions per placement)",
            cores.join(", "),
            revisions as f64 / instances as f64
        );
        if let Some(kinds) = &kinds {
            eprintln!("  keys written per placement: {}", kinds.summary(instances));
        }
        let running = wait_for(limit, "every instance running", || async {
            (bed.tasks_running().await.ok()? >= instances as i64).then_some(())
        })
        .await
        .map(|_| start.elapsed().as_secs_f64());
        let running = running.with_context(|| bed.log("server"))?;
        eprintln!("  all {instances} running after {running:.1} s");
        if self.wants(1) {
            figures.push(Figure {
                bench: format!("1. placement{alone}, {nodes} nodes, {instances} instances"),
                measured: format!("{rate:.0} placements/s ({bound:.1} s to bound, {running:.1} s to running)"),
                baseline: format!(
                    "{txn_rate:.0} etcd compare-and-put txn/s ({CONTROLLER_WORKERS} clients, {value_size} B)"
                ),
                ratio: rate / txn_rate,
                target: Target::AtLeast(1.0),
            });
            if nodes >= 5000 && !paused {
                figures.push(Figure {
                    bench: format!("1. placement rate at {nodes} nodes"),
                    measured: format!("{rate:.0} placements/s"),
                    baseline: "target 2000 placements/s".into(),
                    ratio: rate / 2000.0,
                    target: Target::AtLeast(1.0),
                });
            }
        }
        let capacity = Capacity {
            txn_rate,
            etcd_cores,
        };
        Ok((bed, capacity))
    }

    /// Benchmark 7: A control plane restarted over `instances` tasks: from the new process' start until
    /// it acts on a change (one more instance bound), against a bare list + watch of the same
    /// keys.
    async fn restart(
        &self,
        bed: &mut Bed,
        instances: usize,
        figures: &mut Vec<Figure>,
    ) -> Result<()> {
        step(&format!("controller restart over {instances} tasks"));
        bed.settle(Duration::from_secs(1), Duration::from_secs(60))
            .await?;
        let prefixes = [
            "/pacer/apps/",
            "/pacer/tasks/",
            "/pacer/nodes/",
            "/pacer/offers/",
            "/pacer/deployments/",
            "/pacer/roles/",
            "/pacer/jobs/",
            "/pacer/jobruns/",
            "/pacer/drains/",
        ];
        // Three rounds each, interleaved; the medians are compared.
        let (mut bare, mut synced, mut acting, mut keys): (Vec<f64>, Vec<f64>, Vec<f64>, usize) =
            (Vec::new(), Vec::new(), Vec::new(), 0);
        for round in 1..=RESTART_ROUNDS {
            let (took, listed) = baseline::list_and_watch(&bed.etcd.endpoint, &prefixes).await?;
            bare.push(took);
            keys = listed;
            let (s, a) = self.restart_once(bed, instances, round).await?;
            synced.push(s);
            acting.push(a);
        }
        let [bare_s, synced, acting] = [&bare, &synced, &acting].map(|v| percentile(v, 50.0));
        eprintln!(
            "  caches synced in {synced:.3} s, acting again {acting:.2} s after start; bare list + watch of {keys} keys: {bare_s:.3} s"
        );
        figures.push(Figure {
            bench: format!("7. controller restart, {instances} tasks"),
            measured: format!(
                "{synced:.3} s to resync ({acting:.2} s from process start to a change acted on)"
            ),
            baseline: format!("{bare_s:.3} s bare list + watch of {keys} keys"),
            ratio: synced / bare_s,
            target: Target::AtMost(2.0),
        });
        Ok(())
    }

    /// Stops the server and starts a new one; returns (seconds until its caches synced,
    /// seconds from its start until it bound one more instance).
    async fn restart_once(
        &self,
        bed: &mut Bed,
        instances: usize,
        round: usize,
    ) -> Result<(f64, f64)> {
        if let Some(server) = bed.server.take() {
            server.stop().await;
        }
        let name = format!("server-{}", round + 1);
        let before = bed.count("/pacer/tasks/").await?;
        let start = Instant::now();
        let listen = bed.api.trim_start_matches("https://").to_string();
        let args = bed.server_args(&listen);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bed.server = Some(bed.spawn(&name, &args)?);
        let id = "/bench/p0";
        let wanted = self.scale.per_app.min(instances) + round;
        wait_for(
            Duration::from_secs(60),
            "the restarted server to take a scale",
            || async { bed.scale(id, wanted).await.ok() },
        )
        .await
        .with_context(|| bed.log(&name))?;
        wait_for(
            Duration::from_secs(120),
            "the new instance to be bound",
            || async { (bed.count("/pacer/tasks/").await.ok()? > before).then_some(()) },
        )
        .await
        .with_context(|| bed.log(&name))?;
        let acting = start.elapsed().as_secs_f64();
        let log = bed.full_log(&name);
        if std::env::var_os("PACER_BENCH_LOG").is_some() {
            eprintln!("{log}");
        }
        let synced = log
            .lines()
            .filter(|l| l.contains("caches synced"))
            .find_map(|l| l.split("took_ms=").nth(1))
            .and_then(|v| {
                v.trim_start_matches(|c: char| !c.is_ascii_digit())
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
            })
            .and_then(|v| v.parse::<f64>().ok())
            .map(|ms| ms / 1000.0)
            .with_context(|| {
                format!(
                    "no 'caches synced' line in the server's log\n{}",
                    bed.log(&name)
                )
            })?;
        Ok((synced, acting))
    }

    /// Benchmark 5: A settled cluster of `nodes` simulated nodes: etcd writes/s and CPU against what
    /// etcd did at capacity in the placement baseline.
    async fn idle(
        &self,
        bed: &mut Bed,
        nodes: usize,
        instances: usize,
        capacity: Capacity,
        figures: &mut Vec<Figure>,
    ) -> Result<()> {
        step(&format!(
            "idle load: {nodes} simulated nodes, {instances} tasks running"
        ));
        bed.settle(Duration::from_secs(2), Duration::from_secs(120))
            .await
            .ok();
        let mut pids = vec![("etcd", bed.etcd.pid())];
        if let Some(s) = &bed.server {
            pids.push(("server", s.pid()));
        }
        pids.extend(bed.agents.iter().map(|a| ("agents", a.pid())));
        let cpu = |pids: &[(&str, u32)]| -> BTreeMap<String, f64> {
            let mut m = BTreeMap::new();
            for (name, pid) in pids {
                *m.entry(name.to_string()).or_default() += cpu_seconds(*pid).unwrap_or(0.0);
            }
            m
        };
        let (rev0, cpu0) = (bed.revision().await?, cpu(&pids));
        let window = self.scale.idle_window;
        tokio::time::sleep(window).await;
        let (rev1, cpu1) = (bed.revision().await?, cpu(&pids));
        let secs = window.as_secs_f64();
        let writes = (rev1 - rev0) as f64 / secs;
        let cores = |name: &str| {
            (cpu1.get(name).copied().unwrap_or(0.0) - cpu0.get(name).copied().unwrap_or(0.0)) / secs
        };
        let (etcd, server, agents) = (cores("etcd"), cores("server"), cores("agents"));
        eprintln!(
            "  {writes:.1} writes/s; cores used: etcd {etcd:.3}, server {server:.3}, simulated agents {agents:.3}"
        );
        figures.push(Figure {
            bench: format!("5. idle etcd writes, {nodes} nodes"),
            measured: format!("{writes:.1} writes/s"),
            baseline: format!("{:.0} txn/s etcd capacity", capacity.txn_rate),
            ratio: writes / capacity.txn_rate,
            target: Target::AtMost(0.05),
        });
        let control = etcd + server;
        figures.push(Figure {
            bench: format!("5. idle control-plane CPU, {nodes} nodes"),
            measured: format!(
                "{control:.3} cores (etcd {etcd:.3}, server {server:.3}; agents {agents:.3})"
            ),
            baseline: format!("{:.2} cores etcd at capacity", capacity.etcd_cores),
            ratio: control / capacity.etcd_cores,
            target: Target::AtMost(0.05),
        });
        Ok(())
    }

    /// Benchmarks 2, 3, 4: a real agent on the Docker engine.
    async fn containers(&self, figures: &mut Vec<Figure>, per_node_kib: Option<f64>) -> Result<()> {
        let mut bed = Bed::start(&self.pacer).await?;
        bed.start_server().await?;
        let agent = bed.start_agent("bench-agent", "64", "65536").await?;
        let pid = bed.agents[agent].pid();
        let cleanup = Cleanup;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_kib = rss_kib(pid)?;
        if self.wants(2) {
            self.latency(&bed, figures).await?;
        }
        if self.wants(3) || self.wants(4) {
            self.burst(&bed, figures).await?;
        }
        if self.wants(4) {
            let n = self.scale.containers;
            step(&format!("agent memory with {n} containers"));
            bed.scale("/bench/burst", n).await?;
            wait_for(
                Duration::from_secs(120),
                &format!("{n} containers"),
                || async {
                    (bed.count("/pacer/tasks/").await.ok()? == n as i64
                        && labelled_containers("pacer.io/node=bench-agent") == n)
                        .then_some(())
                },
            )
            .await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let busy_kib = rss_kib(pid)?;
            eprintln!(
                "  agent RSS idle {} KiB, with {n} containers {} KiB",
                idle_kib, busy_kib
            );
            let mib = |k: u64| k as f64 / 1024.0;
            figures.push(Figure {
                bench: "4. agent memory, idle".into(),
                measured: format!("{:.1} MiB RSS", mib(idle_kib)),
                baseline: "target 25 MiB".into(),
                ratio: mib(idle_kib) / 25.0,
                target: Target::AtMost(1.0),
            });
            figures.push(Figure {
                bench: format!("4. agent memory, {n} containers"),
                measured: format!("{:.1} MiB RSS", mib(busy_kib)),
                baseline: "target 50 MiB".into(),
                ratio: mib(busy_kib) / 50.0,
                target: Target::AtMost(1.0),
            });
            if let Some(kib) = per_node_kib {
                figures.push(Figure {
                    bench: "4. memory per simulated node".into(),
                    measured: format!("{kib:.1} KiB"),
                    baseline: "target 50 KiB".into(),
                    ratio: kib / 50.0,
                    target: Target::AtMost(1.0),
                });
            }
        }
        bed.delete_app("/bench/burst").await.ok();
        wait_for(
            Duration::from_secs(120),
            "the agent's containers to go",
            || async { (labelled_containers("pacer.io/node=bench-agent") == 0).then_some(()) },
        )
        .await
        .ok();
        drop(cleanup);
        Ok(())
    }

    /// Benchmark 2: apply-to-running of one container, interleaved with `docker run -d` of the same image.
    async fn latency(&self, bed: &Bed, figures: &mut Vec<Figure>) -> Result<()> {
        let rounds = self.scale.latency_rounds;
        step(&format!(
            "apply to running, {rounds} rounds against docker run -d"
        ));
        let events = TaskEvents::watch(bed).await?;
        let (mut pacer, mut docker) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let id = format!("/bench/lat{round}");
            let before = events.running();
            let start = Instant::now();
            bed.post_app(&docker_app(&id, 1, &self.image)).await?;
            wait_for(Duration::from_secs(60), "the task to run", || async {
                (events.running() > before).then_some(())
            })
            .await
            .with_context(|| bed.log("bench-agent"))?;
            pacer.push(events.running_since(start));
            docker.push(baseline::docker_run(&self.image, "pacer-bench=1")?);
            bed.delete_app(&id).await?;
            wait_for(Duration::from_secs(60), "the container to go", || async {
                (bed.count("/pacer/tasks/").await.ok()? == 0
                    && labelled_containers("pacer.io/node=bench-agent") == 0)
                    .then_some(())
            })
            .await?;
        }
        let (p50, p99) = (percentile(&pacer, 50.0), percentile(&pacer, 99.0));
        let (d50, d99) = (percentile(&docker, 50.0), percentile(&docker, 99.0));
        eprintln!(
            "  pacer p50 {p50:.3} s p99 {p99:.3} s; docker run p50 {d50:.3} s p99 {d99:.3} s"
        );
        for (label, ours, theirs) in [("p50", p50, d50), ("p99", p99, d99)] {
            figures.push(Figure {
                bench: format!("2. apply to running, {label}"),
                measured: format!("{:.0} ms", ours * 1000.0),
                baseline: format!("{:.0} ms docker run -d", theirs * 1000.0),
                ratio: ours / theirs,
                target: Target::AtMost(1.3),
            });
        }
        Ok(())
    }

    /// Benchmark 3: A burst of containers to running, against a bare bollard launcher starting as many
    /// at once.
    async fn burst(&self, bed: &Bed, figures: &mut Vec<Figure>) -> Result<()> {
        let n = self.scale.burst;
        step(&format!(
            "burst of {n} containers against a bare bollard launcher"
        ));
        let bare = bollard_burst(&self.image, n).await?;
        let events = TaskEvents::watch(bed).await?;
        let start = Instant::now();
        bed.post_app(&docker_app("/bench/burst", n, &self.image))
            .await?;
        let progress = Progress::new(n);
        wait_for(
            Duration::from_secs(300),
            &format!("{n} containers running"),
            || async {
                progress.show(events.running());
                (events.running() >= n).then_some(())
            },
        )
        .await
        .with_context(|| bed.log("bench-agent"))?;
        let ours = events.running_since(start);
        eprintln!("  pacer {ours:.2} s, bare bollard {bare:.2} s");
        figures.push(Figure {
            bench: format!("3. burst of {n} containers to running"),
            measured: format!("{ours:.2} s"),
            baseline: format!("{bare:.2} s bare bollard launcher, {n} at once"),
            ratio: ours / bare,
            target: Target::AtMost(1.2),
        });
        Ok(())
    }

    /// Benchmark 6: etcd revisions over whole task lifecycles (created, running, killed, removed).
    async fn lifecycle(&self, figures: &mut Vec<Figure>) -> Result<()> {
        let mut bed = Bed::start(&self.pacer).await?;
        bed.start_server().await?;
        bed.start_simulated("life", 10, &[]).await?;
        for n in [1, self.scale.lifecycle_tasks] {
            step(&format!("etcd revisions per task lifecycle, {n} task(s)"));
            let id = format!("/bench/life{n}");
            let kinds = KindCounter::watch(&bed).await?;
            let rev0 = bed
                .settle(Duration::from_secs(1), Duration::from_secs(30))
                .await?;
            bed.post_app(&sim_app(&id, n)).await?;
            wait_for(Duration::from_secs(60), "the tasks to run", || async {
                (bed.tasks_running().await.ok()? == n as i64).then_some(())
            })
            .await?;
            bed.scale(&id, 0).await?;
            wait_for(
                Duration::from_secs(60),
                "the tasks to be removed",
                || async { (bed.count("/pacer/tasks/").await.ok()? == 0).then_some(()) },
            )
            .await?;
            let rev1 = bed
                .settle(Duration::from_secs(1), Duration::from_secs(30))
                .await?;
            let per_task = (rev1 - rev0) as f64 / n as f64;
            let by_kind = kinds.summary(n);
            eprintln!(
                "  {} revisions, {per_task:.2} per task; writes per task by kind: {by_kind}",
                rev1 - rev0
            );
            figures.push(Figure {
                bench: format!("6. etcd revisions per task lifecycle, {n} task(s)"),
                measured: format!("{per_task:.2} revisions per task ({by_kind})"),
                baseline: format!("{VISIBLE_TRANSITIONS} transitions seen"),
                ratio: per_task / VISIBLE_TRANSITIONS,
                target: Target::AtMost(1.5),
            });
            bed.delete_app(&id).await?;
            bed.settle(Duration::from_secs(1), Duration::from_secs(30))
                .await?;
        }
        Ok(())
    }
}

impl Run {
    /// Benchmark 8: what security costs the API. `GET /v2/apps` with HTTPS and a token
    /// against the same on a replica started `--insecure` (plain HTTP, no authentication), on
    /// the same etcd and records, alternating rounds so that both see the same machine.
    async fn api_cost(&self, figures: &mut Vec<Figure>) -> Result<()> {
        let n = self.scale.api_apps;
        step(&format!(
            "GET /v2/apps ({n} apps): HTTPS + token against plain HTTP without authentication"
        ));
        let mut bed = Bed::start(&self.pacer).await?;
        bed.start_server().await?;
        let plain_addr = format!("127.0.0.1:{}", pacer_runtime::etcd_process::free_port());
        let plain_server = bed.spawn(
            "plain-server",
            &[
                "server",
                "--insecure",
                "--listen",
                &plain_addr,
                "--leader-ttl",
                "10",
            ],
        )?;
        for i in 0..n {
            bed.post_app(&sim_app(&format!("/bench/api{i}"), 0)).await?;
        }
        let plain = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let plain_url = format!("http://{plain_addr}/v2/apps");
        wait_for(Duration::from_secs(30), "the plain replica", || async {
            let resp = plain.get(&plain_url).send().await.ok()?;
            resp.status().is_success().then_some(())
        })
        .await?;
        let secure_url = format!("{}/v2/apps", bed.api);
        let (mut secure_rates, mut plain_rates) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            secure_rates
                .push(requests_per_second(&bed.http, &secure_url, self.scale.api_round).await?);
            plain_rates.push(requests_per_second(&plain, &plain_url, self.scale.api_round).await?);
        }
        drop(plain_server);
        let (secure, plain) = (median(&mut secure_rates), median(&mut plain_rates));
        eprintln!(
            "  {secure:.0} requests/s with TLS + token, {plain:.0} plain (medians of 3 rounds)"
        );
        figures.push(Figure {
            bench: format!("8. GET /v2/apps ({n} apps), 16 connections"),
            measured: format!("{secure:.0} requests/s over HTTPS with a token"),
            baseline: format!("{plain:.0} requests/s over plain HTTP, no authentication"),
            ratio: secure / plain.max(1e-9),
            target: Target::AtLeast(0.8),
        });
        Ok(())
    }
}

/// Requests per second of 16 concurrent loops of GETs of `url` for `round`, after a short
/// warm-up (connections open, TLS sessions made).
async fn requests_per_second(http: &reqwest::Client, url: &str, round: Duration) -> Result<f64> {
    let get = |http: reqwest::Client, url: String| async move {
        let resp = http.get(&url).send().await?;
        anyhow::ensure!(resp.status().is_success(), "GET {url}: {}", resp.status());
        resp.bytes().await?;
        Ok::<_, anyhow::Error>(())
    };
    let warm: Vec<_> = (0..16)
        .map(|_| get(http.clone(), url.to_string()))
        .collect();
    for done in futures::future::join_all(warm).await {
        done?;
    }
    let start = Instant::now();
    let loops: Vec<_> = (0..16)
        .map(|_| {
            let (http, url) = (http.clone(), url.to_string());
            tokio::spawn(async move {
                let mut count = 0u64;
                while start.elapsed() < round {
                    get(http.clone(), url.clone()).await?;
                    count += 1;
                }
                Ok::<_, anyhow::Error>(count)
            })
        })
        .collect();
    let mut total = 0;
    for done in futures::future::join_all(loops).await {
        total += done??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// What etcd did at capacity in the placement baseline.
#[derive(Clone, Copy)]
struct Capacity {
    txn_rate: f64,
    etcd_cores: f64,
}

/// Counts key writes per kind (`tasks`, `offers`, ...) from a watch on every record.
struct KindCounter {
    counts: std::sync::Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
}

impl KindCounter {
    async fn watch(bed: &Bed) -> Result<KindCounter> {
        let counts: std::sync::Arc<std::sync::Mutex<BTreeMap<String, usize>>> = Default::default();
        let options = etcd_client::WatchOptions::new().with_prefix();
        let mut c = bed.client.clone();
        let mut stream = c.watch("/pacer/", Some(options)).await?;
        let shared = counts.clone();
        tokio::spawn(async move {
            while let Ok(Some(resp)) = stream.message().await {
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    let kind = key.split('/').nth(2).unwrap_or("?").to_string();
                    *shared.lock().expect("counts").entry(kind).or_default() += 1;
                }
            }
        });
        Ok(KindCounter { counts })
    }

    fn summary(&self, per: usize) -> String {
        self.counts
            .lock()
            .expect("counts")
            .iter()
            .map(|(k, v)| format!("{k} {:.2}", *v as f64 / per as f64))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A wait whose count has not moved this long gives up.
const STALL: Duration = Duration::from_secs(30);

/// Prints how far a long wait has got, every 2 s, and tells when it stopped moving.
struct Progress {
    total: usize,
    last: std::sync::Mutex<Instant>,
    moved: std::sync::Mutex<(usize, Instant)>,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            last: std::sync::Mutex::new(Instant::now()),
            moved: std::sync::Mutex::new((0, Instant::now())),
        }
    }

    /// True when `done` has not changed for `limit`.
    fn stalled(&self, done: usize, limit: Duration) -> bool {
        let mut moved = self.moved.lock().expect("progress");
        if moved.0 != done {
            *moved = (done, Instant::now());
        }
        moved.1.elapsed() >= limit
    }

    fn show(&self, done: usize) {
        let mut last = self.last.lock().expect("progress");
        if last.elapsed() >= Duration::from_secs(2) {
            eprintln!("  ... {done} of {}", self.total);
            *last = Instant::now();
        }
    }
}

/// An app for simulated nodes (the fake runtime runs anything). No ports (Marathon's default
/// gives one): the figures compare placement with the runs before that default.
fn sim_app(id: &str, instances: usize) -> Value {
    json!({
        "id": id, "cmd": "sleep 3600", "instances": instances,
        "cpus": 0.1, "mem": 32, "disk": 0, "portDefinitions": []
    })
}

/// A Docker app of `image` running `sleep 3600`.
fn docker_app(id: &str, instances: usize, image: &str) -> Value {
    json!({
        "id": id, "cmd": "sleep 3600", "instances": instances,
        "cpus": 0.01, "mem": 16, "disk": 0, "portDefinitions": [],
        "container": {"type": "DOCKER", "docker": {"image": image}}
    })
}

/// Sends SIGNAL to process `pid`.
fn signal(signal: &str, pid: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), pid])
        .status()?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

/// Nearest-rank percentile of unsorted samples.
fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// Containers carrying `label` (running or not).
fn labelled_containers(label: &str) -> usize {
    std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

/// Removes the baseline's containers when dropped (also on an early error).
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ids = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", "label=pacer-bench=1"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .arg("rm")
                .arg("-f")
                .args(&ids)
                .output();
        }
    }
}

/// Seconds for a bare bollard launcher to create and start `n` containers at once; they are
/// removed afterwards (not timed).
async fn bollard_burst(image: &str, n: usize) -> Result<f64> {
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
    let docker = bollard::Docker::connect_with_local_defaults()?
        .negotiate_version()
        .await?;
    let start = Instant::now();
    let launches = (0..n).map(|i| {
        let docker = docker.clone();
        async move {
            let name = format!("pacer-bench-{i}-{}", std::process::id());
            let body = ContainerCreateBody {
                image: Some(image.to_string()),
                cmd: Some(vec!["sh".into(), "-c".into(), "sleep 3600".into()]),
                labels: Some([("pacer-bench".to_string(), "1".to_string())].into()),
                ..Default::default()
            };
            let options = CreateContainerOptionsBuilder::new().name(&name).build();
            let created = docker.create_container(Some(options), body).await?;
            docker
                .start_container(
                    &created.id,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await?;
            anyhow::Ok(created.id)
        }
    });
    let ids = futures::future::try_join_all(launches).await?;
    let took = start.elapsed().as_secs_f64();
    let removals = ids.iter().map(|id| {
        let docker = docker.clone();
        async move {
            let options = RemoveContainerOptionsBuilder::new().force(true).build();
            let _ = docker.remove_container(id, Some(options)).await;
        }
    });
    futures::future::join_all(removals).await;
    Ok(took)
}
