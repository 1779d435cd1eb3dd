//! Where a request may go: every path or URL (from a script's `api()`, a server's `Link` header, a backend) is
//! resolved against the profile's base URL the WHATWG way (as `url`/reqwest will read it when sending), and the
//! result must have the base URL's origin (scheme, host, port). The token never leaves that origin; nothing is
//! decided on the string's shape.

use url::Url;

/// Why a URL was not allowed; names the offending text so a person can see what the server or script sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("{text:?} is not a URL steward can read: {reason}")]
    Unreadable { text: String, reason: String },
    #[error("{text:?} leads to {found}, not to the profile's {expected}; steward sends its token only to the profile's origin (if that is this service under another name, say so in the profile: link_origin = \"{found}\")")]
    OtherOrigin { text: String, found: String, expected: String },
}

/// `path` (relative to `base`, or absolute) resolved against `base`, refused unless it has `base`'s origin.
/// A relative path's leading `/` is read as "under the base URL" (`/users` on `…/api/v3/` is `…/api/v3/users`).
pub fn resolve(base: &Url, path: &str) -> Result<Url, OriginError> {
    let unreadable = |e: url::ParseError| OriginError::Unreadable { text: super::shorten(path), reason: e.to_string() };
    // Only an ASCII slash is trimmed: a backslash or a space before it makes the WHATWG parser read
    // something else (`\\host` is a host on http URLs), and that is resolved and judged below, not guessed at.
    let relative = path.strip_prefix('/').filter(|rest| !rest.starts_with(['/', '\\'])).unwrap_or(path);
    let url = base.join(relative).map_err(unreadable)?;
    if url.origin() != base.origin() || !url.origin().is_tuple() {
        return Err(OriginError::OtherOrigin {
            text: super::shorten(path),
            found: url.origin().ascii_serialization(),
            expected: base.origin().ascii_serialization(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OriginError::Unreadable {
            text: super::shorten(path),
            reason: "it carries a user name or password".into(),
        });
    }
    Ok(url)
}

/// `resolve`, where links naming `alias` (the origin the service writes in its own links, `link_origin`) are
/// the profile's own origin under another name: such a URL is kept with its path and query and sent to `base`'s
/// origin. Nothing else changes: any other origin is refused as before.
pub fn resolve_aliased(base: &Url, alias: Option<&Url>, path: &str) -> Result<Url, OriginError> {
    match (resolve(base, path), alias) {
        (Err(OriginError::OtherOrigin { text, found, expected }), Some(alias)) => {
            let url = base
                .join(path.trim())
                .map_err(|e| OriginError::Unreadable { text: text.clone(), reason: e.to_string() })?;
            if url.origin() != alias.origin() || !url.username().is_empty() || url.password().is_some() {
                return Err(OriginError::OtherOrigin { text, found, expected });
            }
            let mut home = base.clone();
            home.set_path(url.path());
            home.set_query(url.query());
            home.set_fragment(None);
            Ok(home)
        }
        (result, _) => result,
    }
}

/// An origin a profile may declare as its service's other name: http(s), a host, no user, password or path.
pub fn check_alias(url: &Url) -> Result<(), &'static str> {
    check_base(url)?;
    match url.path() == "/" && url.query().is_none() {
        true => Ok(()),
        false => Err("is more than an origin; write only scheme, host and port"),
    }
}

/// A base URL a profile may name: http(s), and no user name or password (they would be sent, and recorded).
pub fn check_base(url: &Url) -> Result<(), &'static str> {
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("is not an http(s) URL");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("holds a user name or password; put credentials in token_env or token_cmd, never in the URL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_alias_is_the_profiles_own_origin_and_nothing_else_is() {
        let base = Url::parse("https://10.0.0.5:8443/api/v3/").unwrap();
        let alias = Url::parse("https://github.example.com").unwrap();
        let next = "https://github.example.com/api/v3/users?since=100";
        let home = resolve_aliased(&base, Some(&alias), next).unwrap();
        assert_eq!(home.as_str(), "https://10.0.0.5:8443/api/v3/users?since=100");
        // Without the alias, or to any other origin, or with credentials in it: refused as before.
        assert!(resolve_aliased(&base, None, next).is_err());
        for other in [
            "https://github.example.com.evil.test/api/v3/users",
            "http://github.example.com/api/v3/users",
            "https://github.example.com:444/x",
            "https://u:p@github.example.com/x",
        ] {
            assert!(resolve_aliased(&base, Some(&alias), other).is_err(), "{other}");
        }
        assert!(resolve_aliased(&base, None, next)
            .unwrap_err()
            .to_string()
            .contains("link_origin = \"https://github.example.com\""));
        assert!(check_alias(&Url::parse("https://github.example.com/api/v3").unwrap()).is_err());
        assert!(check_alias(&alias).is_ok());
    }

    fn base() -> Url {
        Url::parse("https://ghe.example.com/api/v3/").unwrap()
    }

    #[test]
    fn relative_paths_stay_under_the_base_url() {
        assert_eq!(resolve(&base(), "users").unwrap().as_str(), "https://ghe.example.com/api/v3/users");
        assert_eq!(resolve(&base(), "/users?page=2").unwrap().as_str(), "https://ghe.example.com/api/v3/users?page=2");
        assert_eq!(
            resolve(&base(), "https://ghe.example.com/api/v3/users?since=5").unwrap().as_str(),
            "https://ghe.example.com/api/v3/users?since=5"
        );
        // Case and default ports are normalised before comparing, as the sender will normalise them.
        assert!(resolve(&base(), "HTTPS://GHE.EXAMPLE.COM:443/api/v3/users").is_ok());
    }

    /// The URL-trick corpus: each of these, given to a string-prefix guard, sent the token elsewhere.
    #[test]
    fn every_trick_that_leads_elsewhere_is_refused() {
        for trick in [
            "HTTP://other-host/api/v3/users",
            "http://ghe.example.com/api/v3/users", // cleartext on an https profile
            " https://other-host/users",
            "\thttps://other-host/users",
            "https://other-host/users",
            "//other-host/users",
            "///other-host/users",
            "/\\other-host/users",
            "\\\\other-host\\users",
            "\\/other-host/users",
            "https://ghe.example.com:8443/api/v3/users",
            "https://ghe.example.com.evil.net/api/v3/users",
            "https://ghe.example.com@evil.net/api/v3/users",
            "https://evil.net\\@ghe.example.com/api/v3/users",
            "https://evil.net#@ghe.example.com/",
            "https://xn--ghe-example-com.evil/",
            "ftp://ghe.example.com/",
            "file:///etc/passwd",
            "data:text/plain,hi",
            "javascript:alert(1)",
            "https://user:pass@ghe.example.com/api/v3/users",
        ] {
            let result = resolve(&base(), trick);
            assert!(result.is_err(), "{trick:?} was allowed as {:?}", result.map(|u| u.to_string()));
        }
    }

    #[test]
    fn the_refusal_names_the_offending_url_and_both_origins() {
        let e = resolve(&base(), "HTTP://other-host/x").unwrap_err().to_string();
        assert!(e.contains("HTTP://other-host/x"), "{e}");
        assert!(e.contains("http://other-host"), "{e}");
        assert!(e.contains("https://ghe.example.com"), "{e}");
    }

    #[test]
    fn base_urls_with_credentials_or_other_schemes_are_refused() {
        assert!(check_base(&Url::parse("https://ghe.example.com/api/v3").unwrap()).is_ok());
        assert!(check_base(&Url::parse("https://admin:pw@ghe.example.com/api/v3").unwrap()).is_err());
        assert!(check_base(&Url::parse("https://admin@ghe.example.com/api/v3").unwrap()).is_err());
        assert!(check_base(&Url::parse("ftp://ghe.example.com/").unwrap()).is_err());
    }
}
