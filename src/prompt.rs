//! Confirmation prompts: ask at the terminal when there is one, refuse (pointing at --yes) when not.

use crate::dispatch::{NoAnswer, Prompt};
use crate::interrupt::Interrupt;
use rustyline::config::Behavior;
use rustyline::error::ReadlineError;
use std::io::IsTerminal;

/// Asks at the terminal. Ctrl-C at the question stops the run it was asked for, through `stops`.
#[derive(Default)]
pub struct TerminalPrompt {
    stops: std::sync::OnceLock<Interrupt>,
}

impl TerminalPrompt {
    /// The run that Ctrl-C at a question stops (the process's Ctrl-C flag, made after the prompt).
    pub fn stops(&self, interrupt: Interrupt) {
        let _ = self.stops.set(interrupt);
    }
}

impl Prompt for TerminalPrompt {
    fn confirm(&self, question: &str) -> Result<bool, NoAnswer> {
        if !std::io::stdin().is_terminal() {
            return Err(NoAnswer("no terminal to ask for confirmation; pass --yes to confirm".to_string()));
        }
        // Asked and answered at the terminal itself (never into a redirected standard output), a key at a time,
        // so Ctrl-C answers at once rather than after Enter.
        let config = rustyline::Config::builder().behavior(Behavior::PreferTerm).auto_add_history(false).build();
        let mut editor = rustyline::DefaultEditor::with_config(config)
            .map_err(|e| NoAnswer(format!("could not ask at the terminal: {e}")))?;
        match editor.readline(&format!("{question} [y/N] ")) {
            Ok(answer) => Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")),
            // Ctrl-C is a no, and stops the run as Ctrl-C does anywhere else (the terminal was in raw mode, so
            // the key sent no signal).
            Err(ReadlineError::Interrupted) => {
                if let Some(interrupt) = self.stops.get() {
                    interrupt.raise();
                }
                Ok(false)
            }
            Err(ReadlineError::Eof) => Ok(false),
            Err(e) => Err(NoAnswer(format!("could not read the answer: {e}"))),
        }
    }
}
