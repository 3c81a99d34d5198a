//! Text that came from other peers (room titles, topics, tags, names, chat), made safe to print
//! on a terminal.
//!
//! A peer chooses these strings; printed raw, a title holding escape sequences could clear
//! the screen, set the terminal's title, recolour everything after it, or reorder what follows
//! on the line (bidirectional overrides). [`printable`] keeps the text readable and harmless.

/// `text` with every control character (escapes, newlines, tabs, C1 controls) and every
/// bidirectional override or isolate replaced by a space.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || is_bidi_control(c) {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// The Unicode bidirectional embedding, override and isolate characters (and the marks),
/// which reorder the rest of a line on screen.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_newlines_and_overrides_become_spaces() {
        let hostile = "Fake\x1b[2J\x1b]0;pwned\x07room\n\u{202E}evil\u{9b}31m";
        let clean = printable(hostile);
        assert!(!clean.chars().any(|c| c.is_control()), "{clean:?}");
        assert!(!clean.contains('\u{202E}'));
        assert!(
            clean.starts_with("Fake [2J ]0;pwned room  evil 31m"),
            "{clean:?}"
        );
        // Ordinary text, including other scripts and emoji, is untouched.
        assert_eq!(printable("Kabar pagi — 早上好 🎙"), "Kabar pagi — 早上好 🎙");
    }
}
