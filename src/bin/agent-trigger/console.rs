//! What the server prints for the person who started it. Anything a caller sent (a demo
//! delivery's action or body) may hold terminal escapes, so every printed line has its control
//! characters shown escaped: a payload cannot repaint, retitle or clear the operator's terminal.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character but tab written as an escape (`\u{1b}`).
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        if needs_escape(character) {
            let _ = write!(shown, "{}", character.escape_unicode());
        } else {
            shown.push(character);
        }
    }
    Cow::Owned(shown)
}

fn needs_escape(character: char) -> bool {
    character.is_control() && character != '\t'
}

/// Prints one line on stdout, made [`printable`]. Unlike `println!`, a closed stdout (the
/// server piped into `head`, say) does not end the process.
pub fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{}", printable(line));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_are_shown_not_sent() {
        assert_eq!(printable("plain\ttext é"), "plain\ttext é");
        assert_eq!(
            printable("\u{1b}]0;pwned\u{7}\u{1b}[2J\r\nnext\u{9b}"),
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{d}\\u{a}next\\u{9b}"
        );
    }
}
