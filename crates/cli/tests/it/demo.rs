//! `ruang demo --seconds 20` runs the whole story, exits 0 and writes every node's WAV file.

use crate::common::*;
use anyhow::Result;

#[test]
fn the_demo_runs_and_every_check_holds() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out_dir = dir.path().join("out");
    let out = ruang()
        .args(["demo", "--seconds", "20", "--out"])
        .arg(&out_dir)
        .env("XDG_CONFIG_HOME", dir.path())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "demo failed");
    assert!(stdout.contains("checks held"));
    for name in ["ana", "budi", "citra", "troll"] {
        let samples = read_wav(&out_dir.join(format!("{name}.wav")))?;
        assert!(
            samples.len() > 48_000 * 10,
            "{name}.wav has {} samples",
            samples.len()
        );
    }
    // Citra heard something (not silence).
    let citra = read_wav(&out_dir.join("citra.wav"))?;
    let energy: f64 = citra.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / citra.len() as f64;
    assert!(energy > 1e-4, "citra.wav is silent (mean energy {energy})");
    Ok(())
}
