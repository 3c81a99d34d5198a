//! Being in a room: open the audio, host or join, then hand over to the terminal UI, the JSON
//! protocol or plain text output until the user leaves or the room ends.

use crate::text::printable;
use std::process::ExitCode;

use anyhow::Result;
use ruang_node::{HostOptions, JoinTarget, NodeEvent, NodeHandle};
use tokio::sync::broadcast;
use tracing::warn;

use crate::args::RoomOptions;
use crate::audio_io::NullSink;
use crate::outcome::Outcome;
use crate::settings::{self, Settings};

/// How to get into the room.
pub enum Enter {
    /// Open it.
    Host(HostOptions),
    /// Join it.
    Join(JoinTarget),
}

/// Runs `ruang host` / `ruang join` until the stay ends.
pub async fn run(
    settings: &Settings,
    opts: &RoomOptions,
    enter: Enter,
    tui_mode: bool,
) -> Result<ExitCode> {
    let room = settings::Room::resolve(settings, opts)?;
    let device_in = settings.file.input_device.as_deref();
    let device_out = settings.file.output_device.as_deref();
    let title = match &enter {
        Enter::Host(o) => o.info.title.clone(),
        Enter::Join(_) => String::new(),
    };
    // Audio first: a missing file or device fails before anything goes on the network.
    let sink = match room.output.open(room.frame, device_out, &title) {
        Ok(s) => s,
        Err(e) if !room.output_explicit => {
            // Shown on stderr (the log's default level), never over the terminal UI.
            warn!("{e:#}; continuing without sound output");
            Box::new(NullSink)
        }
        Err(e) => return Err(e),
    };
    let mut no_input = None;
    let source = match room.input.open(room.frame, device_in) {
        Ok(s) => Some(s),
        Err(e) if !room.input_explicit => {
            warn!("{e:#}; you can listen but not speak (or use --input voice)");
            no_input = Some(format!("{e:#}"));
            None
        }
        Err(e) => return Err(e),
    };
    let node = settings
        .node_builder(room.name.clone())
        .frame(room.frame)
        .bitrate(room.bitrate_bps)
        .voice(room.voice)
        .spawn()
        .await?;
    let events = node.subscribe();
    let target_room = match &enter {
        Enter::Join(ruang_node::JoinTarget::Ticket(t)) => Some(t.room),
        Enter::Join(ruang_node::JoinTarget::Room(id)) => Some(*id),
        Enter::Host(_) => None,
    };
    let me = settings.identity.public();
    let bans = crate::config::bans::file();
    let input = (source, no_input);
    let result = stay(&node, events, sink, input, enter, room.json, tui_mode).await;
    // A ban is remembered, to explain why that room's members refuse this identity later.
    if let (Ok(Outcome::Removed(ruang_node::LeaveReason::Banned)), Some(room), Some(path)) =
        (&result, target_room, &bans)
    {
        crate::config::bans::remember(path, &room, &me, unix_s());
    }
    let result = result.map_err(|e| match (target_room, &bans) {
        // The node says so itself when it got to see the room's state.
        _ if matches!(
            e.downcast_ref::<ruang_node::NodeError>(),
            Some(ruang_node::NodeError::Room(
                ruang_node::session::Error::Banned
            ))
        ) =>
        {
            e
        }
        (Some(room), Some(path)) => match crate::config::bans::since(path, &room, &me) {
            Some(at) => e.context(format!(
                "you were banned from this room ({}): its members refuse your connections \
                 unless a moderator lifts the ban",
                ago(unix_s().saturating_sub(at))
            )),
            None => e,
        },
        _ => e,
    });
    if room.json
        && let Err(e) = &result
    {
        // A script reads stdout: the failure is there too, not only on stderr.
        println!(
            "{}",
            serde_json::json!({"event": "error", "message": format!("{e:#}"), "fatal": true})
        );
    }
    let _ = node.stop_listening().await;
    let _ = node.leave().await;
    let _ = node.shutdown().await;
    Ok(result?.finish())
}

fn unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// "3 minutes ago", roughly.
fn ago(seconds: u64) -> String {
    match seconds {
        0..120 => format!("{seconds} s ago"),
        120..7_200 => format!("{} minutes ago", seconds / 60),
        7_200..172_800 => format!("{} hours ago", seconds / 3_600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// What this node speaks: its source and how it is paced.
type Speech = (
    Box<dyn ruang_audio::source::Source + Send>,
    ruang_node::Pacing,
);

/// Stays in the room: joins or hosts, speaks `input`'s source (or says why there is none),
/// and runs the front-end until the stay ends.
async fn stay(
    node: &NodeHandle,
    events: broadcast::Receiver<NodeEvent>,
    sink: Box<dyn ruang_audio::sink::Sink + Send>,
    (source, no_input): (Option<Speech>, Option<String>),
    enter: Enter,
    json: bool,
    tui_mode: bool,
) -> Result<Outcome> {
    node.listen(sink).await?;
    let (joined, screen) = match enter {
        Enter::Host(options) => (node.host(options).await?, None),
        // The terminal UI shows the join's progress on a screen of its own.
        Enter::Join(target) if tui_mode && !json => {
            let (screen, joined) = crate::tui::join(node, target).await?;
            (joined, Some(screen))
        }
        Enter::Join(target) => (join_showing_progress(node, target, json).await?, None),
    };
    if let Some((source, pacing)) = source {
        node.speak(source, pacing).await?;
    }
    if json {
        crate::json::run(node, events, &joined).await
    } else if tui_mode {
        Ok(
            match crate::tui::run(node.clone(), no_input, screen).await? {
                crate::tui::Exit::Left => Outcome::Left,
                crate::tui::Exit::Ended => Outcome::Ended,
                crate::tui::Exit::Removed(r) => Outcome::Removed(r),
            },
        )
    } else {
        plain(node, events, &joined).await
    }
}

/// Joins, printing the join's progress as it goes (a JSON `progress` event, or a line on
/// stderr before the plain output starts; the terminal UI has [`crate::tui::join`]).
async fn join_showing_progress(
    node: &NodeHandle,
    target: ruang_node::JoinTarget,
    json: bool,
) -> Result<ruang_node::Joined> {
    let mut progress = node.subscribe();
    let show = |message: String| {
        if json {
            println!(
                "{}",
                serde_json::json!({"event": "progress", "message": message})
            );
        } else {
            eprintln!("{message}");
        }
    };
    let join = node.join(target);
    tokio::pin!(join);
    loop {
        tokio::select! {
            // Progress first: the node says how the join went before it answers, and a line
            // still queued when the answer comes must not be lost.
            biased;
            ev = progress.recv() => match ev {
                Ok(NodeEvent::Progress { message }) => show(message),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ok(join.await?),
            },
            // Ctrl-C or SIGTERM while joining: stop, saying so (JSON mode too), exit 130.
            _ = crate::signal::wait_for_signal() => return Err(crate::signal::Interrupted.into()),
            joined = &mut join => {
                while let Ok(ev) = progress.try_recv() {
                    if let NodeEvent::Progress { message } = ev {
                        show(message);
                    }
                }
                return Ok(joined?);
            }
        }
    }
}

/// Without a terminal and without `--json`: readable lines on stdout until Ctrl-C.
async fn plain(
    node: &NodeHandle,
    mut events: broadcast::Receiver<NodeEvent>,
    joined: &ruang_node::Joined,
) -> Result<Outcome> {
    let status = node.status().await?;
    let title = status
        .room
        .as_ref()
        .map(|r| r.title.clone())
        .unwrap_or_default();
    println!("In room \"{}\" ({}).", printable(&title), joined.room);
    println!(
        "Ticket (others join with `ruang join <ticket>`):\n{}",
        joined.ticket
    );
    loop {
        tokio::select! {
            _ = crate::signal::wait_for_signal() => return Ok(Outcome::Left),
            ev = events.recv() => match ev {
                Ok(NodeEvent::Chat { name, text, .. }) => {
                    println!("<{}> {}", printable(&name), printable(&text));
                }
                Ok(NodeEvent::Notice { message }) => println!("* {}", printable(&message)),
                Ok(NodeEvent::Ticket { ticket }) => {
                    println!("Your addresses changed; the ticket to share now:\n{ticket}");
                }
                Ok(NodeEvent::Error { message }) => eprintln!("error: {}", printable(&message)),
                Ok(NodeEvent::Speaking { name, active: true, .. }) => {
                    println!("* {} is talking", printable(&name));
                }
                Ok(NodeEvent::Ended) => return Ok(Outcome::Ended),
                Ok(NodeEvent::Left { reason }) => return Ok(Outcome::of(reason)),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ok(Outcome::Left),
            },
        }
    }
}
