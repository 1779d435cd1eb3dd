//! The crate map in `lib.rs`, checked: each module uses only modules of its own layer or below (no back-arrows,
//! so no cycles between layers). A new top-level module must be given a layer here.

/// Top to bottom, as `lib.rs` describes them.
const LAYERS: &[&[&str]] = &[
    &["cmd", "repl", "context", "cli"],
    &["script"],
    &["output"],
    &["connections", "prompt"],
    &["policy"],
    &["dispatch"],
    &["backends"],
    &["config"],
    &["turns"],
    &["http"],
    &["notify"],
    &["audit", "invocation"],
    &["redact", "error", "dates", "files", "inputs", "interrupt", "secret_cmd", "memory", "suggest"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level modules `text` names through `crate::` (paths, and the names in `use crate::{…}`), before
/// its tests.
fn uses(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut found = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find(';').unwrap_or(group.len())];
                let mut depth = 0;
                let mut start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if start && !c.is_whitespace() => {
                            found.push(ident(&group[j..]));
                            start = false;
                        }
                        _ => {}
                    }
                }
            }
            None => found.push(ident(rest)),
        }
    }
    found
}

#[test]
fn every_module_uses_only_its_own_layer_or_the_ones_below() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.clone()];
    let mut up = Vec::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let rel = path.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        let top = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
        if !rel.ends_with(".rs") || ["lib", "main", "layers"].contains(&top.as_str()) {
            continue;
        }
        let Some(own) = layer_of(&top) else { panic!("src/{rel}: module `{top}` has no layer in layers.rs") };
        for used in uses(&std::fs::read_to_string(&path).unwrap()) {
            if let Some(theirs) = layer_of(&used).filter(|l| *l < own) {
                up.push(format!("src/{rel} ({top}, layer {own}) uses {used} (layer {theirs})"));
            }
        }
    }
    up.sort();
    up.dedup();
    assert!(up.is_empty(), "imports that point up:\n{}", up.join("\n"));
}

#[test]
fn the_scan_finds_paths_and_grouped_imports() {
    let text =
        "use crate::{audit::AuditStore, dispatch::{Connection, Dispatcher}};\nfn f() { crate::output::note(\"\"); }";
    assert_eq!(uses(text), ["audit", "dispatch", "output"]);
}
