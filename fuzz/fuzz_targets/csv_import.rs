//! CSV import: any bytes give rows or an error naming lines, never a panic; strict reading fails exactly when
//! the lenient reader flags a line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("steward-fuzz-{}.csv", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("the scratch file is writable");
    let lines = steward::output::csv::read_lines(path);
    let strict = steward::output::csv::read_csv(path);
    if let Ok(lines) = lines {
        assert_eq!(strict.is_err(), lines.iter().any(|l| l.problem.is_some()), "strict and lenient readers disagree");
    }
});
