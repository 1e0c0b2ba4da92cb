//! The process driver: `sh -c cmd` in a sandbox folder, in its own process group (Mesos' command executor).

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

use super::{Driver, DriverError, Found, Handle, task_env};

/// A task's sandbox folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The task it was made for (its folder's name).
    pub task: String,
    /// Its process, if the checkpoint names one that still runs.
    pub pid: Option<u32>,
}

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

    /// The sandbox of task `id`. A task's name comes from its record: one that is not a single
    /// plain path component (`..`, `a/b`, empty) never becomes a path, or removing its sandbox
    /// could remove something else.
    fn sandbox(&self, id: &str) -> Result<PathBuf, DriverError> {
        if !is_plain_name(id) {
            return Err(DriverError::BadName(id.to_string()));
        }
        Ok(self.sandboxes.join(id))
    }

    /// The sandboxes left in the work folder, each with its process if that still runs.
    pub fn sandboxes(&self) -> Vec<Sandbox> {
        let Ok(entries) = std::fs::read_dir(&self.sandboxes) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|entry| Sandbox {
                task: entry.file_name().to_string_lossy().into_owned(),
                pid: checkpoint(&entry.path())
                    .filter(|&(pid, started)| start_time(pid) == Some(started))
                    .map(|(pid, _)| pid),
            })
            .collect()
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
fn tail_of(path: &Path, tail: usize) -> Result<String, DriverError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(tail);
            Ok(lines[start..].iter().map(|l| format!("{l}\n")).collect())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(DriverError::Logs(e)),
    }
}

/// The checkpoint of a started process: its pid and its start time (clock ticks since boot,
/// from `/proc/<pid>/stat`), so that a reused pid is not mistaken for it.
const PID_FILE: &str = ".pacer-pid";
/// Written by the wrapper shell when the task's command ends: its exit code.
const EXIT_FILE: &str = ".pacer-exit";

/// The start time of a live (not zombie) process, from `/proc/<pid>/stat`.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// The pid and start time a sandbox's checkpoint holds.
fn checkpoint(dir: &Path) -> Option<(u32, u64)> {
    parse_checkpoint(&std::fs::read_to_string(dir.join(PID_FILE)).ok()?)
}

fn parse_checkpoint(text: &str) -> Option<(u32, u64)> {
    let mut parts = text.split_whitespace();
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The command line of a task: `sh -c cmd`, or its args as they are.
fn argv(app: &pacer_crd::AppSpec) -> Result<Vec<String>, DriverError> {
    match (&app.cmd, &app.args) {
        (Some(cmd), _) => Ok(vec!["/bin/sh".into(), "-c".into(), cmd.clone()]),
        (None, Some(args)) if !args.is_empty() => Ok(args.clone()),
        _ => Err(DriverError::Spawn(std::io::Error::other(
            "the app has neither cmd nor args",
        ))),
    }
}

fn read_exit(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(dir.join(EXIT_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[async_trait]
impl Driver for Process {
    /// The process an earlier agent started, from the sandbox's checkpoint: same pid and
    /// start time means the same process. One that ended meanwhile reports the exit code its
    /// wrapper wrote.
    async fn recover(&self, task: &Task) -> Option<Found> {
        let id = task.metadata.name.clone().unwrap_or_default();
        let dir = self.sandbox(&id).ok()?;
        let (pid, started) = checkpoint(&dir)?;
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            // Not our child: poll until it is gone, then take the code its wrapper left.
            while start_time(pid) == Some(started) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let _ = tx.send(Some(read_exit(&dir).unwrap_or(-1)));
        });
        self.exits
            .lock()
            .expect("exits lock")
            .insert(id.clone(), rx);
        Some(Found::Started(Handle { id, pid: Some(pid) }))
    }

    async fn start(&self, task: &Task, host: &str) -> Result<Handle, DriverError> {
        let id = task.metadata.name.clone().unwrap_or_default();
        let dir = self.sandbox(&id)?;
        std::fs::create_dir_all(&dir).map_err(DriverError::Spawn)?;
        let stdout = std::fs::File::create(dir.join("stdout")).map_err(DriverError::Spawn)?;
        let stderr = std::fs::File::create(dir.join("stderr")).map_err(DriverError::Spawn)?;
        let argv = argv(&task.spec.app)?;
        // A wrapper shell leads the process group and writes the exit code to the sandbox,
        // so that an agent started later still learns how the task ended.
        let mut command = tokio::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(format!(
                "\"$@\"; code=$?; echo $code > {EXIT_FILE}; exit $code"
            ))
            .arg("pacer-task")
            .args(&argv);
        command
            .envs(task_env(task, host))
            .env("MESOS_SANDBOX", &dir)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        let mut child = command.spawn().map_err(DriverError::Spawn)?;
        let pid = child.id();
        if let Some(started) = pid.and_then(start_time) {
            let checkpoint = format!("{} {started}\n", pid.unwrap_or_default());
            std::fs::write(dir.join(PID_FILE), checkpoint).map_err(DriverError::Spawn)?;
        }
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

    async fn wait(&self, handle: &Handle) -> Result<i64, DriverError> {
        let mut rx = self
            .exit_of(&handle.id)
            .ok_or_else(|| DriverError::Unknown(handle.id.clone()))?;
        let code = rx
            .wait_for(Option::is_some)
            .await
            .map(|c| c.unwrap_or(-1))
            .unwrap_or(-1);
        Ok(code)
    }

    async fn stop(&self, handle: &Handle, grace: Duration) -> Result<(), DriverError> {
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

    async fn remove(&self, handle: &Handle) -> Result<(), DriverError> {
        signal_group(handle.pid, Signal::SIGKILL);
        self.exits.lock().expect("exits lock").remove(&handle.id);
        if let Ok(dir) = self.sandbox(&handle.id) {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    }

    async fn exec(&self, handle: &Handle, task: &Task, command: &str) -> Result<i64, DriverError> {
        let status = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .envs(task_env(task, "127.0.0.1"))
            .current_dir(self.sandbox(&handle.id)?)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .map_err(DriverError::Spawn)?;
        Ok(status.code().map(i64::from).unwrap_or(-1))
    }

    async fn logs(&self, handle: &Handle, tail: usize) -> Result<String, DriverError> {
        let dir = self.sandbox(&handle.id)?;
        Ok(tail_of(&dir.join("stdout"), tail)? + &tail_of(&dir.join("stderr"), tail)?)
    }
}

/// A single path component that names nothing but itself: not empty, not `.` or `..`, no
/// separator, no NUL.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_task_name_becomes_a_sandbox() {
        let work = std::env::temp_dir().join(format!("pacer-sandbox-{}", std::process::id()));
        let process = Process::new(&work);
        let inside = process.sandbox("web.1b2c").unwrap();
        assert_eq!(inside, work.join("sandboxes").join("web.1b2c"));
        for name in ["", ".", "..", "../etc", "a/b", "/etc", "a\\b", "a\0b"] {
            assert!(
                matches!(process.sandbox(name), Err(DriverError::BadName(_))),
                "{name:?} must not become a path"
            );
        }
        assert!(is_plain_name("..hidden") && is_plain_name("web.v1..2"));
    }
}
