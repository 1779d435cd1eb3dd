//! Script errors for people: `file:line:col: message`, the offending line, and a caret under the spot.

use super::types::{describe_error, error_position};
use rhai::EvalAltResult;

/// Characters of the offending line shown around the error: a generated script can have a line of megabytes.
const SHOWN: usize = 120;

pub fn render(err: &EvalAltResult, source: &str, name: &str) -> String {
    let message = describe_error(err);
    let pos = error_position(err, name);
    let (Some(line), col) = (pos.line(), pos.position().unwrap_or(1)) else {
        return format!("{name}: error: {message}");
    };
    let text = source.lines().nth(line - 1).unwrap_or("");
    let (shown, caret) = window(text, col);
    let gutter = format!("{line} | ");
    format!("{name}:{line}:{col}: error: {message}\n{gutter}{shown}\n{}^", " ".repeat(gutter.len() + caret - 1))
}

/// At most `SHOWN` characters of `text` around column `col` (1-based), with `…` where it was cut, and the
/// column of `col` in what is shown.
fn window(text: &str, col: usize) -> (String, usize) {
    let len = text.chars().count();
    if len <= SHOWN {
        return (text.to_string(), col.max(1));
    }
    let start = col.saturating_sub(SHOWN / 2).min(len - SHOWN);
    let body: String = text.chars().skip(start).take(SHOWN).collect();
    let before = if start > 0 { "…" } else { "" };
    let after = if start + SHOWN < len { "…" } else { "" };
    (format!("{before}{body}{after}"), col.saturating_sub(start).max(1) + before.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_shown_around_the_error_with_the_caret_in_place() {
        let line = format!("{}X{}", "a".repeat(5_000), "b".repeat(5_000));
        let (shown, caret) = window(&line, 5_001);
        assert!(shown.starts_with('…') && shown.ends_with('…') && shown.chars().count() == SHOWN + 2, "{shown}");
        assert_eq!(shown.chars().nth(caret - 1), Some('X'));
        let (shown, caret) = window("let x = ;", 9);
        assert_eq!((shown.as_str(), caret), ("let x = ;", 9));
        let (shown, caret) = window(&line, 3);
        assert!(shown.starts_with("aaa") && !shown.starts_with('…') && caret == 3);
    }
}
