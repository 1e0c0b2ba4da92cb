//! `pacer get`, `describe` and `logs`: records as tables, YAML or JSON.

use anyhow::bail;
use clap::{Args, ValueEnum};
use comfy_table::{Table, presets};
use pacer_crd::{App, AppId, Deployment, Node, Offer, Task};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::ApiClient;
use pacer_crd::id::path_of;

#[derive(Clone, Copy, ValueEnum)]
pub enum Output {
    Wide,
    Yaml,
    Json,
}

#[derive(Args)]
pub struct GetArgs {
    /// apps, tasks, nodes, offers, deployments, roles, jobs or jobruns.
    kind: String,
    /// Only this record.
    name: Option<String>,
    #[arg(short = 'o', long)]
    output: Option<Output>,
}

#[derive(Args)]
pub struct DescribeArgs {
    /// `app`
    kind: String,
    /// App id: `/prod/web` or `prod_web`.
    id: String,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Task id (`pacer get tasks`), or a job run (`pacer get jobruns`) for its latest attempt.
    task: String,
    /// Lines from the end.
    #[arg(long, default_value_t = 100)]
    tail: usize,
}

/// The plural of a kind as the API spells it.
fn plural(kind: &str) -> anyhow::Result<&'static str> {
    Ok(match kind {
        "app" | "apps" => "apps",
        "task" | "tasks" => "tasks",
        "node" | "nodes" | "no" => "nodes",
        "offer" | "offers" | "of" => "offers",
        "deployment" | "deployments" | "deploy" => "deployments",
        "role" | "roles" | "ro" => "roles",
        "job" | "jobs" | "jo" => "jobs",
        "jobrun" | "jobruns" | "run" | "runs" | "jr" => "jobruns",
        other => bail!(
            "unknown kind '{other}': use apps, tasks, nodes, offers, deployments, roles, jobs or jobruns"
        ),
    })
}

pub(crate) fn items<K: DeserializeOwned>(list: Value) -> anyhow::Result<Vec<K>> {
    Ok(serde_json::from_value(list["items"].clone())?)
}

pub async fn get(api: &ApiClient, args: GetArgs) -> anyhow::Result<()> {
    let plural = plural(&args.kind)?;
    let list = match &args.name {
        Some(name) => {
            let name = if plural == "apps" {
                AppId::parse(name)
                    .map(|i| i.name())
                    .map_err(|e| anyhow::anyhow!(e))?
            } else {
                name.clone()
            };
            let one = api.get(&format!("/{plural}/{name}")).await?;
            serde_json::json!({"items": [one]})
        }
        None => api.get(&format!("/{plural}")).await?,
    };
    match args.output {
        Some(Output::Json) => println!("{}", serde_json::to_string_pretty(&list["items"])?),
        Some(Output::Yaml) => print!("{}", serde_saphyr::to_string(&list["items"])?),
        wide => {
            let wide = matches!(wide, Some(Output::Wide));
            let table = match plural {
                "apps" => apps_table(&items(list)?, wide),
                "tasks" => tasks_table(&items(list)?, wide),
                "nodes" => {
                    let drains: Vec<pacer_crd::Drain> = items(api.get("/drains").await?)?;
                    nodes_table(&items(list)?, &drains, wide)
                }
                "offers" => offers_table(&items(list)?),
                "roles" => roles_table(&items(list)?),
                "jobs" => crate::jobs::jobs_table(&items(list)?),
                "jobruns" => crate::jobs::runs_table(&items(list)?),
                _ => deployments_table(&items(list)?),
            };
            println!("{table}");
        }
    }
    Ok(())
}

fn roles_table(roles: &[pacer_crd::Role]) -> Table {
    let mut t = table(&["NAME", "WEIGHT", "GUARANTEE", "LIMIT"]);
    let quantities = |q: &Option<pacer_crd::Quantities>| {
        let Some(q) = q else { return "-".to_string() };
        [("cpus", q.cpus), ("mem", q.mem), ("disk", q.disk)]
            .into_iter()
            .filter_map(|(n, v)| v.map(|v| format!("{n}={v}")))
            .collect::<Vec<_>>()
            .join(",")
    };
    for r in roles {
        t.add_row(vec![
            r.metadata.name.clone().unwrap_or_default(),
            r.spec.weight.to_string(),
            quantities(&r.spec.guarantee),
            quantities(&r.spec.limit),
        ]);
    }
    t
}

pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING).set_header(header.to_vec());
    t
}

/// kubectl-style age: 45s, 3m, 2h, 5d.
pub(crate) fn age(meta: &pacer_crd::meta::ObjectMeta) -> String {
    let Some(created) = &meta.creation_timestamp else {
        return "-".into();
    };
    let secs = pacer_crd::meta::jiff::Timestamp::now()
        .duration_since(created.0)
        .as_secs()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

pub(crate) fn what_runs(app: &pacer_crd::AppSpec) -> String {
    match (app.image(), &app.cmd, &app.args) {
        (Some(image), _, _) => image.to_string(),
        (None, Some(cmd), _) => cmd.clone(),
        (None, None, Some(args)) => args.join(" "),
        _ => "-".into(),
    }
}

fn apps_table(apps: &[App], wide: bool) -> Table {
    let mut header = vec![
        "ID",
        "INSTANCES",
        "RUNNING",
        "HEALTHY",
        "STAGED",
        "PENDING",
        "CPUS",
        "MEM",
        "RUNS",
        "AGE",
    ];
    if wide {
        header.extend(["VERSION", "MESSAGE"]);
    }
    let mut t = table(&header);
    for app in apps {
        let s = app.status.clone().unwrap_or_default();
        let mut row = vec![
            path_of(app.metadata.name.as_deref().unwrap_or_default()),
            app.spec.instances.to_string(),
            s.tasks_running.to_string(),
            s.tasks_healthy.to_string(),
            s.tasks_staged.to_string(),
            s.tasks_pending.to_string(),
            app.spec.cpus.to_string(),
            app.spec.mem.to_string(),
            what_runs(&app.spec),
            age(&app.metadata),
        ];
        if wide {
            row.extend([app.version().to_string(), s.message.unwrap_or_default()]);
        }
        t.add_row(row);
    }
    t
}

fn tasks_table(tasks: &[Task], wide: bool) -> Table {
    let mut header = vec!["ID", "APP", "NODE", "STATE", "HOST", "PORTS", "AGE"];
    if wide {
        header.extend(["CONTAINER", "EXIT", "MESSAGE"]);
    }
    let mut t = table(&header);
    for task in tasks {
        let s = task.status.clone().unwrap_or_default();
        let ports: Vec<String> = task.spec.host_ports.iter().map(u16::to_string).collect();
        let mut row = vec![
            task.metadata.name.clone().unwrap_or_default(),
            path_of(&task.spec.app_id),
            task.spec.node.clone(),
            task.state().as_str().to_string(),
            s.host.clone().unwrap_or_default(),
            ports.join(","),
            age(&task.metadata),
        ];
        if wide {
            let container: String = s
                .container_id
                .clone()
                .unwrap_or_default()
                .chars()
                .take(12)
                .collect();
            row.extend([
                container,
                s.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                s.message.unwrap_or_default(),
            ]);
        }
        t.add_row(row);
    }
    t
}

fn ranges(ports: &[pacer_crd::PortRange]) -> String {
    let parts: Vec<String> = ports
        .iter()
        .map(|r| {
            if r.begin == r.end {
                r.begin.to_string()
            } else {
                format!("{}-{}", r.begin, r.end)
            }
        })
        .collect();
    parts.join(",")
}

fn nodes_table(nodes: &[Node], drains: &[pacer_crd::Drain], wide: bool) -> Table {
    let mut header = vec![
        "NAME", "HOSTNAME", "STATUS", "CPUS", "MEM", "DISK", "PORTS", "AGE",
    ];
    if wide {
        header.extend(["ADDRESS", "ATTRIBUTES"]);
    }
    let mut t = table(&header);
    for node in nodes {
        let c = node.spec.capacity;
        let mut row = vec![
            node.metadata.name.clone().unwrap_or_default(),
            node.spec.hostname.clone(),
            if drains.iter().any(|d| d.metadata.name == node.metadata.name) {
                "Drained".into()
            } else {
                "Ready".into()
            },
            c.cpus.to_string(),
            c.mem.to_string(),
            c.disk.to_string(),
            ranges(&node.spec.ports),
            age(&node.metadata),
        ];
        if wide {
            let attrs: Vec<String> = node
                .spec
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect();
            row.extend([node.spec.address.clone(), attrs.join(";")]);
        }
        t.add_row(row);
    }
    t
}

fn offers_table(offers: &[Offer]) -> Table {
    let mut t = table(&["NODE", "ROLE", "CPUS", "MEM", "DISK", "RESERVED", "PORTS"]);
    for o in offers {
        let (r, reserved) = (o.spec.resources, o.spec.reserved);
        t.add_row(vec![
            o.spec.node.clone(),
            o.spec.role.clone(),
            format!("{:.2}", r.cpus),
            r.mem.to_string(),
            r.disk.to_string(),
            if reserved == pacer_crd::Resources::default() {
                "-".into()
            } else {
                format!("cpus={},mem={}", reserved.cpus, reserved.mem)
            },
            ranges(&o.spec.ports),
        ]);
    }
    t
}

fn deployments_table(deployments: &[Deployment]) -> Table {
    let mut t = table(&["ID", "APP", "ACTION", "PHASE", "AGE", "MESSAGE"]);
    for d in deployments {
        let phase = d
            .status
            .as_ref()
            .map(|s| format!("{:?} {}/{}", s.phase, s.healthy, s.wanted))
            .unwrap_or_default();
        t.add_row(vec![
            d.metadata.name.clone().unwrap_or_default(),
            path_of(&d.spec.app_id),
            format!("{:?}", d.spec.action),
            phase,
            age(&d.metadata),
            d.status
                .as_ref()
                .and_then(|st| st.message.clone())
                .unwrap_or_default(),
        ]);
    }
    t
}

pub async fn describe(api: &ApiClient, args: DescribeArgs) -> anyhow::Result<()> {
    if plural(&args.kind)? != "apps" {
        bail!("describe knows apps only");
    }
    let name = AppId::parse(&args.id)
        .map(|i| i.name())
        .map_err(|e| anyhow::anyhow!(e))?;
    let app: App = serde_json::from_value(api.get(&format!("/apps/{name}")).await?)?;
    let tasks: Vec<Task> = items::<Task>(api.get("/tasks").await?)?
        .into_iter()
        .filter(|t| t.spec.app_id == name)
        .collect();
    let deployments: Vec<Deployment> = items::<Deployment>(api.get("/deployments").await?)?
        .into_iter()
        .filter(|d| d.spec.app_id == name)
        .collect();
    let s = app.status.clone().unwrap_or_default();
    println!("Id:            {}", path_of(&name));
    println!("Version:       {}", app.version());
    println!(
        "Generation:    {} (observed {})",
        app.metadata.generation.unwrap_or(0),
        s.observed_generation
    );
    println!("Runs:          {}", what_runs(&app.spec));
    println!(
        "Resources:     cpus {}, mem {} MiB, disk {} MiB",
        app.spec.cpus, app.spec.mem, app.spec.disk
    );
    println!(
        "Instances:     {} wanted: {} running ({} healthy), {} staged, {} pending",
        app.spec.instances, s.tasks_running, s.tasks_healthy, s.tasks_staged, s.tasks_pending
    );
    if let Some(message) = &s.message {
        println!("Waiting:       {message}");
    }
    if let Some(f) = &s.last_task_failure {
        println!(
            "Last failure:  {} {} at {}: {}",
            f.task_id, f.state, f.timestamp, f.message
        );
    }
    println!("\nTasks:\n{}", tasks_table(&tasks, true));
    println!("\nDeployments:\n{}", deployments_table(&deployments));
    Ok(())
}

pub async fn logs(api: &ApiClient, args: LogsArgs) -> anyhow::Result<()> {
    // A job run's name stands for its latest attempt's task.
    let task = match api.get(&format!("/jobruns/{}", args.task)).await {
        Ok(run) => run["status"]["task"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("run {} has not started a task yet", args.task))?,
        Err(_) => args.task.clone(),
    };
    let text = api
        .call_text(
            Method::GET,
            &format!("/tasks/{task}/logs?tail={}", args.tail),
            None,
        )
        .await?;
    print!("{text}");
    Ok(())
}
