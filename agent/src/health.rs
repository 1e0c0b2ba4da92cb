//! Health checks (HTTP, TCP, COMMAND) run by the agent where the task runs, so health survives
//! a controller failover. Results go into the task's status; too many failures in a row kill it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pacer_crd::app::{HealthCheck, HealthProtocol};
use pacer_crd::{HealthResult, Task};
use pacer_runtime::now;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::driver::{Driver, Handle};

/// What the checks tell the runner.
#[derive(Debug)]
pub enum Update {
    /// New results, one per check, whenever one of them changes state.
    Results(Vec<HealthResult>),
    /// The task failed a check too often and must be killed.
    Kill(String),
    /// New readiness results, one per readiness check, whenever one changes.
    Readiness(Vec<pacer_crd::ReadinessResult>),
}

/// Runs every check of `task` until `stop` is cancelled or a check asks for a kill.
pub async fn run(
    task: Task,
    handle: Handle,
    driver: Arc<dyn Driver>,
    http: reqwest::Client,
    updates: mpsc::Sender<Update>,
    stop: CancellationToken,
) {
    let checks = task.spec.app.health_checks.clone();
    let started = Instant::now();
    let mut results: Vec<HealthResult> = vec![HealthResult::default(); checks.len()];
    let mut next: Vec<Instant> = vec![started; checks.len()];
    loop {
        let (i, at) = due(&next).unwrap_or((0, started));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(at.into()) => {}
        }
        let Some(check) = checks.get(i) else { return };
        next[i] = Instant::now() + secs(check.interval_seconds);
        let outcome = probe(check, &task, &handle, driver.as_ref(), &http).await;
        match judge(&mut results[i], check, outcome, started.elapsed(), &now()) {
            Verdict::Unchanged => {}
            Verdict::Changed => {
                if updates
                    .send(Update::Results(results.clone()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Verdict::Kill(reason) => {
                let _ = updates.send(Update::Results(results.clone())).await;
                let _ = updates.send(Update::Kill(reason)).await;
                return;
            }
        }
    }
}

/// The check due first (the first of those due together) and when.
fn due(next: &[Instant]) -> Option<(usize, Instant)> {
    next.iter().copied().enumerate().min_by_key(|(_, t)| *t)
}

/// What one probe's outcome means for the task.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Nothing the task's status shows changed (timestamps aside): no write.
    Unchanged,
    /// The check turned healthy or unhealthy, or counted another failure.
    Changed,
    /// Too many failures in a row: the task must be killed, for this reason.
    Kill(String),
}

/// Records `outcome` in the check's `result`, `since_start` after the task started, at `now`.
/// Failures within the check's grace period do not count, until the task first passes it.
fn judge(
    result: &mut HealthResult,
    check: &HealthCheck,
    outcome: Probe,
    since_start: Duration,
    now: &str,
) -> Verdict {
    let in_grace = since_start < secs(check.grace_period_seconds) && result.first_success.is_none();
    let before = (result.alive, result.consecutive_failures);
    match outcome {
        Probe::Healthy => {
            result.alive = true;
            result.consecutive_failures = 0;
            result.first_success.get_or_insert_with(|| now.to_string());
            result.last_success = Some(now.to_string());
        }
        Probe::Ignored => return Verdict::Unchanged,
        Probe::Failed(cause) if in_grace => {
            tracing::debug!(%cause, "health check failed within the grace period")
        }
        Probe::Failed(cause) => {
            result.alive = false;
            result.consecutive_failures += 1;
            result.last_failure = Some(now.to_string());
            result.last_failure_cause = Some(cause.clone());
            if check.max_consecutive_failures > 0
                && result.consecutive_failures >= check.max_consecutive_failures
            {
                let failures = result.consecutive_failures;
                return Verdict::Kill(format!("failed {failures} health checks in a row: {cause}"));
            }
        }
    }
    if (result.alive, result.consecutive_failures) == before {
        Verdict::Unchanged
    } else {
        Verdict::Changed
    }
}

/// The HTTP client of every health and readiness check of one agent (built once: a client
/// holds a connection pool). A 3xx answers a health check (Marathon's rule), and a readiness
/// check's answer, kept with preserveLastResponse, must not come from anywhere else: no
/// redirect is followed.
pub fn check_client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(pacer_runtime::tls::anonymous_client_config([]))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client with a preconfigured TLS setup builds")
}

pub(crate) fn secs(n: i64) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

#[derive(Debug, Clone, PartialEq)]
enum Probe {
    Healthy,
    Failed(String),
    /// A 1xx answer with `ignoreHttp1xx`: neither healthy nor failed.
    Ignored,
}

/// The host port a check targets: `port` if the task holds it, or the task's host port at
/// `portIndex` (default 0). Only the task's own ports are probed: a check must not make the
/// agent knock on the node's other services (etcd on 2379, the API).
fn target_port(check: &HealthCheck, task: &Task) -> Option<u16> {
    let ports = &task.spec.host_ports;
    match check.port {
        Some(port) => u16::try_from(port).ok().filter(|p| ports.contains(p)),
        None => ports
            .get(usize::try_from(check.port_index.unwrap_or(0)).ok()?)
            .copied(),
    }
}

/// The URL of a check of the task on this host, built from parts: whatever the check's path
/// holds (`@169.254.169.254/...`, `//elsewhere/`), it stays a path and query on 127.0.0.1.
pub(crate) fn local_url(scheme: &str, port: u16, path: &str) -> reqwest::Url {
    let mut url = reqwest::Url::parse(&format!("{scheme}://127.0.0.1:{port}/"))
        .expect("a loopback URL parses");
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    url.set_path(path);
    url.set_query(query);
    url
}

async fn probe(
    check: &HealthCheck,
    task: &Task,
    handle: &Handle,
    driver: &dyn Driver,
    http: &reqwest::Client,
) -> Probe {
    let timeout = secs(check.timeout_seconds.max(1));
    let outcome = match check.protocol {
        HealthProtocol::Command => {
            let command = check
                .command
                .as_ref()
                .map(|c| c.value.clone())
                .unwrap_or_default();
            match tokio::time::timeout(timeout, driver.exec(handle, task, &command)).await {
                Ok(Ok(0)) => Ok(Probe::Healthy),
                Ok(Ok(code)) => Err(format!("command exited with {code}")),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("command timed out after {timeout:?}")),
            }
        }
        protocol => {
            let Some(port) = target_port(check, task) else {
                return Probe::Failed("the check names no port the task has".into());
            };
            match protocol {
                HealthProtocol::Tcp | HealthProtocol::MesosTcp => {
                    match tokio::time::timeout(
                        timeout,
                        tokio::net::TcpStream::connect(("127.0.0.1", port)),
                    )
                    .await
                    {
                        Ok(Ok(_)) => Ok(Probe::Healthy),
                        Ok(Err(e)) => Err(format!("connect to port {port}: {e}")),
                        Err(_) => Err(format!("connect to port {port} timed out")),
                    }
                }
                _ => http_probe(check, port, timeout, http).await,
            }
        }
    };
    outcome.unwrap_or_else(Probe::Failed)
}

async fn http_probe(
    check: &HealthCheck,
    port: u16,
    timeout: Duration,
    http: &reqwest::Client,
) -> Result<Probe, String> {
    let scheme = if matches!(
        check.protocol,
        HealthProtocol::Https | HealthProtocol::MesosHttps
    ) {
        "https"
    } else {
        "http"
    };
    let url = local_url(scheme, port, check.path.as_deref().unwrap_or("/"));
    let resp = http
        .get(url.clone())
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let code = resp.status().as_u16();
    match code {
        100..=199 if check.ignore_http1xx => Ok(Probe::Ignored),
        200..=399 => Ok(Probe::Healthy),
        _ => Err(format!("GET {url} answered {code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_url_never_leaves_the_tasks_port_on_this_host() {
        for path in [
            "/health",
            "@169.254.169.254/latest/meta-data",
            "//169.254.169.254/latest",
            "http://169.254.169.254/",
            "/../../x?y=1#frag",
        ] {
            let url = local_url("http", 31000, path);
            assert_eq!(url.host_str(), Some("127.0.0.1"), "{path} -> {url}");
            assert_eq!(url.port(), Some(31000), "{path} -> {url}");
            assert!(
                url.username().is_empty() && url.password().is_none(),
                "{url}"
            );
        }
        let url = local_url("http", 31000, "/status?verbose=1");
        assert_eq!((url.path(), url.query()), ("/status", Some("verbose=1")));
    }

    #[test]
    fn a_check_probes_only_ports_the_task_holds() {
        let app = pacer_crd::App::test("web");
        let mut task = Task::test(&app, "n1", pacer_crd::TaskState::Running);
        task.spec.host_ports = vec![31000, 31001];
        let mut c = check(0, 3);
        assert_eq!(target_port(&c, &task), Some(31000));
        c.port_index = Some(1);
        assert_eq!(target_port(&c, &task), Some(31001));
        c.port = Some(31001);
        assert_eq!(target_port(&c, &task), Some(31001));
        c.port = Some(2379);
        assert_eq!(
            target_port(&c, &task),
            None,
            "etcd's port is not the task's"
        );
    }

    /// An HTTP check with a grace period and a failure limit, the rest as Marathon's defaults.
    fn check(grace_period_seconds: i64, max_consecutive_failures: i64) -> HealthCheck {
        HealthCheck {
            protocol: HealthProtocol::Http,
            path: None,
            port_index: None,
            port: None,
            command: None,
            grace_period_seconds,
            interval_seconds: 10,
            timeout_seconds: 20,
            max_consecutive_failures,
            ignore_http1xx: false,
            delay_seconds: 15,
        }
    }

    fn failed() -> Probe {
        Probe::Failed("GET / answered 500".into())
    }

    const LATE: Duration = Duration::from_secs(600);

    #[test]
    fn a_pass_marks_the_task_alive_and_is_written_once() {
        let check = check(300, 3);
        let mut result = HealthResult::default();
        let verdict = judge(&mut result, &check, Probe::Healthy, LATE, "t1");
        assert_eq!(verdict, Verdict::Changed);
        assert!(result.alive);
        assert_eq!(result.first_success.as_deref(), Some("t1"));
        let verdict = judge(&mut result, &check, Probe::Healthy, LATE, "t2");
        assert_eq!(verdict, Verdict::Unchanged, "nothing to write");
        assert_eq!(result.first_success.as_deref(), Some("t1"));
        assert_eq!(result.last_success.as_deref(), Some("t2"));
    }

    #[test]
    fn failures_within_the_grace_period_do_not_count_until_a_first_pass() {
        let check = check(300, 1);
        let early = Duration::from_secs(299);
        let mut result = HealthResult::default();
        let verdict = judge(&mut result, &check, failed(), early, "t1");
        assert_eq!(verdict, Verdict::Unchanged);
        assert_eq!(result, HealthResult::default());
        // Past the grace period a failure counts.
        let verdict = judge(
            &mut result,
            &check,
            failed(),
            Duration::from_secs(300),
            "t2",
        );
        assert!(matches!(verdict, Verdict::Kill(_)), "{verdict:?}");
        // Once it has passed, the grace period is over for the task.
        let mut result = HealthResult::default();
        judge(&mut result, &check, Probe::Healthy, early, "t1");
        let verdict = judge(&mut result, &check, failed(), early, "t2");
        assert!(matches!(verdict, Verdict::Kill(_)), "{verdict:?}");
    }

    #[test]
    fn consecutive_failures_kill_at_the_limit_and_a_pass_starts_the_count_again() {
        let check = check(0, 3);
        let mut result = HealthResult::default();
        assert_eq!(
            judge(&mut result, &check, failed(), LATE, "t1"),
            Verdict::Changed
        );
        assert_eq!(
            judge(&mut result, &check, failed(), LATE, "t2"),
            Verdict::Changed
        );
        assert_eq!(result.consecutive_failures, 2);
        assert!(!result.alive);
        assert_eq!(result.last_failure.as_deref(), Some("t2"));
        assert_eq!(
            result.last_failure_cause.as_deref(),
            Some("GET / answered 500")
        );
        assert_eq!(
            judge(&mut result, &check, Probe::Healthy, LATE, "t3"),
            Verdict::Changed
        );
        assert_eq!(result.consecutive_failures, 0);
        judge(&mut result, &check, failed(), LATE, "t4");
        judge(&mut result, &check, failed(), LATE, "t5");
        assert_eq!(
            judge(&mut result, &check, failed(), LATE, "t6"),
            Verdict::Kill("failed 3 health checks in a row: GET / answered 500".into())
        );
        assert_eq!(result.consecutive_failures, 3);
    }

    #[test]
    fn without_a_limit_failures_never_kill() {
        let check = check(0, 0);
        let mut result = HealthResult::default();
        for _ in 0..100 {
            assert_eq!(
                judge(&mut result, &check, failed(), LATE, "t"),
                Verdict::Changed
            );
        }
        assert_eq!(result.consecutive_failures, 100);
    }

    #[test]
    fn an_ignored_answer_changes_nothing() {
        let check = check(0, 1);
        let mut result = HealthResult::default();
        judge(&mut result, &check, Probe::Healthy, LATE, "t1");
        let before = result.clone();
        assert_eq!(
            judge(&mut result, &check, Probe::Ignored, LATE, "t2"),
            Verdict::Unchanged
        );
        assert_eq!(result, before);
    }

    #[test]
    fn the_check_due_first_goes_first() {
        let start = Instant::now();
        let later = start + Duration::from_secs(5);
        assert_eq!(due(&[later, start, start]), Some((1, start)));
        assert_eq!(due(&[later]), Some((0, later)));
        assert_eq!(due(&[]), None);
    }
}
