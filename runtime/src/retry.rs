//! Retries, all on backon with jitter: after a shared outage thousands of nodes must not
//! retry in step (they overloaded etcd again). Three shapes:
//!
//! - [`Backoff`]: a loop that tries again until it is cancelled (registering a node,
//!   campaigning, resuming a watch, reporting a task's status);
//! - [`transient`]: one etcd request, again while it fails for a passing reason;
//! - [`on_conflict`]: a read-decide-write step, again while someone else wrote first.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// Retry delays doubling from `min` up to `max`, forever, each with random jitter.
pub fn backoff(min: Duration, max: Duration) -> backon::ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_max_times(usize::MAX)
        .with_jitter()
        .build()
}

/// Delays of a loop that retries until it is cancelled; `reset` after a success.
pub struct Backoff {
    min: Duration,
    max: Duration,
    delays: backon::ExponentialBackoff,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            delays: backoff(min, max),
        }
    }

    /// Starts again from the shortest delay.
    pub fn reset(&mut self) {
        self.delays = backoff(self.min, self.max);
    }

    /// The next delay: at most `max`, plus the jitter backon adds (up to `min` again).
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max)
    }

    /// Waits the next delay, first telling `before` how long it will be (to log it). False
    /// when `token` was cancelled meanwhile: the loop should end.
    pub async fn pause(
        &mut self,
        token: &CancellationToken,
        before: impl FnOnce(Duration),
    ) -> bool {
        let delay = self.next_delay();
        before(delay);
        tokio::select! {
            _ = token.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// How long an etcd request is tried again while it fails for a passing reason: the client
/// notices a dead member within its 5 s keep-alive plus 5 s timeout, so about 15 s covers
/// losing one member of a cluster, which must not surface as an error.
pub const TRANSIENT_PATIENCE: Duration = Duration::from_secs(15);

/// Runs an etcd request again while it fails for a passing reason (the member it went to is
/// gone, a leader election is under way), for at most [`TRANSIENT_PATIENCE`].
pub async fn transient<T, F, Fut>(call: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    use backon::Retryable;
    let delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_millis(800))
        .with_total_delay(Some(TRANSIENT_PATIENCE))
        .with_max_times(usize::MAX)
        .with_jitter();
    call.retry(delays)
        .when(is_transient)
        .notify(|e, delay| tracing::debug!(error = %e, retry_in = ?delay, "etcd request failed, retrying"))
        .await
}

fn is_transient(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
        ),
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// An error that may mean "someone else wrote first: read again and retry".
pub trait Conflicting {
    fn is_conflict(&self) -> bool;
}

impl Conflicting for crate::Error {
    fn is_conflict(&self) -> bool {
        crate::Error::is_conflict(self)
    }
}

/// How long a read-decide-write step is retried while it loses races.
pub const CONFLICT_PATIENCE: Duration = Duration::from_secs(10);

/// Runs `attempt` (read, decide, write with compares) again while it fails with a conflict,
/// after a short jittered pause (writers racing for one record must not retry in step), for
/// at most [`CONFLICT_PATIENCE`]; then the last conflict is returned.
pub async fn on_conflict<T, E, F, Fut>(mut attempt: F) -> Result<T, E>
where
    E: Conflicting,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + CONFLICT_PATIENCE;
    let mut delays = backoff(Duration::from_millis(1), Duration::from_millis(100));
    loop {
        match attempt().await {
            Err(e) if e.is_conflict() && Instant::now() < deadline => {
                let delay = delays.next().unwrap_or(Duration::from_millis(100));
                tokio::time::sleep(delay).await;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Raced(bool);
    impl Conflicting for Raced {
        fn is_conflict(&self) -> bool {
            self.0
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_conflict_is_retried_and_another_error_is_not() {
        let mut tries = 0;
        let result: Result<u32, Raced> = on_conflict(|| {
            tries += 1;
            let n = tries;
            async move { if n < 3 { Err(Raced(true)) } else { Ok(n) } }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
        let mut tries = 0;
        let result: Result<u32, Raced> = on_conflict(|| {
            tries += 1;
            async { Err(Raced(false)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(tries, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn conflicts_give_up_after_the_deadline() {
        let started = tokio::time::Instant::now();
        let result: Result<(), Raced> = on_conflict(|| async { Err(Raced(true)) }).await;
        assert!(result.unwrap_err().is_conflict());
        let took = started.elapsed();
        assert!(took >= CONFLICT_PATIENCE && took < CONFLICT_PATIENCE + Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_ends_early_when_cancelled() {
        let mut backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let token = CancellationToken::new();
        token.cancel();
        let mut told = None;
        assert!(!backoff.pause(&token, |d| told = Some(d)).await);
        assert!(told.unwrap() <= Duration::from_secs(120));
    }
}
