//! A tiny run of every benchmark (`pacer-bench --smoke`), so that the harness cannot rot.
//! It checks that each figure is measured and written with its ratio, never how fast
//! anything is: benchmarks are not tests.

use std::process::Command;

use pacer_e2e::pacer_bin;

#[test]
fn smoke_run_measures_every_benchmark() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("RESULTS.md");
    std::fs::write(&out, "# Results\n\nHand-written notes stay.\n").expect("write");
    let run = Command::new(env!("CARGO_BIN_EXE_pacer-bench"))
        .arg("--smoke")
        .arg("--pacer")
        .arg(pacer_bin())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("pacer-bench runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "pacer-bench --smoke failed:\n{stderr}"
    );
    let written = std::fs::read_to_string(&out).expect("results written");
    assert!(written.contains("Hand-written notes stay."), "{written}");
    for n in 1..=7 {
        let rows: Vec<&str> = written
            .lines()
            .filter(|l| l.starts_with(&format!("| {n}. ")))
            .collect();
        assert!(
            !rows.is_empty(),
            "benchmark {n} missing:\n{written}\n{stderr}"
        );
        for row in rows {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let ratio: f64 = cells[4].parse().unwrap_or(f64::NAN);
            assert!(ratio >= 0.0, "no ratio in {row}");
        }
    }
}
