//! Text from a workflow database made safe to show on an operator's terminal.
//!
//! Ids, workflow types, reasons, faults and log lines are written by whoever can start or
//! cancel a workflow, and `wf` prints them. A terminal acts on some characters instead of
//! showing them: an escape sequence can clear the screen, retitle the window or rewrite what
//! was printed before, a newline forges a row of a table, and a bidi override shows the text
//! after it reversed. [`printable`] writes each of those as a visible escape; every other
//! character, and the JSON output for scripts, is left exactly as stored.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether a terminal could act on `c` rather than show it: the C0 controls (newline and tab
/// included), DEL, the C1 controls (U+0080 to U+009F, CSI among them), the bidi controls
/// (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069), and the line and paragraph
/// separators U+2028 and U+2029.
fn is_active(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `text` with every character a terminal could act on written as an escape: `\n`, `\r`,
/// `\t`, `\x1b` for the other ASCII controls and DEL, `\u{9b}` or `\u{202e}` beyond ASCII.
/// Borrowed unchanged when there is none (the usual case).
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_active) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            c if c.is_ascii() && is_active(c) => {
                let _ = write!(shown, "\\x{:02x}", u32::from(c));
            }
            c if is_active(c) => {
                let _ = write!(shown, "\\u{{{:x}}}", u32::from(c));
            }
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

/// Makes every string in `value` (object keys included) [`printable`].
pub(crate) fn printable_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(text) => {
            if let Cow::Owned(shown) = printable(text) {
                *text = shown;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(printable_json),
        Value::Object(fields) => {
            let taken = std::mem::take(fields);
            for (key, mut field) in taken {
                printable_json(&mut field);
                fields.insert(printable(&key).into_owned(), field);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_shown_as_escapes() {
        assert_eq!(
            printable("a\u{1b}[2J\nb\r\tc\u{7}\u{7f}"),
            r"a\x1b[2J\nb\r\tc\x07\x7f"
        );
        assert_eq!(printable("csi\u{9b}31m"), r"csi\u{9b}31m");
        assert_eq!(
            printable("invoice\u{202e}fdp.exe \u{2066}x\u{2069}\u{2028}"),
            r"invoice\u{202e}fdp.exe \u{2066}x\u{2069}\u{2028}"
        );
    }

    #[test]
    fn other_text_is_left_exactly_and_borrowed() {
        for text in ["order-17", "größe ✓ 東京 🚀", "a\\x1b is already text", ""] {
            assert!(matches!(printable(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn every_string_of_a_json_value_is_made_printable() {
        let mut value = serde_json::json!({
            "id\n": ["x\u{1b}", 3, null, {"deep": "\u{202e}"}],
            "plain": "ok",
        });
        printable_json(&mut value);
        assert_eq!(
            value,
            serde_json::json!({
                "id\\n": ["x\\x1b", 3, null, {"deep": "\\u{202e}"}],
                "plain": "ok",
            })
        );
    }
}
