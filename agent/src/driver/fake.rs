//! The fake driver of simulated nodes (`pacer agent --simulate N`): a task "runs" after a
//! configured delay and until it is stopped, or ends by itself when its command is `exit N`
//! (so that job runs finish). Nothing is started on the machine.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use pacer_crd::Task;
use tokio::sync::watch;

use super::{Driver, DriverError, Found, Handle};

#[derive(Default)]
pub struct Fake {
    /// How long a start takes.
    pub start_delay: Duration,
    /// The share of starts that fail (0 to 1), to simulate a flaky fleet.
    pub fail_ratio: f64,
    /// Exit code of each running task, once it has one.
    running: Mutex<HashMap<String, watch::Sender<Option<i64>>>>,
}

impl Fake {
    pub fn new(start_delay: Duration, fail_ratio: f64) -> Fake {
        Fake {
            start_delay,
            fail_ratio,
            running: Mutex::default(),
        }
    }

    fn end(&self, id: &str, code: i64) {
        if let Some(tx) = self.running.lock().expect("fake lock").get(id) {
            tx.send_if_modified(|c| c.replace(code).is_none());
        }
    }
}

/// `exit 3` (optionally after `sh -c`) ends at once with that code.
fn exit_code(task: &Task) -> Option<i64> {
    let cmd = task.spec.app.cmd.as_deref()?.trim();
    cmd.strip_prefix("exit")?.trim().parse().ok()
}

#[async_trait]
impl Driver for Fake {
    async fn recover(&self, task: &Task) -> Option<Found> {
        let id = format!("fake-{}", task.metadata.name.as_deref().unwrap_or_default());
        self.running
            .lock()
            .expect("fake lock")
            .contains_key(&id)
            .then_some(Found::Started(Handle { id, pid: None }))
    }

    async fn start(&self, task: &Task, _host: &str) -> Result<Handle, DriverError> {
        tokio::time::sleep(self.start_delay).await;
        if self.fail_ratio > 0.0 && fastrand::f64() < self.fail_ratio {
            return Err(DriverError::Simulated);
        }
        let id = format!("fake-{}", task.metadata.name.as_deref().unwrap_or_default());
        let (tx, _) = watch::channel(exit_code(task));
        self.running
            .lock()
            .expect("fake lock")
            .insert(id.clone(), tx);
        Ok(Handle { id, pid: None })
    }

    async fn wait(&self, handle: &Handle) -> Result<i64, DriverError> {
        let rx = self
            .running
            .lock()
            .expect("fake lock")
            .get(&handle.id)
            .map(|tx| tx.subscribe());
        let mut rx = rx.ok_or_else(|| DriverError::Unknown(handle.id.clone()))?;
        let code = rx
            .wait_for(Option::is_some)
            .await
            .map(|c| c.unwrap_or(0))
            .map_err(|_| DriverError::Unknown(handle.id.clone()))?;
        Ok(code)
    }

    async fn stop(&self, handle: &Handle, _grace: Duration) -> Result<(), DriverError> {
        self.end(&handle.id, 143);
        Ok(())
    }

    async fn remove(&self, handle: &Handle) -> Result<(), DriverError> {
        self.end(&handle.id, 137);
        self.running.lock().expect("fake lock").remove(&handle.id);
        Ok(())
    }

    async fn logs(&self, _handle: &Handle, _tail: usize) -> Result<String, DriverError> {
        Ok(String::new())
    }

    async fn exec(&self, _h: &Handle, _t: &Task, _command: &str) -> Result<i64, DriverError> {
        Ok(0)
    }
}
