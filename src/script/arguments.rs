//! A script's `--arg`s, declared: `let ARGS = arguments(ARGS, #{csv: "required text", out: "text = out.csv",
//! apply: "flag"});`. A key the script does not take is refused, naming the closest one it does ("did you mean
//! profiles?"), so a typo never runs as if the argument were absent (on every profile, or on the default one); a
//! flag is true or false (yes/no), never silently false, and false when not given; a `required` one not given is
//! refused before the script goes on; one with `= VALUE` (no comma in it) takes that value when not given.

use rhai::{Dynamic, Map};

/// The `--arg`s a script declares, read from its source (never run): each `key: "kind"` of its
/// `arguments(ARGS, #{…})` call, in order.
pub fn declared(source: &str) -> Vec<(String, String)> {
    let Some(start) = source.find("arguments(ARGS,") else { return Vec::new() };
    let rest = &source[start..];
    let (Some(open), Some(close)) = (rest.find("#{"), rest.find('}')) else { return Vec::new() };
    if close < open {
        return Vec::new();
    }
    rest[open + 2..close]
        .split(',')
        .filter_map(|pair| {
            let (key, kind) = pair.split_once(':')?;
            let key = key.trim().trim_matches('"').to_string();
            let kind = kind.trim().trim_matches('"').to_string();
            (!key.is_empty()).then_some((key, kind))
        })
        .collect()
}

/// `steward run SCRIPT --help`: what the script does (its header's first sentence) and each declared `--arg`
/// with its kind and, where the header's `Arguments:` lines say, its meaning.
pub fn usage(name: &str, source: &str) -> String {
    let header = crate::script::stock::header(source);
    let meaning = |key: &str| {
        header
            .lines()
            .map(str::trim_start)
            .find_map(|l| l.strip_prefix(key).filter(|r| r.starts_with(' ')).map(|r| r.trim().to_string()))
    };
    let args = declared(source);
    let mut out = format!("steward run {name}: {}\n", crate::script::stock::summary(source));
    if args.is_empty() {
        out.push_str(
            "\nIt declares no --arg (a script declares them with `let ARGS = arguments(ARGS, #{name: \"text\"})`).",
        );
        return out;
    }
    out.push_str("\nArguments (--arg KEY=VALUE; a flag is true or false):\n");
    let shown: Vec<(&str, String)> = args.iter().map(|(k, kind)| (k.as_str(), Spec::of(kind).shown())).collect();
    let width = shown.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let kind_width = shown.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    for (key, kind) in &shown {
        let says = meaning(key).unwrap_or_default();
        out.push_str(&format!("  {key:<width$}  {kind:<kind_width$}  {says}\n"));
    }
    out.trim_end().to_string()
}

/// One declared argument: its kind (`text` or `flag`), whether it must be given, and its value when not.
struct Spec<'a> {
    kind: &'a str,
    required: bool,
    default: Option<&'a str>,
}

impl<'a> Spec<'a> {
    /// `"text"`, `"flag"`, `"required text"`, `"text = out.csv"`, `"flag = true"`.
    fn of(declared: &'a str) -> Spec<'a> {
        let (kind, default) = match declared.split_once('=') {
            Some((kind, default)) => (kind.trim(), Some(default.trim())),
            None => (declared.trim(), None),
        };
        match kind.strip_prefix("required") {
            Some(kind) => Spec { kind: kind.trim(), required: true, default },
            None => Spec { kind, required: false, default },
        }
    }

    /// As `steward run SCRIPT --help` shows it.
    fn shown(&self) -> String {
        match (self.required, self.default) {
            (true, _) => format!("{}, required", self.kind),
            (false, Some(d)) => format!("{} = {d}", self.kind),
            (false, None) => self.kind.to_string(),
        }
    }

    /// `text` as the script reads it: a flag as a boolean.
    fn parse(&self, key: &str, text: &str) -> Result<Dynamic, String> {
        match self.kind {
            "text" => Ok(Dynamic::from(text.to_string())),
            "flag" => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" => Ok(Dynamic::TRUE),
                "false" | "no" => Ok(Dynamic::FALSE),
                _ => Err(format!("--arg {key}={text}: {key} is true or false")),
            },
            other => Err(format!(
                "the script declares --arg {key} as {other:?}; arguments() knows \"text\" and \"flag\" (\"required \
                 text\", \"text = VALUE\")"
            )),
        }
    }
}

/// The arguments as the script reads them (flags as booleans, defaults filled in), or why they are refused.
pub fn check(given: &Map, spec: &Map) -> Result<Map, String> {
    let mut out = Map::new();
    for (key, value) in given {
        let Some(declared) = spec.get(key.as_str()) else {
            return Err(unknown(key, spec));
        };
        out.insert(key.clone(), Spec::of(&declared.to_string()).parse(key, &value.to_string())?);
    }
    for (key, declared) in spec {
        if out.contains_key(key.as_str()) {
            continue;
        }
        let declared = declared.to_string();
        let spec = Spec::of(&declared);
        if spec.required {
            return Err(format!(
                "this script needs --arg {key}=… (run it with --help for each argument and what it means)"
            ));
        }
        match (spec.default, spec.kind) {
            (Some(d), _) => _ = out.insert(key.clone(), spec.parse(key, d)?),
            (None, "flag") => _ = out.insert(key.clone(), Dynamic::FALSE),
            (None, _) => {}
        }
    }
    Ok(out)
}

/// The refusal of an argument the script does not take: the closest one it does, and all of them.
fn unknown(key: &str, spec: &Map) -> String {
    let mut names: Vec<&str> = spec.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    let hint = crate::suggest::closest(key, names.iter().copied())
        .map(|n| format!("did you mean --arg {n}? "))
        .unwrap_or_default();
    format!("this script takes no --arg {key}; {hint}it takes: {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Map {
        pairs.iter().map(|(k, v)| ((*k).into(), Dynamic::from(v.to_string()))).collect()
    }

    #[test]
    fn a_misspelled_argument_is_refused_naming_the_one_meant() {
        let spec = map(&[("profiles", "text"), ("people", "text"), ("reason", "text"), ("deactivate", "flag")]);
        let e = check(&map(&[("profile", "ghes")]), &spec).unwrap_err();
        assert!(e.contains("no --arg profile") && e.contains("did you mean --arg profiles?"), "{e}");
        let e = check(&map(&[("profle", "tfe")]), &spec).unwrap_err();
        assert!(e.contains("did you mean --arg profiles?"), "{e}");
        let e = check(&map(&[("colour", "red")]), &spec).unwrap_err();
        assert!(!e.contains("did you mean") && e.contains("it takes: deactivate, people, profiles, reason"), "{e}");
    }

    #[test]
    fn a_required_argument_not_given_is_refused_and_a_default_fills_in() {
        let spec =
            map(&[("csv", "required text"), ("out", "text = out.csv"), ("apply", "flag"), ("dry", "flag = true")]);
        let e = check(&map(&[("out", "x.csv")]), &spec).unwrap_err();
        assert!(e.contains("needs --arg csv=…"), "{e}");
        let ok = check(&map(&[("csv", "a.csv")]), &spec).unwrap();
        assert_eq!(ok["csv"].to_string(), "a.csv");
        assert_eq!(ok["out"].to_string(), "out.csv", "the default");
        assert!(!ok["apply"].as_bool().unwrap(), "a flag not given is false");
        assert!(ok["dry"].as_bool().unwrap(), "a flag's default");
        let ok = check(&map(&[("csv", "a.csv"), ("out", "mine.csv")]), &spec).unwrap();
        assert_eq!(ok["out"].to_string(), "mine.csv", "what is given wins");
        let source = r#"let ARGS = arguments(ARGS, #{ csv: "required text", out: "text = out.csv" });"#;
        let help = usage("x", source);
        assert!(help.contains("text, required") && help.contains("text = out.csv"), "{help}");
    }

    #[test]
    fn a_flag_is_true_or_false_never_silently_false() {
        let spec = map(&[("apply", "flag"), ("out", "text")]);
        let ok = check(&map(&[("apply", "yes"), ("out", "x.csv")]), &spec).unwrap();
        assert!(ok["apply"].as_bool().unwrap());
        assert_eq!(ok["out"].to_string(), "x.csv");
        assert!(!check(&map(&[("apply", "False")]), &spec).unwrap()["apply"].as_bool().unwrap());
        assert!(check(&map(&[("apply", "ture")]), &spec).unwrap_err().contains("true or false"));
    }
}
