//! Script errors for people: `file:line:col: message`, the offending line, and a caret under the spot.

use super::types::{describe_error, error_position};
use rhai::EvalAltResult;

pub fn render(err: &EvalAltResult, source: &str, name: &str) -> String {
    let message = describe_error(err);
    let pos = error_position(err);
    let (Some(line), col) = (pos.line(), pos.position().unwrap_or(1)) else {
        return format!("{name}: error: {message}");
    };
    let text = source.lines().nth(line - 1).unwrap_or("");
    let gutter = format!("{line} | ");
    format!(
        "{name}:{line}:{col}: error: {message}\n{gutter}{text}\n{}^",
        " ".repeat(gutter.len() + col.saturating_sub(1))
    )
}
