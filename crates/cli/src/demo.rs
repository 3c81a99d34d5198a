//! `ruang demo`: a whole room on this machine. Several nodes on 127.0.0.1 host a room; synthetic
//! voices speak; a listener raises a hand, is invited and speaks; a speaker is muted and
//! unmuted; a troll is banned and its audio stops; the host ends the room. Every step is
//! checked from another node's point of view, the listeners' measurements are printed, and
//! what each node heard is written to `<out>/<name>.wav`. Exit code 0 only if every check held.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ruang_audio::format::FrameDuration;
use ruang_audio::source::{ToneSource, VoiceSource};
use ruang_net::Transport;
use ruang_node::event::LeaveReason;
use ruang_node::{
    HostOptions, JoinTarget, NodeError, NodeEvent, NodeHandle, Pacing, RoomView, SpeakerStats,
};
use ruang_proto::room::{EventBody, Info, Role};
use ruang_proto::{Identity, PublicKey};

const NAMES: [&str; 12] = [
    "Ana", "Budi", "Citra", "Troll", "Dewi", "Eko", "Fajar", "Gita", "Hadi", "Intan", "Joko",
    "Kartika",
];
/// Most nodes the demo runs (a 2-core machine decodes every speaker at every node).
const MAX_NODES: usize = NAMES.len();

struct Member {
    name: &'static str,
    key: PublicKey,
    node: NodeHandle,
    /// The latest per-speaker receive counters.
    stats: Arc<Mutex<Latest>>,
    /// The latest room view.
    view: Arc<Mutex<Option<RoomView>>>,
    /// Why it left, if it did.
    left: Arc<Mutex<Option<LeaveReason>>>,
}

/// A node's latest receive counters, by speaker key, and when they came.
#[derive(Default)]
struct Latest {
    by_speaker: HashMap<PublicKey, SpeakerStats>,
    at: Option<Instant>,
}

impl Member {
    fn received_from(&self, speaker: &Member) -> u64 {
        self.stats
            .lock()
            .unwrap()
            .by_speaker
            .get(&speaker.key)
            .map(|s| s.received)
            .unwrap_or(0)
    }

    /// Frames received from `speaker` by the counters that came at or after `since` (the
    /// node sends them about once a second), or `None` while the latest came earlier.
    fn received_since(&self, speaker: &Member, since: Instant) -> Option<u64> {
        let fresh = self.stats.lock().unwrap().at.is_some_and(|at| at >= since);
        fresh.then(|| self.received_from(speaker))
    }

    fn sees(&self, check: impl Fn(&RoomView) -> bool) -> bool {
        self.view.lock().unwrap().as_ref().is_some_and(check)
    }
}

struct Script {
    started: Instant,
    checks: Vec<(String, bool)>,
}

impl Script {
    fn say(&self, text: impl AsRef<str>) {
        println!(
            "[{:>5.1}s] {}",
            self.started.elapsed().as_secs_f64(),
            text.as_ref()
        );
    }

    fn check(&mut self, what: impl Into<String>, ok: bool) {
        let what = what.into();
        self.say(format!("  {} {what}", if ok { "✓" } else { "✗ FAILED:" }));
        self.checks.push((what, ok));
    }

    /// Waits until `cond` holds (checked every 50 ms), up to `timeout`.
    async fn until(&self, timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cond()
    }

    /// What each of `members` received from `speaker`, by counters that came at or after
    /// `since` (waiting up to 3 s for them; a loaded machine delays them); `None` where none
    /// came.
    async fn received_after(
        &self,
        members: &[&Member],
        speaker: &Member,
        since: Instant,
    ) -> Vec<Option<u64>> {
        let fresh = || members.iter().map(|m| m.received_since(speaker, since));
        self.until(Duration::from_secs(3), || fresh().all(|r| r.is_some()))
            .await;
        fresh().collect()
    }

    /// Sleeps until `fraction` of the demo's length has passed.
    async fn at(&self, seconds: u64, fraction: f64) {
        let target = Duration::from_secs_f64(seconds as f64 * fraction);
        let elapsed = self.started.elapsed();
        if target > elapsed {
            tokio::time::sleep(target - elapsed).await;
        }
    }
}

async fn spawn_member(name: &'static str, frame: FrameDuration) -> Result<Member> {
    let identity = Identity::generate(&mut rand::rng());
    let key = identity.public();
    let node = ruang_node::Node::builder(identity)
        .name(name)
        .mdns(false)
        .transport(Transport::QuicOnly)
        .listen("/ip4/127.0.0.1/udp/0/quic-v1".parse()?)
        .frame(frame)
        .presence_interval(Duration::from_millis(700))
        .spawn()
        .await
        .with_context(|| format!("starting {name}'s node"))?;
    let stats = Arc::new(Mutex::new(Latest::default()));
    let view = Arc::new(Mutex::new(None));
    let left = Arc::new(Mutex::new(None));
    let mut events = node.subscribe();
    let (s, v, l) = (stats.clone(), view.clone(), left.clone());
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Stats { speakers, .. }) => {
                    let mut latest = s.lock().unwrap();
                    latest.by_speaker.clear();
                    for st in speakers {
                        latest.by_speaker.insert(st.key, st);
                    }
                    latest.at = Some(Instant::now());
                }
                Ok(NodeEvent::State(view)) => *v.lock().unwrap() = Some(*view),
                Ok(NodeEvent::Left { reason }) => *l.lock().unwrap() = Some(reason),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
    });
    Ok(Member {
        name,
        key,
        node,
        stats,
        view,
        left,
    })
}

/// Runs the demo.
pub async fn run(nodes: usize, seconds: u64, out: &Path) -> Result<ExitCode> {
    if !(4..=MAX_NODES).contains(&nodes) {
        bail!(
            "--nodes must be between 4 and {MAX_NODES} (host, a listener who gets invited, an observer and a troll)"
        );
    }
    if seconds < 15 {
        bail!("--seconds must be at least 15: the story needs time to play out");
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let frame = FrameDuration::Ms20;
    let mut script = Script {
        started: Instant::now(),
        checks: Vec::new(),
    };
    println!(
        "ruang demo: {nodes} nodes on 127.0.0.1, {seconds} s, writing what each heard to {}/\n",
        out.display()
    );

    let mut members = Vec::new();
    for name in NAMES.iter().take(nodes) {
        members.push(spawn_member(name, frame).await?);
    }
    let [ana, budi, citra, troll] = [0, 1, 2, 3];
    for m in &members {
        let path = out.join(format!("{}.wav", m.name.to_lowercase()));
        m.node
            .listen(Box::new(crate::audio_io::create_wav(&path)?))
            .await?;
    }

    // Ana opens the room and names Budi her successor.
    let info = Info {
        title: "ruang demo: news from the islands".into(),
        topic: "a room with no server".into(),
        tags: vec!["demo".into()],
        language: "id".into(),
    };
    let joined = members[ana]
        .node
        .host(HostOptions {
            info,
            successors: vec![members[budi].key],
            private: false,
        })
        .await?;
    script.say(format!(
        "Ana opened a room; ticket {}…",
        &joined.ticket.to_string()[..24]
    ));
    members[ana]
        .node
        .speak(Box::new(VoiceSource::new(1, frame)), Pacing::RealTime)
        .await?;
    for (i, m) in members.iter().enumerate().skip(1) {
        m.node
            .join(JoinTarget::Ticket(joined.ticket.clone()))
            .await
            .with_context(|| format!("{} joining", m.name))?;
        // Everyone has a source ready; the room decides who may transmit.
        let source: Box<dyn ruang_audio::source::Source + Send> = if i == troll {
            Box::new(ToneSource::new(880.0, 0.5, frame))
        } else {
            Box::new(VoiceSource::new(i as u64 + 1, frame))
        };
        m.node.speak(source, Pacing::RealTime).await?;
    }
    script.say(format!(
        "{} joined by ticket and synced the room's signed log",
        members[1..]
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let all_present = script
        .until(Duration::from_secs(8), || {
            members[citra].sees(|v| v.audience.len() + v.stage.len() >= nodes)
        })
        .await;
    script.check(
        format!("Citra sees all {nodes} people in the room"),
        all_present,
    );
    let hears_ana = script
        .until(Duration::from_secs(6), || {
            members[citra].received_from(&members[ana]) > 50
        })
        .await;
    script.check("Citra hears Ana (the host)", hears_ana);

    // Budi raises a hand, Ana invites him, he accepts and speaks.
    script.at(seconds, 0.15).await;
    members[budi].node.act(EventBody::RaiseHand).await?;
    script.say("Budi raised a hand");
    let budi_key = members[budi].key;
    let hand_seen = script
        .until(Duration::from_secs(3), || {
            members[ana].sees(|v| v.hands.iter().any(|p| p.key == budi_key))
        })
        .await;
    script.check("Ana sees Budi's hand", hand_seen);
    members[ana]
        .node
        .act(EventBody::InviteSpeaker {
            who: members[budi].key,
        })
        .await?;
    script.say("Ana invited Budi to speak");
    let invited = script
        .until(Duration::from_secs(3), || {
            members[budi].sees(|v| v.invited.iter().any(|p| p.key == budi_key))
        })
        .await;
    script.check("Budi received the invitation", invited);
    members[budi].node.act(EventBody::AcceptInvite).await?;
    script.say("Budi accepted and is on stage");
    let hears_budi = script
        .until(Duration::from_secs(4), || {
            members[citra].received_from(&members[budi]) > 25
        })
        .await;
    script.check("Citra hears Budi", hears_budi);

    // A listener cannot moderate: Citra tries to mute Ana.
    let refused = members[citra]
        .node
        .act(EventBody::Mute {
            who: members[ana].key,
        })
        .await;
    script.say(format!(
        "Citra tried to mute Ana: {}",
        match &refused {
            Err(e) => e.to_string(),
            Ok(_) => "accepted".into(),
        }
    ));
    script.check(
        "a listener's moderation attempt is refused",
        matches!(
            refused,
            Err(NodeError::Room(ruang_node::session::Error::Refused(_)))
        ),
    );

    // Ana mutes Budi: nobody plays his audio; then unmutes.
    script.at(seconds, 0.35).await;
    members[ana]
        .node
        .act(EventBody::Mute {
            who: members[budi].key,
        })
        .await?;
    script.say("Ana muted Budi");
    // Counters taken a second or more after the mute, and again later: no change.
    let everyone: Vec<&Member> = members.iter().collect();
    let settled = Instant::now() + Duration::from_secs(1);
    tokio::time::sleep_until(settled.into()).await;
    let after_mute = script
        .received_after(&everyone, &members[budi], settled)
        .await;
    script.at(seconds, 0.48).await;
    let later = script
        .received_after(&everyone, &members[budi], Instant::now())
        .await;
    script.check(
        "within 1 s of the mute, no node receives Budi's audio",
        after_mute.iter().all(Option::is_some) && after_mute == later,
    );
    members[ana]
        .node
        .act(EventBody::Unmute {
            who: members[budi].key,
        })
        .await?;
    script.say("Ana unmuted Budi");
    let back = script
        .until(Duration::from_secs(4), || {
            members[citra].received_from(&members[budi]) > 25
        })
        .await;
    script.check("Citra hears Budi again", back);

    // The troll gets on stage, then is banned: its audio stops and it cannot come back.
    script.at(seconds, 0.55).await;
    members[troll].node.act(EventBody::RaiseHand).await?;
    let troll_key = members[troll].key;
    script
        .until(Duration::from_secs(3), || {
            members[ana].sees(|v| v.hands.iter().any(|p| p.key == troll_key))
        })
        .await;
    members[ana]
        .node
        .act(EventBody::InviteSpeaker {
            who: members[troll].key,
        })
        .await?;
    script
        .until(Duration::from_secs(3), || {
            members[troll].sees(|v| v.invited.iter().any(|p| p.key == troll_key))
        })
        .await;
    members[troll].node.act(EventBody::AcceptInvite).await?;
    script.say("Troll raised a hand, was invited, and started blasting a tone");
    let hears_troll = script
        .until(Duration::from_secs(4), || {
            members[citra].received_from(&members[troll]) > 25
        })
        .await;
    script.check("Citra hears the troll", hears_troll);
    script.at(seconds, 0.68).await;
    members[ana]
        .node
        .act(EventBody::Ban {
            who: members[troll].key,
        })
        .await?;
    script.say("Ana banned the troll");
    // As for the mute, among those still in the room.
    let staying: Vec<&Member> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != troll)
        .map(|(_, m)| m)
        .collect();
    let settled = Instant::now() + Duration::from_secs(1);
    tokio::time::sleep_until(settled.into()).await;
    let after_ban = script
        .received_after(&staying, &members[troll], settled)
        .await;
    let troll_out = script
        .until(Duration::from_secs(3), || {
            *members[troll].left.lock().unwrap() == Some(LeaveReason::Banned)
        })
        .await;
    script.check("the troll's node was told it is banned and left", troll_out);
    let rejoin = members[troll]
        .node
        .join(JoinTarget::Ticket(joined.ticket.clone()))
        .await;
    script.say(format!(
        "Troll tried to rejoin: {}",
        match &rejoin {
            Err(e) => e.to_string(),
            Ok(_) => "let in".into(),
        }
    ));
    script.check("the troll cannot rejoin", rejoin.is_err());
    script.at(seconds, 0.82).await;
    let later = script
        .received_after(&staying, &members[troll], Instant::now())
        .await;
    script.check(
        "after the ban, no node receives the troll's audio",
        after_ban.iter().all(Option::is_some) && after_ban == later,
    );
    let banned_everywhere = members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != troll)
        .all(|(_, m)| m.sees(|v| v.banned.iter().any(|p| p.key == troll_key)));
    script.check(
        "every node holds the ban in its verified state",
        banned_everywhere,
    );
    let budi_speaker = members[citra].sees(|v| {
        v.stage
            .iter()
            .any(|p| p.key == budi_key && p.role == Role::Speaker)
    });
    script.check("every node agrees Budi is a speaker", budi_speaker);

    // Ana ends the room.
    script.at(seconds, 0.92).await;
    members[ana].node.act(EventBody::EndRoom).await?;
    script.say("Ana ended the room");
    let ended = script
        .until(Duration::from_secs(5), || {
            members
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != troll)
                .all(|(_, m)| m.sees(|v| v.ended))
        })
        .await;
    script.check("every node saw the room end", ended);

    // Measurements, then finish the WAV files.
    println!("\nWhat each node received (jitter buffer counters, per speaker):");
    println!(
        "{:<8} {:<8} {:>9} {:>6} {:>6} {:>10} {:>6} {:>9}",
        "node", "speaker", "received", "lost", "late", "concealed", "fec", "jitter ms"
    );
    let name_of = |k: &PublicKey| {
        members
            .iter()
            .find(|m| m.key == *k)
            .map(|m| m.name)
            .unwrap_or("?")
    };
    for m in &members {
        let stats = m.stats.lock().unwrap().by_speaker.clone();
        let mut rows: Vec<_> = stats.into_iter().collect();
        rows.sort_by_key(|(k, _)| name_of(k));
        for (k, s) in rows {
            println!(
                "{:<8} {:<8} {:>9} {:>6} {:>6} {:>10} {:>6} {:>9}",
                m.name,
                name_of(&k),
                s.received,
                s.lost,
                s.late,
                s.concealed,
                s.fec,
                s.jitter_ms
            );
        }
    }
    for m in &members {
        let _ = m.node.stop_listening().await;
        let _ = m.node.shutdown().await;
    }
    println!(
        "\nWrote {}",
        members
            .iter()
            .map(|m| format!("{}/{}.wav", out.display(), m.name.to_lowercase()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let failed: Vec<&String> = script
        .checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(w, _)| w)
        .collect();
    if failed.is_empty() {
        println!("\nAll {} checks held.", script.checks.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "\n{} of {} checks FAILED:",
            failed.len(),
            script.checks.len()
        );
        for f in failed {
            println!("  - {f}");
        }
        Ok(ExitCode::from(1))
    }
}
