//! `pacer apply`, `delete` and `scale`: manifests read from files or folders, checked before sending.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use pacer_crd::{AppId, Manifest};
use reqwest::Method;
use serde_json::json;

use crate::client::ApiClient;
use pacer_crd::id::path_of;

#[derive(Args)]
pub struct ApplyArgs {
    /// A YAML or JSON file (several documents allowed) or a folder of them; `-` reads stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct DeleteArgs {
    /// `app` (the only kind users delete).
    kind: Option<String>,
    /// App id: `/prod/web` or `prod_web`.
    id: Option<String>,
    /// Delete the apps a file or folder defines.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct ScaleArgs {
    /// `app`
    kind: String,
    /// App id: `/prod/web` or `prod_web`.
    id: String,
    instances: i64,
}

/// Every manifest in `paths`, each checked; the first bad one stops everything before anything is sent.
fn read_manifests(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, Manifest)>> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files)?;
    }
    let mut manifests = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let text = if file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading stdin")?
        } else {
            std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?
        };
        let docs = pacer_crd::manifest::parse_documents(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        for (i, doc) in docs.into_iter().enumerate() {
            let origin = format!("{} (document {})", file.display(), i + 1);
            match Manifest::from_value(doc) {
                Ok(m) => manifests.push((origin, m)),
                Err(errors) => problems.extend(errors.0.iter().map(|e| format!("{origin}: {e}"))),
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "nothing was applied, the manifests are not valid:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(manifests)
}

/// Files in a folder (`.yaml`, `.yml`, `.json`, sorted), or the file itself.
fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if path.as_os_str() == "-" || path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let entries = std::fs::read_dir(path)
        .with_context(|| format!("{} is neither a file nor a folder", path.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                || p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    found.sort();
    for p in found {
        collect_files(&p, out)?;
    }
    Ok(())
}

pub async fn apply(api: &ApiClient, args: ApplyArgs) -> anyhow::Result<()> {
    let mut manifests = read_manifests(&args.files)?;
    // Roles first: apps and jobs may name them. Apps in dependency order, as the steps of one
    // plan: within it an app waits for the apps it depends on.
    let order = dependency_order(&manifests)?;
    manifests.sort_by_key(|(_, m)| {
        let app = order.iter().position(|p| *p == path_of(m.name()));
        (!matches!(m, Manifest::Role(_)), app)
    });
    let apps = manifests
        .iter()
        .filter(|(_, m)| matches!(m, Manifest::App(_)))
        .count();
    let plan = (apps > 1).then(|| uuid::Uuid::new_v4().to_string());
    for (origin, manifest) in manifests {
        let name = manifest.name().to_string();
        let body = match &manifest {
            Manifest::App(r) => serde_json::to_value(r)?,
            Manifest::Role(r) => serde_json::to_value(r)?,
            Manifest::Job(r) => serde_json::to_value(r)?,
        };
        let kind = manifest.kind().to_lowercase();
        let query = match (&manifest, &plan) {
            (Manifest::App(_), Some(plan)) => format!("?plan={plan}"),
            _ => String::new(),
        };
        let result = api
            .call(
                Method::PUT,
                &format!("/{}/{name}{query}", manifest.plural()),
                Some(&body),
            )
            .await
            .with_context(|| format!("{origin}: applying {kind} {name}"))?;
        let shown = match &manifest {
            Manifest::App(_) => path_of(&name),
            _ => name.clone(),
        };
        println!(
            "{kind} {shown} {}",
            result["result"].as_str().unwrap_or("applied")
        );
    }
    Ok(())
}

/// The paths of the apps among `manifests`, dependencies first (Marathon's plan order); a
/// dependency cycle is refused before anything is written.
fn dependency_order(manifests: &[(String, Manifest)]) -> anyhow::Result<Vec<String>> {
    let changes: Vec<pacer_crd::plan::Change> = manifests
        .iter()
        .filter_map(|(_, m)| match m {
            Manifest::App(app) => Some(pacer_crd::plan::Change {
                app: path_of(m.name()),
                action: pacer_crd::deployment::DeploymentAction::StartApplication,
                dependencies: app
                    .spec
                    .dependencies
                    .iter()
                    .map(|d| pacer_crd::AppId::parse(d).map_or_else(|_| d.clone(), |i| i.path()))
                    .collect(),
            }),
            _ => None,
        })
        .collect();
    let steps = pacer_crd::plan::steps(&changes).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(steps.into_iter().flatten().map(|(_, app)| app).collect())
}

fn app_name(kind: &str, id: &str) -> anyhow::Result<String> {
    if !matches!(kind, "app" | "apps") {
        bail!("unknown kind '{kind}': use app, job or role");
    }
    AppId::parse(id)
        .map(|i| i.name())
        .map_err(|e| anyhow::anyhow!(e))
}

pub async fn scale(api: &ApiClient, args: ScaleArgs) -> anyhow::Result<()> {
    let name = app_name(&args.kind, &args.id)?;
    if args.instances < 0 {
        bail!("instances: must be >= 0 (got {})", args.instances);
    }
    api.call(
        Method::PUT,
        &format!("/apps/{name}/scale"),
        Some(&json!({"instances": args.instances})),
    )
    .await?;
    println!("app {} scaled to {}", path_of(&name), args.instances);
    Ok(())
}

pub async fn delete(api: &ApiClient, args: DeleteArgs) -> anyhow::Result<()> {
    // (plural, record name, as shown)
    let targets: Vec<(&str, String, String)> = match (&args.kind, &args.id, args.files.is_empty()) {
        (Some(kind), Some(id), true) => match kind.as_str() {
            "job" | "jobs" => vec![("jobs", id.clone(), id.clone())],
            "role" | "roles" => vec![("roles", id.clone(), id.clone())],
            _ => {
                let name = app_name(kind, id)?;
                vec![("apps", name.clone(), path_of(&name))]
            }
        },
        (None, None, false) => read_manifests(&args.files)?
            .into_iter()
            .map(|(_, m)| {
                let name = m.name().to_string();
                let shown = match &m {
                    Manifest::App(_) => path_of(&name),
                    _ => name.clone(),
                };
                (m.plural(), name, shown)
            })
            .collect(),
        _ => bail!("give `app ID`, `job NAME`, `role NAME` or `-f FILE`"),
    };
    for (plural, name, shown) in targets {
        let kind = plural.trim_end_matches('s');
        match api
            .call(Method::DELETE, &format!("/{plural}/{name}"), None)
            .await
        {
            Ok(_) => println!("{kind} {shown} deleted"),
            Err(e) if !args.files.is_empty() && e.to_string().contains("does not exist") => {
                println!("{kind} {shown} not found")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
