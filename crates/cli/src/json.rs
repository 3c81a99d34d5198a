//! The headless JSON-lines protocol (`--json`): commands on stdin, events on stdout, one JSON
//! object per line; logs on stderr only. The contract for bots, scripts and tests:
//!
//! - events: `ready`, `state`, `ticket` (our addresses or the private room's key changed: the ticket to share now),
//!   `speaking`, `hearing` (a speaker's first audio), `chat`, `reaction`, `capture_started`,
//!   `playout_started`, `stats`, `notice`, `error`, `ended`, `left`, `source_ended`,
//!   `handed_over`;
//! - commands: `raise_hand`, `lower_hand`, `accept_invite`, `step_down`, `invite`,
//!   `move_to_audience`, `mute`, `unmute`, `kick`, `ban`, `unban`, `promote`, `demote`,
//!   `hand_off` (each of these with `"peer"`: a key in hex or a peer id), `chat` (`"text"`),
//!   `react` (`"reaction"`), `self_mute` (`"on"`), `status`, `end`, `leave` (a host hands
//!   the room to `state.heir` first, printing `handed_over`, or ends it when nobody can take
//!   it; `"hand_over": false` leaves it hostless; EOF and signals hand over too, but never
//!   end the room).
//!
//! A command may carry an `"id"` (any JSON value): the `error` event answering it echoes the
//! id, and once the node has done it a `done` event says so (`{"event":"done","cmd":...,
//! "id":...}`; commands without an id get no `done`). For room actions, `chat` and `react`
//! the `done` carries `"delivered"`: `false` when nobody in the room was connected (a room
//! action then reaches the others by sync when someone connects; a chat line is held and sent
//! again). A malformed or forbidden command yields
//! an `error` event saying why; the node keeps running. EOF on stdin, `leave` or a signal
//! leave the room cleanly and end with a `left` event (`"reason":"left"`), as removal and the
//! room's end do with theirs. A join that fails prints an `error` event with `"fatal":true`.

use anyhow::Result;
use ruang_node::{Delivery, Joined, NodeEvent, NodeHandle};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::sync::broadcast;

use crate::act::RoomAction;
use crate::outcome::Outcome;
use crate::settings::parse_person;

/// The version of the JSON protocol, in `ready` (`json_version`): it grows when a change could
/// break a script. The schemas are docs/json/*.schema.json.
pub const VERSION: u32 = 1;

/// Longest command line read from stdin; longer lines are refused.
const MAX_LINE: usize = 64 * 1024;

/// A command on stdin.
#[derive(Debug, Deserialize, Serialize, PartialEq)]
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
    /// Leave the room. A host first hands the room to the heir (`state.heir`: the first
    /// successor, moderator or speaker present) or, with nobody to take it, ends it; with
    /// `"hand_over": false` the host leaves it without a host instead.
    Leave {
        /// Whether a leaving host hands the room over or ends it (default `true`).
        #[serde(default = "yes")]
        hand_over: bool,
    },
}

fn yes() -> bool {
    true
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
            | JsonCommand::Leave { .. } => return None,
        })
    }
}

/// Parses one line into a command and its optional `"id"` (any JSON value, echoed back in the
/// `done` or `error` event that answers it); on failure, says why, with the id if there was one.
pub fn parse_with_id(
    line: &str,
) -> Result<(JsonCommand, Option<serde_json::Value>), (String, Option<serde_json::Value>)> {
    let mut value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| (format!("malformed JSON: {e}"), None))?;
    let id = value.as_object_mut().and_then(|o| o.remove("id"));
    parse_value(value)
        .map(|cmd| (cmd, id.clone()))
        .map_err(|e| (e, id))
}

fn parse_value(value: serde_json::Value) -> Result<JsonCommand, String> {
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

/// The `error` event answering a command (with its id when it had one).
fn error_event(message: impl Into<String>, id: Option<&serde_json::Value>) -> serde_json::Value {
    let mut e = json!({"event": "error", "message": message.into()});
    if let Some(id) = id {
        e["id"] = id.clone();
    }
    e
}

/// The `left` event of a stay that ended because we left (EOF, `leave`, a signal); removal and
/// the room's end announce themselves through the node's own `left` event.
fn left_event() -> serde_json::Value {
    serde_json::to_value(NodeEvent::Left {
        reason: ruang_node::LeaveReason::Left,
    })
    .unwrap_or_else(|_| json!({"event": "left", "reason": "left"}))
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
        "json_version": VERSION,
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
    let (outcome, announced) = stay(node, &mut events, &mut lines).await?;
    if !announced {
        print(left_event());
    }
    Ok(outcome)
}

/// Commands and events until the stay ends, and whether the node's own `left` event was
/// printed (not when we end it ourselves: EOF, `leave`, a signal).
async fn stay(
    node: &NodeHandle,
    events: &mut broadcast::Receiver<NodeEvent>,
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>,
) -> Result<(Outcome, bool)> {
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    if let Some(outcome) = command(node, &line).await {
                        return Ok((outcome, false));
                    }
                }
                // EOF: leave cleanly (a host's room goes to its heir; never ended unasked).
                Ok(None) => {
                    let _ = hand_over_before_leaving(node, false).await;
                    return Ok((Outcome::Left, false));
                }
                Err(e) => {
                    print(error_event(format!("cannot read stdin: {e}"), None));
                    return Ok((Outcome::Left, false));
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
                        return Ok((outcome, true));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => print(json!({"event": "lagged", "missed": missed})),
                Err(broadcast::error::RecvError::Closed) => return Ok((Outcome::Left, false)),
            },
            _ = crate::signal::wait_for_signal() => {
                let _ = hand_over_before_leaving(node, false).await;
                return Ok((Outcome::Left, false));
            }
        }
    }
}

/// A host about to leave hands the room to its heir (printing `handed_over`), or, with
/// `end_if_nobody`, ends it when nobody can take it (the room's own `ended` follows). Anyone
/// else: nothing.
async fn hand_over_before_leaving(
    node: &NodeHandle,
    end_if_nobody: bool,
) -> Result<(), ruang_node::NodeError> {
    let Some(view) = node.status().await?.room else {
        return Ok(());
    };
    if view.my_role != ruang_proto::room::Role::Host || view.ended {
        return Ok(());
    }
    match view.heir.as_ref().map(|p| p.key) {
        Some(to) => {
            node.act(ruang_proto::room::EventBody::HandOff { to })
                .await?;
            print(json!({"event": "handed_over", "key": to.to_hex()}));
        }
        None if end_if_nobody => {
            node.act(ruang_proto::room::EventBody::EndRoom).await?;
        }
        None => {}
    }
    Ok(())
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
    let (cmd, id) = match parse_with_id(line) {
        Ok(c) => c,
        Err((message, id)) => {
            print(error_event(message, id.as_ref()));
            return None;
        }
    };
    // The command's name, for the `done` that answers a command with an id.
    let name = id.as_ref().and_then(|_| {
        serde_json::to_value(&cmd)
            .ok()
            .and_then(|v| v.get("cmd").cloned())
    });
    // `Some(delivery)` for what is sent to the room: whether anyone got it.
    let result: Result<Option<Delivery>, String> = match cmd {
        JsonCommand::Leave { hand_over } => {
            if hand_over && let Err(e) = hand_over_before_leaving(node, true).await {
                print(error_event(
                    format!("could not hand the room over: {e}"),
                    id.as_ref(),
                ));
            }
            return Some(Outcome::Left);
        }
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
                Err(e) => print(error_event(e.to_string(), id.as_ref())),
            }
            return None;
        }
        JsonCommand::Chat { text } => node.chat(text).await.map(Some).map_err(|e| e.to_string()),
        JsonCommand::React { reaction } => node
            .react(reaction)
            .await
            .map(Some)
            .map_err(|e| e.to_string()),
        JsonCommand::SelfMute { on } => node
            .self_mute(on)
            .await
            .map(|()| None)
            .map_err(|e| e.to_string()),
        other => match other.room_action() {
            Some((action, peer)) => {
                let who = peer.map(parse_person).transpose();
                match who.map(|who| action.event(who)) {
                    Ok(Some(body)) => node.act(body).await.map(Some).map_err(|e| e.to_string()),
                    Ok(None) => Err("this command needs a \"peer\"".into()),
                    Err(e) => Err(e.to_string()),
                }
            }
            None => unreachable!("every other command is a room action"),
        },
    };
    match (result, id) {
        (Err(message), id) => print(error_event(message, id.as_ref())),
        // A command with an id is answered when the node has done it.
        (Ok(delivery), Some(id)) => {
            let mut done = json!({"event": "done", "cmd": name.unwrap_or_default(), "id": id});
            if let Some(delivery) = delivery {
                done["delivered"] = json!(delivery == Delivery::Reached);
            }
            print(done);
        }
        (Ok(_), None) => {}
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command of a line, or what is wrong with it.
    fn parse_line(line: &str) -> Result<JsonCommand, String> {
        parse_with_id(line).map(|(cmd, _)| cmd).map_err(|(e, _)| e)
    }

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

    #[test]
    fn an_id_is_taken_off_the_command_and_kept_for_the_answer() {
        let (cmd, id) = parse_with_id(r#"{"cmd":"raise_hand","id":7}"#).unwrap();
        assert_eq!(cmd, JsonCommand::RaiseHand);
        assert_eq!(id, Some(json!(7)));
        let (message, id) = parse_with_id(r#"{"cmd":"mute","id":"m1"}"#).unwrap_err();
        assert!(message.starts_with("bad \"mute\" command"), "{message}");
        assert_eq!(id, Some(json!("m1")));
        let e = error_event("no", id.as_ref());
        assert_eq!(e, json!({"event": "error", "message": "no", "id": "m1"}));
        assert_eq!(left_event(), json!({"event": "left", "reason": "left"}));
    }

    /// Every command, as a script writes it, is what docs/json/room-commands.schema.json
    /// documents, and the schema's commands are all ones this parser takes.
    #[test]
    fn the_command_schema_lists_every_command() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/json/room-commands.schema.json"
        );
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let peer = || "ab".repeat(32);
        let all = [
            JsonCommand::RaiseHand,
            JsonCommand::LowerHand,
            JsonCommand::AcceptInvite,
            JsonCommand::StepDown,
            JsonCommand::Invite { peer: peer() },
            JsonCommand::MoveToAudience { peer: peer() },
            JsonCommand::Mute { peer: peer() },
            JsonCommand::Unmute { peer: peer() },
            JsonCommand::Kick { peer: peer() },
            JsonCommand::Ban { peer: peer() },
            JsonCommand::Unban { peer: peer() },
            JsonCommand::Promote { peer: peer() },
            JsonCommand::Demote { peer: peer() },
            JsonCommand::HandOff { peer: peer() },
            JsonCommand::Chat { text: "hi".into() },
            JsonCommand::React {
                reaction: "👏".into(),
            },
            JsonCommand::SelfMute { on: true },
            JsonCommand::Status,
            JsonCommand::End,
            JsonCommand::Leave { hand_over: false },
        ];
        let mut names = std::collections::BTreeSet::new();
        for cmd in &all {
            // A new command is a compile error here until it is in `all` (and the schema).
            match cmd {
                JsonCommand::RaiseHand
                | JsonCommand::LowerHand
                | JsonCommand::AcceptInvite
                | JsonCommand::StepDown
                | JsonCommand::Invite { .. }
                | JsonCommand::MoveToAudience { .. }
                | JsonCommand::Mute { .. }
                | JsonCommand::Unmute { .. }
                | JsonCommand::Kick { .. }
                | JsonCommand::Ban { .. }
                | JsonCommand::Unban { .. }
                | JsonCommand::Promote { .. }
                | JsonCommand::Demote { .. }
                | JsonCommand::HandOff { .. }
                | JsonCommand::Chat { .. }
                | JsonCommand::React { .. }
                | JsonCommand::SelfMute { .. }
                | JsonCommand::Status
                | JsonCommand::End
                | JsonCommand::Leave { .. } => {}
            }
            let mut line = serde_json::to_value(cmd).unwrap();
            line["id"] = json!(3);
            assert!(validator.is_valid(&line), "{line} is not in the schema");
            // And what the schema documents parses back.
            assert_eq!(parse_line(&line.to_string()).as_ref(), Ok(cmd));
            names.insert(line["cmd"].as_str().unwrap().to_string());
        }
        let documented: std::collections::BTreeSet<String> = schema["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                b["properties"]["cmd"]["const"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(documented, names);
        assert!(
            !validator.is_valid(&json!({"cmd": "mute"})),
            "mute needs a peer"
        );
    }
}
