//! A script's `--arg`s, declared: `let ARGS = arguments(ARGS, #{csv: "text", reason: "text", apply: "flag"});`.
//! A key the script does not take is refused, naming the closest one it does ("did you mean profiles?"), so a
//! typo never runs as if the argument were absent (on every profile, or on the default one); a flag is true or
//! false (yes/no), never silently false.

use rhai::{Dynamic, Map};

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
