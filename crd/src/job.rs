//! Batch work: a Job runs a command or image to completion (with retries and backoff), once or
//! on a cron schedule; each execution is a JobRun record whose attempts are Tasks. The shape
//! follows Metronome (`run`, `schedule` with `cron`, `timezone`, `concurrencyPolicy`).

use std::str::FromStr;

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::app::AppSpec;
use crate::error::FieldError;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pacer.io",
    version = "v1",
    kind = "Job",
    status = "JobStatus",
    shortname = "jo",
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSpec {
    /// What one run executes: Marathon's app fields (cmd or args, container, cpus, mem, env,
    /// constraints, role); `instances` and health checks do not apply.
    pub run: AppSpec,
    /// Attempts after a failed one before the run fails.
    #[serde(default)]
    pub max_retries: u32,
    /// Wait before the first retry; each next one waits `backoffFactor` times longer.
    #[serde(default = "default_backoff")]
    pub backoff_seconds: f64,
    #[serde(default = "default_factor")]
    pub backoff_factor: f64,
    /// An attempt running longer than this is killed (and counts as failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<f64>,
    /// Runs on this schedule; without one, the job runs once when created and then on request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Finished runs kept (with their tasks and logs); older ones are removed.
    #[serde(default = "default_history")]
    pub history_limit: u32,
}

fn default_backoff() -> f64 {
    1.0
}
fn default_factor() -> f64 {
    2.0
}
fn default_history() -> u32 {
    10
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    /// A cron pattern: `minute hour day-of-month month day-of-week` (or with seconds first).
    pub cron: String,
    /// The IANA zone the pattern is read in (`Europe/Berlin`); UTC when unset.
    #[serde(default = "default_zone")]
    pub timezone: String,
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// A start missed by more than this (controller down) is skipped rather than run late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<f64>,
}

fn default_zone() -> String {
    "UTC".into()
}

/// What a scheduled start does while an earlier run is still active.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConcurrencyPolicy {
    /// Start another run beside it.
    #[default]
    Allow,
    /// Skip this start.
    Forbid,
    /// Kill the active run, then start.
    Replace,
}

impl Schedule {
    /// The parsed pattern and zone, or what is wrong with them.
    pub fn parse(&self) -> Result<(croner::Cron, chrono_tz::Tz), Vec<FieldError>> {
        let mut problems = Vec::new();
        let cron = croner::Cron::from_str(&self.cron)
            .map_err(|e| {
                problems.push(FieldError::new(
                    "spec.schedule.cron",
                    format!("'{}' is not a cron pattern: {e}", self.cron),
                ))
            })
            .ok();
        let zone = chrono_tz::Tz::from_str(&self.timezone)
            .map_err(|_| {
                problems.push(FieldError::new(
                    "spec.schedule.timezone",
                    format!(
                        "'{}' is not an IANA time zone (like Europe/Berlin)",
                        self.timezone
                    ),
                ))
            })
            .ok();
        match (cron, zone) {
            (Some(c), Some(z)) => Ok((c, z)),
            _ => Err(problems),
        }
    }

    /// The first start strictly after `after` (UTC seconds), if the pattern has one.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let (cron, zone) = self.parse().ok()?;
        let at = chrono::DateTime::from_timestamp(after, 0)?.with_timezone(&zone);
        cron.find_next_occurrence(&at, false)
            .ok()
            .map(|t| t.timestamp())
    }
}

impl JobSpec {
    /// Every problem, with its path.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut found: Vec<FieldError> = self
            .run
            .validate()
            .into_iter()
            .map(|e| FieldError::new(e.path.replacen("spec.", "spec.run.", 1), e.reason))
            .collect();
        if !self.run.health_checks.is_empty() {
            found.push(FieldError::new(
                "spec.run.healthChecks",
                "a job's run ends by itself: health checks do not apply",
            ));
        }
        if self.run.instances != 1 {
            found.push(FieldError::new(
                "spec.run.instances",
                "a run is one task: leave instances out",
            ));
        }
        for (name, v) in [
            ("backoffSeconds", self.backoff_seconds),
            ("backoffFactor", self.backoff_factor),
        ] {
            if !crate::time::is_seconds(v) {
                found.push(FieldError::new(
                    format!("spec.{name}"),
                    format!("must be from 0 to {} (got {v})", crate::time::MAX_SECONDS),
                ));
            }
        }
        if let Some(d) = self
            .active_deadline_seconds
            .filter(|d| !(crate::time::is_seconds(*d) && *d > 0.0))
        {
            found.push(FieldError::new(
                "spec.activeDeadlineSeconds",
                format!(
                    "must be above 0 and at most {} (got {d})",
                    crate::time::MAX_SECONDS
                ),
            ));
        }
        if let Some(Err(problems)) = self.schedule.as_ref().map(Schedule::parse) {
            found.extend(problems);
        }
        found
    }

    /// How long to wait before attempt `attempt + 1`, after `attempt` failed ones.
    pub fn retry_delay(&self, failed_attempts: u32) -> std::time::Duration {
        let exp = failed_attempts.saturating_sub(1).min(30) as i32;
        let secs = (self.backoff_seconds * self.backoff_factor.powi(exp)).clamp(0.0, 3600.0);
        std::time::Duration::from_secs_f64(secs)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// Runs started so far; the next run is `<job>-<runsStarted + 1>`.
    #[serde(default)]
    pub runs_started: u64,
    /// Scheduled starts skipped because a run was active (`FORBID`) or missed.
    #[serde(default)]
    pub skipped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_skipped_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    #[serde(default)]
    pub succeeded: u64,
    #[serde(default)]
    pub failed: u64,
}

/// One execution of a Job: its spec is a snapshot taken when it started.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pacer.io",
    version = "v1",
    kind = "JobRun",
    status = "JobRunStatus",
    shortname = "jr",
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase")]
pub struct JobRunSpec {
    pub job: String,
    pub number: u64,
    /// `create`, `schedule` or `manual`.
    pub trigger: String,
    pub template: JobSpec,
    /// Set to stop the run (the `REPLACE` policy, or a user); its task is killed.
    #[serde(default)]
    pub kill: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RunPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Killed,
}

impl RunPhase {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunPhase::Succeeded | RunPhase::Failed | RunPhase::Killed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunPhase::Pending => "Pending",
            RunPhase::Running => "Running",
            RunPhase::Succeeded => "Succeeded",
            RunPhase::Failed => "Failed",
            RunPhase::Killed => "Killed",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRunStatus {
    #[serde(default)]
    pub phase: RunPhase,
    /// Attempts started (tasks placed).
    #[serde(default)]
    pub attempts: u32,
    /// The task of the latest attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// When the next attempt may start, after a failed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
}

impl JobRun {
    pub fn phase(&self) -> RunPhase {
        self.status.as_ref().map(|s| s.phase).unwrap_or_default()
    }
}

/// The next run of `job`: the job with its run counter raised (to be written with a compare on
/// the job's revision, so that two starts never take the same number) and the new JobRun.
pub fn next_run(job: &Job, trigger: &str) -> (Job, JobRun) {
    let name = job.metadata.name.clone().unwrap_or_default();
    let mut updated = job.clone();
    let status = updated.status.get_or_insert_with(JobStatus::default);
    status.runs_started += 1;
    let number = status.runs_started;
    let run_id = run_name(&name, number);
    status.last_run = Some(run_id.clone());
    if !status.active.contains(&run_id) {
        status.active.push(run_id.clone());
    }
    let mut run = JobRun::new(
        &run_id,
        JobRunSpec {
            job: name.clone(),
            number,
            trigger: trigger.into(),
            template: job.spec.clone(),
            kill: false,
        },
    );
    run.metadata.labels = Some([("pacer.io/job".to_string(), name)].into());
    run.status = Some(JobRunStatus::default());
    (updated, run)
}

/// The record name of run `number` of `job`.
pub fn run_name(job: &str, number: u64) -> String {
    format!("{job}-{number}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schedule(cron: &str, zone: &str) -> Schedule {
        serde_json::from_value(json!({"cron": cron, "timezone": zone})).unwrap()
    }

    #[test]
    fn next_start_follows_the_zone() {
        // 2026-01-01T00:00:30Z; every minute -> 00:01:00Z.
        let t = 1_767_225_630;
        assert_eq!(schedule("* * * * *", "UTC").next_after(t), Some(t + 30));
        // 09:00 in Berlin (UTC+1 in January) is 08:00Z.
        assert_eq!(
            schedule("0 9 * * *", "Europe/Berlin").next_after(t),
            Some(1_767_225_600 + 8 * 3600)
        );
    }

    #[test]
    fn bad_schedule_names_the_field() {
        let spec: JobSpec = serde_json::from_value(json!({
            "run": {"cmd": "true"},
            "schedule": {"cron": "61 * * * *", "timezone": "Mars/Olympus"}
        }))
        .unwrap();
        let paths: Vec<String> = spec.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["spec.schedule.cron", "spec.schedule.timezone"]);
    }

    #[test]
    fn retries_back_off() {
        let spec: JobSpec = serde_json::from_value(json!({"run": {"cmd": "x"}})).unwrap();
        let d: Vec<f64> = (1..=4).map(|n| spec.retry_delay(n).as_secs_f64()).collect();
        assert_eq!(d, [1.0, 2.0, 4.0, 8.0]);
    }
}
