//! Property-based fuzzing (proptest) of everything that reads outside input: CSV files, the config file, and each
//! backend's reading of server answers. The property is always the same: any input gives a value or an error,
//! never a panic. These run on stable with every `cargo test`; the coverage-guided cargo-fuzz targets in `fuzz/`
//! (nightly, run by `.ci/run`) search the same inputs far deeper.

use proptest::prelude::*;
use serde_json::Value;
use steward::backends::{github, synapse, terraform, transactionlink, travis};

/// Arbitrary JSON, a few levels deep, with the keys the error readers look for.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("message".to_string()),
                        Just("errors".to_string()),
                        Just("error".to_string()),
                        Just("errcode".to_string()),
                        Just("fingerprint".to_string()),
                        Just("error_type".to_string()),
                        Just("detail".to_string()),
                        Just("title".to_string()),
                        "[a-z]{1,6}"
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn error_bodies_never_panic(body in json()) {
        let _ = github::error_message(&body);
        let _ = terraform::error_message(&body);
        let _ = transactionlink::error_message(&body);
        let _ = travis::error_message(&body);
        let _ = synapse::error_message(&body);
    }

    #[test]
    fn link_headers_never_panic(header in ".{0,200}") {
        let _ = steward::http::pagination::next_link(&header);
    }

    #[test]
    fn retry_headers_never_panic(value in prop_oneof![".{0,40}", "[0-9]{15,40}", "[0-9]\\.[0-9]e[0-9]{2,3}"]) {
        let now = std::time::SystemTime::now();
        let _ = steward::http::retry::parse_retry_after(&value, now);
        let _ = steward::http::retry::parse_rate_limit_reset(&value, now);
    }

    #[test]
    fn config_files_never_panic(text in "(\\[profiles\\.[a-z]{1,4}\\]\\n|[a-z_]{1,12} = (\"[^\"\\n]{0,20}\"|[0-9]{1,4}|true|\\[\\])\\n|.{0,30}\\n){0,12}") {
        let _ = steward::config::Config::parse(&text, std::path::Path::new("fuzz.toml"));
    }

    #[test]
    fn csv_files_never_panic(bytes in prop::collection::vec(prop_oneof![Just(b','), Just(b'"'), Just(b'\n'), Just(b'\r'), Just(0xEFu8), Just(0xBBu8), Just(0xBFu8), Just(0xFFu8), any::<u8>()], 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.csv");
        std::fs::write(&path, &bytes).unwrap();
        let lines = steward::output::csv::read_lines(&path);
        let strict = steward::output::csv::read_csv(&path);
        // Strict reading fails exactly when some line is bad.
        if let Ok(lines) = lines {
            prop_assert_eq!(strict.is_err(), lines.iter().any(|l| l.problem.is_some()));
        }
    }
}
