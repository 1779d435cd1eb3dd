//! Pagination math: the `rel="next"` target of an RFC 8288 `Link` header.

/// The URL of the `next` page named in a `Link` header, if any.
pub fn next_link(link_header: &str) -> Option<String> {
    link_header.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let target = pieces.next()?.trim();
        let url = target.strip_prefix('<')?.strip_suffix('>')?;
        let is_next = pieces.any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=").map(|v| v.trim_matches('"').split_whitespace().any(|r| r == "next")).unwrap_or(false)
        });
        is_next.then(|| url.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_next_among_several_relations() {
        let h = r#"<https://h/api/v3/users?since=135>; rel="next", <https://h/api/v3/users{?since}>; rel="first""#;
        assert_eq!(next_link(h).as_deref(), Some("https://h/api/v3/users?since=135"));
    }

    #[test]
    fn next_may_come_last_or_unquoted() {
        let h = "<https://h/r?page=1>; rel=prev, <https://h/r?page=3>; rel=next";
        assert_eq!(next_link(h).as_deref(), Some("https://h/r?page=3"));
    }

    #[test]
    fn no_next_on_the_last_page() {
        assert_eq!(next_link(r#"<https://h/r?page=1>; rel="first", <https://h/r?page=4>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("garbage"), None);
    }
}
