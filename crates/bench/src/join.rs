//! `join`: ticket → first audio frame played, on loopback (issue 4; target ≤ 1.5 s). A
//! `ruang host` process speaks a continuous tone; `ruang join TICKET` processes are started one
//! after another, each recording to a WAV. The first audio played is the first sample of the
//! recording above -40 dBFS: `playout_started` + its position. Time zero is the moment the
//! bench starts the `ruang join` process (so process start-up and identity loading count).

use std::time::Duration;

use anyhow::{Context, Result};
use ruang_bench::analysis::{self, Percentiles, RATE};
use ruang_bench::table::{Table, f};

use crate::Ctx;
use crate::procs::{Proc, received_from, unix_us};

/// Runs the scenario.
pub fn join(ctx: &Ctx) -> Result<Vec<Table>> {
    let dir = ctx.run_dir("join")?;
    let quic = vec!["/ip4/127.0.0.1/udp/0/quic-v1".to_string()];
    let mut host = Proc::ruang(
        &dir,
        "host",
        &[
            "host", "--title", "join", "--json", "--input", "tone", "--output", "null",
        ],
        &quic,
        None,
    )?;
    let ready = host.wait_event(Duration::from_secs(30), "ready")?;
    let ticket = ready["ticket"].as_str().context("ticket")?.to_string();
    let host_key = ready["key"].as_str().context("key")?.to_string();
    let mut to_ready = Vec::new();
    let mut to_playout = Vec::new();
    let mut to_audio = Vec::new();
    let mut t = Table::new(
        "Join time: ticket → first audio played (loopback QUIC, separate processes)",
        &[
            "run",
            "start → ready ms",
            "start → playout started ms",
            "start → first audio played ms",
            "ready → first audio ms",
        ],
    );
    for i in 0..ctx.repeats {
        let wav = dir.join(format!("heard-{i}.wav"));
        let start = unix_us();
        let mut l = Proc::ruang(
            &dir,
            &format!("joiner-{i}"),
            &[
                "join",
                &ticket,
                "--json",
                "--input",
                "silence",
                "--output",
                &wav.to_string_lossy(),
            ],
            &quic,
            None,
        )?;
        let ready_at = l
            .wait(Duration::from_secs(30), "ready", |x| {
                (x.value["event"] == "ready").then_some(x.at_unix_us)
            })
            .context("joining")?;
        let playout_us = match l
            .seen
            .iter()
            .find(|x| x.value["event"] == "playout_started")
            .and_then(|x| x.value["unix_us"].as_u64())
        {
            Some(v) => v,
            None => l.wait_event(Duration::from_secs(10), "playout_started")?["unix_us"]
                .as_u64()
                .context("unix_us")?,
        };
        l.wait(Duration::from_secs(20), "audio from the host", |x| {
            (x.value["event"] == "stats" && received_from(&x.value, &host_key) > 10).then_some(())
        })?;
        l.finish(Duration::from_secs(15))?;
        let heard = analysis::read_wav(&wav)?;
        let first = heard
            .iter()
            .position(|s| s.abs() > 0.01)
            .context("the recording is silent")?;
        let audio_us = playout_us + (first as u64) * 1_000_000 / RATE as u64;
        let ms = |a: u64, b: u64| (a as f64 - b as f64) / 1e3;
        to_ready.push(ms(ready_at, start));
        to_playout.push(ms(playout_us, start));
        to_audio.push(ms(audio_us, start));
        t.row(vec![
            i.to_string(),
            f(ms(ready_at, start), 0),
            f(ms(playout_us, start), 0),
            f(ms(audio_us, start), 0),
            f(ms(audio_us, ready_at), 0),
        ]);
        let _ = std::fs::remove_file(&wav);
        // Let the host forget the joiner's presence before the next one.
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = host.finish(Duration::from_secs(15));
    let (r, p, a) = (
        Percentiles::of(&to_ready),
        Percentiles::of(&to_playout),
        Percentiles::of(&to_audio),
    );
    for (name, q) in [("p50", 0.5), ("max", 1.0)] {
        let pick = |v: &Percentiles| if q == 0.5 { v.p50 } else { v.max };
        t.row(vec![
            name.into(),
            f(pick(&r), 0),
            f(pick(&p), 0),
            f(pick(&a), 0),
            "".into(),
        ]);
    }
    t.note(
        "start = when the bench spawned `ruang join`; ready = the joiner printed `ready` (node \
         up, room log synced); first audio = playout_started + position of the first sample \
         above -40 dBFS in its recording.",
    );
    Ok(vec![t])
}
