//! The process runtime: `sh -c cmd` in a sandbox folder, in its own process group (Mesos' command executor).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use pacer_crd::Task;
use tokio::sync::watch;

use super::{Handle, Runtime, RuntimeError, task_env};

pub struct Process {
    sandboxes: PathBuf,
    /// Exit codes of the processes this agent started, by task name (None while running).
    exits: Mutex<HashMap<String, watch::Receiver<Option<i64>>>>,
}

impl Process {
    pub fn new(work_dir: &Path) -> Process {
        Process {
            sandboxes: work_dir.join("sandboxes"),
            exits: Mutex::default(),
        }
    }

    fn sandbox(&self, id: &str) -> PathBuf {
        self.sandboxes.join(id)
    }

    fn exit_of(&self, id: &str) -> Option<watch::Receiver<Option<i64>>> {
        self.exits.lock().expect("exits lock").get(id).cloned()
    }
}

fn signal_group(pid: Option<u32>, signal: Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// The last `tail` lines of a file, or nothing if it does not exist.
fn tail_of(path: &Path, tail: usize) -> Result<String, RuntimeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(tail);
            Ok(lines[start..].iter().map(|l| format!("{l}\n")).collect())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(RuntimeError::Logs(e)),
    }
}

#[async_trait]
impl Runtime for Process {
    async fn adopt(&self, _task: &Task) -> Option<Handle> {
        None
    }

    async fn start(&self, task: &Task, host: &str) -> Result<Handle, RuntimeError> {
        let id = task.metadata.name.clone().unwrap_or_default();
        let dir = self.sandbox(&id);
        std::fs::create_dir_all(&dir).map_err(RuntimeError::Spawn)?;
        let stdout = std::fs::File::create(dir.join("stdout")).map_err(RuntimeError::Spawn)?;
        let stderr = std::fs::File::create(dir.join("stderr")).map_err(RuntimeError::Spawn)?;
        let app = &task.spec.app;
        let mut command = match (&app.cmd, &app.args) {
            (Some(cmd), _) => {
                let mut c = tokio::process::Command::new("/bin/sh");
                c.arg("-c").arg(cmd);
                c
            }
            (None, Some(args)) if !args.is_empty() => {
                let mut c = tokio::process::Command::new(&args[0]);
                c.args(&args[1..]);
                c
            }
            _ => {
                return Err(RuntimeError::Spawn(std::io::Error::other(
                    "the app has neither cmd nor args",
                )));
            }
        };
        command
            .envs(task_env(task, host))
            .env("MESOS_SANDBOX", &dir)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        let mut child = command.spawn().map_err(RuntimeError::Spawn)?;
        let pid = child.id();
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(status) => status.code().map(i64::from).unwrap_or_else(|| {
                    use std::os::unix::process::ExitStatusExt;
                    128 + i64::from(status.signal().unwrap_or(0))
                }),
                Err(_) => -1,
            };
            let _ = tx.send(Some(code));
        });
        self.exits
            .lock()
            .expect("exits lock")
            .insert(id.clone(), rx);
        Ok(Handle { id, pid })
    }

    async fn wait(&self, handle: &Handle) -> Result<i64, RuntimeError> {
        let mut rx = self
            .exit_of(&handle.id)
            .ok_or_else(|| RuntimeError::Unknown(handle.id.clone()))?;
        let code = rx
            .wait_for(Option::is_some)
            .await
            .map(|c| c.unwrap_or(-1))
            .unwrap_or(-1);
        Ok(code)
    }

    async fn stop(&self, handle: &Handle, grace: Duration) -> Result<(), RuntimeError> {
        let Some(mut rx) = self.exit_of(&handle.id) else {
            return Ok(());
        };
        signal_group(handle.pid, Signal::SIGTERM);
        if tokio::time::timeout(grace, rx.wait_for(Option::is_some))
            .await
            .is_err()
        {
            signal_group(handle.pid, Signal::SIGKILL);
            let _ = rx.wait_for(Option::is_some).await;
        }
        Ok(())
    }

    async fn remove(&self, handle: &Handle) -> Result<(), RuntimeError> {
        signal_group(handle.pid, Signal::SIGKILL);
        self.exits.lock().expect("exits lock").remove(&handle.id);
        let _ = std::fs::remove_dir_all(self.sandbox(&handle.id));
        Ok(())
    }

    async fn exec(&self, handle: &Handle, task: &Task, command: &str) -> Result<i64, RuntimeError> {
        let status = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .envs(task_env(task, "127.0.0.1"))
            .current_dir(self.sandbox(&handle.id))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .map_err(RuntimeError::Spawn)?;
        Ok(status.code().map(i64::from).unwrap_or(-1))
    }

    async fn logs(&self, handle: &Handle, tail: usize) -> Result<String, RuntimeError> {
        let dir = self.sandbox(&handle.id);
        Ok(tail_of(&dir.join("stdout"), tail)? + &tail_of(&dir.join("stderr"), tail)?)
    }
}
