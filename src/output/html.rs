//! What every page steward writes shares: escaping, and a head that lets nothing run or load (no script, no
//! request leaves the page: it opens offline, years later, in an auditor's browser).

/// Text made safe inside HTML elements and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#222;padding:0 1rem}\
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}\
th{background:#f5f5f5}.s{font-weight:600;padding:.1rem .4rem;border-radius:.3rem}\
.done,.ok,.noop,.nothing{background:#e3f4e3}.partial,.dry-run,.skipped{background:#fff4d6}\
.failed,.refused,.cancelled,.protected,.could{background:#fbe3e3}.muted{color:#666}ul{margin:.2rem 0}\
.warn{background:#fff4d6;padding:.4rem .6rem;border-left:4px solid #d9a400}\
.bars td{border:none;padding:.1rem .4rem}.bar{background:#5b8def;height:.9rem;min-width:1px}.bar.due{background:#d9534f}";

/// `<!doctype html>` up to `<body>`: the charset, a Content-Security-Policy that allows only the inline style,
/// the title (escaped) and the shared style.
pub fn head(title: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; style-src 'unsafe-inline'\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(title)
    )
}
