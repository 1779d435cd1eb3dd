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

/// Remembers `value` as a secret: from now on it never leaves the process in any text `redact` sees. Each part
/// of a compound secret (`ORG:SECRET`, `user:password`) is remembered too, since a server may echo one alone.
pub fn remember(value: &str) {
    let value = value.trim();
    // A part holding a space is a scheme and its value (`org.token 89`), not a secret of its own.
    let halves = value.split(':').filter(|p| !p.contains(char::is_whitespace));
    let parts: Vec<&str> = std::iter::once(value).chain(halves).filter(|p| p.len() >= MIN_SECRET_LEN).collect();
    if parts.is_empty() {
        return;
    }
    if parts.iter().all(|p| known().read().values.contains(*p)) {
        return;
    }
    let mut known = known().write();
    let mut added = false;
    for part in parts {
        added |= known.values.insert(part.to_string());
    }
    if !added {
        return;
    }
    let forms: BTreeSet<String> = known.values.iter().flat_map(|v| encoded_forms(v)).collect();
    // One automaton for every form of every secret; ASCII case is ignored, so an upper-cased echo, upper-case
    // hex and `%2f`/`%2F` all match.
    known.matcher = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .ascii_case_insensitive(true)
        .build(forms.iter().filter(|f| f.len() >= MIN_SECRET_LEN))
        .ok()
        .map(Arc::new);
}

/// A secret read from outside (an environment variable, a command, a file), remembered for scrubbing.
pub fn loaded(value: String) -> SecretString {
    remember(&value);
    SecretString::from(value)
}

/// The forms a secret takes in text: as is, percent-encoded (as a query value, as a path segment, and byte by
/// byte), as hex, as a JSON string (escaped as serde writes it, with `\/`, and wholly as `\uXXXX`), and base64
/// in both alphabets. Base64 of a longer text holding the secret (`user:token` in a Basic header) depends on
/// where it starts, so for each of the three alignments the characters that only the secret decides are kept.
fn encoded_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_string()];
    // As a query value (spaces as `+`) and as a path segment (spaces as `%20`, as `http::segment` writes it).
    let query: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    forms.push(query.replace('+', "%20"));
    forms.push(query);
    forms.push(secret.bytes().map(|b| format!("%{b:02X}")).collect());
    forms.push(secret.bytes().map(|b| format!("{b:02x}")).collect());
    forms.extend(json_forms(secret));
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

/// A secret inside a JSON string: escaped as a serializer writes it, with `/` as `\/`, and every character as
/// `\uXXXX` (UTF-16, as JSON spells characters past the first plane).
fn json_forms(secret: &str) -> Vec<String> {
    let quoted = serde_json::to_string(secret).unwrap_or_default();
    let escaped = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default().to_string();
    let all_u: String = secret.encode_utf16().map(|unit| format!("\\u{unit:04x}")).collect();
    vec![escaped.replace('/', "\\/"), escaped, all_u]
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
    let Some(matcher) = known().read().matcher.clone() else {
        return text.to_string();
    };
    if !text.bytes().any(|b| matches!(b, b'\n' | b'\r' | b'\\')) {
        return matcher.replace_all(text, &vec![REDACTED; matcher.patterns_len()]);
    }
    // A secret split across lines (a wrapped body, a JSON `\n`) is found in a view without the breaks, and the
    // original text it spans, breaks included, is replaced.
    let (view, at) = without_line_breaks(text);
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for found in matcher.find_iter(&view) {
        let (start, end) = (at[found.start()], at[found.end() - 1] + 1);
        out.push_str(&text[last..start]);
        out.push_str(REDACTED);
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// `text` without its line breaks (CR, LF and the indentation after them, and JSON's `\n` and `\r`), and for
/// each byte of that view, where it is in `text`. Only ASCII is removed, so the view stays valid UTF-8.
fn without_line_breaks(text: &str) -> (String, Vec<usize>) {
    let bytes = text.as_bytes();
    let mut view = Vec::with_capacity(bytes.len());
    let mut at = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped_break = bytes[i] == b'\\' && matches!(bytes.get(i + 1), Some(b'n' | b'r'));
        if escaped_break || matches!(bytes[i], b'\n' | b'\r') {
            i += if escaped_break { 2 } else { 1 };
            while matches!(bytes.get(i), Some(b' ' | b'\t')) {
                i += 1;
            }
            continue;
        }
        view.push(bytes[i]);
        at.push(i);
        i += 1;
    }
    (String::from_utf8(view).unwrap_or_default(), at)
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
    fn each_half_of_a_compound_secret_is_scrubbed_in_every_encoding_and_across_lines() {
        let secret = "Tr4visHalfS3cret/x";
        remember(&format!("8675309:{secret}"));
        remember("myscheme 4242:unrelated");
        let per_byte: String = secret.bytes().map(|b| format!("%{b:02x}")).collect();
        let hex: String = secret.bytes().map(|b| format!("{b:02X}")).collect();
        let json_u: String = secret.chars().map(|c| format!("\\u{:04X}", c as u32)).collect();
        let b64 = base64::engine::general_purpose::STANDARD;
        let (head, tail) = secret.split_at(7);
        for text in [
            format!("you sent {secret} alone"),
            format!("you sent {} shouting", secret.to_uppercase()),
            format!("per byte {per_byte}"),
            format!("hex {hex}"),
            format!("json {json_u}"),
            format!("json {}", serde_json::to_string(secret).unwrap().replace('/', "\\/")),
            format!("b64 {}", b64.encode(format!("ab{secret}"))),
            format!("b64 {}", b64.encode(format!("a{secret}"))),
            format!("split {head}\n{tail} over two lines"),
            format!("split {head}\r\n    {tail} with indent"),
            format!("json split {head}\\n{tail}"),
        ] {
            let out = redact(&text);
            assert!(out.contains("[REDACTED]"), "{text} → {out}");
            for leaked in [&secret[..10], &per_byte[..12], &hex[..12], &json_u[..18]] {
                assert!(!out.to_lowercase().contains(&leaked.to_lowercase()), "{leaked} survived in {out}");
            }
        }
        // Text around a split secret is kept, and an auth scheme word is not taken for a secret.
        assert_eq!(redact(&format!("a {head}\n{tail} b")), "a [REDACTED] b");
        assert_eq!(redact("myscheme 4242 refused"), "myscheme 4242 refused");
        assert_eq!(redact("line one\nline two\r\n"), "line one\nline two\r\n");
    }

    #[test]
    fn a_secret_is_scrubbed_before_a_quote_of_it_is_cut() {
        let token = "cutCutCutSecretValue1234567890";
        remember(token);
        let url = format!("{}?access_token={token}", "x".repeat(170));
        let out = crate::http::shorten(&url);
        assert!(!out.contains("cutCutCut"), "half the token survived the cut: {out}");
    }

    #[test]
    fn short_values_are_not_treated_as_secrets() {
        remember("abc");
        assert_eq!(redact("abc def"), "abc def");
    }
}
