//! The bars under the room: connection and audio health, and the help for the keys that do
//! something now.

use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ruang_proto::room::Role;

use super::app::{App, InputMode};
use super::text::clean;

/// Most rows the key help may take (it is cut on very narrow terminals).
const HELP_ROWS_MAX: usize = 4;

/// Peers, jitter-buffer delay and loss, overall and per speaker.
pub(super) fn health_line(app: &App) -> Line<'static> {
    let h = &app.health;
    // People in the room (as presence says: the audience counted, or estimated in a room
    // larger than its sample) and, apart, the network connections: a node also connects to
    // relays, bootstrap and directory peers.
    let here = app.room.as_ref().map_or(0, |r| {
        r.stage.iter().filter(|p| p.present).count() as u64 + r.listeners
    });
    let mut spans = vec![format!("{here} here · {} connections", h.peers).into()];
    if app.on_stage() {
        spans.push(
            format!(
                " · sent {} to {} listeners",
                h.frames_sent, h.listeners_served
            )
            .into(),
        );
        if h.frames_dropped > 0 {
            spans.push(format!(" ({} dropped)", h.frames_dropped).yellow());
        }
    }
    if !h.measured {
        spans.push(" · audio: no stats yet".dim());
        return Line::from(spans);
    }
    // Only those on stage now: the node keeps counters for a speaker who left or stepped
    // down for a while.
    let speakers: Vec<_> = h
        .speakers
        .iter()
        .filter(|s| {
            app.room
                .as_ref()
                .is_some_and(|r| r.stage.iter().any(|p| p.key == s.key && p.present))
        })
        .collect();
    if speakers.is_empty() {
        spans.push(" · audio: no remote speaker now".dim());
        return Line::from(spans);
    }
    let jitter = speakers.iter().map(|s| s.jitter_ms).max().unwrap_or(0);
    let lost: u64 = speakers.iter().map(|s| s.lost).sum();
    let received: u64 = speakers.iter().map(|s| s.received).sum();
    let loss = loss_percent(lost, received);
    let loss_style = if loss >= 5.0 {
        Style::new().fg(Color::Red)
    } else {
        Style::new()
    };
    spans.push(format!(" · jitter buffer {jitter} ms · ").into());
    spans.push(Span::styled(format!("loss {loss:.1}%"), loss_style));
    let each: Vec<String> = speakers
        .iter()
        .map(|s| {
            let name = if s.name.is_empty() {
                app.name_of(&s.key)
            } else {
                s.name.clone()
            };
            let loss = loss_percent(s.lost, s.received);
            format!("{} {} ms {loss:.1}%", clean(&name), s.jitter_ms)
        })
        .collect();
    spans.push(format!(" ({})", each.join(", ")).dim());
    Line::from(spans)
}

/// Frames lost as a share of frames expected (received plus lost), in percent.
fn loss_percent(lost: u64, received: u64) -> f64 {
    let expected = lost.saturating_add(received);
    if expected == 0 {
        0.0
    } else {
        lost as f64 * 100.0 / expected as f64
    }
}

/// The keys that do something now, for the help bar.
fn help_keys(app: &App) -> Vec<(&'static str, &'static str)> {
    let mut keys = Vec::new();
    match &app.mode {
        InputMode::Chat(_) => {
            keys.extend([("Enter", "send"), ("Esc", "cancel"), ("Ctrl-U", "clear")]);
        }
        InputMode::ConfirmEnd => {
            keys.extend([("y", "end the room for everyone"), ("other keys", "cancel")]);
        }
        InputMode::Banned(_) => {
            keys.extend([
                ("↑↓/jk", "select"),
                ("u/Enter", "unban"),
                ("Esc/b", "close"),
            ]);
        }
        InputMode::ConfirmLeave => {
            if app.heir().is_some() {
                keys.extend([
                    ("y", "hand over and leave"),
                    ("e", "end the room and leave"),
                ]);
            } else {
                keys.extend([("y", "end the room and leave"), ("l", "leave it hostless")]);
            }
            keys.push(("other keys", "stay"));
        }
        InputMode::Normal => {
            let role = app.my_role();
            if app.on_stage() {
                if app.no_input.is_none() {
                    keys.push(("m", if app.self_muted { "mic on" } else { "mic off" }));
                }
                if role != Role::Host {
                    keys.push(("s", "step down"));
                }
            } else {
                keys.push((
                    "h",
                    if app.hand_raised() {
                        "lower hand"
                    } else {
                        "raise hand"
                    },
                ));
                if app.invited() {
                    keys.push(("a", "accept invite"));
                }
            }
            keys.extend([
                ("Enter/c", "chat"),
                (
                    "t",
                    if app.show_ticket {
                        "hide ticket"
                    } else {
                        "ticket"
                    },
                ),
                ("PgUp/PgDn", "scroll"),
                ("?", if app.show_help { "hide help" } else { "help" }),
                ("q", "leave"),
            ]);
            if app.is_moderator() {
                keys.extend([
                    ("↑↓/jk", "select"),
                    ("i", "invite"),
                    ("x", "to audience"),
                    ("u", "mute/unmute"),
                    ("K", "kick"),
                    ("B", "ban"),
                    ("b", "banned list"),
                ]);
            }
            if role == Role::Host {
                keys.extend([("p", "promote"), ("d", "demote"), ("E", "end room")]);
            }
        }
    }
    keys
}

/// The help bar laid out in rows of `width` columns; a key and what it does stay together.
pub(super) fn help_rows(app: &App, width: u16) -> Vec<Line<'static>> {
    let width = usize::from(width);
    let mut rows = Vec::new();
    let mut row: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for (key, what) in help_keys(app) {
        let key = format!(" {key} ").black().on_gray();
        let what = Span::raw(format!(" {what}  "));
        let w = key.width() + what.width();
        if used + w > width && !row.is_empty() {
            rows.push(Line::from(std::mem::take(&mut row)));
            used = 0;
        }
        row.extend([key, what]);
        used += w;
    }
    if !row.is_empty() {
        rows.push(Line::from(row));
    }
    rows.truncate(HELP_ROWS_MAX);
    rows
}
