//! The stock scripts, inside the binary: `steward run bulk_suspend …` works from anywhere, whatever was installed
//! (a path to a `.rhai` file still runs that file). `steward scripts` lists them; `steward scripts NAME` prints
//! a script's own header, which says what it does and every `--arg` it takes.

/// Every stock script: its name (`steward run NAME`) and its source, as in `scripts/`.
pub const STOCK: &[(&str, &str)] = &[
    ("admins_report", include_str!("../../scripts/admins_report.rhai")),
    ("audit_report", include_str!("../../scripts/audit_report.rhai")),
    ("bulk_suspend", include_str!("../../scripts/bulk_suspend.rhai")),
    ("bulk_unsuspend", include_str!("../../scripts/bulk_unsuspend.rhai")),
    ("demote_from_csv", include_str!("../../scripts/demote_from_csv.rhai")),
    ("inactive_report", include_str!("../../scripts/inactive_report.rhai")),
    ("joiner", include_str!("../../scripts/joiner.rhai")),
    ("mover", include_str!("../../scripts/mover.rhai")),
    ("offboard", include_str!("../../scripts/offboard.rhai")),
    ("promote_from_csv", include_str!("../../scripts/promote_from_csv.rhai")),
    ("suspend_inactive", include_str!("../../scripts/suspend_inactive.rhai")),
    ("travis_activity_csv", include_str!("../../scripts/travis_activity_csv.rhai")),
];

/// The stock script `name` (with or without `.rhai`).
pub fn find(name: &str) -> Option<(&'static str, &'static str)> {
    let name = name.strip_suffix(".rhai").unwrap_or(name);
    STOCK.iter().copied().find(|(n, _)| *n == name)
}

/// The script's header: its leading `//` comment block, without the slashes.
pub fn header(source: &str) -> String {
    source
        .lines()
        .take_while(|l| l.starts_with("//"))
        .map(|l| l.trim_start_matches('/').strip_prefix(' ').unwrap_or(l.trim_start_matches('/')))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the script does, in one line: its header's first sentence after `name.rhai:`.
pub fn summary(source: &str) -> String {
    let first = header(source);
    let first = first.split("\n\n").next().unwrap_or_default().replace('\n', " ");
    let text = first.split_once(": ").map(|(_, rest)| rest).unwrap_or(&first);
    match text.find(". ") {
        Some(end) => text[..=end].to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_in_scripts_is_stock_and_says_what_it_does() {
        let on_disk: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".rhai").map(str::to_string))
            .collect();
        for name in &on_disk {
            assert!(find(name).is_some(), "scripts/{name}.rhai is not in STOCK");
        }
        assert_eq!(on_disk.len(), STOCK.len());
        for (name, source) in STOCK {
            assert!(!summary(source).is_empty(), "{name}");
            assert!(header(source).starts_with(&format!("{name}.rhai:")), "{name}: {}", header(source));
        }
        assert_eq!(find("bulk_suspend.rhai").map(|(n, _)| n), Some("bulk_suspend"));
        assert!(summary(find("bulk_suspend").unwrap().1).starts_with("suspend every user listed in a CSV file"));
    }
}
