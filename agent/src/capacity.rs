//! What this machine can offer when the operator does not say: cpus, memory, disk.

use std::path::Path;

use pacer_crd::Resources;

/// Detected capacity: all cpus, total memory minus 1 GiB for the system (as Mesos does, keeping
/// at least half), free disk under `work_dir` minus 5 GiB (at least half).
pub fn detect(work_dir: &Path) -> Resources {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0);
    let mem = total_memory_mib().map(keep_for_system).unwrap_or(1024.0);
    let disk = free_disk_mib(work_dir)
        .map(|d| (d - 5120.0).max(d / 2.0))
        .unwrap_or(10240.0);
    Resources::new(cpus, mem.floor(), disk.floor())
}

fn keep_for_system(total: f64) -> f64 {
    (total - 1024.0).max(total / 2.0)
}

fn total_memory_mib() -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&meminfo)
}

fn parse_mem_total(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn free_disk_mib(dir: &Path) -> Option<f64> {
    let dir = std::path::absolute(dir).ok()?;
    let existing = dir.ancestors().find(|p| p.exists())?;
    let stat = nix::sys::statvfs::statvfs(existing).ok()?;
    Some(stat.blocks_available() as f64 * stat.fragment_size() as f64 / 1024.0 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_total() {
        assert_eq!(
            parse_mem_total("MemFree: 1 kB\nMemTotal:       2097152 kB\n"),
            Some(2048.0)
        );
        assert_eq!(parse_mem_total("nothing"), None);
    }

    #[test]
    fn keeps_memory_for_the_system() {
        assert_eq!(keep_for_system(8192.0), 7168.0);
        assert_eq!(keep_for_system(1024.0), 512.0);
    }

    #[test]
    fn detects_something_sane() {
        let r = detect(Path::new("/tmp/does/not/exist"));
        assert!(r.cpus >= 1.0 && r.mem > 0.0 && r.disk > 0.0, "{r:?}");
    }
}
