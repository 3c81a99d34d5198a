//! Keys to actions: [`App::handle_key`] turns a key press into an [`Action`] for the node (or
//! just changes the selection or the input mode). It does no I/O and never panics.
//!
//! Moderation keys act on the selected person. They are pre-checked against the role this
//! node has in the last room state, so a listener pressing `B` hears "only the host or a
//! moderator can do that" at once; everything else is left to the node, whose refusal is
//! shown in the status line when the action fails.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ruang_proto::PublicKey;
use ruang_proto::ephemeral::MAX_CHAT_LEN;
use ruang_proto::room::{EventBody, Refusal, Role};

use super::app::{App, InputMode};
use crate::act::RoomAction;

/// Something the user asked the node to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Author a room event (raise a hand, invite, mute, ban, end the room, ...).
    Act(EventBody),
    /// Send a chat line.
    Chat(String),
    /// Turn one's own mic off (`true`) or on.
    SelfMute(bool),
    /// Leave the room and end the UI; a host says first what becomes of the room.
    Leave(Handover),
    /// Put this text on the clipboard of the terminal (OSC 52): the ticket, with `y`.
    Copy(String),
}

/// What becomes of the room when its host leaves (see [`App::heir`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handover {
    /// Nothing: this node is not the host, or the host leaves the room without one.
    Nothing,
    /// The room is handed to this member (a signed hand-off) before leaving.
    To(PublicKey),
    /// The room ends for everyone before leaving.
    End,
}

/// Lines PageUp/PageDown scroll the chat pane by.
const SCROLL_STEP: usize = 5;

impl App {
    /// Handles one key event. Returns the action to run, if the key asks for one.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL)
            && matches!(key.code, KeyCode::Char('c' | 'C'))
        {
            // Ctrl-C leaves at once; a host's room goes to the heir rather than staying
            // hostless (it is never ended without asking).
            let handover = match self.heir() {
                Some((key, _)) if self.hosting() => Handover::To(key),
                _ => Handover::Nothing,
            };
            return Some(Action::Leave(handover));
        }
        match std::mem::take(&mut self.mode) {
            InputMode::Chat(text) => self.chat_key(key, text),
            InputMode::ConfirmEnd => self.confirm_end_key(key),
            InputMode::ConfirmLeave => self.confirm_leave_key(key),
            InputMode::Banned(row) => self.banned_key(key, row),
            InputMode::Normal => self.normal_key(key),
        }
    }

    /// Keys while the list of banned people is open: ↑/↓ select, `u` or Enter unbans, Esc
    /// (or `b`) closes.
    fn banned_key(&mut self, key: KeyEvent, row: usize) -> Option<Action> {
        let banned = self.banned();
        if banned.is_empty() {
            return None;
        }
        let last = banned.len() - 1;
        let row = row.min(last);
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.mode = InputMode::Banned(row.saturating_sub(1))
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.mode = InputMode::Banned((row + 1).min(last))
            }
            KeyCode::Char('u' | 'U') | KeyCode::Enter => {
                let who = banned[row].key;
                self.mode = InputMode::Banned(row);
                return RoomAction::Unban.event(Some(who)).map(Action::Act);
            }
            KeyCode::Esc | KeyCode::Char('b' | 'q') => {}
            _ => self.mode = InputMode::Banned(row),
        }
        None
    }

    /// `q`: anyone but a host of an open room leaves at once; the host is asked first.
    fn leave_key(&mut self) -> Option<Action> {
        if !self.hosting() {
            return Some(Action::Leave(Handover::Nothing));
        }
        self.mode = InputMode::ConfirmLeave;
        let question = match self.heir() {
            Some((_, name)) => format!(
                "leave? y: hand the room to {name} and leave · e: end it for everyone · \
                 other keys: stay"
            ),
            None => "nobody here can take the room. y: end it for everyone and leave · \
                     l: leave it without a host · other keys: stay"
                .to_string(),
        };
        self.set_status(question, false);
        None
    }

    fn confirm_leave_key(&mut self, key: KeyEvent) -> Option<Action> {
        let handover = match (key.code, self.heir()) {
            (KeyCode::Char('y' | 'Y'), Some((heir, _))) => Handover::To(heir),
            (KeyCode::Char('y' | 'Y'), None) | (KeyCode::Char('e' | 'E'), Some(_)) => Handover::End,
            (KeyCode::Char('l' | 'L'), None) => Handover::Nothing,
            _ => {
                self.set_status("you stay in the room", false);
                return None;
            }
        };
        Some(Action::Leave(handover))
    }

    fn chat_key(&mut self, key: KeyEvent, mut text: String) -> Option<Action> {
        match key.code {
            KeyCode::Esc => return None,
            KeyCode::Enter => {
                let line = text.trim();
                return (!line.is_empty()).then(|| Action::Chat(line.to_string()));
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => text.clear(),
            KeyCode::Char(c)
                if !key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
                    && !c.is_control() =>
            {
                if text.len() + c.len_utf8() <= MAX_CHAT_LEN {
                    text.push(c);
                } else {
                    self.set_status(
                        format!("a chat line holds at most {MAX_CHAT_LEN} bytes"),
                        true,
                    );
                }
            }
            _ => {}
        }
        self.mode = InputMode::Chat(text);
        None
    }

    fn confirm_end_key(&mut self, key: KeyEvent) -> Option<Action> {
        if matches!(key.code, KeyCode::Char('y' | 'Y')) {
            Some(Action::Act(EventBody::EndRoom))
        } else {
            self.set_status("the room stays open", false);
            None
        }
    }

    fn normal_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
        {
            return None;
        }
        match key.code {
            KeyCode::Char('q') => self.leave_key(),
            KeyCode::Enter | KeyCode::Char('c') => {
                self.mode = InputMode::Chat(String::new());
                None
            }
            KeyCode::Esc => {
                self.status = None;
                self.show_ticket = false;
                self.show_help = false;
                None
            }
            KeyCode::Char('?') => {
                self.show_help = !self.show_help;
                None
            }
            KeyCode::Char('b') => {
                if !self.is_moderator() {
                    self.refuse(Refusal::NotModerator);
                } else if self.banned().is_empty() {
                    self.set_status("nobody is banned from this room", false);
                } else {
                    self.mode = InputMode::Banned(0);
                }
                None
            }
            KeyCode::Char('y') if self.show_ticket => self.ticket.clone().map(Action::Copy),
            KeyCode::Char('t') => {
                if self.ticket.is_some() {
                    self.show_ticket = !self.show_ticket;
                } else {
                    self.set_status("no ticket yet: the node has not entered the room", true);
                }
                None
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.move_selection(-1);
                None
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.move_selection(1);
                None
            }
            KeyCode::PageUp => {
                let lines = self.log().len();
                self.scroll = (self.scroll + SCROLL_STEP).min(lines.saturating_sub(1));
                None
            }
            KeyCode::PageDown => {
                self.scroll = self.scroll.saturating_sub(SCROLL_STEP);
                None
            }
            KeyCode::End => {
                self.scroll = 0;
                None
            }
            KeyCode::Char('h') => self.act(if self.hand_raised() {
                RoomAction::LowerHand
            } else {
                RoomAction::RaiseHand
            }),
            KeyCode::Char('m') => match &self.no_input {
                Some(why) => {
                    self.set_status(format!("no microphone: {why}"), true);
                    None
                }
                None => Some(Action::SelfMute(!self.self_muted)),
            },
            KeyCode::Char('a') => self.act(RoomAction::AcceptInvite),
            KeyCode::Char('s') => self.act(RoomAction::StepDown),
            KeyCode::Char('i') => self.moderate(RoomAction::Invite),
            KeyCode::Char('x') => self.moderate(RoomAction::MoveToAudience),
            KeyCode::Char('u') => {
                let muted = self.selected_person().is_some_and(|p| p.muted);
                self.moderate(if muted {
                    RoomAction::Unmute
                } else {
                    RoomAction::Mute
                })
            }
            KeyCode::Char('K') => self.moderate(RoomAction::Kick),
            KeyCode::Char('B') => self.moderate(RoomAction::Ban),
            KeyCode::Char('p') => self.moderate(RoomAction::Promote),
            KeyCode::Char('d') => self.moderate(RoomAction::Demote),
            KeyCode::Char('E') => {
                if self.my_role() == Role::Host {
                    self.mode = InputMode::ConfirmEnd;
                    self.set_status(
                        "end the room for everyone? y: yes, any other key: no",
                        false,
                    );
                } else {
                    self.refuse(Refusal::NotHost);
                }
                None
            }
            _ => None,
        }
    }

    /// A moderation action on the selected person, after the role pre-check.
    /// A room action about nobody.
    fn act(&mut self, action: RoomAction) -> Option<Action> {
        action.event(None).map(Action::Act)
    }

    /// A moderator's action about the selected person.
    fn moderate(&mut self, action: RoomAction) -> Option<Action> {
        if action.host_only() && self.my_role() != Role::Host {
            self.refuse(Refusal::NotHost);
            return None;
        }
        if !self.is_moderator() {
            self.refuse(Refusal::NotModerator);
            return None;
        }
        let Some(person) = self.selected_person() else {
            self.set_status("select someone first with ↑/↓ (or j/k)", true);
            return None;
        };
        let who = person.key;
        action.event(Some(who)).map(Action::Act)
    }

    fn refuse(&mut self, why: Refusal) {
        self.set_status(format!("not allowed: {why}"), true);
    }
}

/// Whether `key` cancels a join in progress: Esc, `q` or Ctrl-C (a press, not a release).
pub fn cancels_join(key: KeyEvent) -> bool {
    key.kind != KeyEventKind::Release
        && match key.code {
            KeyCode::Esc | KeyCode::Char('q') => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}
