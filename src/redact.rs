//! Secret hygiene: tokens live in `SecretString`; any text that leaves the process is scrubbed of every secret
//! this process loaded, by its exact value and its URL- and base64-encoded forms (whatever its shape), and of
//! anything shaped like a known kind of token.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use parking_lot::RwLock;
use regex::Regex;
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

pub use secrecy::{ExposeSecret, SecretString};

const REDACTED: &str = "[REDACTED]";

/// Shorter values are too likely to be ordinary words to scrub everywhere.
const MIN_SECRET_LEN: usize = 6;

/// Shapes any service's credential takes in text: after an auth scheme word.
const GENERIC_SHAPES: &[&str] = &[r"\b(?:bearer|token)\s+[A-Za-z0-9_\-\.=:/+]{8,}"];

/// The token shapes services declare (`ClientShape::token_shapes`), added with `add_token_shapes`, and one
/// matcher for them all with the generic ones.
struct Shapes {
    patterns: Vec<String>,
    /// Shared, not cloned: a cloned `Regex` starts with no cache of its own and builds its automaton again on
    /// every search (a fifth of a bulk job's CPU went to that).
    matcher: Arc<Regex>,
}

fn shapes() -> &'static RwLock<Shapes> {
    static SHAPES: OnceLock<RwLock<Shapes>> = OnceLock::new();
    SHAPES.get_or_init(|| {
        let patterns: Vec<String> = GENERIC_SHAPES.iter().map(|p| p.to_string()).collect();
        let matcher = shape_matcher(&patterns).expect("the generic token shapes are valid");
        RwLock::new(Shapes { patterns, matcher })
    })
}

fn shape_matcher(patterns: &[String]) -> Result<Arc<Regex>, regex::Error> {
    Regex::new(&format!("(?i)(?:{})", patterns.join("|"))).map(Arc::new)
}

/// Adds regular expressions for the shapes of a service's tokens (GitHub's `ghp_…`); from then on `redact` hides
/// any text of those shapes, loaded or not. Adding a shape twice is harmless; an invalid one is an error.
pub fn add_token_shapes(new: &[&str]) -> Result<(), regex::Error> {
    let mut shapes = shapes().write();
    let mut patterns = shapes.patterns.clone();
    for p in new {
        if !patterns.iter().any(|known| known == p) {
            patterns.push(p.to_string());
        }
    }
    if patterns.len() != shapes.patterns.len() {
        shapes.matcher = shape_matcher(&patterns)?;
        shapes.patterns = patterns;
    }
    Ok(())
}

/// Every secret value this process has loaded, and a matcher for all their forms.
struct Known {
    values: BTreeSet<String>,
    matcher: Option<Arc<AhoCorasick>>,
}

fn known() -> &'static RwLock<Known> {
    static KNOWN: OnceLock<RwLock<Known>> = OnceLock::new();
    KNOWN.get_or_init(|| RwLock::new(Known { values: BTreeSet::new(), matcher: None }))
}

/// Remembers `value` as a secret: from now on it never leaves the process in any text `redact` sees.
pub fn remember(value: &str) {
    let value = value.trim();
    if value.len() < MIN_SECRET_LEN {
        return;
    }
    if known().read().values.contains(value) {
        return;
    }
    let mut known = known().write();
    if !known.values.insert(value.to_string()) {
        return;
    }
    let forms: BTreeSet<String> = known.values.iter().flat_map(|v| encoded_forms(v)).collect();
    known.matcher = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(forms.iter().filter(|f| f.len() >= MIN_SECRET_LEN))
        .ok()
        .map(Arc::new);
}

/// A secret read from outside (an environment variable, a command, a file), remembered for scrubbing.
pub fn loaded(value: String) -> SecretString {
    remember(&value);
    SecretString::from(value)
}

/// The forms a secret takes in text: as is, percent-encoded, and base64 in both alphabets. Base64 of a longer
/// text holding the secret (`user:token` in a Basic header) depends on where it starts, so for each of the
/// three alignments the characters that only the secret decides are kept.
fn encoded_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_string()];
    // As a query value (spaces as `+`) and as a path segment (spaces as `%20`, as `http::segment` writes it).
    let query: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    forms.push(query.replace('+', "%20"));
    forms.push(query);
    for engine in [&base64::engine::general_purpose::STANDARD_NO_PAD, &base64::engine::general_purpose::URL_SAFE_NO_PAD]
    {
        for offset in 0..3usize {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(secret.as_bytes());
            let encoded = engine.encode(&bytes);
            // Characters before the secret's first whole group, and the last partial group, also hold other bytes.
            let skip = if offset == 0 { 0 } else { 4 };
            let whole = (bytes.len() / 3) * 4;
            if whole > skip {
                forms.push(encoded[skip..whole].to_string());
            }
            if offset == 0 {
                forms.push(encoded.clone());
            }
        }
    }
    forms
}

/// `text` with every secret this process loaded (in any of its forms) and every token shape replaced by
/// `[REDACTED]`: for messages, logs, files and the audit log.
pub fn redact(text: &str) -> String {
    let matcher = shapes().read().matcher.clone();
    matcher.replace_all(&redact_loaded(text), REDACTED).into_owned()
}

/// `text` with every secret this process loaded replaced, but token shapes kept: for a value a person asked
/// for (a freshly made impersonation token, a user's login token), which the shape rule would hide from them.
pub fn redact_loaded(text: &str) -> String {
    let matcher = known().read().matcher.clone();
    match matcher {
        Some(m) => m.replace_all(text, &vec![REDACTED; m.patterns_len()]),
        None => text.to_string(),
    }
}

/// Does a parameter or argument of this name hold a secret (`password`, `api_token`, `client_secret`…)?
pub fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "credential", "apikey", "api_key", "cookie", "private_key"]
        .iter()
        .any(|s| name.contains(s))
}

/// A writer that scrubs what passes through it (log lines go through one on their way to stderr).
pub struct Redacting<W: std::io::Write>(pub W);

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The log formatter hands over each line whole, so a secret is never split between two writes.
        self.0.write_all(redact(&String::from_utf8_lossy(buf)).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_the_generic_and_each_added_token_shape() {
        add_token_shapes(&[r"\bzzq_[a-z0-9]{8,}"]).unwrap();
        add_token_shapes(&[r"\bzzq_[a-z0-9]{8,}"]).unwrap();
        for token in ["Bearer abcdefghijkl", "token abcdefghijklmn", "zzq_abcdef123456"] {
            let out = redact(&format!("failed with {token} here"));
            assert!(!out.contains(token), "{token} survived: {out}");
            assert!(out.contains("[REDACTED]"), "{out}");
        }
        assert!(add_token_shapes(&["(unclosed"]).is_err());
        assert!(redact("zzq_short").contains("zzq_short"), "an invalid shape added nothing");
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        assert_eq!(redact("user octocat not found"), "user octocat not found");
    }

    #[test]
    fn a_loaded_secret_is_scrubbed_whatever_its_shape_and_encoding() {
        // A classic 40-hex GitHub token: no prefix, so no shape rule can know it.
        let token = "0123456789abcdef0123456789abcdef01234567";
        let secret = "p@ss w0rd/+=?&sixteen";
        assert!(redact(&format!("echo {token}")).contains(token), "nothing is known yet");
        remember(token);
        remember(secret);
        let b64 = base64::engine::general_purpose::STANDARD;
        for text in [
            format!("bad credentials: {token}."),
            format!("query ?password={}", url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>()),
            format!("path /{}", crate::http::segment(secret)),
            format!("basic {}", b64.encode(format!("admin:{secret}"))),
            format!("basic {}", b64.encode(format!("x:{secret}"))),
            format!("basic {}", b64.encode(format!("{token}:x-oauth-basic"))),
            format!("url-safe {}", base64::engine::general_purpose::URL_SAFE.encode(format!("ab{secret}"))),
        ] {
            let out = redact(&text);
            assert!(out.contains("[REDACTED]"), "{text} → {out}");
            for leaked in [token, secret, "0123456789abcdef"] {
                assert!(!out.contains(leaked), "{leaked} survived in {out}");
            }
        }
        assert_eq!(redact("user octocat not found"), "user octocat not found");
    }

    #[test]
    fn short_values_are_not_treated_as_secrets() {
        remember("abc");
        assert_eq!(redact("abc def"), "abc def");
    }
}
