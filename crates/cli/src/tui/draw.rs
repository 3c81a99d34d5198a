//! Rendering: [`draw`] paints an [`App`] into a ratatui frame. It reads the app and nothing
//! else, so a `TestBackend` shows exactly what a terminal would.
//!
//! ```text
//! ┌ ruang · title ───────────────────────────────────────────────────────┐
//! │ topic · #tags · language                                            │
//! │ you: ana (speaker) · mic on                                         │
//! └─────────────────────────────────────────────────────────────────────┘
//! ┌ Stage (3) ───────────────┐┌ Chat ───────────────────────────────────┐
//! │◉ ana (you)  host talking ││ bo: hello                               │
//! ├ Raised hands (1) ────────┤│ * cy was banned                         │
//! ├ Audience (4) ────────────┤└─────────────────────────────────────────┘
//! │dee  hand                 │┌ say something ──────────────────────────┐
//! └──────────────────────────┘└─────────────────────────────────────────┘
//! peers 3 · jitter buffer 60 ms · loss 0.4% (bo 60 ms 0.2%)
//! done: invite dee to speak
//! h raise hand  Enter/c chat  q leave  ...
//! ```

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph};
use ruang_node::Person;
use ruang_proto::room::Role;

use super::app::{App, InputMode, LineKind};

/// Most stage rows given room before the raised hands and the audience get theirs.
const STAGE_ROWS_MAX: usize = 12;
/// Most raised-hand rows shown before the list scrolls.
const HAND_ROWS_MAX: usize = 6;
/// Most rows the key help may take (it is cut on very narrow terminals).
const HELP_ROWS_MAX: usize = 4;

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
        me.push(if app.self_muted {
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
            .map(|k| clean(&app.name_of(k)))
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
    let talking = app.talking.contains(&p.key) && !muted;
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
        .is_some_and(|r| r.invited.contains(&p.key))
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
        InputMode::Normal => {
            let text = "press Enter or c to chat".dim();
            frame.render_widget(Paragraph::new(text).block(Block::bordered()), area);
        }
    }
}

/// Peers, jitter-buffer delay and loss, overall and per speaker.
fn health_line(app: &App) -> Line<'static> {
    let h = &app.health;
    let mut spans = vec![format!("peers {}", h.peers).into()];
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
    if h.speakers.is_empty() {
        spans.push(" · audio: no remote speaker now".dim());
        return Line::from(spans);
    }
    let jitter = h.speakers.iter().map(|s| s.jitter_ms).max().unwrap_or(0);
    let lost: u64 = h.speakers.iter().map(|s| s.lost).sum();
    let received: u64 = h.speakers.iter().map(|s| s.received).sum();
    let loss = loss_percent(lost, received);
    let loss_style = if loss >= 5.0 {
        Style::new().fg(Color::Red)
    } else {
        Style::new()
    };
    spans.push(format!(" · jitter buffer {jitter} ms · ").into());
    spans.push(Span::styled(format!("loss {loss:.1}%"), loss_style));
    let each: Vec<String> = h
        .speakers
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
        InputMode::Normal => {
            let role = app.my_role();
            if app.on_stage() {
                keys.push(("m", if app.self_muted { "mic on" } else { "mic off" }));
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
            keys.extend([("Enter/c", "chat"), ("PgUp/PgDn", "scroll"), ("q", "leave")]);
            if app.is_moderator() {
                keys.extend([
                    ("↑↓/jk", "select"),
                    ("i", "invite"),
                    ("x", "to audience"),
                    ("u", "mute/unmute"),
                    ("K", "kick"),
                    ("B", "ban"),
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
fn help_rows(app: &App, width: u16) -> Vec<Line<'static>> {
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

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Host => "host",
        Role::Moderator => "moderator",
        Role::Speaker => "speaker",
        Role::Listener => "listener",
        Role::Banned => "banned",
    }
}

/// Text from peers without control characters (newlines, escapes) that would break the layout.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn join(parts: Vec<Span<'static>>, sep: &'static str) -> Vec<Span<'static>> {
    let mut out = Vec::with_capacity(parts.len() * 2);
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push(Span::raw(sep));
        }
        out.push(part);
    }
    out
}

/// Breaks styled text into rows of at most `width` columns, after a space where it can and
/// inside a word only when the word is wider than a row.
fn wrap(spans: &[Span<'static>], width: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    // Every character with its style and width; rows are cut from this by index.
    let mut cells: Vec<(char, Style, usize)> = Vec::new();
    for span in spans {
        for c in span.content.chars() {
            let mut buf = [0u8; 4];
            cells.push((c, span.style, Span::raw(&*c.encode_utf8(&mut buf)).width()));
        }
    }
    let mut rows = Vec::new();
    let (mut start, mut used, mut last_break) = (0, 0, None);
    let mut i = 0;
    while i < cells.len() {
        let (c, _, w) = cells[i];
        if used + w > width && i > start {
            let cut = last_break.filter(|&b| b > start).unwrap_or(i);
            rows.push(row_of(&cells[start..cut]));
            (start, used, last_break) = (cut, 0, None);
            i = cut;
            continue;
        }
        used += w;
        i += 1;
        if c == ' ' {
            last_break = Some(i);
        }
    }
    if start < cells.len() || rows.is_empty() {
        rows.push(row_of(&cells[start..]));
    }
    rows
}

/// One row from characters, joining neighbours of the same style into one span.
fn row_of(cells: &[(char, Style, usize)]) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut text = String::new();
    let mut style = None;
    for &(c, s, _) in cells {
        if style.is_some_and(|current| current != s) {
            spans.push(Span::styled(
                std::mem::take(&mut text),
                style.unwrap_or_default(),
            ));
        }
        style = Some(s);
        text.push(c);
    }
    if !text.is_empty() {
        spans.push(Span::styled(text, style.unwrap_or_default()));
    }
    Line::from(spans)
}
