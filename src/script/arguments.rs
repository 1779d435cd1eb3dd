//! A script's `--arg`s, declared: `let ARGS = arguments(ARGS, #{csv: "text", reason: "text", apply: "flag"});`.
//! A key the script does not take is refused, naming the closest one it does ("did you mean profiles?"), so a
//! typo never runs as if the argument were absent (on every profile, or on the default one); a flag is true or
//! false (yes/no), never silently false.

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
    let width = args.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, kind) in &args {
        let says = meaning(key).unwrap_or_default();
        out.push_str(&format!("  {key:<width$}  {kind:<4}  {says}\n"));
    }
    out.trim_end().to_string()
}

/// The arguments as the script reads them (flags as booleans), or why they are refused.
pub fn check(given: &Map, spec: &Map) -> Result<Map, String> {
    let mut out = Map::new();
    for (key, value) in given {
        let Some(kind) = spec.get(key.as_str()) else {
            return Err(unknown(key, spec));
        };
        let text = value.to_string();
        let parsed = match kind.to_string().as_str() {
            "text" => Dynamic::from(text),
            "flag" => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" => Dynamic::TRUE,
                "false" | "no" => Dynamic::FALSE,
                _ => return Err(format!("--arg {key}={text}: {key} is true or false")),
            },
            other => {
                return Err(format!(
                    "the script declares --arg {key} as {other:?}; arguments() knows \"text\" and \"flag\""
                ))
            }
        };
        out.insert(key.clone(), parsed);
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
    fn a_flag_is_true_or_false_never_silently_false() {
        let spec = map(&[("apply", "flag"), ("out", "text")]);
        let ok = check(&map(&[("apply", "yes"), ("out", "x.csv")]), &spec).unwrap();
        assert!(ok["apply"].as_bool().unwrap());
        assert_eq!(ok["out"].to_string(), "x.csv");
        assert!(!check(&map(&[("apply", "False")]), &spec).unwrap()["apply"].as_bool().unwrap());
        assert!(check(&map(&[("apply", "ture")]), &spec).unwrap_err().contains("true or false"));
    }
}
