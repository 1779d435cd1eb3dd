//! Secret hygiene: tokens live in `SecretString`; any text that leaves the process is scrubbed of token shapes.

use regex::Regex;
use std::sync::OnceLock;

pub use secrecy::{ExposeSecret, SecretString};

const REDACTED: &str = "[REDACTED]";

fn token_shapes() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(concat!(
            r"(?i)(?:",
            r"\bgh[pousr]_[A-Za-z0-9_]{8,}",
            r"|\bgithub_pat_[A-Za-z0-9_]{8,}",
            r"|\b[A-Za-z0-9]{8,}\.atlasv1\.[A-Za-z0-9_\-]{8,}",
            r"|\btot_[A-Za-z0-9_\-]{8,}",
            r"|\borg\.token\s+\S+",
            r"|\b(?:bearer|token)\s+[A-Za-z0-9_\-\.=:/+]{8,}",
            r"|\bsyt_[A-Za-z0-9_\-]{8,}",
            r")"
        ))
        .expect("token regex is valid")
    })
}

/// `text` with every token-shaped substring replaced by `[REDACTED]`.
pub fn redact(text: &str) -> String {
    token_shapes().replace_all(text, REDACTED).into_owned()
}

/// `text` with the given secrets (exact values) and every token shape removed.
pub fn redact_known(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, REDACTED);
    }
    redact(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_every_known_token_shape() {
        for token in [
            "ghp_abcdefghijklmnop1234",
            "github_pat_11AAAAAAA0abcdefghij",
            "abcdefgh12345678.atlasv1.abcdefghijklmnopqrstuv",
            "tot_abcdef123456",
            "org.token 42:s3cr3tvalue",
            "Bearer abcdefghijkl",
            "token abcdefghijklmn",
            "syt_YWRtaW4_abcdefghij",
        ] {
            let out = redact(&format!("failed with {token} here"));
            assert!(!out.contains(token), "{token} survived: {out}");
            assert!(out.contains("[REDACTED]"), "{out}");
        }
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        assert_eq!(redact("user octocat not found"), "user octocat not found");
    }

    #[test]
    fn known_secrets_are_removed_even_without_a_known_shape() {
        assert_eq!(redact_known("x=hunter22 y", &["hunter22"]), "x=[REDACTED] y");
    }
}
