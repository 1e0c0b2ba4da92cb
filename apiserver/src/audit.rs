//! The audit log: every request that may change something (any method but GET, HEAD and
//! OPTIONS), refused or not, as one JSON line: when, who (token or user name, never a secret),
//! with which role, what (method and path, so the record), the outcome (status) and from where.
//! Lines go through a bounded queue to a writer thread; the file is rotated by size.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// One audited request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub time: String,
    /// The token's or basic user's name; `anonymous` without credentials or with wrong ones.
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub role: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
}

impl Entry {
    /// Whether a request of `method` is audited.
    pub fn audited(method: &axum::http::Method) -> bool {
        !matches!(
            *method,
            axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
        )
    }

    pub fn source_of(addr: Option<SocketAddr>) -> Option<String> {
        addr.map(|a| a.to_string())
    }
}

/// Where audit lines go: a rotated file, or nowhere.
#[derive(Clone, Default)]
pub struct AuditLog {
    tx: Option<mpsc::Sender<Entry>>,
}

/// How the audit file is kept.
#[derive(Clone, Debug)]
pub struct AuditFile {
    pub path: PathBuf,
    /// Rotated when it reaches this many bytes.
    pub max_bytes: usize,
    /// Rotated files kept (`audit.log.1` is the newest).
    pub keep: usize,
}

impl AuditLog {
    /// A log writing to `file` from a thread of its own.
    pub fn to_file(file: AuditFile) -> std::io::Result<AuditLog> {
        if let Some(dir) = file.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut out = FileRotate::new(
            &file.path,
            AppendCount::new(file.keep),
            ContentLimit::BytesSurpassed(file.max_bytes),
            Compression::None,
            None,
        );
        // Opening happens at the first write: try one now so a bad path fails at start.
        out.flush()?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file.path)?;
        let (tx, mut rx) = mpsc::channel::<Entry>(4096);
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                while let Some(entry) = rx.blocking_recv() {
                    let line = match serde_json::to_string(&entry) {
                        Ok(line) => line,
                        Err(_) => continue,
                    };
                    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                        tracing::error!(error = %e, "cannot write the audit log");
                    }
                }
            })?;
        Ok(AuditLog { tx: Some(tx) })
    }

    /// Records `entry`; waits when the writer is behind rather than dropping it.
    pub async fn record(&self, entry: Entry) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(entry).await;
        }
    }

    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }
}

/// The last `limit` entries of an audit file (and its newest rotated one when the file holds
/// fewer), oldest first; lines that are not entries are skipped.
pub fn read_recent(path: &std::path::Path, limit: usize) -> std::io::Result<Vec<Entry>> {
    let mut lines: Vec<String> = Vec::new();
    let rotated = PathBuf::from(format!("{}.1", path.display()));
    if let Ok(text) = std::fs::read_to_string(&rotated) {
        lines.extend(text.lines().map(str::to_string));
    }
    lines.extend(std::fs::read_to_string(path)?.lines().map(str::to_string));
    let entries: Vec<Entry> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let skip = entries.len().saturating_sub(limit);
    Ok(entries.into_iter().skip(skip).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> Entry {
        Entry {
            time: format!("2026-12-01T00:00:{i:02}Z"),
            user: "admin".into(),
            role: Some("admin".into()),
            method: "POST".into(),
            path: format!("/v2/apps/{i}"),
            status: 201,
            source: Some("127.0.0.1:5000".into()),
        }
    }

    #[tokio::test]
    async fn entries_are_written_as_lines_rotated_and_read_back_in_order() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("audit.log");
        let log = AuditLog::to_file(AuditFile {
            path: path.clone(),
            max_bytes: 1000,
            keep: 3,
        })
        .expect("opened");
        for i in 0..20 {
            log.record(entry(i)).await;
        }
        drop(log);
        // The writer thread ends when the queue closes; wait for the last line with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let recent = read_recent(&path, 5).expect("readable");
            if recent.last() == Some(&entry(19)) {
                assert_eq!(recent, (15..20).map(entry).collect::<Vec<_>>());
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the last entry never arrived"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            dir.path().join("audit.log.1").exists(),
            "1,000 bytes hold fewer than 20 lines: the file was rotated"
        );
    }

    #[test]
    fn only_requests_that_may_change_something_are_audited() {
        use axum::http::Method;
        assert!(!Entry::audited(&Method::GET));
        assert!(Entry::audited(&Method::POST));
        assert!(Entry::audited(&Method::DELETE));
        assert!(Entry::audited(&Method::PATCH));
    }
}
