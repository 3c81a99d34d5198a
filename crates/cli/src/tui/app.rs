//! The terminal UI's state: what the node has told it ([`App::apply`]) and what the user is
//! doing (selection, input mode, the outcome of the last action). No I/O happens here, so all
//! of it is testable without a terminal or a node.

use std::collections::{BTreeSet, VecDeque};

use ruang_node::{Delivery, NodeEvent, Person, RoomView, SpeakerStats, Status};
use ruang_proto::PublicKey;
use ruang_proto::room::{EventBody, Role};

use super::Exit;
use super::keys::{Action, Handover};

/// Chat lines (and notices, reactions, errors) kept for the chat pane; older ones are dropped.
pub const CHAT_HISTORY_CAP: usize = 200;

/// Moderators are told who joins and leaves the audience while it is at most this big (in a
/// bigger room the count in the header says it; a line per person would bury the chat).
pub const AUDIENCE_NOTICES_UP_TO: usize = 25;

/// `Stats` events (about one a second) after which the room is settled: the presences of those
/// already here have come in, so someone appearing now has just joined.
const SETTLED_AFTER_STATS: u32 = 3;

/// What the keyboard is doing now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum InputMode {
    /// Keys are commands.
    #[default]
    Normal,
    /// Typing a chat line (the text so far).
    Chat(String),
    /// Asked "end the room for everyone?"; `y` confirms, any other key cancels.
    ConfirmEnd,
    /// The host pressed `q`: asked whether to hand the room over (or end it) and leave.
    ConfirmLeave,
    /// The list of banned people is open (`b`, moderators), with the selected row.
    Banned(usize),
}

/// What a line of the chat pane is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// Someone said something.
    Chat,
    /// Someone reacted.
    Reaction,
    /// Something the node wants the user to know.
    Notice,
    /// Something went wrong (the node keeps running).
    Error,
}

/// What [`App::notice_changes_to_me`] compares between two states.
struct AboutMe {
    role: Role,
    muted: bool,
    invited: bool,
    host: Option<PublicKey>,
    /// Raised hands (keys): a moderator is told of new ones.
    hands: Vec<PublicKey>,
}

/// One line of the chat pane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// What kind of line it is.
    pub kind: LineKind,
    /// The author's name (empty for notices and errors).
    pub name: String,
    /// Whether this node wrote it.
    pub mine: bool,
    /// The text (or reaction).
    pub text: String,
}

/// The one-line outcome of the last thing the user did (or the last error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusLine {
    /// What to show.
    pub text: String,
    /// Shown as an error (a refusal, a failure).
    pub error: bool,
}

/// Connection and audio health, from the latest `Stats` event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Whether any `Stats` event has arrived yet.
    pub measured: bool,
    /// Peers connected.
    pub peers: usize,
    /// One entry per remote speaker heard.
    pub speakers: Vec<SpeakerStats>,
    /// Frames this node sent.
    pub frames_sent: u64,
    /// Frames this node dropped on slow links.
    pub frames_dropped: u64,
    /// Listeners this node streams to directly.
    pub listeners_served: usize,
}

/// Everything the screen shows, built from an initial [`Status`] and the node's events.
#[derive(Clone, Debug)]
pub struct App {
    /// This node's key.
    pub me: PublicKey,
    /// The room, as the node last described it.
    pub room: Option<RoomView>,
    /// Keys of those talking now, from `Speaking` events.
    pub talking: BTreeSet<PublicKey>,
    /// Connection and audio health.
    pub health: Health,
    /// Whether this node is self-muted (mic off).
    pub self_muted: bool,
    /// The selected person's key, for moderation keys.
    pub selected: Option<PublicKey>,
    /// What the keyboard is doing.
    pub mode: InputMode,
    /// Chat pane scroll, in lines up from the newest.
    pub scroll: usize,
    /// The outcome of the last action, or the last error.
    pub status: Option<StatusLine>,
    /// The user asked to leave: a `Left` event now means [`Exit::Left`].
    pub leaving: bool,
    /// The room's ticket (this node's addresses), for inviting others.
    pub ticket: Option<String>,
    /// Whether the ticket panel is open (`t`).
    pub show_ticket: bool,
    /// Whether the help panel is open (`?`).
    pub show_help: bool,
    /// Why this node has no microphone (none found, none opened), if it has none.
    pub no_input: Option<String>,
    /// Index of the selection in [`App::selectable`], to land near it if that person goes.
    selected_index: usize,
    /// `Stats` events seen (see [`SETTLED_AFTER_STATS`]).
    stats_seen: u32,
    /// Chat pane lines, oldest first, at most [`CHAT_HISTORY_CAP`].
    log: VecDeque<LogLine>,
}

impl App {
    /// An empty app for the node with key `me`, before any room state.
    pub fn new(me: PublicKey) -> Self {
        App {
            me,
            room: None,
            talking: BTreeSet::new(),
            health: Health::default(),
            self_muted: false,
            selected: None,
            mode: InputMode::Normal,
            scroll: 0,
            status: None,
            leaving: false,
            ticket: None,
            show_ticket: false,
            show_help: false,
            no_input: None,
            selected_index: 0,
            stats_seen: 0,
            log: VecDeque::new(),
        }
    }

    /// The app for node `me` from a snapshot of it.
    pub fn from_status(me: &PublicKey, status: &Status) -> Self {
        let mut app = App::new(*me);
        app.self_muted = status.self_muted;
        app.health.peers = status.peers;
        app.ticket = status.ticket.as_ref().map(|t| t.to_string());
        if app.ticket.is_some() {
            app.set_status("press t for the ticket others join with", false);
        }
        if let Some(room) = &status.room {
            app.set_room(room.clone());
        }
        app
    }

    /// Takes in one event from the node. Returns how the UI should end, if it should.
    pub fn apply(&mut self, event: NodeEvent) -> Option<Exit> {
        match event {
            NodeEvent::State(view) => {
                let ended = view.ended;
                let before = self.about_me();
                let old = self.set_room(*view);
                if let Some(before) = before {
                    self.notice_changes_to_me(before);
                }
                if let Some(old) = old {
                    self.notice_comings_and_goings(&old);
                }
                if ended {
                    return Some(Exit::Ended);
                }
            }
            NodeEvent::Speaking { key, active, .. } => {
                if active {
                    self.talking.insert(key);
                } else {
                    self.talking.remove(&key);
                }
            }
            NodeEvent::Chat { from, name, text } => {
                let mine = from == self.me;
                self.push_line(LogLine {
                    kind: LineKind::Chat,
                    name,
                    mine,
                    text,
                });
            }
            NodeEvent::Reaction {
                from,
                name,
                reaction,
            } => {
                let mine = from == self.me;
                self.push_line(LogLine {
                    kind: LineKind::Reaction,
                    name,
                    mine,
                    text: reaction,
                });
            }
            NodeEvent::Stats {
                speakers,
                peers,
                frames_sent,
                frames_dropped,
                listeners_served,
                ..
            } => {
                self.stats_seen = self.stats_seen.saturating_add(1);
                self.health = Health {
                    measured: true,
                    peers,
                    speakers,
                    frames_sent,
                    frames_dropped,
                    listeners_served,
                };
            }
            NodeEvent::Error { message } => {
                self.set_status(message.clone(), true);
                self.push_system(LineKind::Error, message);
            }
            NodeEvent::Notice { message } => self.push_system(LineKind::Notice, message),
            NodeEvent::Ticket { ticket } => {
                self.ticket = Some(ticket);
                self.push_system(
                    LineKind::Notice,
                    "the room's ticket changed: press t for the new one".into(),
                );
            }
            NodeEvent::Hearing { name, .. } => {
                self.push_system(LineKind::Notice, format!("audio from {name} is coming in"));
            }
            NodeEvent::SourceEnded => {
                self.push_system(LineKind::Notice, "your audio source ended".into());
            }
            NodeEvent::Lagged { missed } => {
                self.push_system(
                    LineKind::Notice,
                    format!("missed {missed} updates; caught up"),
                );
            }
            NodeEvent::Ended => return Some(Exit::Ended),
            NodeEvent::Left { reason } => {
                return Some(if self.leaving {
                    Exit::Left
                } else {
                    match crate::outcome::Outcome::of(reason) {
                        crate::outcome::Outcome::Left => Exit::Left,
                        crate::outcome::Outcome::Ended => Exit::Ended,
                        crate::outcome::Outcome::Removed(r) => Exit::Removed(r),
                    }
                });
            }
            // Progress was printed before the UI started.
            NodeEvent::Joined { .. }
            | NodeEvent::Progress { .. }
            | NodeEvent::CaptureStarted { .. }
            | NodeEvent::PlayoutStarted { .. } => {}
        }
        None
    }

    /// Replaces the room view, keeping the selection on the same person where they still are.
    /// Returns the view it replaced.
    pub fn set_room(&mut self, view: RoomView) -> Option<RoomView> {
        // Only people on stage can be talking; forget the rest so the set stays bounded.
        self.talking
            .retain(|k| view.stage.iter().any(|p| &p.key == k));
        if let InputMode::Banned(row) = self.mode {
            // The list shrank (an unban): keep the row in range, close it when empty.
            self.mode = match view.banned.len() {
                0 => InputMode::Normal,
                n => InputMode::Banned(row.min(n - 1)),
            };
        }
        let old = self.room.replace(view);
        let keys = self.selectable_keys();
        match self
            .selected
            .as_ref()
            .and_then(|s| keys.iter().position(|k| k == s))
        {
            Some(i) => self.selected_index = i,
            None if self.selected.is_some() && !keys.is_empty() => {
                self.selected_index = self.selected_index.min(keys.len() - 1);
                self.selected = Some(keys[self.selected_index]);
            }
            None => self.selected = None,
        }
        old
    }

    /// Says in the chat pane who came on stage or left it, who on stage left the room or came
    /// back, and, for moderators of a small room, who joined or left the audience, since `old`.
    fn notice_comings_and_goings(&mut self, old: &RoomView) {
        let Some(room) = &self.room else {
            return;
        };
        let settled = self.stats_seen >= SETTLED_AFTER_STATS;
        let name = |p: &Person| {
            crate::text::printable(if p.name.is_empty() {
                &p.fingerprint
            } else {
                &p.name
            })
        };
        let find = |list: &[Person], key: &PublicKey| list.iter().find(|p| p.key == *key).cloned();
        let mut notices = Vec::new();
        for p in room.stage.iter().filter(|p| p.key != self.me) {
            match find(&old.stage, &p.key) {
                None => notices.push(format!("{} is on stage", name(p))),
                Some(was) if was.present && !p.present => {
                    notices.push(format!("{} (on stage) left the room", name(p)))
                }
                Some(was) if !was.present && p.present && settled => {
                    notices.push(format!("{} is back", name(p)))
                }
                Some(_) => {}
            }
        }
        for p in old.stage.iter().filter(|p| p.key != self.me) {
            if find(&room.stage, &p.key).is_none() {
                notices.push(match find(&room.audience, &p.key) {
                    Some(_) => format!("{} went back to the audience", name(p)),
                    None => format!("{} is no longer on stage", name(p)),
                });
            }
        }
        let moderating = matches!(room.my_role, Role::Host | Role::Moderator);
        if moderating && settled && room.audience.len() <= AUDIENCE_NOTICES_UP_TO {
            let was_here = |key: &PublicKey| {
                find(&old.audience, key).is_some() || find(&old.stage, key).is_some()
            };
            for p in room.audience.iter().filter(|p| !was_here(&p.key)) {
                notices.push(format!("{} joined", name(p)));
            }
            let is_here = |key: &PublicKey| {
                find(&room.audience, key).is_some() || find(&room.stage, key).is_some()
            };
            for p in old.audience.iter().filter(|p| !is_here(&p.key)) {
                notices.push(format!("{} left", name(p)));
            }
        }
        for text in notices {
            self.push_system(LineKind::Notice, text);
        }
    }

    /// Chat pane lines, oldest first.
    pub fn log(&self) -> impl DoubleEndedIterator<Item = &LogLine> + ExactSizeIterator {
        self.log.iter()
    }

    /// Adds a chat pane line, dropping the oldest past [`CHAT_HISTORY_CAP`].
    pub fn push_line(&mut self, line: LogLine) {
        if self.log.len() >= CHAT_HISTORY_CAP {
            self.log.pop_front();
        }
        self.log.push_back(line);
        if self.scroll > 0 {
            // Keep the lines the user scrolled to where they are.
            self.scroll = (self.scroll + 1).min(self.log.len().saturating_sub(1));
        }
    }

    fn push_system(&mut self, kind: LineKind, text: String) {
        self.push_line(LogLine {
            kind,
            name: String::new(),
            mine: false,
            text,
        });
    }

    /// Sets the status line.
    pub fn set_status(&mut self, text: impl Into<String>, error: bool) {
        self.status = Some(StatusLine {
            text: text.into(),
            error,
        });
    }

    /// Whether a moderator has muted this node.
    pub fn muted_by_moderator(&self) -> bool {
        self.room
            .as_ref()
            .is_some_and(|r| r.muted.iter().any(|p| p.key == self.me))
    }

    /// What the notices about this node compare: role, moderator mute, invitation, host.
    fn about_me(&self) -> Option<AboutMe> {
        let room = self.room.as_ref()?;
        Some(AboutMe {
            role: room.my_role,
            muted: self.muted_by_moderator(),
            invited: self.invited(),
            host: room
                .stage
                .iter()
                .find(|p| p.role == Role::Host)
                .map(|p| p.key),
            hands: room.hands.iter().map(|p| p.key).collect(),
        })
    }

    /// Says in the chat pane what changed for this node since `before` (moderation of it, an
    /// invitation, a new host), so nobody has to notice it in the header.
    fn notice_changes_to_me(&mut self, before: AboutMe) {
        let Some(now) = self.about_me() else {
            return;
        };
        let mut notices = Vec::new();
        if now.muted != before.muted {
            notices.push(if now.muted {
                "a moderator muted you: nobody hears you until you are unmuted".to_string()
            } else {
                "a moderator unmuted you: you can be heard again".to_string()
            });
        }
        if now.invited && !before.invited {
            notices.push("you are invited to speak: press a to go on stage".to_string());
        }
        let on_stage = |r: Role| matches!(r, Role::Host | Role::Moderator | Role::Speaker);
        if now.role != before.role {
            notices.push(match now.role {
                Role::Host => "you are the host now".to_string(),
                Role::Moderator => "you are a moderator now".to_string(),
                Role::Speaker if !on_stage(before.role) => "you are on stage now".to_string(),
                Role::Speaker => "you are a speaker now (no longer a moderator)".to_string(),
                Role::Listener if on_stage(before.role) => {
                    "you were moved to the audience".to_string()
                }
                Role::Listener => "you are a listener".to_string(),
                Role::Banned => "you were banned from this room".to_string(),
            });
        }
        if now.host != before.host
            && now.role != Role::Host
            && let Some(host) = &now.host
        {
            let name = self.name_of(host);
            notices.push(format!("{} is the host now", crate::text::printable(&name)));
        }
        if self.is_moderator() {
            for key in now.hands.iter().filter(|k| !before.hands.contains(k)) {
                let name = crate::text::printable(&self.name_of(key));
                notices.push(format!(
                    "{name} raised a hand (select them and press i to invite)"
                ));
            }
        }
        for text in notices {
            self.push_system(LineKind::Notice, text);
        }
    }

    /// This node's role (a listener when there is no room state yet).
    pub fn my_role(&self) -> Role {
        self.room.as_ref().map_or(Role::Listener, |r| r.my_role)
    }

    /// Whether this node hosts a room that has not ended.
    pub fn hosting(&self) -> bool {
        self.room
            .as_ref()
            .is_some_and(|r| r.my_role == Role::Host && !r.ended)
    }

    /// Who the room would go to if this node, its host, left now (the node's choice:
    /// [`RoomView::heir`]), with their display name.
    pub fn heir(&self) -> Option<(PublicKey, String)> {
        let heir = self.room.as_ref()?.heir.as_ref()?;
        Some((heir.key, self.name_of(&heir.key)))
    }

    /// The banned, as the room state lists them.
    pub fn banned(&self) -> &[Person] {
        self.room.as_ref().map_or(&[], |r| r.banned.as_slice())
    }

    /// Whether this node's hand is raised.
    pub fn hand_raised(&self) -> bool {
        self.room
            .as_ref()
            .is_some_and(|r| r.hands.iter().any(|p| p.key == self.me))
    }

    /// Whether this node has been invited to speak and has not accepted yet.
    pub fn invited(&self) -> bool {
        self.room
            .as_ref()
            .is_some_and(|r| r.invited.iter().any(|p| p.key == self.me))
    }

    /// Whether this node may use the moderation keys.
    pub fn is_moderator(&self) -> bool {
        matches!(self.my_role(), Role::Host | Role::Moderator)
    }

    /// Whether this node is on stage.
    pub fn on_stage(&self) -> bool {
        matches!(self.my_role(), Role::Host | Role::Moderator | Role::Speaker)
    }

    /// The people the selection moves across, in screen order: the stage, then raised hands,
    /// then the rest of the audience. Everyone appears once.
    pub fn selectable(&self) -> Vec<&Person> {
        let Some(room) = &self.room else {
            return Vec::new();
        };
        let mut seen = BTreeSet::new();
        room.stage
            .iter()
            .chain(&room.hands)
            .chain(&room.audience)
            .filter(|p| seen.insert(p.key))
            .collect()
    }

    fn selectable_keys(&self) -> Vec<PublicKey> {
        self.selectable().into_iter().map(|p| p.key).collect()
    }

    /// The selected person, if they are still in the room.
    pub fn selected_person(&self) -> Option<&Person> {
        let key = self.selected.as_ref()?;
        self.selectable().into_iter().find(|p| &p.key == key)
    }

    /// Moves the selection `delta` places (negative: up), stopping at the ends.
    pub fn move_selection(&mut self, delta: isize) {
        let keys = self.selectable_keys();
        if keys.is_empty() {
            self.selected = None;
            return;
        }
        let last = keys.len() - 1;
        let current = self
            .selected
            .as_ref()
            .and_then(|s| keys.iter().position(|k| k == s));
        let next = match current {
            None if delta < 0 => last,
            None => 0,
            Some(i) => i.saturating_add_signed(delta).min(last),
        };
        self.selected_index = next;
        self.selected = Some(keys[next]);
    }

    /// A person's display name: their name, else their fingerprint, else a short key.
    pub fn name_of(&self, key: &PublicKey) -> String {
        let person = self.room.as_ref().and_then(|r| {
            r.stage
                .iter()
                .chain(&r.hands)
                .chain(&r.audience)
                .find(|p| p.key == *key)
        });
        match person {
            Some(p) if !p.name.is_empty() => p.name.clone(),
            Some(p) => p.fingerprint.clone(),
            None => key.to_hex().chars().take(8).collect(),
        }
    }

    /// What `action` does, in a few words, for the status line.
    pub fn describe(&self, action: &Action) -> String {
        let name = |who: &PublicKey| self.name_of(who);
        match action {
            Action::Chat(_) => "chat".into(),
            Action::SelfMute(true) => "turn your mic off".into(),
            Action::SelfMute(false) => "turn your mic on".into(),
            Action::Copy(_) => "copy the ticket".into(),
            Action::Leave(Handover::To(who)) => {
                format!("hand the room to {} and leave", name(who))
            }
            Action::Leave(Handover::End) => "end the room and leave".into(),
            Action::Leave(Handover::Nothing) => "leave".into(),
            Action::Act(body) => match body {
                EventBody::RaiseHand => "raise your hand".into(),
                EventBody::LowerHand => "lower your hand".into(),
                EventBody::AcceptInvite => "accept the invitation to speak".into(),
                EventBody::StepDown => "step down to the audience".into(),
                EventBody::InviteSpeaker { who } => format!("invite {} to speak", name(who)),
                EventBody::MoveToAudience { who } => {
                    format!("move {} to the audience", name(who))
                }
                EventBody::Mute { who } => format!("mute {}", name(who)),
                EventBody::Unmute { who } => format!("unmute {}", name(who)),
                EventBody::Promote { who } => format!("make {} a moderator", name(who)),
                EventBody::Demote { who } => format!("make {} a plain speaker", name(who)),
                EventBody::Kick { who } => format!("kick {}", name(who)),
                EventBody::Ban { who } => format!("ban {}", name(who)),
                EventBody::Unban { who } => format!("unban {}", name(who)),
                EventBody::EndRoom => "end the room".into(),
                other => other.name().replace('_', " "),
            },
        }
    }

    /// Records how an action the user asked for went (`what` from [`App::describe`]; `result`
    /// says whether a room action or chat line reached anyone, or has the node's error message,
    /// e.g. its refusal).
    pub fn on_result(
        &mut self,
        action: &Action,
        what: &str,
        result: Result<Option<Delivery>, String>,
    ) {
        match result {
            Ok(Some(Delivery::NobodyReached)) if matches!(action, Action::Chat(_)) => {
                self.set_status(
                    "held: nobody in the room is connected right now; your message goes out \
                     when someone is",
                    true,
                );
            }
            Ok(Some(Delivery::NobodyReached)) => {
                self.set_status(
                    format!(
                        "saved, not yet sent: {what} (nobody in the room is connected right \
                         now; it reaches them when someone is)"
                    ),
                    true,
                );
            }
            Ok(_) if matches!(action, Action::SelfMute(false)) && self.muted_by_moderator() => {
                self.self_muted = false;
                self.set_status(
                    "your mic is on, but a moderator muted you: nobody hears you until they \
                     unmute you",
                    true,
                );
            }
            Ok(_) => {
                if let Action::SelfMute(on) = action {
                    self.self_muted = *on;
                }
                if !matches!(action, Action::Chat(_)) {
                    self.set_status(format!("done: {what}"), false);
                }
            }
            Err(e) => self.set_status(format!("could not {what}: {e}"), true),
        }
    }
}
