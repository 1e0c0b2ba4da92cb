//! A process task's sandbox folder: made fresh by the agent, handed to the task's user, and
//! read back without trusting what that user may have put in it since.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;

/// The checkpoint of a started process: its pid and its start time (clock ticks since boot,
/// from `/proc/<pid>/stat`), so that a reused pid is not mistaken for it.
pub const PID_FILE: &str = ".pacer-pid";
/// Written by the wrapper shell when the task's command ends: its exit code.
pub const EXIT_FILE: &str = ".pacer-exit";

/// What the agent opens in a sandbox before the task starts: the task's output and the
/// checkpoint, written through this handle once the pid is known (the task, owning the
/// folder, may have put anything at that name by then).
pub struct Files {
    pub stdout: File,
    pub stderr: File,
    pub checkpoint: File,
}

/// A new sandbox at `dir`: whatever an earlier attempt left there is removed first, so that
/// no file of the agent's is one its task prepared (a symlink to `/etc/passwd`, say).
pub fn create(dir: &Path) -> std::io::Result<Files> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::create_dir(dir)?;
    let fresh = |name: &str| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).open(dir.join(name))
    };
    Ok(Files {
        stdout: fresh("stdout")?,
        stderr: fresh("stderr")?,
        checkpoint: fresh(PID_FILE)?,
    })
}

/// At most `limit` bytes of a sandbox file that is plain: not a symlink, not a FIFO or a
/// device (which could block or be anything), not a second name of a file elsewhere (a hard
/// link); with `owner`, owned by that uid. Anything else would let the task's user read or
/// forge through the agent what it cannot itself.
pub fn read(path: &Path, limit: u64, owner: Option<u32>) -> std::io::Result<String> {
    let flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)?;
    let meta = file.metadata()?;
    let plain = meta.is_file() && meta.nlink() == 1 && owner.is_none_or(|uid| meta.uid() == uid);
    if !plain {
        let what = format!("{} is not a plain file of the sandbox", path.display());
        return Err(std::io::Error::new(ErrorKind::InvalidData, what));
    }
    let mut text = String::new();
    file.take(limit).read_to_string(&mut text)?;
    Ok(text)
}

/// The pid and start time a sandbox's checkpoint holds, if the agent wrote it.
pub fn checkpoint(dir: &Path) -> Option<(u32, u64)> {
    let agent = nix::unistd::geteuid().as_raw();
    parse_checkpoint(&read(&dir.join(PID_FILE), 64, Some(agent)).ok()?)
}

pub fn parse_checkpoint(text: &str) -> Option<(u32, u64)> {
    let mut parts = text.split_whitespace();
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The exit code the wrapper wrote. The task's user may have written it instead, which only
/// tells what the task could have told by exiting.
pub fn exit_code(dir: &Path) -> Option<i64> {
    read(&dir.join(EXIT_FILE), 64, None)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The last `tail` lines of a sandbox file, or nothing if it does not exist.
pub fn tail_of(path: &Path, tail: usize) -> std::io::Result<String> {
    match read(path, u64::MAX, None) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(tail);
            Ok(lines[start..].iter().map(|l| format!("{l}\n")).collect())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn dir(test: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pacer-sandbox-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_sandbox_is_made_anew_over_what_was_left() {
        let dir = dir("anew");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("stdout")).unwrap();
        let mut files = create(&dir).expect("a sandbox");
        files.stdout.write_all(b"hello\n").unwrap();
        files.checkpoint.write_all(b"42 7\n").unwrap();
        assert_eq!(tail_of(&dir.join("stdout"), 10).unwrap(), "hello\n");
        assert!(!dir.join("stdout").is_symlink());
        assert_eq!(checkpoint(&dir), Some((42, 7)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_plain_files_are_read_back() {
        let dir = dir("plain");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("real"), "secret\n").unwrap();
        std::os::unix::fs::symlink(dir.join("real"), dir.join("stdout")).unwrap();
        std::fs::hard_link(dir.join("real"), dir.join("stderr")).unwrap();
        std::fs::write(dir.join(EXIT_FILE), "3\n").unwrap();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        for swapped in ["stdout", "stderr", "fifo"] {
            let read = tail_of(&dir.join(swapped), 10);
            assert!(read.is_err(), "{swapped}: {read:?}");
        }
        assert_eq!(tail_of(&dir.join("missing"), 10).unwrap(), "");
        assert_eq!(exit_code(&dir), Some(3));
        // A checkpoint not written by the agent's uid is not believed.
        std::fs::write(dir.join(PID_FILE), "1 1\n").unwrap();
        let someone_else = nix::unistd::geteuid().as_raw() + 1;
        assert!(read(&dir.join(PID_FILE), 64, Some(someone_else)).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
