//! Readiness checks (Marathon's `readinessChecks`): HTTP(S) GETs on a named port of the task
//! until it answers a ready status code, run by the agent from the task's start until every
//! check has passed once. Results go into the task's status; deployments wait for them.

use std::time::Duration;

use pacer_crd::app::{ReadinessCheck, ReadinessProtocol};
use pacer_crd::{ReadinessResponse, ReadinessResult, Task};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::health::Update;

/// How much of a response body is kept with `preserveLastResponse`.
const BODY_KEPT: usize = 1024;

/// Checks `task` until each of its readiness checks has passed or `stop` is cancelled.
pub async fn run(
    task: Task,
    http: reqwest::Client,
    updates: mpsc::Sender<Update>,
    stop: CancellationToken,
) {
    let checks = task.spec.app.readiness_checks.clone();
    let mut results: Vec<ReadinessResult> = checks
        .iter()
        .map(|c| ReadinessResult {
            name: c.name.clone(),
            ..ReadinessResult::default()
        })
        .collect();
    loop {
        let before = results.clone();
        for (check, result) in checks
            .iter()
            .zip(results.iter_mut())
            .filter(|(_, r)| !r.ready)
        {
            let (ready, response) = probe(check, &task, &http).await;
            result.ready = ready;
            result.last_response = response;
        }
        if results != before
            && updates
                .send(Update::Readiness(results.clone()))
                .await
                .is_err()
        {
            return;
        }
        let Some(pause) = next_pause(&checks, &results) else {
            return;
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// How long until the checks not passed yet are tried again (the shortest of their intervals,
/// a second at least); None once every check has passed.
fn next_pause(checks: &[ReadinessCheck], results: &[ReadinessResult]) -> Option<Duration> {
    let interval = checks
        .iter()
        .zip(results)
        .filter(|(_, r)| !r.ready)
        .map(|(c, _)| c.interval_seconds)
        .min()?;
    Some(crate::health::secs(interval).max(Duration::from_secs(1)))
}

/// The host port of the port the check names.
fn target_port(check: &ReadinessCheck, task: &Task) -> Option<u16> {
    let index = task
        .spec
        .app
        .declared_ports()
        .iter()
        .position(|(name, _)| name.as_deref() == Some(check.port_name.as_str()))?;
    task.spec.host_ports.get(index).copied()
}

/// Whether the task answers ready, and what it answered.
async fn probe(
    check: &ReadinessCheck,
    task: &Task,
    http: &reqwest::Client,
) -> (bool, Option<ReadinessResponse>) {
    let Some(port) = target_port(check, task) else {
        return (false, None);
    };
    let scheme = match check.protocol {
        ReadinessProtocol::Http => "http",
        ReadinessProtocol::Https => "https",
    };
    let url = crate::health::local_url(scheme, port, &check.path);
    let timeout = crate::health::secs(check.timeout_seconds.max(1));
    let Ok(resp) = http.get(url).timeout(timeout).send().await else {
        return (false, None);
    };
    let status = i64::from(resp.status().as_u16());
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let ready = check.http_status_codes_for_ready.contains(&status);
    if !check.preserve_last_response {
        return (ready, None);
    }
    let body = first_bytes(resp, BODY_KEPT).await;
    let response = ReadinessResponse {
        status,
        content_type,
        body,
    };
    (ready, Some(response))
}

/// At most `limit` bytes of a body (cut at a character boundary), read no further than that.
async fn first_bytes(mut resp: reqwest::Response, limit: usize) -> String {
    let mut kept = Vec::new();
    while kept.len() < limit {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - kept.len();
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&kept).into_owned();
    let cut = (0..=text.len().min(limit))
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    text[..cut].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, interval_seconds: i64) -> ReadinessCheck {
        ReadinessCheck {
            name: name.into(),
            protocol: ReadinessProtocol::Http,
            path: "/".into(),
            port_name: "http".into(),
            interval_seconds,
            timeout_seconds: 10,
            http_status_codes_for_ready: vec![200],
            preserve_last_response: false,
        }
    }

    fn result(ready: bool) -> ReadinessResult {
        ReadinessResult {
            ready,
            ..ReadinessResult::default()
        }
    }

    #[test]
    fn the_next_look_waits_the_shortest_interval_of_the_checks_not_passed() {
        let checks = [check("a", 30), check("b", 5), check("c", 10)];
        let secs = Duration::from_secs;
        let pause = |ready: [bool; 3]| next_pause(&checks, &ready.map(result));
        assert_eq!(pause([false, false, false]), Some(secs(5)));
        assert_eq!(pause([false, true, false]), Some(secs(10)));
        assert_eq!(pause([false, true, true]), Some(secs(30)));
        assert_eq!(pause([true, true, true]), None, "all passed: done");
    }

    #[test]
    fn the_next_look_is_a_second_away_at_least() {
        for interval in [0, -5] {
            let pause = next_pause(&[check("a", interval)], &[result(false)]);
            assert_eq!(pause, Some(Duration::from_secs(1)));
        }
    }
}
