//! Who each person is on each service. A person is named once (an email, a login, an id; a CSV row may give
//! several), then known on each service by the identifiers that service can search: what was given, what an
//! identity map says, and what the services themselves link (an email GHES or SCIM records finds the person on
//! TransactionLink; a GHES login finds them on Travis, which signs people in with it). Per person and service the
//! answer is exactly one of: found (the account, and by what), no account (checked by identifiers the service
//! can search, named), could not check (which identifier it would need), refused (one identifier names two
//! accounts, or two identifiers name different ones), or failed (the service did not answer).

use super::{BulkItem, Connection, Dispatcher};
use crate::backends::model::Account;
use crate::backends::{Action, Backend, IdKind, Op};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;

/// How many times identifiers found on one service are looked for on the others (a GHES login leads to an
/// email, which leads to a TransactionLink account; nothing links further than that).
const ROUNDS: usize = 3;

/// Where an identifier came from when the job's input named it.
pub const GIVEN: &str = "given";

/// One identifier of a person, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identifier {
    pub kind: IdKind,
    pub value: String,
    /// `given`, `identity map`, or the profile whose account records it.
    pub from: String,
    /// An identity map's row names the account on one profile only.
    pub only: Option<String>,
}

impl Identifier {
    fn new(kind: IdKind, value: &str, from: &str) -> Identifier {
        Identifier { kind, value: value.trim().to_string(), from: from.to_string(), only: None }
    }

    /// `email ann@example.com (from ghes)`, `login bob`, `account ann.b (identity map)`.
    pub fn describe(&self) -> String {
        match (&self.only, self.from.as_str()) {
            (Some(_), _) => format!("account {} (identity map)", self.value),
            (None, GIVEN) => format!("{} {}", self.kind.words(), self.value),
            (None, from) => format!("{} {} (from {from})", self.kind.words(), self.value),
        }
    }

    fn same(&self, other: &Identifier) -> bool {
        self.kind == other.kind && self.only == other.only && self.value.to_lowercase() == other.value.to_lowercase()
    }
}

/// The kind of a name as given: an email (something@domain), else a login or id of the service it is used on.
fn kind_of(name: &str) -> IdKind {
    match crate::backends::email_of(name) {
        Some(_) => IdKind::Email,
        None => IdKind::Login,
    }
}

/// What one service says about one person.
#[derive(Clone, Debug)]
pub enum Finding {
    /// `name`: what the service resolves the account by (its login where an email led to it).
    Found {
        account: Account,
        name: String,
        by: Identifier,
    },
    /// Looked up by these identifiers, each of a kind the service can search: none named an account.
    NoAccount {
        checked: Vec<String>,
    },
    /// No identifier known for the person is one this service can search; says which it would need.
    CouldNotCheck {
        needs: String,
    },
    /// One identifier names two accounts, or two identifiers name different ones: no guess is made.
    Refused(ApiError),
    Failed(ApiError),
}

/// An identity map's rows: (person as given, profile) → the account's name there.
#[derive(Clone, Debug, Default)]
pub struct IdentityMap(HashMap<(String, String), String>);

impl IdentityMap {
    /// From `[{person, profile, account}]` (a CSV the script read); a row missing a field is an error naming it.
    pub fn from_rows(rows: Option<&Value>) -> Result<IdentityMap, ApiError> {
        let mut map = HashMap::new();
        for (i, row) in rows.and_then(Value::as_array).into_iter().flatten().enumerate() {
            let field = |k: &str| row.get(k).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty());
            let (Some(person), Some(profile), Some(account)) = (field("person"), field("profile"), field("account"))
            else {
                let line = row
                    .get("_line")
                    .and_then(|l| l.as_i64().or_else(|| l.as_str()?.parse().ok()))
                    .map(|l| format!("line {l}"))
                    .unwrap_or(format!("row {}", i + 1));
                return Err(ApiError::invalid(format!(
                    "identity map {line}: each row needs person, profile and account (the person as the job names them, the profile, their account there)"
                )));
            };
            map.insert((person.to_lowercase(), profile.to_string()), account.to_string());
        }
        Ok(IdentityMap(map))
    }

    fn account(&self, person: &str, profile: &str) -> Option<&String> {
        self.0.get(&(person.trim().to_lowercase(), profile.to_string()))
    }

    fn profiles(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(|(_, p)| p.as_str())
    }
}

/// What one profile learned of one person so far.
#[derive(Default)]
struct Seen {
    tried: Vec<Identifier>,
    found: Vec<(Identifier, String, Account)>,
    refused: Option<ApiError>,
    failed: Option<ApiError>,
}

/// A name and the account it resolved to (none: the service has no such account).
type Lookup = (String, Result<Option<Account>, ApiError>);

impl Dispatcher {
    /// Each person's finding on each profile: `conns[k]`'s findings are `out[k]`, one per item, in order, or
    /// why that profile could not be searched at all (the others go on). Stopped (Ctrl-C): an error.
    pub(super) async fn identify(
        &self,
        conns: &[&Connection],
        items: &[BulkItem],
        map: &IdentityMap,
    ) -> Result<Vec<Result<Vec<Finding>, ApiError>>, ApiError> {
        if let Some(unknown) = map.profiles().find(|p| !conns.iter().any(|c| c.profile == *p)) {
            return Err(ApiError::invalid(format!(
                "the identity map names profile {unknown:?}, which this job does not act on"
            )));
        }
        let mut known: Vec<Vec<Identifier>> = items.iter().map(|item| given(item, conns, map)).collect();
        let mut seen: Vec<Vec<Seen>> = conns.iter().map(|_| items.iter().map(|_| Seen::default()).collect()).collect();
        let mut indexes: Vec<Option<EmailIndex>> = conns.iter().map(|_| None).collect();
        let mut down: Vec<Option<ApiError>> = conns.iter().map(|_| None).collect();
        for _ in 0..ROUNDS {
            let rounds = conns.iter().zip(seen.iter()).zip(indexes.iter_mut()).zip(&down).map(
                |(((conn, seen), index), down)| {
                    let todo: Vec<(usize, Identifier)> = known
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| items[*i].error.is_none() && seen[*i].refused.is_none())
                        .flat_map(|(i, ids)| ids.iter().map(move |id| (i, id)))
                        .filter(|(i, id)| searchable(conn, id) && !seen[*i].tried.iter().any(|t| t.same(id)))
                        .filter(|_| down.is_none())
                        .map(|(i, id)| (i, id.clone()))
                        .collect();
                    async move {
                        let names = todo.iter().map(|(_, id)| id.value.clone()).collect();
                        let looked = self.look_up(conn, names, index).await?;
                        Ok::<_, ApiError>(todo.into_iter().zip(looked).collect::<Vec<_>>())
                    }
                },
            );
            let answers = futures::future::join_all(rounds).await;
            let mut learned = false;
            for (k, answers) in answers.into_iter().enumerate() {
                let answers = match answers {
                    Ok(answers) => answers,
                    Err(e) if e.kind == ErrorKind::Cancelled => return Err(e),
                    Err(e) => {
                        down[k] = Some(e);
                        continue;
                    }
                };
                for ((i, id), (name, result)) in answers {
                    let s = &mut seen[k][i];
                    s.tried.push(id.clone());
                    match result {
                        Ok(Some(account)) => {
                            for more in linked(conns[k], &account) {
                                if !known[i].iter().any(|k| k.same(&more)) {
                                    known[i].push(more);
                                    learned = true;
                                }
                            }
                            s.found.push((id, name, account));
                        }
                        Ok(None) => {}
                        Err(e) if e.kind == ErrorKind::Cancelled => return Err(e),
                        Err(e) if e.kind == ErrorKind::Conflict => s.refused = Some(e),
                        Err(e) => s.failed = Some(e),
                    }
                }
            }
            if !learned {
                break;
            }
        }
        Ok(conns
            .iter()
            .zip(seen)
            .zip(down)
            .map(|((conn, seen), down)| match down {
                Some(e) => Err(e),
                None => Ok(seen.into_iter().zip(items).map(|(s, item)| finding(conn, s, item)).collect()),
            })
            .collect())
    }

    /// Each name's account as the service resolves it (concurrently; an email the service cannot look up goes
    /// through one listing of the users, read once per job, and one email two accounts share is refused, naming
    /// both).
    async fn look_up(
        &self,
        conn: &Connection,
        names: Vec<String>,
        index: &mut Option<EmailIndex>,
    ) -> Result<Vec<Lookup>, ApiError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let backend = conn.backend.as_ref();
        let resolve = |name: String| async move {
            let account = match backend.invalid_target(&name) {
                // An email this service cannot look up: found through one listing of the users, below.
                Some(_) if kind_of(&name) == IdKind::Email => Ok(None),
                Some(why) => Err(ApiError::invalid(why)),
                None => crate::backends::found(
                    self.unless_stopped(crate::backends::resolve(backend, &name, &Value::Null)).await,
                ),
            };
            (name, account)
        };
        self.unless_stopped(backend.warm(&names)).await?;
        let mut found: Vec<Lookup> = stream::iter(names).map(resolve).buffered(conn.concurrency.max(1)).collect().await;
        let unknown_email = |(n, a): &Lookup| kind_of(n) == IdKind::Email && matches!(a, Ok(None));
        if !found.iter().any(unknown_email) {
            return Ok(found);
        }
        if index.is_none() {
            *index = Some(self.email_index(conn).await?);
        }
        let by_email = index.as_ref().map(|i| &i.0);
        let mut again: Vec<(usize, String)> = Vec::new();
        for (i, (name, account)) in found.iter_mut().enumerate().filter(|(_, f)| unknown_email(f)) {
            match by_email.and_then(|b| b.get(&name.to_lowercase())).map(Vec::as_slice) {
                Some([login]) => again.push((i, login.clone())),
                // One email, two accounts: a guess could take access from a colleague who is staying.
                Some(logins @ [_, _, ..]) => {
                    *account = Err(ApiError::new(
                        ErrorKind::Conflict,
                        format!("{name} is the email of more than one account here ({})", logins.join(", ")),
                    )
                    .with_hint("name the person by their login, or in the identity map"))
                }
                _ => {}
            }
        }
        let redone: Vec<(usize, Lookup)> = stream::iter(again)
            .map(|(i, login)| async move { (i, resolve(login).await) })
            .buffered(conn.concurrency.max(1))
            .collect()
            .await;
        for (i, f) in redone {
            found[i] = f;
        }
        Ok(found)
    }

    /// Lower-cased email → the logins of the accounts that have it, from one listing of the users (for
    /// services that look nobody up by email).
    async fn email_index(&self, conn: &Connection) -> Result<EmailIndex, ApiError> {
        if !conn.backend.supported().contains(&Op::ListUsers) {
            return Ok(EmailIndex::default());
        }
        let list = Action::new(Op::ListUsers, None, json!({"detail": true}));
        let users = self.unless_stopped(conn.backend.execute(&list)).await?;
        let mut index: HashMap<String, Vec<String>> = HashMap::new();
        for u in users.as_array().into_iter().flatten() {
            if let (Some(email), Some(login)) =
                (u.get("email").and_then(Value::as_str), u.get("login").and_then(Value::as_str))
            {
                index.entry(email.to_lowercase()).or_default().push(login.to_string());
            }
        }
        Ok(EmailIndex(index))
    }
}

/// Lower-cased email → the logins of the accounts that have it.
#[derive(Default)]
struct EmailIndex(HashMap<String, Vec<String>>);

/// The identifiers a job's item gives: its name, the other names its CSV row has (`also`), and the identity
/// map's rows for it.
fn given(item: &BulkItem, conns: &[&Connection], map: &IdentityMap) -> Vec<Identifier> {
    let primary = item.target.clone().unwrap_or_default();
    let also = item.params.get("also").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
    let names: Vec<&str> = std::iter::once(primary.as_str()).chain(also).filter(|n| !n.trim().is_empty()).collect();
    let mut ids: Vec<Identifier> = Vec::new();
    for name in &names {
        let id = Identifier::new(kind_of(name), name, GIVEN);
        if !ids.iter().any(|k| k.same(&id)) {
            ids.push(id);
        }
    }
    for conn in conns {
        if let Some(account) = names.iter().find_map(|n| map.account(n, &conn.profile)) {
            let mut id = Identifier::new(kind_of(account), account, "identity map");
            id.only = Some(conn.profile.clone());
            ids.push(id);
        }
    }
    ids
}

/// Whether `conn`'s service can look a person up by `id` (so not finding them by it means no account there).
fn searchable(conn: &Connection, id: &Identifier) -> bool {
    let backend: &dyn Backend = conn.backend.as_ref();
    if let Some(only) = &id.only {
        // An identity map row: its profile only, and whatever name the service resolves.
        return *only == conn.profile;
    }
    let valid = backend.invalid_target(&id.value).is_none();
    match id.kind {
        IdKind::Email => backend.finds_by(IdKind::Email),
        IdKind::Login => {
            valid && (backend.finds_by(IdKind::Login) || backend.offline_account(&id.value, &Value::Null).is_some())
        }
        IdKind::VcsLogin => valid && backend.finds_by(IdKind::VcsLogin),
    }
}

/// What an account found on `conn` says about its person that other services can search: its email, and on
/// GHES its login (the VCS login Travis knows them by).
fn linked(conn: &Connection, account: &Account) -> Vec<Identifier> {
    let text = |k: &str| account.record.get(k).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty());
    let mut out = Vec::new();
    if let Some(email) = text("email").filter(|e| kind_of(e) == IdKind::Email) {
        out.push(Identifier::new(IdKind::Email, email, &conn.profile));
    }
    if conn.backend.kind() == "github" {
        if let Some(login) = text("login") {
            out.push(Identifier::new(IdKind::VcsLogin, login, &conn.profile));
        }
    }
    out
}

/// The one finding of a person on a service, from everything tried there.
fn finding(conn: &Connection, seen: Seen, item: &BulkItem) -> Finding {
    if let Some(e) = &item.error {
        return Finding::Failed(ApiError::invalid(e.clone()));
    }
    if let Some(e) = seen.refused {
        return Finding::Refused(e);
    }
    let mut found = seen.found.into_iter();
    if let Some((by, name, account)) = found.next() {
        if let Some((other_by, _, other)) = found.find(|(_, _, a)| a.id != account.id) {
            return Finding::Refused(
                ApiError::new(
                    ErrorKind::Conflict,
                    format!(
                        "this person's identifiers name two accounts on {}: {} by {}, {} by {}; nothing was done here",
                        conn.profile,
                        account.describe(),
                        by.describe(),
                        other.describe(),
                        other_by.describe()
                    ),
                )
                .with_hint("name the right account in the identity map (person, profile, account)"),
            );
        }
        return Finding::Found { account, name, by };
    }
    if let Some(e) = seen.failed {
        return Finding::Failed(e);
    }
    let checked: Vec<String> = seen.tried.iter().map(Identifier::describe).collect();
    match (checked.is_empty(), conn.backend.misses_hide_accounts()) {
        (true, _) => Finding::CouldNotCheck { needs: needs(conn.backend.as_ref()) },
        (false, None) => Finding::NoAccount { checked },
        (false, Some(why)) => Finding::CouldNotCheck { needs: format!("not found by {}; {why}", checked.join(", ")) },
    }
}

/// The identifiers a service finds people by, in words.
fn needs(backend: &dyn Backend) -> String {
    let kinds: Vec<&str> = [IdKind::Email, IdKind::Login, IdKind::VcsLogin]
        .into_iter()
        .filter(|k| backend.finds_by(*k))
        .map(IdKind::words)
        .collect();
    format!(
        "{} finds people by {}, and none is known for this person; add a row to the identity map (person, profile, account)",
        backend.kind(),
        kinds.join(" or ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_an_email_only_when_it_has_a_domain() {
        assert_eq!(kind_of("ann@example.com"), IdKind::Email);
        assert_eq!(kind_of("ann"), IdKind::Login);
        assert_eq!(kind_of("@ann:matrix.example.com"), IdKind::Login, "a Matrix id");
        assert_eq!(kind_of("ann@localhost"), IdKind::Login);
    }

    #[test]
    fn identifiers_are_the_same_whatever_their_case() {
        let a = Identifier::new(IdKind::Email, "Ann@Example.com", "given");
        let b = Identifier::new(IdKind::Email, "ann@example.com", "ghes");
        assert!(a.same(&b));
        assert!(!a.same(&Identifier::new(IdKind::Login, "ann@example.com", "given")));
        assert_eq!(b.describe(), "email ann@example.com (from ghes)");
        assert_eq!(a.describe(), "email Ann@Example.com");
    }

    #[test]
    fn an_identity_map_row_without_an_account_is_an_error_naming_its_line() {
        let rows = json!([{"person": "ann@x.com", "profile": "tl", "account": "ann.b@x.com"}, {"person": "bob", "profile": "tl", "_line": 3}]);
        let e = IdentityMap::from_rows(Some(&rows)).unwrap_err();
        assert!(e.message.contains("line 3"), "{e}");
        let ok =
            IdentityMap::from_rows(Some(&json!([{"person": "Ann@X.com", "profile": "tl", "account": "a1"}]))).unwrap();
        assert_eq!(ok.account("ann@x.com", "tl").map(String::as_str), Some("a1"));
        assert_eq!(ok.account("ann@x.com", "ghes"), None);
    }
}
