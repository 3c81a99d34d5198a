//! Moderation enforced on the audio plane, end to end. Two speakers talk at once (a 440 Hz and
//! a 1000 Hz tone) to two listeners:
//!
//! 1. the host mutes the 440 Hz speaker: within 1 s no listener plays it (no energy at 440 Hz,
//!    its stream gone from the stats) while the other speaker is still heard;
//! 2. the host unmutes it: it is heard again;
//! 3. the host bans the 1000 Hz speaker: its node is told and leaves, within 1 s nobody plays
//!    it, its rejoin fails (its own node remembers the ban), and a fresh client with its key
//!    (which remembers nothing) is refused by every node: no connection, no sync answer;
//! 4. a muted speaker that does not obey (a raw client with its key that keeps streaming
//!    after the mute) is refused by the listeners: frames counted as refused, none played.

use std::time::Duration;

use crate::common::*;
use anyhow::{Result, bail};
use bytes::Bytes;
use ruang_audio::codec::EncoderConfig;
use ruang_audio::format::FrameDuration;
use ruang_audio::send::Sender;
use ruang_audio::source::{Source, ToneSource};
use ruang_net::Transport;
use ruang_node::wire::AudioHeader;
use ruang_node::{NodeHandle, Pacing};
use ruang_proto::Identity;
use ruang_proto::room::EventBody;

const MUTED_HZ: f32 = 440.0;
const BANNED_HZ: f32 = 1_000.0;
const AMPLITUDE: f32 = 0.25;
/// Heard / absent thresholds for a tone's amplitude in 100 ms of output; measured in
/// `two_speakers_mixed`: 0.247 when sent at 0.25, below 0.0002 when nobody sends it.
const HEARD: f64 = 0.15;
const ABSENT: f64 = 0.02;
/// The bound: after a mute or ban, nobody plays that speaker within this.
const ENFORCED_WITHIN: Duration = Duration::from_secs(1);
const SAMPLES_PER_MS: usize = 48;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_unmute_and_ban_are_enforced_by_every_node() -> Result<()> {
    init_tracing();
    let host = node("host").await?;
    let muted_id = Identity::generate(&mut rand::rng());
    let banned_id = Identity::generate(&mut rand::rng());
    let muted = node_with_identity(muted_id.clone(), "muted", Transport::QuicOnly, |b| b).await?;
    let banned =
        node_with_identity(banned_id.clone(), "banned", Transport::QuicOnly, |b| b).await?;
    let listeners = nodes("listener", 2).await?;
    let joined = host.host(room("moderated")).await?;
    for n in [&muted, &banned].into_iter().chain(&listeners) {
        join(n, &joined.ticket).await?;
    }
    let everyone: Vec<&NodeHandle> = [&host, &muted, &banned]
        .into_iter()
        .chain(&listeners)
        .collect();
    wait_present(&everyone, 5).await?;
    bring_on_stage(&host, &muted).await?;
    bring_on_stage(&host, &banned).await?;
    wait_state(&everyone, "three on stage", |r| r.stage.len() == 3).await?;

    let banned_rec = Recorder::start(&banned);
    let mut sinks = Vec::new();
    let mut recs = Vec::new();
    for l in &listeners {
        let sink = SharedSink::default();
        recs.push(Recorder::start(l));
        l.listen(Box::new(sink.clone())).await?;
        sinks.push(sink);
    }
    let tone = |hz| Box::new(ToneSource::new(hz, AMPLITUDE, FrameDuration::Ms20));
    muted.speak(tone(MUTED_HZ), Pacing::RealTime).await?;
    banned.speak(tone(BANNED_HZ), Pacing::RealTime).await?;
    for (i, sink) in sinks.iter().enumerate() {
        eventually(SOON, &format!("listener {i} hears both"), || async {
            let s = sink.samples();
            let last = &s[s.len().saturating_sub(4_800)..];
            tone_amplitude(last, MUTED_HZ) >= HEARD && tone_amplitude(last, BANNED_HZ) >= HEARD
        })
        .await?;
    }

    // 1. Mute.
    let marks: Vec<usize> = sinks.iter().map(|s| s.0.lock().unwrap().len()).collect();
    host.act(EventBody::Mute { who: muted.key() }).await?;
    for (i, (sink, mark)) in sinks.iter().zip(&marks).enumerate() {
        let out = played_after(sink, *mark, ENFORCED_WITHIN + Duration::from_secs(1)).await?;
        let gone = first_quiet_ms(&out, MUTED_HZ);
        eprintln!("listener {i}: muted speaker silent {gone:?} ms after the mute");
        let after = &out[ENFORCED_WITHIN.as_millis() as usize * SAMPLES_PER_MS..];
        assert!(
            max_tone(after, MUTED_HZ) < ABSENT,
            "listener {i} still plays the muted speaker"
        );
        assert!(
            min_tone(after, BANNED_HZ) >= HEARD,
            "listener {i} still hears the other speaker"
        );
        let stats = recs[i].stats_after(tokio::time::Instant::now()).await?;
        assert!(
            stats.speakers.iter().all(|s| s.key != muted.key()),
            "listener {i}: a muted speaker has no stream in the mix: {:?}",
            stats.speakers
        );
    }

    // 2. Unmute.
    host.act(EventBody::Unmute { who: muted.key() }).await?;
    for (i, sink) in sinks.iter().enumerate() {
        eventually(
            Duration::from_secs(3),
            &format!("listener {i} hears the unmuted speaker"),
            || async {
                let s = sink.samples();
                tone_amplitude(&s[s.len().saturating_sub(4_800)..], MUTED_HZ) >= HEARD
            },
        )
        .await?;
    }

    // 3. Ban.
    let marks: Vec<usize> = sinks.iter().map(|s| s.0.lock().unwrap().len()).collect();
    host.act(EventBody::Ban { who: banned.key() }).await?;
    eventually(SOON, "the banned node is told and leaves", || async {
        banned_rec.get().left.is_some()
    })
    .await?;
    assert_eq!(
        banned_rec.get().left,
        Some(ruang_node::event::LeaveReason::Banned)
    );
    assert!(banned.status().await?.room.is_none());
    for (i, (sink, mark)) in sinks.iter().zip(&marks).enumerate() {
        let out = played_after(sink, *mark, ENFORCED_WITHIN + Duration::from_secs(1)).await?;
        eprintln!(
            "listener {i}: banned speaker silent {:?} ms after the ban",
            first_quiet_ms(&out, BANNED_HZ)
        );
        let after = &out[ENFORCED_WITHIN.as_millis() as usize * SAMPLES_PER_MS..];
        assert!(
            max_tone(after, BANNED_HZ) < ABSENT,
            "listener {i} still plays the banned speaker"
        );
        assert!(
            min_tone(after, MUTED_HZ) >= HEARD,
            "listener {i} still hears the other speaker"
        );
        let stats = recs[i].stats_after(tokio::time::Instant::now()).await?;
        assert!(
            stats.speakers.iter().all(|s| s.key != banned.key()),
            "listener {i}: banned speaker in stats"
        );
    }
    let rejoin = tokio::time::timeout(
        SOON,
        banned.join(ruang_node::JoinTarget::Ticket(joined.ticket.clone())),
    )
    .await?;
    eprintln!("the banned node's rejoin: {rejoin:?}");
    assert!(
        matches!(
            rejoin,
            Err(ruang_node::NodeError::Room(
                ruang_node::session::Error::Banned
            ))
        ),
        "a banned node rejoined: {rejoin:?}"
    );
    banned.shutdown().await?;
    // Its key is refused everywhere, on a fresh connection too.
    let ghost = raw_peer(banned_id).await?;
    for (i, n) in [&host, &muted].into_iter().chain(&listeners).enumerate() {
        let addr = addr_of(n, "/quic-v1/").await?;
        let _ = ghost.client.dial(addr).await;
        let sync = ghost
            .client
            .sync_request(
                n.peer_id(),
                ruang_node::wire::SyncRequest::Directory.encode(),
            )
            .await;
        assert!(sync.is_err(), "node {i} answered a banned peer: {sync:?}");
    }
    // A refused connection may look established on the dialling side for a moment (the
    // handshake completes before the far end closes it): it must be gone soon after.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let peers = ghost.client.connected_peers().await?;
        if peers.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("nodes keep connections with a banned peer: {peers:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ghost.client.shutdown().await;

    // 4. A muted speaker that keeps streaming anyway is refused by the listeners.
    host.act(EventBody::Mute { who: muted.key() }).await?;
    wait_state(&everyone[..2], "sees the mute", |r| r.muted.len() == 1).await?;
    wait_state(
        &listeners.iter().collect::<Vec<_>>(),
        "sees the mute",
        |r| r.muted.len() == 1,
    )
    .await?;
    muted.shutdown().await?;
    let rogue = raw_peer(muted_id).await?;
    let before: Vec<(u64, u64)> = status_counts(&listeners).await?;
    let marks: Vec<usize> = sinks.iter().map(|s| s.0.lock().unwrap().len()).collect();
    let header = AudioHeader {
        room: joined.room,
        speaker: rogue.identity.public(),
        frame_ms: 20,
        salt: 0,
    }
    .encode();
    let mut links = Vec::new();
    for l in &listeners {
        rogue.client.dial(addr_of(l, "/quic-v1/").await?).await?;
        links.push(rogue.client.open_audio(l.peer_id(), header.clone()));
    }
    let pushed = 50u64;
    let mut src = ToneSource::new(MUTED_HZ, AMPLITUDE, FrameDuration::Ms20);
    let mut sender = Sender::new(1, EncoderConfig::default(), 0, 0)?;
    let mut pcm = vec![0.0; FrameDuration::Ms20.samples()];
    let mut every = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..pushed {
        every.tick().await;
        src.next_frame(&mut pcm)?;
        if let Some(frame) = sender.encode(&pcm)? {
            let bytes = Bytes::from(frame.encode());
            links.iter().for_each(|l| l.push(bytes.clone()));
        }
    }
    for (i, l) in listeners.iter().enumerate() {
        eventually(
            Duration::from_secs(3),
            &format!("listener {i} refused the rogue frames"),
            || async {
                l.status()
                    .await
                    .is_ok_and(|s| s.frames_refused >= before[i].1 + pushed * 9 / 10)
            },
        )
        .await?;
        let after = l.status().await?;
        eprintln!(
            "listener {i}: accepted {} -> {}, refused {} -> {}",
            before[i].0, after.frames_accepted, before[i].1, after.frames_refused
        );
        assert_eq!(
            after.frames_accepted, before[i].0,
            "listener {i} accepted a muted speaker's frames"
        );
        let out = played_after(&sinks[i], marks[i], Duration::from_millis(200)).await?;
        assert!(
            max_tone(&out, MUTED_HZ) < ABSENT,
            "listener {i} played a muted speaker's frames"
        );
    }
    drop(links);
    rogue.client.shutdown().await;
    shutdown_all(&[&listeners[1], &listeners[0], &host]).await;
    Ok(())
}

/// (frames accepted, frames refused) of each node.
async fn status_counts(nodes: &[NodeHandle]) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for n in nodes {
        let s = n.status().await?;
        out.push((s.frames_accepted, s.frames_refused));
    }
    Ok(out)
}

/// Waits until `sink` has played `span` past sample `mark` and returns those samples.
async fn played_after(sink: &SharedSink, mark: usize, span: Duration) -> Result<Vec<f32>> {
    let want = mark + span.as_millis() as usize * SAMPLES_PER_MS;
    let deadline = tokio::time::Instant::now() + span + SOON;
    loop {
        {
            let s = sink.0.lock().unwrap();
            if s.len() >= want {
                return Ok(s[mark..want].to_vec());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the sink stopped playing");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The tone's amplitude in each 100 ms of `samples`.
fn tone_per_100ms(samples: &[f32], hz: f32) -> Vec<f64> {
    samples
        .chunks_exact(100 * SAMPLES_PER_MS)
        .map(|c| tone_amplitude(c, hz))
        .collect()
}

fn max_tone(samples: &[f32], hz: f32) -> f64 {
    tone_per_100ms(samples, hz).into_iter().fold(0.0, f64::max)
}

fn min_tone(samples: &[f32], hz: f32) -> f64 {
    tone_per_100ms(samples, hz)
        .into_iter()
        .fold(f64::MAX, f64::min)
}

/// After how many ms of `samples` the tone is gone for good (to 100 ms).
fn first_quiet_ms(samples: &[f32], hz: f32) -> Option<usize> {
    let amps = tone_per_100ms(samples, hz);
    let last_loud = amps.iter().rposition(|a| *a >= ABSENT);
    match last_loud {
        None => Some(0),
        Some(i) if i + 1 < amps.len() => Some((i + 1) * 100),
        Some(_) => None,
    }
}
