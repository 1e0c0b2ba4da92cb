//! App validation: every problem, each with its field path, Marathon's rules where it had them.

use crate::app::{AppSpec, ContainerType, HealthProtocol, NetworkMode};
use crate::error::FieldError;
use crate::id::AppId;

const OPERATORS: [&str; 7] = [
    "UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS",
];

/// The most instances one app may ask for: placement works per instance, so a count no fleet
/// holds would only make the scheduler busy (Marathon's clusters ran thousands).
pub const MAX_INSTANCES: i64 = 1_000_000;
/// The largest backoff factor: past it the first retries already wait the maximum.
const MAX_BACKOFF_FACTOR: f64 = 1000.0;
/// The most failed health checks in a row an app may tolerate.
const MAX_FAILURES: i64 = 1_000_000;
/// [`crate::time::MAX_SECONDS`] as whole seconds.
const MAX_SECONDS_INT: i64 = crate::time::MAX_SECONDS as i64;
/// The rule every time of a record follows.
const SECONDS: &str = "must be a number of seconds from 0 to 315360000 (10 years)";

/// Collects problems under one path prefix.
struct Problems {
    found: Vec<FieldError>,
}

impl Problems {
    fn check(&mut self, ok: bool, path: impl Into<String>, reason: impl Into<String>) {
        if !ok {
            self.found.push(FieldError::new(path, reason));
        }
    }
}

impl AppSpec {
    /// Every problem with this spec; paths start at `spec.`.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut p = Problems { found: Vec::new() };
        self.check_scalars(&mut p);
        self.check_command(&mut p);
        self.check_container(&mut p);
        self.check_constraints(&mut p);
        let u = &self.unreachable_strategy;
        for (name, value) in [
            ("inactiveAfterSeconds", u.inactive_after_seconds),
            ("expungeAfterSeconds", u.expunge_after_seconds),
        ] {
            p.check(
                crate::time::is_seconds(value),
                format!("spec.unreachableStrategy.{name}"),
                format!("{} (got {value})", SECONDS),
            );
        }
        p.check(
            u.expunge_after_seconds >= u.inactive_after_seconds,
            "spec.unreachableStrategy.expungeAfterSeconds",
            "must be >= inactiveAfterSeconds",
        );
        if let Err(e) = crate::role::check_name(&self.role) {
            p.check(false, "spec.role", e);
        }
        for (i, role) in self.accepted_resource_roles.iter().flatten().enumerate() {
            p.check(
                role == "*" || role == &self.role,
                format!("spec.acceptedResourceRoles[{i}]"),
                format!(
                    "'{role}' is neither '*' (unreserved) nor the app's role '{}'",
                    self.role
                ),
            );
        }
        self.check_health_checks(&mut p);
        self.check_readiness_checks(&mut p);
        self.check_strategy(&mut p);
        for (i, dep) in self.dependencies.iter().enumerate() {
            if let Err(e) = AppId::parse(dep) {
                p.check(false, format!("spec.dependencies[{i}]"), e);
            }
        }
        p.found
    }

    fn check_scalars(&self, p: &mut Problems) {
        p.check(
            (0..=MAX_INSTANCES).contains(&self.instances),
            "spec.instances",
            format!("must be from 0 to {MAX_INSTANCES} (got {})", self.instances),
        );
        for (name, value) in [("cpus", self.cpus), ("mem", self.mem), ("disk", self.disk)] {
            p.check(
                value.is_finite() && value >= 0.0,
                format!("spec.{name}"),
                format!("must be >= 0 (got {value})"),
            );
        }
        for (name, value) in [
            ("backoffSeconds", self.backoff_seconds),
            ("maxLaunchDelaySeconds", self.max_launch_delay_seconds),
            (
                "taskKillGracePeriodSeconds",
                self.task_kill_grace_period_seconds,
            ),
        ] {
            p.check(
                crate::time::is_seconds(value),
                format!("spec.{name}"),
                format!("{SECONDS} (got {value})"),
            );
        }
        p.check(
            self.backoff_factor.is_finite()
                && (1.0..=MAX_BACKOFF_FACTOR).contains(&self.backoff_factor),
            "spec.backoffFactor",
            format!(
                "must be from 1 to {MAX_BACKOFF_FACTOR} (got {})",
                self.backoff_factor
            ),
        );
        for key in self.env.keys() {
            p.check(
                !key.is_empty() && !key.contains('='),
                format!("spec.env.{key}"),
                "name must be non-empty without '='",
            );
        }
        for (i, def) in self.port_definitions.iter().enumerate() {
            p.check(
                (0..=65535).contains(&def.port),
                format!("spec.portDefinitions[{i}].port"),
                "must be 0..65535",
            );
        }
    }

    fn check_command(&self, p: &mut Problems) {
        let has_cmd = self.cmd.as_deref().is_some_and(|c| !c.trim().is_empty());
        p.check(
            !(has_cmd && self.args.is_some()),
            "spec.args",
            "cmd and args are exclusive: give one of them",
        );
        let runnable = has_cmd
            || self.args.as_ref().is_some_and(|a| !a.is_empty())
            || self.container.is_some();
        p.check(
            runnable,
            "spec.cmd",
            "an app needs cmd, args or a container",
        );
    }

    fn check_container(&self, p: &mut Problems) {
        let bridge = self.networks.iter().any(|n| n.mode == NetworkMode::Bridge);
        p.check(
            !(self.networks.len() > 1 && self.networks.iter().any(|n| n.mode == NetworkMode::Host)),
            "spec.networks",
            "host networking cannot be combined with other networks",
        );
        let Some(container) = &self.container else {
            p.check(
                !bridge,
                "spec.networks",
                "container/bridge networking needs a container",
            );
            return;
        };
        if container.kind == ContainerType::Docker {
            let image = container
                .docker
                .as_ref()
                .map(|d| d.image.trim())
                .unwrap_or_default();
            p.check(
                !image.is_empty(),
                "spec.container.docker.image",
                "is required for a DOCKER container",
            );
        }
        p.check(
            container.port_mappings.is_empty()
                || self.networks.iter().any(|n| n.mode != NetworkMode::Host),
            "spec.container.portMappings",
            "port mappings need container or container/bridge networking",
        );
        for (i, m) in container.port_mappings.iter().enumerate() {
            let at = format!("spec.container.portMappings[{i}]");
            p.check(
                (0..=65535).contains(&m.container_port),
                format!("{at}.containerPort"),
                "must be 0..65535",
            );
            p.check(
                m.host_port.is_none_or(|h| (0..=65535).contains(&h)),
                format!("{at}.hostPort"),
                "must be 0..65535",
            );
            p.check(
                (0..=65535).contains(&m.service_port),
                format!("{at}.servicePort"),
                "must be 0..65535",
            );
            p.check(
                matches!(m.protocol.as_str(), "tcp" | "udp" | "udp,tcp" | "tcp,udp"),
                format!("{at}.protocol"),
                "must be tcp, udp or udp,tcp",
            );
        }
        for (i, v) in container.volumes.iter().enumerate() {
            let at = format!("spec.container.volumes[{i}]");
            p.check(
                !v.container_path.is_empty(),
                format!("{at}.containerPath"),
                "is required",
            );
            if let Some(host) = &v.host_path {
                p.check(
                    host.starts_with('/'),
                    format!("{at}.hostPath"),
                    "must be an absolute path",
                );
            }
        }
    }

    fn check_constraints(&self, p: &mut Problems) {
        for (i, c) in self.constraints.iter().enumerate() {
            let at = format!("spec.constraints[{i}]");
            if !(2..=3).contains(&c.len()) {
                p.check(
                    false,
                    at,
                    "must be [field, operator] or [field, operator, value]",
                );
                continue;
            }
            let op = c[1].as_str();
            if !OPERATORS.contains(&op) {
                p.check(
                    false,
                    format!("{at}[1]"),
                    format!(
                        "unknown operator '{op}': use one of {}",
                        OPERATORS.join(", ")
                    ),
                );
                continue;
            }
            let value = c.get(2);
            let needs_value = matches!(op, "CLUSTER" | "LIKE" | "UNLIKE" | "MAX_PER" | "IS");
            p.check(
                !needs_value || value.is_some(),
                format!("{at}[2]"),
                format!("{op} needs a value"),
            );
            if let (Some(v), "LIKE" | "UNLIKE") = (value, op)
                && let Err(e) = regex::Regex::new(&format!("^(?:{v})$"))
            {
                p.check(
                    false,
                    format!("{at}[2]"),
                    format!("not a valid regular expression: {e}"),
                );
            }
            if let (Some(v), "MAX_PER" | "GROUP_BY") = (value, op) {
                p.check(
                    v.parse::<u32>().is_ok_and(|n| n > 0),
                    format!("{at}[2]"),
                    format!("{op} needs a positive integer"),
                );
            }
        }
    }

    fn check_health_checks(&self, p: &mut Problems) {
        for (i, hc) in self.health_checks.iter().enumerate() {
            let at = format!("spec.healthChecks[{i}]");
            if hc.protocol == HealthProtocol::Command {
                p.check(
                    hc.command.is_some(),
                    format!("{at}.command"),
                    "is required for COMMAND checks",
                );
            } else {
                p.check(
                    !(hc.port.is_some() && hc.port_index.is_some()),
                    format!("{at}.port"),
                    "give port or portIndex, not both",
                );
            }
            for (name, v) in [
                ("gracePeriodSeconds", hc.grace_period_seconds),
                ("intervalSeconds", hc.interval_seconds),
                ("timeoutSeconds", hc.timeout_seconds),
            ] {
                p.check(
                    (0..=MAX_SECONDS_INT).contains(&v),
                    format!("{at}.{name}"),
                    format!("{SECONDS} (got {v})"),
                );
            }
            p.check(
                (0..=MAX_FAILURES).contains(&hc.max_consecutive_failures),
                format!("{at}.maxConsecutiveFailures"),
                format!(
                    "must be from 0 to {MAX_FAILURES} (got {})",
                    hc.max_consecutive_failures
                ),
            );
        }
    }

    fn check_readiness_checks(&self, p: &mut Problems) {
        let ports: Vec<String> = self
            .declared_ports()
            .into_iter()
            .filter_map(|(name, _)| name)
            .collect();
        for (i, rc) in self.readiness_checks.iter().enumerate() {
            let at = format!("spec.readinessChecks[{i}]");
            p.check(
                ports.contains(&rc.port_name),
                format!("{at}.portName"),
                format!(
                    "names no port of the app (its named ports: {})",
                    if ports.is_empty() {
                        "none".to_string()
                    } else {
                        ports.join(", ")
                    }
                ),
            );
            p.check(
                rc.path.starts_with('/'),
                format!("{at}.path"),
                "must start with '/'",
            );
            p.check(
                (0..=MAX_SECONDS_INT).contains(&rc.interval_seconds),
                format!("{at}.intervalSeconds"),
                format!("{SECONDS} (got {})", rc.interval_seconds),
            );
            p.check(
                rc.timeout_seconds >= 1 && rc.timeout_seconds <= rc.interval_seconds.max(1),
                format!("{at}.timeoutSeconds"),
                "must be >= 1 and not longer than intervalSeconds",
            );
            p.check(
                !rc.http_status_codes_for_ready.is_empty()
                    && rc
                        .http_status_codes_for_ready
                        .iter()
                        .all(|c| (100..=999).contains(c)),
                format!("{at}.httpStatusCodesForReady"),
                "must hold at least one status code, each 100..999",
            );
        }
    }

    fn check_strategy(&self, p: &mut Problems) {
        let s = &self.upgrade_strategy;
        p.check(
            (0.0..=1.0).contains(&s.minimum_health_capacity),
            "spec.upgradeStrategy.minimumHealthCapacity",
            "must be between 0 and 1",
        );
        p.check(
            (0.0..=1.0).contains(&s.maximum_over_capacity),
            "spec.upgradeStrategy.maximumOverCapacity",
            "must be between 0 and 1",
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::app::AppSpec;

    fn spec(v: serde_json::Value) -> AppSpec {
        serde_json::from_value(v).unwrap()
    }

    fn paths(v: serde_json::Value) -> Vec<String> {
        spec(v).validate().into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn minimal_app_is_valid() {
        assert!(paths(json!({"cmd": "sleep 10"})).is_empty());
        assert!(paths(json!({"container": {"docker": {"image": "busybox"}}})).is_empty());
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let found = paths(json!({
            "instances": -1, "cpus": -0.5,
            "container": {"type": "DOCKER", "docker": {"image": ""}},
            "constraints": [["hostname", "NOPE"], ["rack", "CLUSTER"], ["a", "LIKE", "("]],
            "upgradeStrategy": {"minimumHealthCapacity": 2}
        }));
        assert_eq!(
            found,
            vec![
                "spec.instances",
                "spec.cpus",
                "spec.container.docker.image",
                "spec.constraints[0][1]",
                "spec.constraints[1][2]",
                "spec.constraints[2][2]",
                "spec.upgradeStrategy.minimumHealthCapacity",
            ]
        );
    }

    #[test]
    fn cmd_and_args_are_exclusive_and_one_is_needed() {
        assert_eq!(paths(json!({"cmd": "a", "args": ["b"]})), vec!["spec.args"]);
        assert_eq!(paths(json!({})), vec!["spec.cmd"]);
    }

    #[test]
    fn readiness_checks_name_a_port_and_sane_times() {
        let ok = json!({"cmd": "x", "portDefinitions": [{"port": 0, "name": "http"}],
            "readinessChecks": [{"portName": "http", "path": "/ready", "intervalSeconds": 2, "timeoutSeconds": 1}]});
        assert!(paths(ok).is_empty());
        let bad = json!({"cmd": "x", "portDefinitions": [{"port": 0, "name": "http"}],
            "readinessChecks": [{"portName": "admin", "path": "ready", "timeoutSeconds": 0,
                                 "intervalSeconds": 9223372036854775807_i64,
                                 "httpStatusCodesForReady": []}]});
        assert_eq!(
            paths(bad),
            vec![
                "spec.readinessChecks[0].portName",
                "spec.readinessChecks[0].path",
                "spec.readinessChecks[0].intervalSeconds",
                "spec.readinessChecks[0].timeoutSeconds",
                "spec.readinessChecks[0].httpStatusCodesForReady",
            ]
        );
    }

    #[test]
    fn counts_and_times_no_arithmetic_could_take_are_refused_by_name() {
        let found = paths(
            serde_json::json!({"cmd": "x", "instances": 1_000_000_000_i64,
            "backoffSeconds": 1e300, "backoffFactor": 1e6, "maxLaunchDelaySeconds": 1e300,
            "taskKillGracePeriodSeconds": 1e300,
            "unreachableStrategy": {"inactiveAfterSeconds": 1e300, "expungeAfterSeconds": 1e300},
            "healthChecks": [{"protocol": "TCP", "intervalSeconds": 9223372036854775807_i64,
                              "maxConsecutiveFailures": 9223372036854775807_i64}]}),
        );
        for path in [
            "spec.instances",
            "spec.backoffSeconds",
            "spec.backoffFactor",
            "spec.maxLaunchDelaySeconds",
            "spec.taskKillGracePeriodSeconds",
            "spec.unreachableStrategy.inactiveAfterSeconds",
            "spec.unreachableStrategy.expungeAfterSeconds",
            "spec.healthChecks[0].intervalSeconds",
            "spec.healthChecks[0].maxConsecutiveFailures",
        ] {
            assert!(
                found.iter().any(|p| p == path),
                "{path} not refused: {found:?}"
            );
        }
        // The largest allowed values are accepted.
        let edge = paths(
            serde_json::json!({"cmd": "x", "instances": super::MAX_INSTANCES,
            "backoffSeconds": crate::time::MAX_SECONDS, "taskKillGracePeriodSeconds": 0}),
        );
        assert!(edge.is_empty(), "{edge:?}");
    }

    #[test]
    fn bridge_needs_a_container() {
        assert_eq!(
            paths(json!({"cmd": "x", "networks": [{"mode": "container/bridge"}]})),
            vec!["spec.networks"]
        );
    }
}
