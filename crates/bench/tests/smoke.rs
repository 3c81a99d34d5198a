//! Keeps the harness working: `ruang-bench smoke` (in process, a few seconds of audio to a
//! loopback listener and one through the impairment relay) must hear the chirps on both paths
//! and print its table. It asserts no speed: a benchmark is not a timed test.

use std::process::Command;

#[test]
fn smoke_scenario_hears_both_listeners() {
    let out = tempfile::tempdir().expect("temp dir");
    let result = Command::new(env!("CARGO_BIN_EXE_ruang-bench"))
        .args(["smoke", "--seconds", "3", "--out"])
        .arg(out.path())
        .output()
        .expect("running ruang-bench");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success(),
        "smoke failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // One row per listener path in the printed table.
    assert!(stdout.contains('|'), "no table printed:\n{stdout}");
}
