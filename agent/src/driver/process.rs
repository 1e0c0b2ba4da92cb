//! The process driver: `sh -c cmd` in a sandbox folder, in its own process group (Mesos' command executor).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use pacer_crd::{AppSpec, Task};
use tokio::process::Command;
use tokio::sync::watch;

use super::sandbox::{self, checkpoint};
use super::user::{Account, Accounts};
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
    /// Who runs a task that names no `user` (`--task-user`, `nobody` by default): never the
    /// agent's root unless a task asks for root by name.
    default_user: Option<String>,
    /// Exit codes of the processes this agent started, by task name (None while running).
    exits: Mutex<HashMap<String, watch::Receiver<Option<i64>>>>,
}

impl Process {
    pub fn new(work_dir: &Path) -> Process {
        Process::with_default_user(work_dir, None)
    }

    /// A driver running tasks without a `user` as `default_user` (the agent's own user when
    /// `None`).
    pub fn with_default_user(work_dir: &Path, default_user: Option<String>) -> Process {
        Process {
            default_user,
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

/// The command line of a task: `sh -c cmd`, or its args as they are.
fn argv(app: &AppSpec) -> Result<Vec<String>, DriverError> {
    match (&app.cmd, &app.args) {
        (Some(cmd), _) => Ok(vec!["/bin/sh".into(), "-c".into(), cmd.clone()]),
        (None, Some(args)) if !args.is_empty() => Ok(args.clone()),
        _ => Err(DriverError::Spawn(std::io::Error::other(
            "the app has neither cmd nor args",
        ))),
    }
}

/// The account the app's `user` (or else `default`) names on this node, if any; an unknown
/// one is an error naming it (the task fails to start).
fn account_of(app: &AppSpec, default: Option<&str>) -> Result<Option<Account>, DriverError> {
    let named = app.user.as_deref().filter(|u| !u.trim().is_empty());
    let Some(user) = named.or(default.filter(|u| !u.trim().is_empty())) else {
        return Ok(None);
    };
    let account = Accounts::read(user).and_then(|accounts| accounts.resolve(user));
    account.map(Some).map_err(DriverError::User)
}

/// `command` run as `account`, when the task names one, with the HOME, USER and LOGNAME a
/// login would set (HOME the sandbox when the account has no folder of its own). As root,
/// std drops the agent's supplementary groups when it changes the uid.
fn run_as(command: &mut Command, account: Option<&Account>, sandbox: &Path) {
    let Some(account) = account else { return };
    let home = account.home.as_deref().filter(|h| h.is_dir());
    command
        .uid(account.uid)
        .gid(account.gid)
        .env("HOME", home.unwrap_or(sandbox))
        .env("USER", &account.name)
        .env("LOGNAME", &account.name);
}

/// The shell that runs `argv` in the sandbox `dir` as `account`. It leads the task's process
/// group and writes the exit code to the sandbox, so that an agent started later still learns
/// how the task ended.
fn wrapper(argv: &[String], dir: &Path, account: Option<&Account>) -> Command {
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(format!(
            "\"$@\"; code=$?; echo $code > {}; exit $code",
            sandbox::EXIT_FILE
        ))
        .arg("pacer-task")
        .args(argv);
    run_as(&mut command, account, dir);
    command
        .env("MESOS_SANDBOX", dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .process_group(0);
    command
}

/// A fresh sandbox at `dir`, handed to `account` so that its task can write there.
fn make_sandbox(dir: &Path, account: Option<&Account>) -> Result<sandbox::Files, DriverError> {
    let files = sandbox::create(dir).map_err(DriverError::Spawn)?;
    if let Some(a) = account {
        std::os::unix::fs::chown(dir, Some(a.uid), Some(a.gid)).map_err(|source| {
            DriverError::SandboxOwner {
                user: a.name.clone(),
                source,
            }
        })?;
    }
    Ok(files)
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
            let _ = tx.send(Some(sandbox::exit_code(&dir).unwrap_or(-1)));
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
        let argv = argv(&task.spec.app)?;
        let account = account_of(&task.spec.app, self.default_user.as_deref())?;
        let mut files = make_sandbox(&dir, account.as_ref())?;
        let mut command = wrapper(&argv, &dir, account.as_ref());
        command
            .envs(task_env(task, host))
            .stdout(files.stdout)
            .stderr(files.stderr);
        let mut child = command.spawn().map_err(DriverError::Spawn)?;
        let pid = child.id();
        if let Some(started) = pid.and_then(start_time) {
            let line = format!("{} {started}\n", pid.unwrap_or_default());
            files
                .checkpoint
                .write_all(line.as_bytes())
                .map_err(DriverError::Spawn)?;
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

    /// As the task's user: a check is the app's code too.
    async fn exec(&self, handle: &Handle, task: &Task, check: &str) -> Result<i64, DriverError> {
        let dir = self.sandbox(&handle.id)?;
        let account = account_of(&task.spec.app, self.default_user.as_deref())?;
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(check);
        run_as(&mut command, account.as_ref(), &dir);
        let status = command
            .envs(task_env(task, "127.0.0.1"))
            .current_dir(&dir)
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
        let tail_of = |name| sandbox::tail_of(&dir.join(name), tail).map_err(DriverError::Logs);
        Ok(tail_of("stdout")? + &tail_of("stderr")?)
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

    /// A process task named `name` running `cmd` as `user`, in a work folder of its own.
    fn task(name: &str, user: Option<&str>, cmd: &str) -> (Process, PathBuf, Task) {
        let work = std::env::temp_dir().join(format!("pacer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let mut app = pacer_crd::App::test("web");
        app.spec.cmd = Some(cmd.into());
        app.spec.user = user.map(str::to_string);
        let mut task = Task::test(&app, "n1", pacer_crd::TaskState::Staging);
        task.metadata.name = Some(name.into());
        (Process::new(&work), work, task)
    }

    #[tokio::test]
    async fn a_task_runs_as_its_user_in_a_sandbox_it_owns() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: only root can run a task as another user");
            return;
        }
        let cmd = "id -u; id -G; echo $USER $HOME; touch mine";
        let (process, work, task) = task("web.nobody", Some("nobody"), cmd);
        let handle = process.start(&task, "h1").await.expect("started");
        let ended = tokio::time::timeout(Duration::from_secs(10), process.wait(&handle));
        assert_eq!(ended.await.expect("it ends").expect("its code"), 0);
        let dir = work.join("sandboxes").join("web.nobody");
        // No supplementary group of the agent's is kept; nobody has no home: HOME is the sandbox.
        let expected = format!("65534\n65534\nnobody {}\n", dir.display());
        assert_eq!(process.logs(&handle, 10).await.expect("logs"), expected);
        use std::os::unix::fs::MetadataExt;
        for owned in [dir.clone(), dir.join("mine"), dir.join(sandbox::EXIT_FILE)] {
            let meta = std::fs::metadata(&owned).expect("made");
            assert_eq!(meta.uid(), 65534, "{}", owned.display());
        }
        let check = "test \"$(id -u)\" = 65534";
        assert_eq!(process.exec(&handle, &task, check).await.expect("ran"), 0);
        let _ = process.remove(&handle).await;
        let _ = std::fs::remove_dir_all(&work);
    }

    #[tokio::test]
    async fn an_unknown_user_fails_the_start_naming_it() {
        let (process, work, task) = task("web.ghost", Some("ghost-user"), "true");
        let err = process.start(&task, "h1").await.expect_err("no such user");
        assert!(matches!(err, DriverError::User(_)), "{err:?}");
        assert!(err.to_string().contains("'ghost-user'"), "{err}");
        assert!(!work.join("sandboxes").join("web.ghost").exists());
    }
}
