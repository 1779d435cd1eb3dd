//! URL resolution and the same-origin rule: whatever text a script's `api()` path or a server's `Link` header
//! holds, what steward would send to is either refused or on the profile's own origin, with no credentials.
#![no_main]
use libfuzzer_sys::fuzz_target;
use steward::http::origin;

fuzz_target!(|text: &str| {
    for base in ["https://ghe.example.com/api/v3/", "http://127.0.0.1:8080/", "https://h.example/_matrix/"] {
        let base = url::Url::parse(base).expect("base");
        if let Ok(url) = origin::resolve(&base, text) {
            assert_eq!(url.origin(), base.origin(), "{text:?} left the origin as {url}");
            assert!(url.username().is_empty() && url.password().is_none(), "{text:?} carries credentials");
            // What reqwest will parse again when sending must be the same place.
            let again = url::Url::parse(url.as_str()).expect("a resolved URL parses");
            assert_eq!(again.origin(), base.origin());
        }
        // A link is first joined onto the page that named it, then judged.
        let page = base.join("users?per_page=100").expect("page");
        if let Ok(joined) = page.join(text) {
            if let Ok(url) = origin::resolve(&base, joined.as_str()) {
                assert_eq!(url.origin(), base.origin(), "{text:?} left the origin as {url}");
            }
        }
    }
});
