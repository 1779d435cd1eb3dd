//! The rustyline helper: completion of functions, variables, methods and profile names; multi-line input.

use super::input::{is_incomplete, slot, Slot};
use crate::script::docs;
use rustyline::completion::{Completer, Pair};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper, Highlighter, Hinter};
use std::cell::RefCell;
use std::rc::Rc;

pub const COMMANDS: &[(&str, &str)] = &[
    (":help", "list every function, or `:help NAME` for one"),
    (":profiles", "the configured profiles"),
    (":vars", "the variables defined so far"),
    (":quit", "leave (Ctrl-D does too)"),
];

const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "for", "in", "while", "loop", "break", "continue", "return", "import", "try",
    "catch", "throw", "true", "false",
];

/// Methods Rhai itself gives arrays, maps and strings, worth offering after a dot.
const BUILTIN_METHODS: &[&str] = &[
    "len", "filter", "map", "reduce", "sort", "contains", "keys", "values", "to_upper", "to_lower", "split", "trim",
    "push", "index_of",
];

#[derive(Helper, Highlighter, Hinter)]
pub struct StewardHelper {
    pub profiles: Vec<String>,
    pub variables: Rc<RefCell<Vec<String>>>,
}

impl StewardHelper {
    fn candidates(&self, slot: &Slot<'_>) -> Vec<String> {
        let (word, pool): (&str, Vec<String>) = match slot {
            Slot::Method(w) => (
                w,
                docs::all()
                    .filter(|d| d.method)
                    .map(|d| d.name.to_string())
                    .chain(BUILTIN_METHODS.iter().map(|m| m.to_string()))
                    .collect(),
            ),
            Slot::Profile(w) => (w, self.profiles.clone()),
            Slot::Command(w) => (w, COMMANDS.iter().map(|(c, _)| c.to_string()).collect()),
            Slot::Name(w) => (
                w,
                docs::all()
                    .filter(|d| !d.method)
                    .map(|d| d.name.to_string())
                    .chain(self.variables.borrow().iter().cloned())
                    .chain(KEYWORDS.iter().map(|k| k.to_string()))
                    .collect(),
            ),
        };
        let mut out: Vec<String> = pool.into_iter().filter(|c| c.starts_with(word)).collect();
        out.sort();
        out.dedup();
        out
    }
}

impl Completer for StewardHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, slot) = slot(line, pos);
        let pairs = self.candidates(&slot).into_iter().map(|c| Pair { display: c.clone(), replacement: c }).collect();
        Ok((start, pairs))
    }
}

impl Validator for StewardHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        if !input.trim_start().starts_with(':') && is_incomplete(input) {
            Ok(ValidationResult::Incomplete)
        } else {
            Ok(ValidationResult::Valid(None))
        }
    }
}
