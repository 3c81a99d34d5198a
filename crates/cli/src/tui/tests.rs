//! Tests of the terminal UI without a terminal: rendering into ratatui's `TestBackend`, keys
//! to actions, and events to state.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Modifier;
use ruang_node::event::LeaveReason;
use ruang_node::{Delivery, NodeError, NodeEvent, Person, RoomView, SpeakerStats};
use ruang_proto::PublicKey;
use ruang_proto::room::{EventBody, Refusal, Role};

use super::app::{App, CHAT_HISTORY_CAP, InputMode};
use super::{Action, Exit, Handover, draw};

const ANA: u8 = 1; // host
const BO: u8 = 2; // moderator
const CY: u8 = 3; // speaker, muted
const DEE: u8 = 4; // speaker, talking
const EVE: u8 = 5; // listener, first raised hand
const FAY: u8 = 6; // listener, second raised hand
const GUS: u8 = 7; // listener

fn key(n: u8) -> PublicKey {
    PublicKey([n; 32])
}

/// Receive counters of speaker `n`, all zero.
fn counters(n: u8, name: &str) -> SpeakerStats {
    SpeakerStats {
        key: key(n),
        name: name.into(),
        received: 0,
        played: 0,
        late: 0,
        lost: 0,
        fec: 0,
        concealed: 0,
        jitter_ms: 0,
        depth_ms: 0,
    }
}

fn person(n: u8, name: &str, role: Role) -> Person {
    Person {
        key: key(n),
        name: name.into(),
        fingerprint: key(n).fingerprint().to_string(),
        role,
        muted: false,
        present: true,
    }
}

/// A room: ana hosts, bo moderates, cy (muted) and dee speak; eve and fay have raised hands
/// (in that order); gus listens. `me` is the viewer.
fn room(me: u8) -> RoomView {
    let mut cy = person(CY, "cy", Role::Speaker);
    cy.muted = true;
    let stage = vec![
        person(ANA, "ana", Role::Host),
        person(BO, "bo", Role::Moderator),
        cy,
        person(DEE, "dee", Role::Speaker),
    ];
    let audience = vec![
        person(EVE, "eve", Role::Listener),
        person(FAY, "fay", Role::Listener),
        person(GUS, "gus", Role::Listener),
    ];
    let my_role = stage
        .iter()
        .chain(&audience)
        .find(|p| p.key == key(me))
        .unwrap()
        .role;
    RoomView {
        room_id: ruang_proto::room::RoomId::GENESIS,
        title: "Morning news".into(),
        topic: "what happened overnight".into(),
        tags: vec!["news".into()],
        language: "en".into(),
        private: false,
        stage,
        hands: vec![audience[0].clone(), audience[1].clone()],
        listeners: audience.len() as u64,
        audience,
        invited: Vec::new(),
        muted: vec![person(CY, "cy", Role::Speaker)],
        banned: Vec::new(),
        recording: Vec::new(),
        heir: None,
        ended: false,
        my_role,
        log_len: 12,
    }
}

fn app_as(me: u8) -> App {
    let mut app = App::new(key(me));
    app.set_room(room(me));
    app
}

fn press(app: &mut App, code: KeyCode) -> Option<Action> {
    app.handle_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ch(app: &mut App, c: char) -> Option<Action> {
    let modifiers = if c.is_uppercase() {
        KeyModifiers::SHIFT
    } else {
        KeyModifiers::NONE
    };
    app.handle_key(KeyEvent::new(KeyCode::Char(c), modifiers))
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        assert_eq!(ch(app, c), None, "typing {c:?} must not act");
    }
}

/// Renders `app` on a `width`×`height` test terminal.
fn render_buffer(app: &App, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| draw(frame, app)).unwrap();
    terminal.backend().buffer().clone()
}

/// Renders `app` on a `width`×`height` test terminal and returns the screen's rows.
fn render(app: &App, width: u16, height: u16) -> Vec<String> {
    let buffer = render_buffer(app, width, height);
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

fn row_with<'a>(rows: &'a [String], needle: &str) -> (usize, &'a String) {
    rows.iter()
        .enumerate()
        .find(|(_, r)| r.contains(needle))
        .unwrap_or_else(|| panic!("no row contains {needle:?}:\n{}", rows.join("\n")))
}

// ----- rendering ------------------------------------------------------------------------

/// A populated room seen by its host: stage with one talking and one muted speaker, raised
/// hands in order, audience, chat, health and the key help.
#[test]
fn renders_stage_hands_audience_chat_health_and_keys() {
    let mut app = app_as(ANA);
    app.apply(NodeEvent::Speaking {
        key: key(DEE),
        name: "dee".into(),
        active: true,
    });
    app.apply(NodeEvent::Chat {
        from: key(BO),
        name: "bo".into(),
        text: "hello everyone".into(),
    });
    app.apply(NodeEvent::Chat {
        from: key(ANA),
        name: "ana".into(),
        text: "welcome!".into(),
    });
    app.apply(NodeEvent::Notice {
        message: "gus joined".into(),
    });
    app.apply(NodeEvent::Stats {
        speakers: vec![
            SpeakerStats {
                received: 995,
                lost: 5,
                jitter_ms: 60,
                ..counters(DEE, "dee")
            },
            // Someone who spoke and left: their counters are not the room's health.
            SpeakerStats {
                received: 100,
                lost: 400,
                jitter_ms: 300,
                ..counters(9, "gone")
            },
        ],
        peers: 6,
        frames_sent: 1200,
        frames_dropped: 0,
        listeners_served: 5,
        loss_hint_pct: 0,
        bitrate_bps: 0,
        sending_copies: false,
    });
    app.selected = Some(key(GUS));
    let buffer = render_buffer(&app, 110, 32);
    let rows = render(&app, 110, 32);
    let screen = rows.join("\n");

    // Title, topic, own role.
    assert!(screen.contains("Morning news"), "{screen}");
    assert!(screen.contains("what happened overnight"), "{screen}");
    assert!(screen.contains("#news"), "{screen}");
    assert!(screen.contains("you: ana (host)"), "{screen}");

    // The stage, with role marks, the talking indicator and the muted mark.
    assert!(screen.contains("Stage (4)"), "{screen}");
    let (_, ana) = row_with(&rows, "ana (you)");
    assert!(ana.contains("host"), "{ana}");
    assert!(row_with(&rows, "bo ").1.contains("mod"));
    let (_, dee) = row_with(&rows, "◉ dee");
    assert!(dee.contains("talking") && dee.contains("speaker"), "{dee}");
    let (_, cy) = row_with(&rows, "○ cy");
    assert!(cy.contains("muted") && !cy.contains("talking"), "{cy}");

    // Raised hands in order, and the audience with its count and hand marks.
    assert!(screen.contains("Raised hands (2)"), "{screen}");
    let (first, _) = row_with(&rows, "1. eve");
    let (second, _) = row_with(&rows, "2. fay");
    assert!(first < second);
    assert!(screen.contains("Audience (3)"), "{screen}");
    let (_, gus) = rows
        .iter()
        .enumerate()
        .rfind(|(_, r)| r.contains("gus "))
        .unwrap();
    assert!(!gus.contains("hand"), "{gus}");
    let (eve_row, eve) = rows
        .iter()
        .enumerate()
        .rfind(|(_, r)| r.contains("eve"))
        .unwrap();
    assert!(eve_row > second && eve.contains("hand"), "{eve}");

    // The selected person (gus) is highlighted for the host; nobody else is.
    let (gus_row, _) = rows
        .iter()
        .enumerate()
        .rfind(|(_, r)| r.contains("gus "))
        .unwrap();
    let reversed = |y: usize| buffer[(1, y as u16)].modifier.contains(Modifier::REVERSED);
    assert!(reversed(gus_row), "the selection is not highlighted");
    assert!(!reversed(eve_row) && !reversed(first));

    // Chat, notices, health.
    assert!(screen.contains("bo: hello everyone"), "{screen}");
    assert!(screen.contains("ana: welcome!"), "{screen}");
    assert!(screen.contains("* gus joined"), "{screen}");
    assert!(screen.contains("7 here · 6 connections"), "{screen}");
    assert!(!screen.contains("gone"), "{screen}");
    assert!(screen.contains("jitter buffer 60 ms"), "{screen}");
    assert!(screen.contains("loss 0.5%"), "{screen}");

    // Key help for a host.
    for help in [
        "m  mic off",
        "Enter/c  chat",
        "q  leave",
        "B  ban",
        "K  kick",
        "i  invite",
        "E  end room",
    ] {
        assert!(screen.contains(help), "missing {help:?} in\n{screen}");
    }
}

#[test]
fn listener_sees_hand_keys_and_invitation() {
    let mut app = app_as(GUS);
    let rows = render(&app, 100, 30);
    let screen = rows.join("\n");
    assert!(screen.contains("you: gus (listener)"), "{screen}");
    assert!(screen.contains("h  raise hand"), "{screen}");
    assert!(!screen.contains("B  ban"), "{screen}");

    let mut view = room(GUS);
    view.invited = vec![person(GUS, "gus", Role::Listener)];
    app.set_room(view);
    let screen = render(&app, 100, 30).join("\n");
    assert!(screen.contains("a  accept invite"), "{screen}");
    assert!(screen.contains("invited to speak"), "{screen}");
}

#[test]
fn chat_mode_shows_typed_text_and_its_keys() {
    let mut app = app_as(EVE);
    ch(&mut app, 'c');
    type_text(&mut app, "is this on?");
    let screen = render(&app, 100, 30).join("\n");
    assert!(screen.contains("> is this on?"), "{screen}");
    assert!(
        screen.contains("Enter  send") && screen.contains("Esc  cancel"),
        "{screen}"
    );
}

#[test]
fn long_chat_lines_wrap_and_tiny_terminals_do_not_panic() {
    let mut app = app_as(EVE);
    let long = format!("{}END", "word ".repeat(40));
    app.apply(NodeEvent::Chat {
        from: key(BO),
        name: "bo".into(),
        text: long,
    });
    app.apply(NodeEvent::Chat {
        from: key(BO),
        name: "bo".into(),
        text: "a\nnew\x1b[2Jline".into(),
    });
    let screen = render(&app, 100, 30).join("\n");
    assert!(screen.contains("bo: word word"), "{screen}");
    assert!(screen.contains("END"), "{screen}");
    assert!(screen.contains("bo: a new [2Jline"), "{screen}");
    for (w, h) in [(1, 1), (10, 5), (30, 8), (0, 0)] {
        render(&app, w, h);
    }
}

// ----- keys -----------------------------------------------------------------------------

#[test]
fn h_raises_then_lowers_the_hand() {
    let mut app = app_as(GUS);
    assert_eq!(ch(&mut app, 'h'), Some(Action::Act(EventBody::RaiseHand)));
    let app = &mut app_as(EVE); // eve's hand is up
    assert_eq!(ch(app, 'h'), Some(Action::Act(EventBody::LowerHand)));
}

#[test]
fn moderator_bans_the_selected_listener() {
    let mut app = app_as(BO);
    // Stage (4), then hands (eve, fay), then the rest of the audience (gus).
    for _ in 0..7 {
        ch(&mut app, 'j');
    }
    assert_eq!(app.selected_person().map(|p| p.name.as_str()), Some("gus"));
    ch(&mut app, 'j'); // stops at the end
    assert_eq!(app.selected_person().map(|p| p.name.as_str()), Some("gus"));
    assert_eq!(
        ch(&mut app, 'B'),
        Some(Action::Act(EventBody::Ban { who: key(GUS) }))
    );
    assert_eq!(
        ch(&mut app, 'K'),
        Some(Action::Act(EventBody::Kick { who: key(GUS) }))
    );
    press(&mut app, KeyCode::Up);
    assert_eq!(app.selected_person().map(|p| p.name.as_str()), Some("fay"));
    assert_eq!(
        ch(&mut app, 'i'),
        Some(Action::Act(EventBody::InviteSpeaker { who: key(FAY) }))
    );
}

#[test]
fn u_mutes_or_unmutes_the_selected_speaker() {
    let mut app = app_as(ANA);
    app.selected = Some(key(CY));
    assert_eq!(
        ch(&mut app, 'u'),
        Some(Action::Act(EventBody::Unmute { who: key(CY) }))
    );
    app.selected = Some(key(DEE));
    assert_eq!(
        ch(&mut app, 'u'),
        Some(Action::Act(EventBody::Mute { who: key(DEE) }))
    );
    assert_eq!(
        ch(&mut app, 'x'),
        Some(Action::Act(EventBody::MoveToAudience { who: key(DEE) }))
    );
    assert_eq!(
        ch(&mut app, 'p'),
        Some(Action::Act(EventBody::Promote { who: key(DEE) }))
    );
    app.selected = Some(key(BO));
    assert_eq!(
        ch(&mut app, 'd'),
        Some(Action::Act(EventBody::Demote { who: key(BO) }))
    );
}

#[test]
fn moderation_keys_say_why_they_are_not_allowed() {
    let mut listener = app_as(GUS);
    listener.selected = Some(key(EVE));
    assert_eq!(ch(&mut listener, 'B'), None);
    let status = listener.status.clone().unwrap();
    assert!(
        status.error
            && status
                .text
                .contains("only the host or a moderator can do that")
    );

    let mut moderator = app_as(BO);
    moderator.selected = Some(key(DEE));
    assert_eq!(ch(&mut moderator, 'p'), None);
    assert!(
        moderator
            .status
            .as_ref()
            .unwrap()
            .text
            .contains("only the host can do that")
    );
    assert_eq!(ch(&mut moderator, 'E'), None);
    assert_eq!(moderator.mode, InputMode::Normal);

    let mut host = app_as(ANA);
    assert_eq!(ch(&mut host, 'B'), None, "nobody selected");
    assert!(
        host.status
            .as_ref()
            .unwrap()
            .text
            .contains("select someone")
    );

    // What the node refuses is shown as the node says it.
    let action = Action::Act(EventBody::Ban { who: key(BO) });
    let what = host.describe(&action);
    let refusal = NodeError::Room(ruang_node::session::Error::Refused(
        Refusal::TargetIsModerator,
    ))
    .to_string();
    host.on_result(&action, &what, Err(refusal));
    let status = host.status.clone().unwrap();
    assert!(status.error, "{status:?}");
    assert!(status.text.contains("ban bo"), "{status:?}");
    assert!(
        status
            .text
            .contains("a moderator cannot do that to a moderator"),
        "{status:?}"
    );
    let screen = render(&host, 100, 30).join("\n");
    assert!(
        screen.contains("a moderator cannot do that to a moderator"),
        "{screen}"
    );
}

#[test]
fn end_room_asks_for_confirmation() {
    let mut app = app_as(ANA);
    assert_eq!(ch(&mut app, 'E'), None);
    assert_eq!(app.mode, InputMode::ConfirmEnd);
    assert_eq!(ch(&mut app, 'n'), None);
    assert_eq!(app.mode, InputMode::Normal);
    ch(&mut app, 'E');
    assert_eq!(ch(&mut app, 'y'), Some(Action::Act(EventBody::EndRoom)));
    assert_eq!(app.mode, InputMode::Normal);
}

#[test]
fn the_host_leaving_is_asked_and_hands_the_room_over() {
    let mut app = app_as(ANA);
    let mut view = app.room.clone().unwrap();
    view.heir = Some(person(BO, "bo", Role::Moderator));
    app.set_room(view.clone());
    // q asks; a key other than the answers keeps the host in the room.
    assert_eq!(ch(&mut app, 'q'), None);
    assert_eq!(app.mode, InputMode::ConfirmLeave);
    let screen = render(&app, 120, 30).join("\n");
    assert!(screen.contains("hand the room to bo"), "{screen}");
    assert_eq!(ch(&mut app, 'n'), None);
    assert_eq!(app.mode, InputMode::Normal);
    ch(&mut app, 'q');
    assert_eq!(
        ch(&mut app, 'y'),
        Some(Action::Leave(Handover::To(key(BO))))
    );
    ch(&mut app, 'q');
    assert_eq!(ch(&mut app, 'e'), Some(Action::Leave(Handover::End)));
    // Ctrl-C hands over without asking (it never ends the room).
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(
        app.handle_key(ctrl_c),
        Some(Action::Leave(Handover::To(key(BO))))
    );

    // Nobody to take it: y ends it, l leaves it hostless.
    view.heir = None;
    app.set_room(view);
    ch(&mut app, 'q');
    let screen = render(&app, 120, 30).join("\n");
    assert!(screen.contains("Nobody here can take the room"), "{screen}");
    assert_eq!(ch(&mut app, 'y'), Some(Action::Leave(Handover::End)));
    ch(&mut app, 'q');
    assert_eq!(ch(&mut app, 'l'), Some(Action::Leave(Handover::Nothing)));
    assert_eq!(
        app.handle_key(ctrl_c),
        Some(Action::Leave(Handover::Nothing))
    );
    assert_eq!(
        app.describe(&Action::Leave(Handover::To(key(BO)))),
        "hand the room to bo and leave"
    );
}

#[test]
fn without_a_microphone_the_header_says_so_and_m_explains() {
    let mut app = app_as(DEE);
    app.no_input = Some("the kernel lists no sound card".into());
    let screen = render(&app, 110, 32).join("\n");
    assert!(screen.contains("no microphone"), "{screen}");
    assert!(!screen.contains("mic on"), "{screen}");
    assert_eq!(ch(&mut app, 'm'), None);
    let status = app.status.clone().unwrap();
    assert!(
        status.error && status.text.contains("no sound card"),
        "{}",
        status.text
    );
}

#[test]
fn help_panel_and_the_banned_list_with_unban() {
    let mut app = app_as(BO);
    assert_eq!(ch(&mut app, '?'), None);
    assert!(app.show_help);
    let screen = render(&app, 100, 40).join("\n");
    assert!(screen.contains("Keys (? or Esc closes)"), "{screen}");
    assert!(screen.contains("end the room for everyone"), "{screen}");
    press(&mut app, KeyCode::Esc);
    assert!(!app.show_help);

    // Nobody banned yet: b says so.
    assert_eq!(ch(&mut app, 'b'), None);
    assert_eq!(app.mode, InputMode::Normal);
    let mut view = app.room.clone().unwrap();
    view.banned = vec![
        person(FAY, "fay", Role::Banned),
        person(GUS, "gus", Role::Banned),
    ];
    app.set_room(view.clone());
    assert_eq!(ch(&mut app, 'b'), None);
    assert_eq!(app.mode, InputMode::Banned(0));
    let screen = render(&app, 100, 40).join("\n");
    assert!(screen.contains("Banned from this room"), "{screen}");
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down); // stops at the last
    assert_eq!(app.mode, InputMode::Banned(1));
    assert_eq!(
        ch(&mut app, 'u'),
        Some(Action::Act(EventBody::Unban { who: key(GUS) }))
    );
    // The unban arrives: the list keeps its row in range, and closes once empty.
    app.set_room(RoomView {
        banned: vec![person(FAY, "fay", Role::Banned)],
        ..view.clone()
    });
    assert_eq!(app.mode, InputMode::Banned(0));
    app.set_room(RoomView {
        banned: Vec::new(),
        ..view.clone()
    });
    assert_eq!(app.mode, InputMode::Normal);

    // A listener has no banned list.
    let mut listener = app_as(GUS);
    listener.set_room(RoomView {
        my_role: Role::Listener,
        ..view
    });
    assert_eq!(ch(&mut listener, 'b'), None);
    assert_eq!(listener.mode, InputMode::Normal);
    assert!(listener.status.as_ref().is_some_and(|s| s.error));
}

#[test]
fn chat_typing_enter_sends_and_esc_cancels() {
    let mut app = app_as(GUS);
    assert_eq!(press(&mut app, KeyCode::Enter), None);
    type_text(&mut app, "hqm B, Kq!"); // command letters are text while typing
    press(&mut app, KeyCode::Backspace);
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        Some(Action::Chat("hqm B, Kq".into()))
    );
    assert_eq!(app.mode, InputMode::Normal);

    ch(&mut app, 'c');
    type_text(&mut app, "never mind");
    assert_eq!(press(&mut app, KeyCode::Esc), None);
    assert_eq!(app.mode, InputMode::Normal);
    assert_eq!(ch(&mut app, 'h'), Some(Action::Act(EventBody::RaiseHand)));

    // An empty line sends nothing; a long one stops at the protocol's limit.
    ch(&mut app, 'c');
    assert_eq!(press(&mut app, KeyCode::Enter), None);
    ch(&mut app, 'c');
    for _ in 0..600 {
        ch(&mut app, 'é');
    }
    let Some(Action::Chat(text)) = press(&mut app, KeyCode::Enter) else {
        panic!("no chat")
    };
    assert!(text.len() <= ruang_proto::ephemeral::MAX_CHAT_LEN && text.len() >= 498);
}

#[test]
fn an_action_that_reached_nobody_is_not_called_done() {
    let mut app = app_as(ANA);
    let mute = Action::Act(EventBody::Mute {
        who: PublicKey([BO; 32]),
    });
    app.on_result(&mute, "mute bo", Ok(Some(Delivery::Reached)));
    assert_eq!(app.status.clone().unwrap().text, "done: mute bo");
    app.on_result(&mute, "mute bo", Ok(Some(Delivery::NobodyReached)));
    let status = app.status.clone().unwrap();
    assert!(status.error, "{status:?}");
    assert!(
        status.text.starts_with("saved, not yet sent: mute bo")
            && status.text.contains("nobody in the room is connected"),
        "{status:?}"
    );
    app.on_result(
        &Action::Chat("hi".into()),
        "chat",
        Ok(Some(Delivery::NobodyReached)),
    );
    assert!(app.status.clone().unwrap().text.starts_with("held:"));
}

#[test]
fn leave_mute_and_other_self_keys() {
    let mut app = app_as(DEE);
    assert_eq!(ch(&mut app, 'q'), Some(Action::Leave(Handover::Nothing)));
    assert_eq!(ch(&mut app, 'm'), Some(Action::SelfMute(true)));
    app.on_result(&Action::SelfMute(true), "turn your mic off", Ok(None));
    assert!(app.self_muted);
    assert_eq!(ch(&mut app, 'm'), Some(Action::SelfMute(false)));
    assert_eq!(ch(&mut app, 's'), Some(Action::Act(EventBody::StepDown)));
    assert_eq!(
        ch(&mut app, 'a'),
        Some(Action::Act(EventBody::AcceptInvite))
    );

    ch(&mut app, 'c');
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(
        app.handle_key(ctrl_c),
        Some(Action::Leave(Handover::Nothing)),
        "Ctrl-C leaves even while typing"
    );

    let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
    release.kind = KeyEventKind::Release;
    assert_eq!(app.handle_key(release), None);
    for code in [
        KeyCode::F(5),
        KeyCode::Tab,
        KeyCode::Null,
        KeyCode::PageUp,
        KeyCode::End,
    ] {
        assert_eq!(press(&mut app, code), None);
    }
}

// ----- events ---------------------------------------------------------------------------

#[test]
fn events_update_talking_chat_and_exit() {
    let mut app = app_as(GUS);
    app.apply(NodeEvent::Speaking {
        key: key(DEE),
        name: "dee".into(),
        active: true,
    });
    assert!(app.talking.contains(&key(DEE)));
    app.apply(NodeEvent::Speaking {
        key: key(DEE),
        name: "dee".into(),
        active: false,
    });
    assert!(app.talking.is_empty());

    for i in 0..CHAT_HISTORY_CAP + 50 {
        app.apply(NodeEvent::Chat {
            from: key(BO),
            name: "bo".into(),
            text: format!("line {i}"),
        });
    }
    assert_eq!(app.log().len(), CHAT_HISTORY_CAP);
    assert_eq!(app.log().next().unwrap().text, "line 50");

    assert_eq!(app.apply(NodeEvent::Ended), Some(Exit::Ended));
    let banned = NodeEvent::Left {
        reason: LeaveReason::Banned,
    };
    assert_eq!(app.apply(banned), Some(Exit::Removed(LeaveReason::Banned)));
    let ended = NodeEvent::Left {
        reason: LeaveReason::Ended,
    };
    assert_eq!(app.apply(ended), Some(Exit::Ended));
    app.leaving = true;
    let left = NodeEvent::Left {
        reason: LeaveReason::Kicked,
    };
    assert_eq!(app.apply(left), Some(Exit::Left));
}

#[test]
fn selection_follows_the_person_across_state_changes() {
    let mut app = app_as(ANA);
    app.selected = Some(key(GUS));
    let mut view = room(ANA);
    view.stage.remove(2); // cy leaves the stage
    app.apply(NodeEvent::State(Box::new(view.clone())));
    assert_eq!(app.selected_person().map(|p| p.name.as_str()), Some("gus"));
    view.audience.retain(|p| p.key != key(GUS)); // gus leaves: land on a neighbour
    app.apply(NodeEvent::State(Box::new(view)));
    assert_eq!(app.selected_person().map(|p| p.name.as_str()), Some("fay"));
}

#[test]
fn t_shows_the_ticket_in_full_rows_and_closes_again() {
    let mut app = app_as(EVE);
    assert_eq!(press(&mut app, KeyCode::Char('t')), None);
    assert!(!app.show_ticket, "no ticket, no panel");
    assert!(app.status.as_ref().is_some_and(|s| s.error));

    // Longer than a row, so it wraps; no character may be lost or doubled at the cuts.
    let ticket: String = (0..230)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    app.ticket = Some(ticket.clone());
    assert_eq!(press(&mut app, KeyCode::Char('t')), None);
    assert!(app.show_ticket);
    let rows = render(&app, 90, 30);
    let (top, _) = row_with(&rows, "Ticket (t or Esc closes)");
    let (at, _) = row_with(&rows, "abcdefghij");
    let pasted: String = rows[at..at + 3].concat();
    assert_eq!(pasted.split_whitespace().collect::<String>(), ticket);
    assert!(at > top && rows[at].starts_with("abcdefghij"), "{rows:#?}");
    assert!(row_with(&rows, " hide ticket ").0 > at);

    assert_eq!(press(&mut app, KeyCode::Esc), None);
    assert!(!app.show_ticket);
    assert!(
        !render(&app, 90, 30)
            .iter()
            .any(|r| r.contains("abcdefghij"))
    );
    // Typing a chat line with a t in it does not open the panel.
    press(&mut app, KeyCode::Char('c'));
    type_text(&mut app, "that");
    assert!(!app.show_ticket);
}

/// A speaker a moderator muted is told so, in the header and in the chat pane, and told again
/// when it is lifted; being invited and being put on stage are notices too.
#[test]
fn moderation_of_me_is_shown_and_announced() {
    let mut app = app_as(CY);
    let screen = render(&app, 100, 30).join("\n");
    assert!(screen.contains("muted by a moderator"), "{screen}");
    assert!(!screen.contains("mic on"), "{screen}");

    let mut view = room(CY);
    view.muted.clear();
    app.apply(NodeEvent::State(Box::new(view)));
    let notices: Vec<String> = app.log().map(|l| l.text.clone()).collect();
    assert!(
        notices
            .iter()
            .any(|t| t.contains("a moderator unmuted you")),
        "{notices:?}"
    );
    let screen = render(&app, 100, 30).join("\n");
    assert!(screen.contains("mic on"), "{screen}");

    let mut app = app_as(GUS);
    let mut view = room(GUS);
    view.invited = vec![person(GUS, "gus", Role::Listener)];
    app.apply(NodeEvent::State(Box::new(view)));
    let mut view = room(GUS);
    view.my_role = Role::Speaker;
    app.apply(NodeEvent::State(Box::new(view)));
    let notices: Vec<String> = app.log().map(|l| l.text.clone()).collect();
    assert!(notices[0].contains("invited to speak"), "{notices:?}");
    assert!(notices[1].contains("on stage now"), "{notices:?}");
    assert_eq!(notices.len(), 2, "{notices:?}");

    // The host hears of a new raised hand; a listener does not.
    for (me, told) in [(ANA, true), (GUS, false)] {
        let mut app = app_as(me);
        let mut view = room(me);
        view.hands.push(person(GUS, "gus", Role::Listener));
        app.apply(NodeEvent::State(Box::new(view)));
        let told_now = app.log().any(|l| l.text.contains("gus raised a hand"));
        assert_eq!(told_now, told, "viewer {me}");
    }
}

/// The notices the chat pane shows since the last call (and the lines so far, to skip).
fn new_notices(app: &App, seen: &mut usize) -> Vec<String> {
    let lines: Vec<String> = app.log().skip(*seen).map(|l| l.text.clone()).collect();
    *seen += lines.len();
    lines
}

fn stats() -> NodeEvent {
    NodeEvent::Stats {
        speakers: Vec::new(),
        peers: 1,
        frames_sent: 0,
        frames_dropped: 0,
        listeners_served: 0,
        loss_hint_pct: 0,
        bitrate_bps: 0,
        sending_copies: false,
    }
}

#[test]
fn comings_and_goings_are_announced() {
    const HAL: u8 = 8;
    let mut app = app_as(ANA);
    let mut seen = 0;
    let mut view = room(ANA);
    // Before the room settles, someone appearing in the audience was already here.
    view.audience.push(person(HAL, "hal", Role::Listener));
    app.apply(NodeEvent::State(Box::new(view.clone())));
    assert_eq!(new_notices(&app, &mut seen), Vec::<String>::new());
    for _ in 0..3 {
        app.apply(stats());
    }

    // Gus comes on stage.
    let gus = view
        .audience
        .iter()
        .position(|p| p.key == key(GUS))
        .unwrap();
    view.audience.remove(gus);
    view.stage.push(person(GUS, "gus", Role::Speaker));
    app.apply(NodeEvent::State(Box::new(view.clone())));
    assert_eq!(new_notices(&app, &mut seen), ["gus is on stage"]);

    // Dee (on stage) leaves the room and comes back.
    let dee = view.stage.iter().position(|p| p.key == key(DEE)).unwrap();
    view.stage[dee].present = false;
    app.apply(NodeEvent::State(Box::new(view.clone())));
    assert_eq!(
        new_notices(&app, &mut seen),
        ["dee (on stage) left the room"]
    );
    view.stage[dee].present = true;
    app.apply(NodeEvent::State(Box::new(view.clone())));
    assert_eq!(new_notices(&app, &mut seen), ["dee is back"]);

    // Bo goes back to the audience; hal leaves; ivy joins.
    let bo = view.stage.iter().position(|p| p.key == key(BO)).unwrap();
    view.stage.remove(bo);
    view.audience.push(person(BO, "bo", Role::Listener));
    view.audience.retain(|p| p.key != key(HAL));
    view.audience.push(person(9, "ivy", Role::Listener));
    app.apply(NodeEvent::State(Box::new(view.clone())));
    assert_eq!(
        new_notices(&app, &mut seen),
        ["bo went back to the audience", "ivy joined", "hal left"]
    );

    // A listener is told of the stage, not of the audience.
    let mut listener = app_as(EVE);
    for _ in 0..3 {
        listener.apply(stats());
    }
    let mut seen = listener.log().count();
    let mut view = room(EVE);
    view.audience.push(person(HAL, "hal", Role::Listener));
    view.stage.push(person(HAL + 1, "ivy", Role::Speaker));
    listener.apply(NodeEvent::State(Box::new(view)));
    assert_eq!(new_notices(&listener, &mut seen), ["ivy is on stage"]);
}

#[test]
fn the_join_screen_shows_the_progress_and_how_to_cancel() {
    let mut joining = super::Joining {
        target: "room 3f2a01bc…00e1".into(),
        ..Default::default()
    };
    let draw_it = |j: &super::Joining| {
        let mut terminal = Terminal::new(TestBackend::new(80, 20)).unwrap();
        terminal.draw(|f| super::draw::draw_joining(f, j)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let screen = draw_it(&joining);
    assert!(screen.contains("Joining room 3f2a01bc…00e1"), "{screen}");
    assert!(screen.contains("looking for the room"), "{screen}");
    assert!(screen.contains("Esc, q or Ctrl-C cancels"), "{screen}");
    for i in 0..20 {
        joining.push(format!("step {i}"));
    }
    let screen = draw_it(&joining);
    // The newest lines, a bounded number of them.
    assert!(
        screen.contains("step 19") && screen.contains("step 8") && !screen.contains("step 7"),
        "{screen}"
    );
    assert_eq!(joining.lines.len(), super::Joining::LINES);

    let key = |code, modifiers| KeyEvent::new(code, modifiers);
    assert!(super::keys::cancels_join(key(
        KeyCode::Esc,
        KeyModifiers::NONE
    )));
    assert!(super::keys::cancels_join(key(
        KeyCode::Char('q'),
        KeyModifiers::NONE
    )));
    assert!(super::keys::cancels_join(key(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL
    )));
    assert!(!super::keys::cancels_join(key(
        KeyCode::Char('c'),
        KeyModifiers::NONE
    )));
}

#[test]
fn y_copies_the_ticket_while_it_is_shown() {
    let mut app = app_as(GUS);
    app.ticket = Some("ruang1abc".into());
    assert_eq!(
        ch(&mut app, 'y'),
        None,
        "y does nothing without the ticket panel"
    );
    ch(&mut app, 't');
    assert_eq!(ch(&mut app, 'y'), Some(Action::Copy("ruang1abc".into())));
}

#[test]
fn turning_the_mic_on_while_muted_by_a_moderator_says_nobody_hears() {
    let mut app = app_as(CY);
    app.self_muted = true;
    app.on_result(&Action::SelfMute(false), "turn your mic on", Ok(None));
    let status = app.status.clone().unwrap();
    assert!(status.error, "{status:?}");
    assert!(status.text.contains("a moderator muted you"), "{status:?}");
    assert!(!app.self_muted);
}
