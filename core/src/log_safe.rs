//! Request-derived text made safe for one line of a text log.
//!
//! Owns: escaping control characters (newlines, carriage returns, terminal
//! escapes) in strings that came from a request or a plugin (event types,
//! header names), so that they cannot forge or hide log lines.
//! Never: truncates or changes printable text; JSON logs escape on their own.

use std::fmt;

/// Displays the string with every control character escaped (`\n`, `\r`,
/// `\t`, `\u{1b}`, …) and backslashes doubled, without surrounding quotes.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if !s.chars().any(needs_escape) {
            return f.write_str(s);
        }
        for c in s.chars() {
            if needs_escape(c) {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::Escaped;

    #[test]
    fn control_characters_cannot_forge_a_line() {
        let forged = "payment\n2026-01-01T00:00:00Z  INFO event stored\r\x1b[2K";
        let shown = Escaped(forged).to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r') && !shown.contains('\x1b'));
        assert_eq!(
            shown,
            "payment\\n2026-01-01T00:00:00Z  INFO event stored\\r\\u{1b}[2K"
        );
        assert_eq!(Escaped("payment_created").to_string(), "payment_created");
        assert_eq!(Escaped("a\\nb").to_string(), "a\\\\nb");
        assert_eq!(Escaped("\u{202e}abc").to_string(), "\\u{202e}abc");
    }
}
