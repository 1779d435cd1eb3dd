//! Pagination: how a service names its next page (one `Paging` strategy per API style), and the guards every
//! listing shares whatever the server says: bounded pages, items and bytes, and each next page must be one not
//! fetched before (a repeated or backward cursor is an error, not a loop).

use serde_json::Value;
use std::collections::HashSet;

/// How a listing names its next page.
#[derive(Clone, Copy, Debug)]
pub enum Paging {
    /// The body is a JSON array and `Link: <…>; rel="next"` names the next page (GitHub, RFC 8288).
    LinkHeader,
    /// The items sit at the JSON pointer `items`; the next page is the same request with the query parameter
    /// `param` set to the value at `next` (a page number, an offset or an opaque token), which is absent or
    /// null on the last page (Travis's `@pagination`).
    Cursor { param: &'static str, items: &'static str, next: &'static str },
    /// A `Cursor` whose values are page numbers, with the number of pages at `pages` (Terraform's
    /// `meta.pagination.total-pages`): once the first page is in, the rest can be asked for at once.
    Numbered { param: &'static str, items: &'static str, next: &'static str, pages: &'static str },
    /// A `Cursor` whose values are item offsets, with the number of items at `total` (Synapse's `from`,
    /// `next_token` and `total`): the rest can be asked for at once, a page's worth apart.
    Offsets { param: &'static str, items: &'static str, next: &'static str, total: &'static str },
    /// Zero-based page numbers in `param`, with this page's number and the page count in the body (Spring's
    /// `number` / `totalPages`: TransactionLink).
    PageOfTotal { param: &'static str, items: &'static str, number: &'static str, total: &'static str },
    /// One-based item offsets in `param`, with this page's offset and the total count in the body: the next page
    /// starts after this page's items, until the total is reached (SCIM's `startIndex` / `totalResults`, RFC 7644
    /// §3.4.2.4; a server may send fewer items than asked for, so the count is what came).
    StartIndex { param: &'static str, items: &'static str, start: &'static str, total: &'static str },
}

/// The pages after the first, when the first said how many there are: the values `param` takes, `step` apart
/// from `from` while below `end`. For offsets (`full` set), every page but the last must hold `full` items, or
/// the next offsets would skip some: a short page sends the walk back to following the server page by page.
#[derive(Clone, Debug, PartialEq)]
pub struct Rest {
    pub param: &'static str,
    pub from: u64,
    pub step: u64,
    pub end: u64,
    pub full: Option<usize>,
}

impl Rest {
    /// The next value, if any is left.
    pub fn take(&mut self) -> Option<String> {
        (self.from < self.end).then(|| {
            let value = self.from;
            self.from = self.from.saturating_add(self.step.max(1));
            value.to_string()
        })
    }
}

/// What one listing may hold, so a server that never stops naming pages (or sends huge ones) cannot exhaust
/// steward. Profiles may raise them (`max_response_mb`, `max_pages`, `max_items`, `max_listing_mb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one response body (checked while it arrives).
    pub max_body_bytes: usize,
    pub max_pages: usize,
    pub max_items: usize,
    /// Bytes of all of one listing's answers together: items bound memory for small records, bytes for large.
    pub max_listing_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body_bytes: 64 << 20, max_pages: 20_000, max_items: 1_000_000, max_listing_bytes: 1 << 30 }
    }
}

/// Whether a listing's items are held together (`list_users`: counted against `max_items` and
/// `max_listing_mb`, which bound the memory they take) or walked a page at a time (`users()`: memory stays flat,
/// so only `max_pages` and the cursor checks bound it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    Whole,
    Walked,
}

/// What a page said: its items, and where the next one is (a query parameter's new value, or a whole URL).
#[derive(Debug, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    pub next: Option<Next>,
}

#[derive(Debug, PartialEq)]
pub enum Next {
    /// Fetch this URL (from a `Link` header; held to the profile's origin when sent).
    Url(String),
    /// Fetch the same request with this query parameter set to this value.
    Param(&'static str, String),
}

impl Paging {
    /// The query parameter this strategy moves from page to page, if it uses one.
    pub fn param(&self) -> Option<&'static str> {
        match *self {
            Paging::LinkHeader => None,
            Paging::Cursor { param, .. }
            | Paging::Numbered { param, .. }
            | Paging::Offsets { param, .. }
            | Paging::PageOfTotal { param, .. }
            | Paging::StartIndex { param, .. } => Some(param),
        }
    }

    /// How many items a page's body holds (before `read` takes them out).
    pub fn items_in(&self, body: &Value) -> usize {
        let at = match *self {
            Paging::LinkHeader => return body.as_array().map_or(0, Vec::len),
            Paging::Cursor { items, .. }
            | Paging::Numbered { items, .. }
            | Paging::Offsets { items, .. }
            | Paging::PageOfTotal { items, .. }
            | Paging::StartIndex { items, .. } => items,
        };
        body.pointer(at).and_then(Value::as_array).map_or(0, Vec::len)
    }

    /// The rest of a listing, from its first page (`current`: the value of `param()` that fetched it; `items`:
    /// how many it held), where the style says how long the listing is; `None` where only each page can say
    /// what comes next (a link, an opaque cursor), or the page says it is the last.
    pub fn rest(&self, current: Option<&str>, body: &Value, items: usize) -> Option<Rest> {
        let number =
            |pointer: &str| body.pointer(pointer).and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
        let current = current.and_then(|c| c.parse::<u64>().ok());
        let rest = match *self {
            Paging::LinkHeader | Paging::Cursor { .. } => return None,
            Paging::Numbered { param, pages, .. } => Rest {
                param,
                from: current.unwrap_or(1) + 1,
                step: 1,
                end: number(pages)?.saturating_add(1),
                full: None,
            },
            Paging::PageOfTotal { param, number: this, total, .. } => {
                Rest { param, from: number(this)? + 1, step: 1, end: number(total)?, full: None }
            }
            Paging::Offsets { param, total, .. } => {
                let step = items as u64;
                Rest { param, from: current.unwrap_or(0) + step, step, end: number(total)?, full: Some(items) }
            }
            Paging::StartIndex { param, start, total, .. } => {
                let step = items as u64;
                let this = number(start).or(current).unwrap_or(1).max(1);
                Rest { param, from: this + step, step, end: number(total)?.saturating_add(1), full: Some(items) }
            }
        };
        (items > 0 && rest.from < rest.end).then_some(rest)
    }

    /// Reads one page's answer: its items and where the next page is. `current`: the value of `param()` in the
    /// request that fetched it.
    pub fn read(&self, link_header: Option<&str>, current: Option<&str>, body: Value) -> Result<Page, ListingError> {
        let items_at = |body: &mut Value, pointer: &str| -> Result<Vec<Value>, ListingError> {
            match body.pointer_mut(pointer).map(Value::take) {
                Some(Value::Array(items)) => Ok(items),
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(other) => {
                    Err(ListingError::NotAList { at: format!(" at {pointer}"), got: super::json_type(&other) })
                }
            }
        };
        match *self {
            Paging::LinkHeader => {
                let items = match body {
                    Value::Array(items) => items,
                    Value::Null => Vec::new(),
                    other => return Err(ListingError::NotAList { at: String::new(), got: super::json_type(&other) }),
                };
                Ok(Page { items, next: link_header.and_then(next_link).map(Next::Url) })
            }
            Paging::Cursor { param, items, next }
            | Paging::Numbered { param, items, next, .. }
            | Paging::Offsets { param, items, next, .. } => {
                let mut body = body;
                let next = scalar(body.pointer(next)).map(|v| Next::Param(param, v));
                Ok(Page { items: items_at(&mut body, items)?, next })
            }
            Paging::PageOfTotal { param, items, number, total } => {
                let mut body = body;
                let this = body.pointer(number).and_then(Value::as_u64);
                let pages = body.pointer(total).and_then(Value::as_u64).unwrap_or(0);
                let next = this.filter(|n| n + 1 < pages).map(|n| Next::Param(param, (n + 1).to_string()));
                Ok(Page { items: items_at(&mut body, items)?, next })
            }
            Paging::StartIndex { param, items, start, total } => {
                let mut body = body;
                let asked = current.and_then(|c| c.parse::<u64>().ok()).unwrap_or(1);
                let this = body.pointer(start).and_then(Value::as_u64).unwrap_or(asked).max(1);
                let total = body.pointer(total).and_then(Value::as_u64);
                let items = items_at(&mut body, items)?;
                let after = this.saturating_add(items.len() as u64);
                let next = total.filter(|t| after <= *t).map(|_| Next::Param(param, after.to_string()));
                Ok(Page { items, next })
            }
        }
    }
}

/// A cursor as the query string carries it: a string as is, a number in decimal; anything else ends paging.
fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Why a listing stopped: a page that is not a list, or one of the guards a server that never stops meets.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    #[error("expected a JSON array{at}, got {got}")]
    NotAList { at: String, got: &'static str },
    #[error("the listing passed {mb} MB (max_listing_mb)")]
    TooLarge { mb: usize },
    #[error("the listing did not end after {pages} pages (max_pages); the server keeps naming another page")]
    NoEnd { pages: usize },
    #[error("the server named a page already fetched as the next one ({url}), so the listing would never end")]
    Repeated { url: String },
    #[error("the listing passed {items} items (max_items)")]
    TooMany { items: usize },
}

/// The guards of one listing: pages and items counted, and every page's resolved address remembered.
pub struct Walk {
    limits: Limits,
    hold: Hold,
    seen: HashSet<String>,
    items: usize,
    bytes: usize,
}

impl Walk {
    pub fn new(limits: Limits, hold: Hold) -> Self {
        Walk { limits, hold, seen: HashSet::new(), items: 0, bytes: 0 }
    }

    /// Called with each answer's size in bytes.
    pub fn weigh(&mut self, bytes: usize) -> Result<(), ListingError> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.hold == Hold::Whole && self.bytes > self.limits.max_listing_bytes {
            return Err(ListingError::TooLarge { mb: self.limits.max_listing_bytes >> 20 });
        }
        Ok(())
    }

    /// Called before each page is fetched, with its resolved URL (query included).
    pub fn visit(&mut self, url: &str) -> Result<(), ListingError> {
        if self.seen.len() >= self.limits.max_pages {
            return Err(ListingError::NoEnd { pages: self.limits.max_pages });
        }
        if !self.seen.insert(url.to_string()) {
            return Err(ListingError::Repeated { url: super::shorten(url) });
        }
        Ok(())
    }

    /// A page asked for but dropped unread: it is not one fetched, and does not count.
    pub fn forget(&mut self, url: &str) {
        self.seen.remove(url);
    }

    /// Called with each page's item count.
    pub fn count(&mut self, items: usize) -> Result<(), ListingError> {
        self.items += items;
        if self.hold == Hold::Whole && self.items > self.limits.max_items {
            return Err(ListingError::TooMany { items: self.limits.max_items });
        }
        Ok(())
    }
}

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
    use serde_json::json;

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

    #[test]
    fn each_strategy_reads_its_items_and_next_page() {
        let link = Paging::LinkHeader.read(Some("<https://h/u?page=2>; rel=\"next\""), None, json!([1, 2])).unwrap();
        assert_eq!(link, Page { items: vec![json!(1), json!(2)], next: Some(Next::Url("https://h/u?page=2".into())) });

        let tfe = Paging::Cursor { param: "page[number]", items: "/data", next: "/meta/pagination/next-page" };
        let page =
            tfe.read(None, None, json!({"data": [{"id": "u"}], "meta": {"pagination": {"next-page": 3}}})).unwrap();
        assert_eq!(page.next, Some(Next::Param("page[number]", "3".into())));
        assert_eq!(page.items.len(), 1);
        let last = tfe.read(None, None, json!({"data": [], "meta": {"pagination": {"next-page": null}}})).unwrap();
        assert_eq!(last.next, None);

        let synapse = Paging::Cursor { param: "from", items: "/users", next: "/next_token" };
        let page = synapse.read(None, None, json!({"users": [], "next_token": "100"})).unwrap();
        assert_eq!(page.next, Some(Next::Param("from", "100".into())));

        let tl = Paging::PageOfTotal { param: "page", items: "/content", number: "/number", total: "/totalPages" };
        assert_eq!(
            tl.read(None, None, json!({"content": [1], "number": 0, "totalPages": 2})).unwrap().next,
            Some(Next::Param("page", "1".into()))
        );
        assert_eq!(tl.read(None, None, json!({"content": [1], "number": 1, "totalPages": 2})).unwrap().next, None);

        let scim = Paging::StartIndex {
            param: "startIndex",
            items: "/Resources",
            start: "/startIndex",
            total: "/totalResults",
        };
        let page = |start: Option<u64>, n: usize, total: u64| {
            let mut body = json!({"Resources": vec![json!({}); n], "totalResults": total});
            if let Some(s) = start {
                body["startIndex"] = json!(s);
            }
            body
        };
        // A server capping the page below what was asked: the next page starts after what came.
        assert_eq!(
            scim.read(None, None, page(Some(1), 50, 120)).unwrap().next,
            Some(Next::Param("startIndex", "51".into()))
        );
        assert_eq!(scim.read(None, Some("101"), page(Some(101), 20, 120)).unwrap().next, None);
        // Without startIndex in the answer, the request's own offset counts.
        assert_eq!(
            scim.read(None, Some("51"), page(None, 50, 120)).unwrap().next,
            Some(Next::Param("startIndex", "101".into()))
        );
        // Without totalResults, nothing says there is more.
        assert_eq!(scim.read(None, None, json!({"Resources": [{}]})).unwrap().next, None);
    }

    #[test]
    fn the_rest_of_a_listing_is_planned_where_its_length_is_known() {
        let values = |mut r: Rest| std::iter::from_fn(move || r.take()).collect::<Vec<_>>();
        let tfe = Paging::Numbered {
            param: "page[number]",
            items: "/data",
            next: "/meta/pagination/next-page",
            pages: "/meta/pagination/total-pages",
        };
        let body = json!({"data": [1, 2], "meta": {"pagination": {"next-page": 2, "total-pages": 4}}});
        assert_eq!(values(tfe.rest(Some("1"), &body, 2).unwrap()), ["2", "3", "4"]);
        let last = json!({"data": [1], "meta": {"pagination": {"next-page": null, "total-pages": 1}}});
        assert_eq!(tfe.rest(Some("1"), &last, 1), None);

        let synapse = Paging::Offsets { param: "from", items: "/users", next: "/next_token", total: "/total" };
        let rest = synapse.rest(Some("0"), &json!({"users": [], "total": 250, "next_token": "100"}), 100).unwrap();
        assert_eq!(rest.full, Some(100));
        assert_eq!(values(rest), ["100", "200"]);

        let tl = Paging::PageOfTotal { param: "page", items: "/content", number: "/number", total: "/totalPages" };
        assert_eq!(values(tl.rest(Some("0"), &json!({"number": 0, "totalPages": 3}), 50).unwrap()), ["1", "2"]);

        let scim = Paging::StartIndex {
            param: "startIndex",
            items: "/Resources",
            start: "/startIndex",
            total: "/totalResults",
        };
        // A server capping the page at 50 where 100 were asked: the step is what came.
        let rest = scim.rest(Some("1"), &json!({"startIndex": 1, "totalResults": 120}), 50).unwrap();
        assert_eq!(values(rest), ["51", "101"]);
        // Styles that only know the next page plan nothing; neither does an empty page.
        assert_eq!(Paging::LinkHeader.rest(None, &json!([]), 100), None);
        assert_eq!(scim.rest(Some("1"), &json!({"totalResults": 120}), 0), None);
    }

    #[test]
    fn items_of_the_wrong_type_are_an_error_not_an_empty_list() {
        assert!(Paging::LinkHeader.read(None, None, json!({"message": "hi"})).is_err());
        let synapse = Paging::Cursor { param: "from", items: "/users", next: "/next_token" };
        assert!(synapse.read(None, None, json!({"users": "all of them"})).is_err());
    }

    #[test]
    fn a_walk_refuses_a_page_twice_and_stops_at_its_limits() {
        let mut walk = Walk::new(Limits { max_pages: 3, max_items: 10, ..Limits::default() }, Hold::Whole);
        walk.visit("https://h/u?page=1").unwrap();
        let again = walk.visit("https://h/u?page=1").unwrap_err();
        assert!(
            matches!(&again, ListingError::Repeated { .. }) && again.to_string().contains("already fetched"),
            "{again}"
        );
        walk.visit("https://h/u?page=2").unwrap();
        walk.visit("https://h/u?page=3").unwrap();
        assert!(matches!(walk.visit("https://h/u?page=4"), Err(ListingError::NoEnd { pages: 3 })));
        walk.count(10).unwrap();
        assert!(walk.count(1).unwrap_err().to_string().contains("max_items"));
        let mut walk = Walk::new(Limits { max_listing_bytes: 100, ..Limits::default() }, Hold::Whole);
        walk.weigh(60).unwrap();
        assert!(walk.weigh(60).unwrap_err().to_string().contains("max_listing_mb"));
        // Walked a page at a time, nothing is held: only pages (and cursors) are bounded.
        let mut walk = Walk::new(
            Limits { max_pages: 2, max_items: 10, max_listing_bytes: 100, ..Limits::default() },
            Hold::Walked,
        );
        walk.count(1_000).unwrap();
        walk.weigh(1_000).unwrap();
        walk.visit("https://h/u?page=1").unwrap();
        walk.visit("https://h/u?page=2").unwrap();
        assert!(walk.visit("https://h/u?page=3").unwrap_err().to_string().contains("max_pages"));
    }
}
