//! The Policy record: what the cluster refuses to run (privileged containers, host paths, root,
//! host networking, risky `docker run` options), checked when an app or a job is written.

use std::collections::BTreeSet;

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::app::{AppSpec, NetworkMode};
use crate::error::{FieldError, FieldErrors};
use crate::id::AppId;
use crate::job::JobSpec;
use crate::token;

/// The name of the one Policy record that is the cluster's policy; without it,
/// `PolicySpec::default()` (the strict policy) applies.
pub const CLUSTER: &str = "cluster";

/// What apps and jobs may do on the nodes. Every field has a default, so `{}` is the strict
/// policy: no privileged containers, no host paths, no root, only harmless docker parameters.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pacer.io",
    version = "v1",
    kind = "Policy",
    plural = "policies",
    shortname = "pol",
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// Allows `container.docker.privileged: true`.
    #[serde(default)]
    pub allow_privileged: bool,
    /// Host path prefixes a volume may mount (`/data` allows `/data` and `/data/x`).
    #[serde(default)]
    pub allowed_host_paths: Vec<String>,
    /// `docker run` options an app may pass as `parameters` (long names: `-v` is `volume`).
    #[serde(default = "default_docker_parameters")]
    pub allowed_docker_parameters: Vec<String>,
    /// Allows running as root (`user: root`, `0`, a `user` parameter of either).
    #[serde(default)]
    pub allow_root: bool,
    /// Refuses apps without a `user` (a process task then runs as the agent's user, a
    /// container as its image's user: often root), unless `allowRoot`. Off by default for now:
    /// the manifests and clients in use set no user.
    #[serde(default)]
    pub require_user: bool,
    /// Allows the node's network (Marathon's default networking); false asks for bridge.
    #[serde(default = "yes")]
    pub allow_host_network: bool,
    /// More allowances for some apps or writers' roles.
    #[serde(default)]
    pub exceptions: Vec<PolicyException>,
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            allow_privileged: false,
            allowed_host_paths: Vec::new(),
            allowed_docker_parameters: default_docker_parameters(),
            allow_root: false,
            require_user: false,
            allow_host_network: true,
            exceptions: Vec::new(),
        }
    }
}

impl crate::Record for Policy {}

/// Exactly the options the Docker driver interprets, each harmless (a `user` is held to the
/// root rule). Any other option fails at launch anyway, so allowing it would only move the
/// refusal from the write to the node.
fn default_docker_parameters() -> Vec<String> {
    ["env", "hostname", "label", "user", "workdir"]
        .map(String::from)
        .to_vec()
}

fn yes() -> bool {
    true
}

/// Allowances added for the apps and writers it names.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyException {
    /// App id patterns (`/infra/*` or `/infra`: `/infra` and all under it; `/*`: every app);
    /// none means any app.
    #[serde(default)]
    pub app_ids: Vec<String>,
    /// Writers' roles (`read`, `write`, `admin`); none means any writer.
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub allow: PolicyAllow,
}

/// The allowances of an exception: booleans are OR-ed with the base, lists added to it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyAllow {
    #[serde(default)]
    pub allow_privileged: bool,
    #[serde(default)]
    pub allowed_host_paths: Vec<String>,
    #[serde(default)]
    pub allowed_docker_parameters: Vec<String>,
    #[serde(default)]
    pub allow_root: bool,
    #[serde(default)]
    pub allow_host_network: bool,
}

impl PolicyException {
    /// Whether it covers app `id` (an absolute path) written by `role`.
    fn applies(&self, id: &str, role: &str) -> bool {
        let app = self.app_ids.is_empty() || self.app_ids.iter().any(|p| token::in_scope(p, id));
        app && (self.roles.is_empty() || self.roles.iter().any(|r| r == role))
    }
}

/// What one app may do: the base policy with the exceptions that cover it.
struct Allowed {
    privileged: bool,
    root: bool,
    host_network: bool,
    /// Normalized prefixes.
    host_paths: Vec<String>,
    /// Long option names.
    docker_parameters: BTreeSet<String>,
}

impl Allowed {
    fn add(&mut self, allow: &PolicyAllow) {
        self.privileged |= allow.allow_privileged;
        self.root |= allow.allow_root;
        self.host_network |= allow.allow_host_network;
        let paths = allow.allowed_host_paths.iter();
        self.host_paths
            .extend(paths.filter_map(|p| host_path(p).ok()));
        let keys = allow.allowed_docker_parameters.iter();
        self.docker_parameters
            .extend(keys.map(|k| docker_option(k)));
    }
}

const EXCEPTION: &str =
    "an admin can allow it for this app id or writer's role with an exception in policy/cluster";

/// `what` refused by `rule`, and how to get an exception.
fn refused(what: &str, rule: &str) -> String {
    format!("{what} is refused by the cluster policy ({rule}); {EXCEPTION}")
}

/// The refusals of one admission, paths under `at` (`spec`, or `spec.run` for a job).
struct Admission<'a> {
    allowed: Allowed,
    require_user: bool,
    at: &'a str,
    found: Vec<FieldError>,
}

impl Admission<'_> {
    fn refuse(&mut self, field: &str, reason: String) {
        let path = format!("{}.{field}", self.at);
        self.found.push(FieldError::new(path, reason));
    }
}

impl PolicySpec {
    /// Every way app `app_id`, written by a writer of `role`, breaks the policy.
    pub fn admit(&self, app_id: &str, role: &str, app: &AppSpec) -> Result<(), FieldErrors> {
        self.admit_at("spec", app_id, role, app)
    }

    /// The same rules for what a job's runs execute (`spec.run`); the job's name is read as
    /// an app id is (`backup` is `/backup`, `ops_backup` is `/ops/backup`).
    pub fn admit_job(&self, job_id: &str, role: &str, job: &JobSpec) -> Result<(), FieldErrors> {
        self.admit_at("spec.run", job_id, role, &job.run)
    }

    fn admit_at(&self, at: &str, id: &str, role: &str, app: &AppSpec) -> Result<(), FieldErrors> {
        let mut admission = Admission {
            allowed: self.allowed(id, role),
            require_user: self.require_user,
            at,
            found: Vec::new(),
        };
        admission.check_privileged(app);
        admission.check_host_paths(app);
        admission.check_docker_parameters(app);
        admission.check_user(app);
        admission.check_network(app);
        FieldErrors(admission.found).into_result()
    }

    fn allowed(&self, id: &str, role: &str) -> Allowed {
        let id = AppId::parse(id).map_or_else(|_| id.to_string(), |id| id.path());
        let mut allowed = Allowed {
            privileged: false,
            root: false,
            host_network: false,
            host_paths: Vec::new(),
            docker_parameters: BTreeSet::new(),
        };
        allowed.add(&PolicyAllow {
            allow_privileged: self.allow_privileged,
            allowed_host_paths: self.allowed_host_paths.clone(),
            allowed_docker_parameters: self.allowed_docker_parameters.clone(),
            allow_root: self.allow_root,
            allow_host_network: self.allow_host_network,
        });
        for exception in self.exceptions.iter().filter(|e| e.applies(&id, role)) {
            allowed.add(&exception.allow);
        }
        allowed
    }

    /// Every problem with the policy itself, with its path.
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut found = Vec::new();
        check_lists(
            "spec",
            &self.allowed_host_paths,
            &self.allowed_docker_parameters,
            &mut found,
        );
        for (i, e) in self.exceptions.iter().enumerate() {
            let at = format!("spec.exceptions[{i}]");
            for (j, pattern) in e.app_ids.iter().enumerate() {
                if let Err(why) = token::check_scope(pattern) {
                    found.push(FieldError::new(format!("{at}.appIds[{j}]"), why));
                }
            }
            for (j, role) in e.roles.iter().enumerate() {
                if !token::ROLES.contains(&role.as_str()) {
                    let why = format!("'{role}' is not a role: use read, write or admin");
                    found.push(FieldError::new(format!("{at}.roles[{j}]"), why));
                }
            }
            let allow = &e.allow;
            let (paths, keys) = (&allow.allowed_host_paths, &allow.allowed_docker_parameters);
            check_lists(&format!("{at}.allow"), paths, keys, &mut found);
        }
        FieldErrors(found).into_result()
    }
}

/// Host path prefixes absolute without `..`; docker option names not empty.
fn check_lists(at: &str, paths: &[String], keys: &[String], found: &mut Vec<FieldError>) {
    for (i, path) in paths.iter().enumerate() {
        if let Err(why) = host_path(path) {
            found.push(FieldError::new(format!("{at}.allowedHostPaths[{i}]"), why));
        }
    }
    for (i, key) in keys.iter().enumerate() {
        if docker_option(key).is_empty() {
            let path = format!("{at}.allowedDockerParameters[{i}]");
            found.push(FieldError::new(path, "names no docker option"));
        }
    }
}

impl Admission<'_> {
    fn check_privileged(&mut self, app: &AppSpec) {
        let docker = app.container.as_ref().and_then(|c| c.docker.as_ref());
        if docker.is_some_and(|d| d.privileged) && !self.allowed.privileged {
            let why = refused("a privileged container", "allowPrivileged");
            self.refuse("container.docker.privileged", why);
        }
    }

    /// Volumes are the one field that names a host path; the docker options that would
    /// (`volume`, `mount`, `device`, ...) are refused by the parameter rule.
    fn check_host_paths(&mut self, app: &AppSpec) {
        let volumes = app.container.iter().flat_map(|c| c.volumes.iter());
        for (i, volume) in volumes.enumerate() {
            let Some(given) = &volume.host_path else {
                continue;
            };
            let field = format!("container.volumes[{i}].hostPath");
            match host_path(given) {
                Err(why) => self.refuse(&field, why),
                Ok(path) if !self.allowed.host_paths.iter().any(|p| under(&path, p)) => {
                    let what = format!("host path '{given}'");
                    let rule = if self.allowed.host_paths.is_empty() {
                        "allowedHostPaths: none".to_string()
                    } else {
                        format!("allowedHostPaths: {}", self.allowed.host_paths.join(", "))
                    };
                    self.refuse(&field, refused(&what, &rule));
                }
                Ok(_) => {}
            }
        }
    }

    fn check_docker_parameters(&mut self, app: &AppSpec) {
        let docker = app.container.as_ref().and_then(|c| c.docker.as_ref());
        let parameters = docker.map(|d| d.parameters.as_slice()).unwrap_or_default();
        for (i, p) in parameters.iter().enumerate() {
            let option = docker_option(&p.key);
            if self.allowed.docker_parameters.contains(&option) {
                continue;
            }
            let what = format!("docker parameter '{}' ({option})", p.key);
            let allowed: Vec<&str> = self
                .allowed
                .docker_parameters
                .iter()
                .map(String::as_str)
                .collect();
            let rule = format!("allowedDockerParameters: {}", allowed.join(", "));
            self.refuse(
                &format!("container.docker.parameters[{i}].key"),
                refused(&what, &rule),
            );
        }
    }

    /// Every user the app names (`user`, and a container's docker `user` options), and the one
    /// it runs as: for a container the last `user` option wins over `user`, as in the Docker
    /// driver; a process runs as `user` (the process driver ignores docker options).
    fn check_user(&mut self, app: &AppSpec) {
        if self.allowed.root {
            return;
        }
        let mut given: Vec<(String, &str)> = Vec::new();
        given.extend(app.user.iter().map(|u| ("user".to_string(), u.as_str())));
        let docker = app.container.as_ref().and_then(|c| c.docker.as_ref());
        let parameters = docker.map(|d| d.parameters.as_slice()).unwrap_or_default();
        for (i, p) in parameters.iter().enumerate() {
            if docker_option(&p.key) == "user" && !app.is_process() {
                given.push((format!("container.docker.parameters[{i}].value"), &p.value));
            }
        }
        for (field, user) in &given {
            if is_root(user) {
                let why = refused(&format!("running as '{user}' (root)"), "allowRoot");
                self.refuse(field, why);
            }
        }
        match given.last() {
            _ if !self.require_user => {}
            Some((_, user)) if !user_name(user).is_empty() => {}
            last => {
                let field = last.map_or("user", |(field, _)| field.as_str()).to_string();
                let what = if app.is_process() {
                    "a process task without `user` runs as the agent's user (root on a node): set `user` (e.g. nobody, or a uid); that"
                } else {
                    "a container without `user` runs as its image's user, often root: set `user` (e.g. nobody, or a uid); that"
                };
                self.refuse(&field, refused(what, "allowRoot"));
            }
        }
    }

    /// A process shares the node's network whatever `networks` says; the Docker driver puts
    /// a container on it unless it asks for container/bridge.
    fn check_network(&mut self, app: &AppSpec) {
        if self.allowed.host_network {
            return;
        }
        let bridge = app.networks.iter().any(|n| n.mode == NetworkMode::Bridge);
        let what = if app.is_process() {
            "a process task, which always shares the node's network,"
        } else if !bridge {
            "host networking (use container/bridge)"
        } else {
            return;
        };
        self.refuse("networks", refused(what, "allowHostNetwork"));
    }
}

/// The long name of a `docker run` option: `--Volume`, `-v` and `volume` are all `volume`.
fn docker_option(key: &str) -> String {
    let key = key.trim().trim_start_matches('-').to_ascii_lowercase();
    let long = match key.as_str() {
        "a" => "attach",
        "c" => "cpu-shares",
        "d" => "detach",
        "e" => "env",
        "h" => "hostname",
        "i" => "interactive",
        "l" => "label",
        "m" => "memory",
        "net" => "network",
        "p" => "publish",
        "t" => "tty",
        "u" => "user",
        "v" => "volume",
        "w" => "workdir",
        _ => return key,
    };
    long.to_string()
}

/// An absolute path with `.` and doubled slashes resolved. `..` is refused rather than
/// resolved: through a symlink, `/data/link/..` need not be `/data`.
fn host_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("host path '{path}' must be absolute"));
    }
    // The Docker driver joins host and container path with ':' into one bind.
    if path.contains(':') {
        return Err(format!("host path '{path}' must not contain ':'"));
    }
    let mut parts = Vec::new();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Err(format!("host path '{path}' must not contain '..'"));
        }
        parts.push(part);
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Whether normalized `path` is `prefix` or lies below it.
fn under(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The user part of `user[:group]`.
fn user_name(user: &str) -> &str {
    user.split(':').next().unwrap_or_default().trim()
}

/// `root`, or a uid that is 0 as the kernel sees it (`00`, `-0`, `4294967296` wrap to 0).
fn is_root(user: &str) -> bool {
    let name = user_name(user);
    name == "root"
        || name
            .parse::<i128>()
            .is_ok_and(|uid| uid.rem_euclid(1 << 32) == 0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::app::{Docker, DockerParameter, Network, Volume, VolumeMode};

    fn policy(v: serde_json::Value) -> PolicySpec {
        serde_json::from_value(v).expect("a policy")
    }

    /// A Docker app that breaks no rule of the strict policy: a user, bridge networking.
    fn compliant() -> AppSpec {
        serde_json::from_value(json!({
            "container": {"docker": {"image": "nginx"}},
            "user": "nobody",
            "networks": [{"mode": "container/bridge"}],
        }))
        .expect("an app")
    }

    fn docker(app: &mut AppSpec) -> &mut Docker {
        let container = app.container.as_mut().expect("a container");
        container.docker.as_mut().expect("docker")
    }

    fn with_parameter(key: &str, value: &str) -> AppSpec {
        let mut app = compliant();
        docker(&mut app).parameters.push(DockerParameter {
            key: key.into(),
            value: value.into(),
        });
        app
    }

    fn with_volume(host: &str) -> AppSpec {
        let mut app = compliant();
        let container = app.container.as_mut().expect("a container");
        container.volumes.push(Volume {
            container_path: "/data".into(),
            host_path: Some(host.into()),
            mode: VolumeMode::RO,
        });
        app
    }

    fn refusals(policy: &PolicySpec, id: &str, role: &str, app: &AppSpec) -> Vec<FieldError> {
        policy
            .admit(id, role, app)
            .err()
            .map(|e| e.0)
            .unwrap_or_default()
    }

    /// `app` is refused by the strict policy for one reason only: at `path`, by `rule`.
    #[track_caller]
    fn refused_once(app: &AppSpec, path: &str, rule: &str) {
        refused_once_by(&PolicySpec::default(), app, path, rule);
    }

    /// The policy that also requires a `user`.
    fn requiring_user() -> PolicySpec {
        PolicySpec {
            require_user: true,
            ..PolicySpec::default()
        }
    }

    fn refused_once_by(policy: &PolicySpec, app: &AppSpec, path: &str, rule: &str) {
        let found = refusals(policy, "/web", "write", app);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, path);
        assert!(found[0].reason.contains(rule), "{}", found[0].reason);
        assert!(found[0].reason.contains("exception"), "{}", found[0].reason);
    }

    #[test]
    fn an_empty_policy_is_the_strict_default() {
        assert_eq!(policy(json!({})), PolicySpec::default());
        assert!(!PolicySpec::default().allow_privileged && !PolicySpec::default().allow_root);
    }

    #[test]
    fn a_compliant_app_is_admitted() {
        let admitted = PolicySpec::default().admit("/web", "write", &compliant());
        assert_eq!(admitted, Ok(()));
        let mut app = compliant();
        docker(&mut app).parameters = ["label", "--env", "-w", "u"]
            .map(|key| DockerParameter {
                key: key.into(),
                value: "x=1".into(),
            })
            .to_vec();
        assert_eq!(PolicySpec::default().admit("/web", "write", &app), Ok(()));
    }

    #[test]
    fn privileged_is_refused() {
        let mut app = compliant();
        docker(&mut app).privileged = true;
        refused_once(&app, "spec.container.docker.privileged", "allowPrivileged");
    }

    #[test]
    fn a_host_path_outside_the_allowed_prefixes_is_refused() {
        refused_once(
            &with_volume("/etc"),
            "spec.container.volumes[0].hostPath",
            "allowedHostPaths",
        );
        let data = policy(json!({"allowedHostPaths": ["/data/"]}));
        for inside in ["/data", "/data/db", "/data//./db/"] {
            assert_eq!(
                data.admit("/web", "write", &with_volume(inside)),
                Ok(()),
                "{inside}"
            );
        }
        for outside in ["/data/../etc", "/database", "/", "data/db", "/data:/etc"] {
            let found = refusals(&data, "/web", "write", &with_volume(outside));
            assert_eq!(found.len(), 1, "{outside}: {found:?}");
            assert_eq!(found[0].path, "spec.container.volumes[0].hostPath");
            assert!(found[0].reason.contains(outside), "{}", found[0].reason);
        }
    }

    /// One test per `docker run` option that would reach the host, each refused by the
    /// parameter rule at its key.
    macro_rules! refused_parameter {
        ($($test:ident: $key:literal = $value:literal,)*) => {$(
            #[test]
            fn $test() {
                refused_once(
                    &with_parameter($key, $value),
                    "spec.container.docker.parameters[0].key",
                    "allowedDockerParameters",
                );
            }
        )*};
    }

    refused_parameter! {
        parameter_privileged: "--privileged" = "true",
        parameter_v: "-v" = "/:/host",
        parameter_volume: "--volume" = "/:/host",
        parameter_mount: "--mount" = "type=bind,src=/,dst=/host",
        parameter_pid_host: "pid" = "host",
        parameter_cap_add: "--cap-add" = "SYS_ADMIN",
        parameter_device: "--device" = "/dev/sda",
        parameter_security_opt: "--security-opt" = "seccomp=unconfined",
        parameter_network_host: "--network" = "host",
        parameter_net_host: "net" = "host",
        parameter_userns: "--userns" = "host",
        parameter_ipc: "--ipc" = "host",
        parameter_uts: "--uts" = "host",
        parameter_volumes_from: "--volumes-from" = "other",
        parameter_cgroup_parent: "--cgroup-parent" = "/",
        parameter_sysctl: "--sysctl" = "kernel.x=1",
        parameter_upper_case_volume: "--VOLUME" = "/:/host",
    }

    #[test]
    fn a_root_user_option_is_refused() {
        let path = "spec.container.docker.parameters[0].value";
        refused_once(&with_parameter("u", "root"), path, "allowRoot");
        refused_once(&with_parameter("--user", "0:0"), path, "allowRoot");
    }

    #[test]
    fn a_root_user_is_refused() {
        for root in ["root", "0", "0:0", "root:staff", "00", "-0", " 0 "] {
            let mut app = compliant();
            app.user = Some(root.into());
            refused_once(&app, "spec.user", "allowRoot");
        }
    }

    #[test]
    fn a_process_without_user_is_refused() {
        let mut app: AppSpec = serde_json::from_value(json!({"cmd": "sleep 1"})).unwrap();
        refused_once_by(&requiring_user(), &app, "spec.user", "allowRoot");
        let reason = &refusals(&requiring_user(), "/web", "write", &app)[0].reason;
        assert!(reason.contains("set `user`"), "{reason}");
        app.user = Some("nobody".into());
        assert_eq!(requiring_user().admit("/web", "write", &app), Ok(()));
        app.user = None;
        assert_eq!(
            PolicySpec::default().admit("/web", "write", &app),
            Ok(()),
            "a user is not required by default"
        );
    }

    #[test]
    fn a_container_without_user_is_refused() {
        let mut app = compliant();
        app.user = None;
        refused_once_by(&requiring_user(), &app, "spec.user", "allowRoot");
        let reason = &refusals(&requiring_user(), "/web", "write", &app)[0].reason;
        assert!(reason.contains("image's user") && reason.contains("set `user`"));
        // The last user option is the one the container runs as.
        let mut emptied = with_parameter("user", "");
        emptied.user = Some("nobody".into());
        refused_once_by(
            &requiring_user(),
            &emptied,
            "spec.container.docker.parameters[0].value",
            "allowRoot",
        );
    }

    #[test]
    fn host_networking_is_refused_when_forbidden() {
        let bridged = policy(json!({"allowHostNetwork": false}));
        assert_eq!(bridged.admit("/web", "write", &compliant()), Ok(()));
        let mut host = compliant();
        host.networks = vec![Network {
            mode: NetworkMode::Host,
            name: None,
        }];
        let mut process: AppSpec = serde_json::from_value(json!({"cmd": "x"})).unwrap();
        process.user = Some("nobody".into());
        for app in [host, process] {
            let found = refusals(&bridged, "/web", "write", &app);
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].path, "spec.networks");
            assert!(
                found[0].reason.contains("allowHostNetwork"),
                "{}",
                found[0].reason
            );
        }
    }

    #[test]
    fn an_exception_by_app_id_allows_what_it_names_there_only() {
        let infra = policy(json!({"exceptions": [
            {"appIds": ["/infra/*"], "allow": {"allowPrivileged": true}}
        ]}));
        let mut app = compliant();
        docker(&mut app).privileged = true;
        for id in ["/infra/x", "infra_x", "/infra"] {
            assert_eq!(infra.admit(id, "write", &app), Ok(()), "{id}");
        }
        for id in ["/other", "/infrastructure"] {
            let found = refusals(&infra, id, "write", &app);
            assert_eq!(found.len(), 1, "{id}: {found:?}");
            assert_eq!(found[0].path, "spec.container.docker.privileged");
        }
    }

    #[test]
    fn an_exception_by_role_allows_what_it_names_to_that_role() {
        let admins = policy(json!({"exceptions": [
            {"roles": ["admin"], "allow": {"allowedHostPaths": ["/var/log"], "allowRoot": true}}
        ]}));
        let mut app = with_volume("/var/log/nginx");
        app.user = Some("root".into());
        assert_eq!(admins.admit("/web", "admin", &app), Ok(()));
        let paths: Vec<String> = refusals(&admins, "/web", "write", &app)
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(paths, ["spec.container.volumes[0].hostPath", "spec.user"]);
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let mut app = with_parameter("--cap-add", "ALL");
        docker(&mut app).privileged = true;
        app.user = Some("0".into());
        let found = refusals(&PolicySpec::default(), "/web", "write", &app);
        let named: Vec<(&str, bool)> = found
            .iter()
            .map(|e| (e.path.as_str(), e.reason.contains("cluster policy")))
            .collect();
        assert_eq!(
            named,
            [
                ("spec.container.docker.privileged", true),
                ("spec.container.docker.parameters[0].key", true),
                ("spec.user", true),
            ]
        );
    }

    #[test]
    fn a_job_run_is_held_to_the_same_rules() {
        let job: JobSpec =
            serde_json::from_value(json!({"run": {"cmd": "backup", "user": "root"}})).unwrap();
        let found = PolicySpec::default()
            .admit_job("ops_backup", "write", &job)
            .expect_err("root");
        assert_eq!(found.0[0].path, "spec.run.user");
        let ops =
            policy(json!({"exceptions": [{"appIds": ["/ops"], "allow": {"allowRoot": true}}]}));
        assert_eq!(ops.admit_job("ops_backup", "write", &job), Ok(()));
    }

    #[test]
    fn the_policy_itself_is_validated() {
        assert_eq!(PolicySpec::default().validate(), Ok(()));
        let bad = policy(json!({
            "allowedHostPaths": ["/data", "data", "/data/../etc"],
            "allowedDockerParameters": ["--"],
            "exceptions": [{
                "appIds": ["/infra/*", "infra"], "roles": ["admin", "root"],
                "allow": {"allowedHostPaths": ["/srv/.."]}
            }]
        }));
        let paths: Vec<String> = bad
            .validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            [
                "spec.allowedHostPaths[1]",
                "spec.allowedHostPaths[2]",
                "spec.allowedDockerParameters[0]",
                "spec.exceptions[0].appIds[1]",
                "spec.exceptions[0].roles[1]",
                "spec.exceptions[0].allow.allowedHostPaths[0]",
            ]
        );
    }
}
