//! Rendering: [`draw`] paints an [`App`] into a ratatui frame. It reads the app and nothing
//! else, so a `TestBackend` shows exactly what a terminal would.
//!
//! ```text
//! ┌ ruang · Morning news ─────────────────────────────────────────────┐
//! │what happened overnight · #news · en                               │
//! │you: bo (moderator) · mic on                                       │
//! └───────────────────────────────────────────────────────────────────┘
//! ┌ Stage (4) ──────────────────────┐┌ Chat ──────────────────────────┐
//! │○ ana l3b7-6v2u host             ││bo: hello everyone              │
//! │○ bo (you) pygd-7rjh mod         ││* gus joined                    │
//! │○ cy fiop-qgi7 speaker muted     ││! audio: device gone            │
//! │◉ dee skua-4ad3 speaker talking  ││                                │
//! └─────────────────────────────────┘│                                │
//! ┌ Raised hands (2) ───────────────┐│                                │
//! │1. eve 4dq5-4m3h                 ││                                │
//! │2. fay ihtu-njgy                 │└────────────────────────────────┘
//! └─────────────────────────────────┘┌────────────────────────────────┐
//! ┌ Audience (3) ───────────────────┐│press Enter or c to chat        │
//! │eve 4dq5-4m3h hand               │└────────────────────────────────┘
//! peers 6 · sent 1200 to 5 listeners · jitter buffer 60 ms · loss 0.3% (dee 60 ms 0.5%)
//! done: invite eve to speak
//!  m  mic off   s  step down   Enter/c  chat   t  ticket   PgUp/PgDn  scroll   q  leave
//!  ↑↓/jk  select   i  invite   x  to audience   u  mute/unmute   K  kick   B  ban
//! ```

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph};
use ruang_node::Person;
use ruang_proto::room::Role;

use super::app::{App, InputMode, LineKind};
use super::bars::{health_line, help_rows};
use super::text::{clean, join, role_name, wrap};

/// Most stage rows given room before the raised hands and the audience get theirs.
const STAGE_ROWS_MAX: usize = 12;
/// Most raised-hand rows shown before the list scrolls.
const HAND_ROWS_MAX: usize = 6;

/// Draws the whole screen for `app`.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let help = help_rows(app, frame.area().width);
    let [header, body, health, status, help_area] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(6),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(help.len() as u16),
    ])
    .areas(frame.area());
    draw_header(frame, app, header);
    let [people, talk] =
        Layout::horizontal([Constraint::Percentage(42), Constraint::Percentage(58)]).areas(body);
    draw_people(frame, app, people);
    let [chat, input] = Layout::vertical([Constraint::Min(3), Constraint::Length(3)]).areas(talk);
    draw_chat(frame, app, chat);
    draw_input(frame, app, input);
    if app.show_ticket {
        draw_ticket(frame, app, body);
    }
    if let InputMode::Banned(row) = app.mode {
        draw_banned(frame, app, body, row);
    } else if app.show_help {
        draw_help(frame, body);
    }
    frame.render_widget(Paragraph::new(health_line(app)), health);
    if let Some(s) = &app.status {
        let style = if s.error {
            Style::new().fg(Color::Red)
        } else {
            Style::new().fg(Color::Green)
        };
        frame.render_widget(Paragraph::new(Line::styled(clean(&s.text), style)), status);
    }
    frame.render_widget(Paragraph::new(help), help_area);
}

fn draw_header(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let Some(room) = &app.room else {
        let block = Block::bordered().title(" ruang ");
        frame.render_widget(
            Paragraph::new("waiting for the room's state…").block(block),
            area,
        );
        return;
    };
    let title = Line::from(vec![
        " ruang · ".into(),
        clean(&room.title).bold(),
        " ".into(),
    ]);
    let mut about = Vec::new();
    if !room.topic.is_empty() {
        about.push(Span::raw(clean(&room.topic)));
    }
    if !room.tags.is_empty() {
        let tags: Vec<String> = room.tags.iter().map(|t| format!("#{}", clean(t))).collect();
        about.push(tags.join(" ").dim());
    }
    if !room.language.is_empty() {
        about.push(clean(&room.language).dim());
    }
    if room.private {
        about.push("private".dim());
    }
    let about = Line::from(join(about, " · "));
    let mut me = vec![
        "you: ".into(),
        clean(&app.name_of(&app.me)).bold(),
        format!(" ({})", role_name(room.my_role)).bold(),
    ];
    if app.on_stage() {
        me.push(" · ".into());
        me.push(if app.muted_by_moderator() {
            "muted by a moderator".red().bold()
        } else if app.no_input.is_some() {
            "no microphone".yellow()
        } else if app.self_muted {
            "mic off".red()
        } else {
            "mic on".green()
        });
    }
    if app.hand_raised() {
        me.push(" · ".into());
        me.push("hand raised".yellow());
    }
    if app.invited() {
        me.push(" · ".into());
        me.push("invited to speak: press a to go on stage".yellow().bold());
    }
    if !room.recording.is_empty() {
        let who: Vec<String> = room
            .recording
            .iter()
            .map(|p| clean(&app.name_of(&p.key)))
            .collect();
        me.push(" · ".into());
        me.push(format!("REC by {}", who.join(", ")).red().bold());
    }
    let block = Block::bordered().title(title);
    frame.render_widget(
        Paragraph::new(vec![about, Line::from(me)]).block(block),
        area,
    );
}

/// The ticket over the body, cut into rows of the full width with no side borders, so a
/// mouse selection copies only the ticket (the spaces and line breaks a copy picks up are
/// ignored when the ticket is parsed).
fn draw_ticket(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let Some(ticket) = &app.ticket else { return };
    let width = usize::from(area.width).max(1);
    let mut lines = vec![
        "Others join with: ruang join <ticket>".bold().into(),
        "y copies it to your clipboard (needs OSC 52; in tmux: set -g set-clipboard on)"
            .dim()
            .into(),
        "or paste every row after `ruang join -`, or inside quotes: ruang join '…'"
            .dim()
            .into(),
        Line::default(),
    ];
    let chars: Vec<char> = ticket.chars().collect();
    lines.extend(
        chars
            .chunks(width)
            .map(|row| Line::from(row.iter().collect::<String>())),
    );
    let height = (lines.len() as u16 + 2).min(area.height);
    let panel = Rect { height, ..area };
    let block = Block::new()
        .borders(Borders::TOP | Borders::BOTTOM)
        .title(" Ticket (t or Esc closes) ");
    frame.render_widget(Clear, panel);
    frame.render_widget(Paragraph::new(lines).block(block), panel);
}

/// Every key, with who may use it: the `?` panel. A row without a key is a heading.
const HELP: &[(&str, &str)] = &[
    ("", "Everyone"),
    ("h", "raise or lower your hand (in the audience)"),
    ("a", "accept an invitation to speak"),
    ("m", "turn your microphone off or on (on stage)"),
    ("s", "step down to the audience"),
    ("Enter / c", "write a chat line (Enter sends, Esc cancels)"),
    ("t", "show the ticket others join with (y there copies it)"),
    ("PgUp / PgDn / End", "scroll the chat"),
    ("q", "leave (the host is asked what becomes of the room)"),
    (
        "Ctrl-C",
        "leave at once (a host's room goes to the next in line)",
    ),
    ("", "Moderators: select a person with ↑/↓ (or j/k), then"),
    ("i", "invite them to speak"),
    ("x", "move them to the audience"),
    ("u", "mute or unmute them for everyone"),
    ("K", "kick them (they may come back after a while)"),
    ("B", "ban them"),
    ("b", "the banned: select one and press u to unban"),
    ("", "Host"),
    ("p / d", "promote to moderator / demote"),
    ("E", "end the room for everyone"),
];

fn draw_help(frame: &mut Frame<'_>, area: Rect) {
    let lines: Vec<Line<'_>> = HELP
        .iter()
        .map(|(key, what)| {
            if key.is_empty() {
                Line::from(what.bold())
            } else {
                Line::from(vec![format!("  {key:<18}").yellow(), Span::raw(*what)])
            }
        })
        .collect();
    let height = (lines.len() as u16 + 2).min(area.height);
    let panel = Rect { height, ..area };
    let block = Block::bordered().title(" Keys (? or Esc closes) ");
    frame.render_widget(Clear, panel);
    frame.render_widget(Paragraph::new(lines).block(block), panel);
}

fn draw_banned(frame: &mut Frame<'_>, app: &App, area: Rect, row: usize) {
    let banned = app.banned();
    let mut lines: Vec<Line<'_>> = vec!["Banned from this room:".bold().into()];
    for (i, person) in banned.iter().enumerate() {
        let key = &person.key;
        let name = if person.name.is_empty() {
            app.name_of(key)
        } else {
            person.name.clone()
        };
        let text = format!(
            "{} {}  {}  {}…",
            if i == row { ">" } else { " " },
            clean(&name),
            clean(&person.fingerprint),
            &key.to_hex()[..16]
        );
        lines.push(if i == row {
            Line::from(text.reversed())
        } else {
            Line::from(text)
        });
    }
    let height = (lines.len() as u16 + 2).min(area.height);
    let panel = Rect { height, ..area };
    let block = Block::bordered().title(" Banned (↑↓ select, u unbans, Esc closes) ");
    frame.render_widget(Clear, panel);
    frame.render_widget(Paragraph::new(lines).block(block), panel);
}

fn draw_people(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let Some(room) = &app.room else { return };
    let stage_rows = room.stage.len().clamp(1, STAGE_ROWS_MAX) as u16 + 2;
    let hand_rows = room.hands.len().clamp(1, HAND_ROWS_MAX) as u16 + 2;
    let [stage, hands, audience] = Layout::vertical([
        Constraint::Length(stage_rows),
        Constraint::Length(hand_rows),
        Constraint::Min(3),
    ])
    .areas(area);

    let items = room
        .stage
        .iter()
        .map(|p| ListItem::new(stage_line(app, p)))
        .collect();
    let title = format!(" Stage ({}) ", room.stage.len());
    draw_list(frame, app, stage, title, items, &room.stage);

    let items = room
        .hands
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut spans = vec![format!("{}. ", i + 1).yellow()];
            spans.extend(person_spans(app, p));
            ListItem::new(Line::from(spans))
        })
        .collect();
    let title = format!(" Raised hands ({}) ", room.hands.len());
    draw_list(frame, app, hands, title, items, &room.hands);

    let items = room
        .audience
        .iter()
        .map(|p| {
            let mut spans = person_spans(app, p);
            if room.hands.iter().any(|h| h.key == p.key) {
                spans.push(" hand".yellow());
            }
            ListItem::new(Line::from(spans))
        })
        .collect();
    let title = format!(" Audience ({}) ", room.audience.len());
    draw_list(frame, app, audience, title, items, &room.audience);
}

fn draw_list(
    frame: &mut Frame<'_>,
    app: &App,
    area: Rect,
    title: String,
    items: Vec<ListItem<'static>>,
    people: &[Person],
) {
    let selected = app
        .selected
        .as_ref()
        .filter(|_| app.is_moderator())
        .and_then(|key| people.iter().position(|p| &p.key == key));
    let list = List::new(items)
        .block(Block::bordered().title(title))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    frame.render_stateful_widget(
        list,
        area,
        &mut ListState::default().with_selected(selected),
    );
}

/// A stage row: talking indicator, name, role, then marks.
fn stage_line(app: &App, p: &Person) -> Line<'static> {
    let me = p.key == app.me;
    let muted = p.muted || (me && app.self_muted);
    // Someone away (no presence heartbeat lately) is not heard talking, whatever the last
    // `speaking` event said.
    let talking = app.talking.contains(&p.key) && !muted && p.present;
    let mut spans = vec![if talking {
        "◉ ".green().bold()
    } else {
        "○ ".dim()
    }];
    spans.extend(person_spans(app, p));
    spans.push(" ".into());
    spans.push(match p.role {
        Role::Host => "host".magenta().bold(),
        Role::Moderator => "mod".cyan().bold(),
        other => role_name(other).into(),
    });
    if talking {
        spans.push(" talking".green().bold());
    }
    if p.muted {
        spans.push(" muted".red().bold());
    }
    if me && app.self_muted {
        spans.push(" mic off".red());
    }
    Line::from(spans)
}

/// Name (bold for oneself), "(you)", fingerprint, and presence/invitation marks.
fn person_spans(app: &App, p: &Person) -> Vec<Span<'static>> {
    let me = p.key == app.me;
    let name = if p.name.is_empty() {
        clean(&p.fingerprint)
    } else {
        clean(&p.name)
    };
    let mut spans = vec![if me { name.bold() } else { name.into() }];
    if me {
        spans.push(" (you)".bold());
    }
    if !p.name.is_empty() {
        spans.push(format!(" {}", clean(&p.fingerprint)).dim());
    }
    if app
        .room
        .as_ref()
        .is_some_and(|r| r.invited.iter().any(|i| i.key == p.key))
    {
        spans.push(" invited".yellow());
    }
    if !p.present {
        spans.push(" away".dim());
    }
    spans
}

fn draw_chat(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let block = Block::bordered().title(if app.scroll > 0 {
        format!(" Chat (scrolled up {}; End: newest) ", app.scroll)
    } else {
        " Chat ".to_string()
    });
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let (width, height) = (inner.width as usize, inner.height as usize);
    if width == 0 || height == 0 {
        return;
    }
    // Wrap from the newest line back until the window (scrolled up by `scroll`) is full.
    let want = height + app.scroll;
    let mut rows: Vec<Line<'static>> = Vec::new();
    for line in app.log().rev() {
        let spans = match line.kind {
            LineKind::Chat => {
                let name = clean(&line.name);
                vec![
                    if line.mine {
                        name.green().bold()
                    } else {
                        name.cyan().bold()
                    },
                    ": ".into(),
                    clean(&line.text).into(),
                ]
            }
            LineKind::Reaction => {
                vec![
                    clean(&line.name).cyan(),
                    " reacted ".dim(),
                    clean(&line.text).into(),
                ]
            }
            LineKind::Notice => vec![format!("* {}", clean(&line.text)).yellow()],
            LineKind::Error => vec![format!("! {}", clean(&line.text)).red()],
        };
        let mut wrapped = wrap(&spans, width);
        wrapped.reverse();
        rows.extend(wrapped);
        if rows.len() >= want {
            break;
        }
    }
    let skip = app.scroll.min(rows.len());
    let mut window: Vec<Line<'static>> = rows.into_iter().skip(skip).take(height).collect();
    window.reverse();
    frame.render_widget(Paragraph::new(window), inner);
}

fn draw_input(frame: &mut Frame<'_>, app: &App, area: Rect) {
    match &app.mode {
        InputMode::Chat(text) => {
            let block = Block::bordered().title(" say something (Enter sends, Esc cancels) ");
            let inner = block.inner(area);
            // Show the end of a line longer than the box, where the cursor is.
            let room = (inner.width as usize).saturating_sub(3);
            let chars: Vec<char> = text.chars().collect();
            let shown: String = chars[chars.len().saturating_sub(room)..].iter().collect();
            let line = Line::from(vec!["> ".green().bold(), Span::raw(clean(&shown))]);
            let cursor_x = inner.x.saturating_add(line.width() as u16);
            frame.render_widget(Paragraph::new(line).block(block), area);
            if inner.width > 0 && inner.height > 0 {
                let x = cursor_x.min(inner.right().saturating_sub(1));
                frame.set_cursor_position((x, inner.y));
            }
        }
        InputMode::ConfirmEnd => {
            let block = Block::bordered().title(" end the room ");
            let text = "End the room for everyone? y: yes, any other key: no"
                .red()
                .bold();
            frame.render_widget(Paragraph::new(text).block(block), area);
        }
        InputMode::Banned(_) => {
            let text = "u or Enter unbans the selected person".dim();
            frame.render_widget(Paragraph::new(text).block(Block::bordered()), area);
        }
        InputMode::ConfirmLeave => {
            let block = Block::bordered().title(" leave the room you host ");
            let text = match app.heir() {
                Some((_, name)) => format!(
                    "y: hand the room to {} and leave · e: end it for everyone · other keys: stay",
                    clean(&name)
                ),
                None => "Nobody here can take the room. y: end it for everyone and leave · \
                         l: leave it without a host · other keys: stay"
                    .to_string(),
            };
            frame.render_widget(Paragraph::new(text.yellow().bold()).block(block), area);
        }
        InputMode::Normal => {
            let text = "press Enter or c to chat".dim();
            frame.render_widget(Paragraph::new(text).block(Block::bordered()), area);
        }
    }
}

/// What the screen shows while a join runs: what is joined and how it is going.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Joining {
    /// What is being joined ("room 3f2a…e1", "the room of ticket ruang1…").
    pub target: String,
    /// The join's progress lines, oldest first, at most [`Joining::LINES`].
    pub lines: std::collections::VecDeque<String>,
}

impl Joining {
    /// Progress lines kept; older ones scroll away.
    pub const LINES: usize = 12;

    /// Adds a progress line.
    pub fn push(&mut self, line: String) {
        if self.lines.len() == Joining::LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

/// Draws the screen shown while joining: a panel with the target and the progress so far.
pub fn draw_joining(frame: &mut Frame<'_>, joining: &Joining) {
    let area = frame.area();
    let mut lines: Vec<Line<'_>> = vec![
        Line::from(vec!["Joining ".into(), clean(&joining.target).bold()]),
        Line::default(),
    ];
    if joining.lines.is_empty() {
        lines.push("looking for the room…".dim().into());
    }
    for l in &joining.lines {
        lines.push(Line::from(format!("· {}", clean(l))));
    }
    lines.push(Line::default());
    lines.push("Esc, q or Ctrl-C cancels".dim().into());
    let width = area.width.min(90);
    let height = (lines.len() as u16 + 2).min(area.height);
    let panel = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let block = Block::bordered().title(" ruang ");
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(ratatui::widgets::Wrap { trim: false }),
        panel,
    );
}
