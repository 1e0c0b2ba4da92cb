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
    updates: mpsc::Sender<Update>,
    stop: CancellationToken,
) {
    let checks = task.spec.app.health_checks.clone();
    let started = Instant::now();
    let mut results: Vec<HealthResult> = vec![HealthResult::default(); checks.len()];
    let mut next: Vec<Instant> = vec![started; checks.len()];
    // A 3xx answers the check (Marathon's rule); it is not followed to where it points.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    loop {
        let (i, at) = next
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|(_, t)| *t)
            .unwrap_or((0, started));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(at.into()) => {}
        }
        let Some(check) = checks.get(i) else { return };
        next[i] = Instant::now() + secs(check.interval_seconds);
        let outcome = probe(check, &task, &handle, driver.as_ref(), &http).await;
        let in_grace = started.elapsed() < secs(check.grace_period_seconds)
            && results[i].first_success.is_none();
        let before = (results[i].alive, results[i].consecutive_failures);
        match outcome {
            Probe::Healthy => {
                let stamp = now();
                let r = &mut results[i];
                r.alive = true;
                r.consecutive_failures = 0;
                r.first_success.get_or_insert_with(|| stamp.clone());
                r.last_success = Some(stamp);
            }
            Probe::Ignored => continue,
            Probe::Failed(cause) if in_grace => {
                tracing::debug!(%cause, "health check failed within the grace period")
            }
            Probe::Failed(cause) => {
                let r = &mut results[i];
                r.alive = false;
                r.consecutive_failures += 1;
                r.last_failure = Some(now());
                r.last_failure_cause = Some(cause.clone());
                if check.max_consecutive_failures > 0
                    && r.consecutive_failures >= check.max_consecutive_failures
                {
                    let reason = format!(
                        "failed {} health checks in a row: {cause}",
                        r.consecutive_failures
                    );
                    let _ = updates.send(Update::Results(results.clone())).await;
                    let _ = updates.send(Update::Kill(reason)).await;
                    return;
                }
            }
        }
        if (results[i].alive, results[i].consecutive_failures) != before
            && updates
                .send(Update::Results(results.clone()))
                .await
                .is_err()
        {
            return;
        }
    }
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

enum Probe {
    Healthy,
    Failed(String),
    /// A 1xx answer with `ignoreHttp1xx`: neither healthy nor failed.
    Ignored,
}

/// The host port a check targets: `port`, or the task's host port at `portIndex` (default 0).
fn target_port(check: &HealthCheck, task: &Task) -> Option<u16> {
    match check.port {
        Some(port) => u16::try_from(port).ok(),
        None => task
            .spec
            .host_ports
            .get(usize::try_from(check.port_index.unwrap_or(0)).ok()?)
            .copied(),
    }
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
    let path = check.path.clone().unwrap_or_else(|| "/".into());
    let url = format!("{scheme}://127.0.0.1:{port}{path}");
    let resp = http
        .get(&url)
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
