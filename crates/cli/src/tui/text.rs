//! Small text helpers for drawing: names of roles, cleaning peers' text, wrapping.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ruang_proto::room::Role;

/// A role as the screen names it.
pub(super) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Host => "host",
        Role::Moderator => "moderator",
        Role::Speaker => "speaker",
        Role::Listener => "listener",
        Role::Banned => "banned",
    }
}

/// Text from peers without control characters (newlines, escapes, bidirectional overrides)
/// that would break the layout.
pub(super) use crate::text::printable as clean;

/// `parts` with `sep` between each two.
pub(super) fn join(parts: Vec<Span<'static>>, sep: &'static str) -> Vec<Span<'static>> {
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
pub(super) fn wrap(spans: &[Span<'static>], width: usize) -> Vec<Line<'static>> {
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
