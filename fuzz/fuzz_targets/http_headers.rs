//! The headers steward acts on: Link (pagination), Retry-After (seconds or HTTP date), X-RateLimit-Reset.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = steward::http::pagination::next_link(&text);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    let _ = steward::http::retry::parse_retry_after(&text, now);
    let _ = steward::http::retry::parse_rate_limit_reset(&text, now);
});
