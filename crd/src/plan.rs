//! Deployment plans: the changes of one write, in steps ordered by `dependencies` (Marathon's
//! DeploymentPlan). Pure logic; the controllers enforce the order by waiting for dependencies.

use std::collections::{BTreeMap, BTreeSet};

use crate::deployment::DeploymentAction;

/// One app's change in a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The app's path, `/prod/web`.
    pub app: String,
    pub action: DeploymentAction,
    /// Paths of the apps it depends on.
    pub dependencies: Vec<String>,
}

/// The changes in steps: every app comes after the apps it depends on (dependencies outside
/// the write are taken as met), stops go in reverse (dependents first). A cycle is an error.
pub fn steps(changes: &[Change]) -> Result<Vec<Vec<(DeploymentAction, String)>>, String> {
    let (stops, starts): (Vec<&Change>, Vec<&Change>) = changes
        .iter()
        .partition(|c| c.action == DeploymentAction::StopApplication);
    let mut plan = levels(&starts)?;
    let mut stop_levels = levels(&stops)?;
    stop_levels.reverse();
    plan.splice(0..0, stop_levels);
    Ok(plan)
}

/// Kahn's algorithm by levels; ties within a level in path order.
fn levels(changes: &[&Change]) -> Result<Vec<Vec<(DeploymentAction, String)>>, String> {
    let inside: BTreeSet<&str> = changes.iter().map(|c| c.app.as_str()).collect();
    let mut waiting: BTreeMap<&str, BTreeSet<&str>> = changes
        .iter()
        .map(|c| {
            (
                c.app.as_str(),
                c.dependencies
                    .iter()
                    .map(String::as_str)
                    .filter(|d| inside.contains(d) && *d != c.app)
                    .collect(),
            )
        })
        .collect();
    let action: BTreeMap<&str, DeploymentAction> =
        changes.iter().map(|c| (c.app.as_str(), c.action)).collect();
    let mut plan = Vec::new();
    while !waiting.is_empty() {
        let ready: Vec<&str> = waiting
            .iter()
            .filter(|(_, deps)| deps.is_empty())
            .map(|(app, _)| *app)
            .collect();
        if ready.is_empty() {
            let stuck: Vec<&str> = waiting.keys().copied().collect();
            return Err(format!("dependency cycle among {}", stuck.join(", ")));
        }
        for app in &ready {
            waiting.remove(app);
        }
        waiting.values_mut().for_each(|deps| {
            ready.iter().for_each(|r| {
                deps.remove(r);
            })
        });
        plan.push(
            ready
                .iter()
                .map(|app| (action[app], app.to_string()))
                .collect(),
        );
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeploymentAction::*;

    fn change(app: &str, action: DeploymentAction, deps: &[&str]) -> Change {
        Change {
            app: app.into(),
            action,
            dependencies: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn apps(plan: &[Vec<(DeploymentAction, String)>]) -> Vec<Vec<&str>> {
        plan.iter()
            .map(|s| s.iter().map(|(_, a)| a.as_str()).collect())
            .collect()
    }

    #[test]
    fn dependencies_come_first_and_independent_apps_share_a_step() {
        let plan = steps(&[
            change("/web", StartApplication, &["/api"]),
            change("/api", StartApplication, &["/db", "/cache"]),
            change("/db", StartApplication, &[]),
            change("/cache", StartApplication, &[]),
            change("/batch", ScaleApplication, &[]),
        ])
        .unwrap();
        assert_eq!(
            apps(&plan),
            vec![vec!["/batch", "/cache", "/db"], vec!["/api"], vec!["/web"]]
        );
    }

    #[test]
    fn dependencies_outside_the_write_are_met() {
        let plan = steps(&[change("/web", RestartApplication, &["/elsewhere"])]).unwrap();
        assert_eq!(plan, vec![vec![(RestartApplication, "/web".to_string())]]);
    }

    #[test]
    fn stops_go_first_and_dependents_before_what_they_need() {
        let plan = steps(&[
            change("/db", StopApplication, &[]),
            change("/web", StopApplication, &["/db"]),
            change("/new", StartApplication, &[]),
        ])
        .unwrap();
        assert_eq!(apps(&plan), vec![vec!["/web"], vec!["/db"], vec!["/new"]]);
    }

    #[test]
    fn cycles_are_refused() {
        let err = steps(&[
            change("/a", StartApplication, &["/b"]),
            change("/b", StartApplication, &["/a"]),
            change("/c", StartApplication, &[]),
        ])
        .unwrap_err();
        assert_eq!(err, "dependency cycle among /a, /b");
        assert!(
            steps(&[change("/a", StartApplication, &["/a"])]).is_ok(),
            "an app naming itself is not a cycle"
        );
        assert_eq!(steps(&[]).unwrap(), Vec::<Vec<_>>::new());
    }
}
