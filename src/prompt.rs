//! Confirmation prompts: ask at the terminal when there is one, refuse (pointing at --yes) when not.

use crate::dispatch::{NoAnswer, Prompt};
use std::io::{BufRead, IsTerminal, Write};

pub struct TerminalPrompt;

impl Prompt for TerminalPrompt {
    fn confirm(&self, question: &str) -> Result<bool, NoAnswer> {
        if !std::io::stdin().is_terminal() {
            return Err(NoAnswer("no terminal to ask for confirmation; pass --yes to confirm".to_string()));
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{question} [y/N] ");
        let _ = err.flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| NoAnswer(format!("could not read the answer: {e}")))?;
        Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
    }
}
