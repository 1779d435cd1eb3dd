//! This invocation as the audit log names it: who acts, on which host, and the command line (words a shell
//! reads back as they were typed, secret `--arg` values left out).

use crate::audit::RunInfo;

/// Who is acting, where, and how steward was invoked: the `runs` row of this invocation.
pub(crate) fn run_info() -> RunInfo {
    let args: Vec<String> = std::env::args().collect();
    RunInfo {
        os_user: whoami::username(),
        host: whoami::fallible::hostname().unwrap_or_default(),
        command: crate::redact::redact(&command_line(&args)),
        script_path: None,
        script_sha256: None,
        resumed_from: None,
        default_profile: None,
        started_at: Some(crate::audit::store::now()),
    }
}

/// The command line as the audit log keeps it: `--arg` values whose name looks secret are left out.
fn command_line(args: &[String]) -> String {
    let mut out = Vec::with_capacity(args.len());
    let mut after_arg = false;
    for a in args {
        let (flag, pair) = match a.strip_prefix("--arg=") {
            Some(pair) => ("--arg=", pair),
            None if after_arg => ("", a.as_str()),
            None => ("", ""),
        };
        after_arg = a == "--arg";
        match pair.split_once('=') {
            Some((key, _)) if crate::redact::looks_secret(key) => out.push(format!("{flag}{key}=[REDACTED]")),
            _ => out.push(a.clone()),
        }
    }
    out.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ")
}

/// A word as a POSIX shell reads it back: as is when plain, else in single quotes.
pub(crate) fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+#".contains(c));
    match plain {
        true => word.to_string(),
        false => format!("'{}'", word.replace('\'', "'\\''")),
    }
}

/// The words of a command line `command_line` wrote (single quotes as a shell reads them).
pub(crate) fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut in_word) = (Vec::new(), String::new(), false, false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            // Outside quotes a backslash takes the next character as it is (`'\''` is a quote in a quoted word).
            '\\' if !quoted => {
                word.extend(chars.next());
                in_word = true;
            }
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            ' ' if !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_command_lines_read_back_word_for_word_and_keep_no_secret_argument() {
        let args: Vec<String> = [
            "steward",
            "run",
            "job.rhai",
            "--arg",
            "reason=left the company",
            "--arg=note=it's done",
            "--arg",
            "password=hunter2hunter2",
            "--arg",
            "csv=a b.csv",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let line = command_line(&args);
        assert!(!line.contains("hunter2"), "{line}");
        let words = shell_words(&line);
        assert_eq!(words[4], "reason=left the company");
        assert_eq!(words[5], "--arg=note=it's done");
        assert_eq!(words[7], "password=[REDACTED]");
        assert_eq!(words[9], "csv=a b.csv");
        assert_eq!(words.len(), args.len());
    }
}
