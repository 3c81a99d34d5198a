//! The headless JSON-lines protocol (`--json`): commands on stdin, events on stdout, one JSON
//! object per line; logs on stderr only. The contract for bots, scripts and tests:
//!
//! - events: `ready`, `state`, `ticket` (our addresses changed: the ticket to share now),
//!   `speaking`, `hearing` (a speaker's first audio), `chat`, `reaction`, `capture_started`,
//!   `playout_started`, `stats`, `notice`, `error`, `ended`, `left`, `source_ended`;
//! - commands: `raise_hand`, `lower_hand`, `accept_invite`, `step_down`, `invite`,
//!   `move_to_audience`, `mute`, `unmute`, `kick`, `ban`, `unban`, `promote`, `demote`,
//!   `hand_off` (each of these with `"peer"`: a key in hex or a peer id), `chat` (`"text"`),
//!   `react` (`"reaction"`), `self_mute` (`"on"`), `status`, `end`, `leave`.
//!
//! A malformed or forbidden command yields an `error` event saying why; the node keeps
//! running. EOF on stdin leaves the room cleanly.

use anyhow::Result;
use ruang_node::{Joined, NodeEvent, NodeHandle};
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::sync::broadcast;

use crate::act::RoomAction;
use crate::room::Outcome;
use crate::settings::parse_person;

/// Longest command line read from stdin; longer lines are refused.
const MAX_LINE: usize = 64 * 1024;

/// A command on stdin.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum JsonCommand {
    /// Ask to speak.
    RaiseHand,
    /// Withdraw the hand.
    LowerHand,
    /// Accept an invitation to speak.
    AcceptInvite,
    /// Leave the stage.
    StepDown,
    /// Invite someone to speak.
    Invite {
        /// Key (hex) or peer id.
        peer: String,
    },
    /// Move a speaker to the audience.
    MoveToAudience {
        /// Key (hex) or peer id.
        peer: String,
    },
    /// Mute a speaker for everyone.
    Mute {
        /// Key (hex) or peer id.
        peer: String,
    },
    /// Lift a mute.
    Unmute {
        /// Key (hex) or peer id.
        peer: String,
    },
    /// Remove someone from the room.
    Kick {
        /// Key (hex) or peer id.
        peer: String,
    },
    /// Ban someone.
    Ban {
        /// Key (hex) or peer id.
        peer: String,
    },
    /// Lift a ban.
    Unban {
        /// Key (hex) or peer id.
        peer: String,
    },
    /// Make someone a moderator (host only).
    Promote {
        /// Key (hex) or peer id.
        peer: String,
    },
    /// Make a moderator a speaker (host only).
    Demote {
        /// Key (hex) or peer id.
        peer: String,
    },
    /// Hand the room to someone (host only).
    HandOff {
        /// Key (hex) or peer id.
        peer: String,
    },
    /// Say something in the chat.
    Chat {
        /// The text.
        text: String,
    },
    /// React.
    React {
        /// An emoji or short word.
        reaction: String,
    },
    /// Mute or unmute yourself.
    SelfMute {
        /// Muted?
        on: bool,
    },
    /// Print the current state.
    Status,
    /// End the room (host only).
    End,
    /// Leave the room.
    Leave,
}

impl JsonCommand {
    /// The room action the command asks for, and whom it names, if it is one.
    fn room_action(&self) -> Option<(RoomAction, Option<&str>)> {
        use RoomAction as A;
        Some(match self {
            JsonCommand::RaiseHand => (A::RaiseHand, None),
            JsonCommand::LowerHand => (A::LowerHand, None),
            JsonCommand::AcceptInvite => (A::AcceptInvite, None),
            JsonCommand::StepDown => (A::StepDown, None),
            JsonCommand::End => (A::EndRoom, None),
            JsonCommand::Invite { peer } => (A::Invite, Some(peer)),
            JsonCommand::MoveToAudience { peer } => (A::MoveToAudience, Some(peer)),
            JsonCommand::Mute { peer } => (A::Mute, Some(peer)),
            JsonCommand::Unmute { peer } => (A::Unmute, Some(peer)),
            JsonCommand::Kick { peer } => (A::Kick, Some(peer)),
            JsonCommand::Ban { peer } => (A::Ban, Some(peer)),
            JsonCommand::Unban { peer } => (A::Unban, Some(peer)),
            JsonCommand::Promote { peer } => (A::Promote, Some(peer)),
            JsonCommand::Demote { peer } => (A::Demote, Some(peer)),
            JsonCommand::HandOff { peer } => (A::HandOff, Some(peer)),
            JsonCommand::Chat { .. }
            | JsonCommand::React { .. }
            | JsonCommand::SelfMute { .. }
            | JsonCommand::Status
            | JsonCommand::Leave => return None,
        })
    }
}

/// Parses one line into a command, or says what is wrong with it.
pub fn parse_line(line: &str) -> Result<JsonCommand, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("malformed JSON: {e}"))?;
    let cmd = value
        .get("cmd")
        .and_then(|c| c.as_str())
        .map(str::to_string);
    serde_json::from_value(value).map_err(|e| match cmd {
        None => "a command is a JSON object with a \"cmd\" field, e.g. {\"cmd\":\"raise_hand\"}"
            .to_string(),
        Some(c) if e.to_string().starts_with("unknown variant") => format!("unknown command {c:?}"),
        Some(c) => format!("bad {c:?} command: {e}"),
    })
}

fn print(value: serde_json::Value) {
    println!("{value}");
}

/// Runs the protocol until EOF, `leave`, the end of the room or removal.
pub async fn run(
    node: &NodeHandle,
    mut events: broadcast::Receiver<NodeEvent>,
    joined: &Joined,
) -> Result<Outcome> {
    let status = node.status().await?;
    let listen: Vec<String> = status.addrs.iter().map(|a| a.to_string()).collect();
    print(json!({
        "event": "ready",
        "peer_id": status.peer_id.to_string(),
        "key": node.key().to_hex(),
        "ticket": joined.ticket.to_string(),
        "room_id": joined.room.to_hex(),
        "listen": listen,
    }));
    if let Some(view) = status.room {
        print(serde_json::to_value(NodeEvent::State(Box::new(view)))?);
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    if let Some(outcome) = command(node, &line).await {
                        return Ok(outcome);
                    }
                }
                // EOF: leave cleanly.
                Ok(None) => return Ok(Outcome::Left),
                Err(e) => {
                    print(json!({"event": "error", "message": format!("cannot read stdin: {e}")}));
                    return Ok(Outcome::Left);
                }
            },
            ev = events.recv() => match ev {
                // Progress was printed while joining.
                Ok(NodeEvent::Joined { .. } | NodeEvent::Progress { .. }) => {}
                Ok(ev) => {
                    let done = match &ev {
                        NodeEvent::Left { reason } => Some(Outcome::of(*reason)),
                        _ => None,
                    };
                    print(serde_json::to_value(&ev)?);
                    if let Some(outcome) = done {
                        return Ok(outcome);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => print(json!({"event": "lagged", "missed": missed})),
                Err(broadcast::error::RecvError::Closed) => return Ok(Outcome::Left),
            },
            _ = crate::commands::wait_for_signal() => return Ok(Outcome::Left),
        }
    }
}

/// Executes one command line; returns an outcome when the stay should end.
async fn command(node: &NodeHandle, line: &str) -> Option<Outcome> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    if line.len() > MAX_LINE {
        print(
            json!({"event": "error", "message": format!("command line longer than {MAX_LINE} bytes")}),
        );
        return None;
    }
    let cmd = match parse_line(line) {
        Ok(c) => c,
        Err(message) => {
            print(json!({"event": "error", "message": message}));
            return None;
        }
    };
    let result: Result<(), String> = match cmd {
        JsonCommand::Leave => return Some(Outcome::Left),
        JsonCommand::Status => {
            match node.status().await {
                Ok(s) => {
                    if let Some(view) = s.room {
                        print(
                            serde_json::to_value(NodeEvent::State(Box::new(view)))
                                .unwrap_or_default(),
                        );
                    }
                    print(
                        json!({"event": "status", "peers": s.peers, "self_muted": s.self_muted,
                        "transmitting": s.transmitting, "listeners_served": s.listeners_served,
                        "frames_accepted": s.frames_accepted, "frames_refused": s.frames_refused}),
                    );
                }
                Err(e) => print(json!({"event": "error", "message": e.to_string()})),
            }
            return None;
        }
        JsonCommand::Chat { text } => node.chat(text).await.map_err(|e| e.to_string()),
        JsonCommand::React { reaction } => node.react(reaction).await.map_err(|e| e.to_string()),
        JsonCommand::SelfMute { on } => node.self_mute(on).await.map_err(|e| e.to_string()),
        other => match other.room_action() {
            Some((action, peer)) => {
                let who = peer.map(parse_person).transpose();
                match who.map(|who| action.event(who)) {
                    Ok(Some(body)) => node.act(body).await.map_err(|e| e.to_string()),
                    Ok(None) => Err("this command needs a \"peer\"".into()),
                    Err(e) => Err(e.to_string()),
                }
            }
            None => unreachable!("every other command is a room action"),
        },
    };
    if let Err(message) = result {
        print(json!({"event": "error", "message": message}));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_explains_bad_ones() {
        assert_eq!(
            parse_line(r#"{"cmd":"raise_hand"}"#),
            Ok(JsonCommand::RaiseHand)
        );
        assert_eq!(
            parse_line(r#"{"cmd":"mute","peer":"ab"}"#),
            Ok(JsonCommand::Mute { peer: "ab".into() })
        );
        assert_eq!(
            parse_line(r#"{"cmd":"self_mute","on":true}"#),
            Ok(JsonCommand::SelfMute { on: true })
        );
        assert!(
            parse_line("{not json")
                .unwrap_err()
                .starts_with("malformed JSON")
        );
        assert_eq!(
            parse_line(r#"{"cmd":"dance"}"#).unwrap_err(),
            "unknown command \"dance\""
        );
        assert!(
            parse_line(r#"{"peer":"x"}"#)
                .unwrap_err()
                .contains("\"cmd\" field")
        );
        assert!(
            parse_line(r#"{"cmd":"mute"}"#)
                .unwrap_err()
                .starts_with("bad \"mute\" command")
        );
    }
}
