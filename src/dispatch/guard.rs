//! The guard: the accounts a change must never take access from (the caller's own, each `protected` entry),
//! resolved once per connection to the stable ids the service gives them, and the one question every path asks
//! of a change before it is sent: which account does it reach, and may it take from that account?

use super::Connection;
use crate::backends::model::Account;
use crate::backends::{self, Action, Backend, Op, Reaches};
use crate::error::ErrorKind;
use crate::http::error::ApiError;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Every stable id of every account a guarded operation must leave alone, with why. A protected entry no
/// account answers to today is kept as the name it is (as the service compares names), so an account that
/// later takes that name is still refused.
#[derive(Debug, Default)]
pub struct Guard {
    ids: HashMap<String, Refusal>,
    unclaimed: HashMap<String, Refusal>,
}

#[derive(Clone, Debug)]
pub struct Refusal {
    pub message: String,
    pub hint: &'static str,
}

impl Guard {
    pub(super) async fn resolve(conn: &Connection) -> Result<Guard, ApiError> {
        let backend = conn.backend.as_ref();
        let mut guard = Guard::default();
        let me = conn.identity().await?.to_string();
        // A token that is nobody's account (an organization's, an application's: backends say so in
        // parentheses, or say nothing) names no account to keep.
        let nobody = me.is_empty() || me.starts_with('(') || backend.invalid_target(&me).is_some();
        if !nobody {
            let mine = Refusal {
                message: format!("{me} is the account this profile's token belongs to"),
                hint: "act on your own account with another admin's token",
            };
            match backends::resolve(backend, &me, &Value::Null).await {
                Ok(account) => guard.add(&account, mine),
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        for entry in &conn.protected {
            let why = Refusal {
                message: format!("{entry} is in profile {}'s protected list", conn.profile),
                hint: "remove it from `protected` in the config if this is really intended",
            };
            // Fail closed: an entry that cannot be looked up, or names two accounts, stops guarded work here.
            match backends::resolve(backend, entry, &Value::Null).await {
                Ok(account) => guard.add(&account, why),
                Err(e) if e.kind == ErrorKind::NotFound && backend.lookup_is_exhaustive() => {
                    guard.unclaimed.entry(backend.name_key(entry)).or_insert(why);
                }
                Err(e) => {
                    return Err(ApiError {
                        message: format!(
                            "the protected entry {entry:?} of profile {} could not be resolved: {}",
                            conn.profile, e.message
                        ),
                        ..e
                    }
                    .with_hint("name each protected account by a login or id this service looks up; guarded work on this profile stops until then"))
                }
            }
        }
        Ok(guard)
    }

    fn add(&mut self, account: &Account, why: Refusal) {
        for id in account.ids() {
            self.ids.entry(id.to_string()).or_insert_with(|| why.clone());
        }
    }

    /// Why `account` must be left alone by an operation that takes from it, if it must: by its stable ids, or a
    /// name it answers to that a protected entry gave before any account had it.
    pub fn refusal(&self, backend: &dyn Backend, account: &Account) -> Option<&Refusal> {
        account
            .ids()
            .find_map(|id| self.ids.get(id))
            .or_else(|| account.names.iter().find_map(|n| self.unclaimed.get(&backend.name_key(n))))
    }

    /// Why the account with stable id `id` must be left alone, if it must (a credential's owner).
    pub fn refusal_of_id(&self, id: &str) -> Option<&Refusal> {
        self.ids.get(id)
    }
}

/// A change, resolved: the action addressed to what the server answered (`target` its account's address,
/// `params.account` its stable id, `params.named` what the script wrote where that differs), and the account.
pub(crate) struct Resolved {
    pub action: Action,
    /// The account a user operation reaches (`None` for a credential's owner, which is only an id).
    pub account: Option<Account>,
    /// The stable id of the account the change takes from or gives to: what claims, done-sets and undo key on.
    pub account_id: String,
}

/// Resolves the account `action` reaches by asking the service, and addresses the action to it. Reads and
/// raw paths reach no account and pass unchanged.
pub(crate) async fn resolve_action(backend: &dyn Backend, action: &Action) -> Result<Option<Resolved>, ApiError> {
    let mut action = action.clone();
    match action.op.reaches(&action.params) {
        Reaches::Nothing => Ok(None),
        Reaches::User => {
            let named = action.target()?.trim().to_string();
            // A change with no state to read first, named in a form the service addresses accounts by (a GHES
            // login, a Terraform or TransactionLink id), is decided on that form with no read; otherwise asked.
            let offline = backend.offline_account(&named, &action.params).filter(|_| action.op.inverse().is_none());
            let account = match offline {
                Some(account) => account,
                None => backends::resolve(backend, &named, &action.params).await?,
            };
            set_param(&mut action, "account", json!(account.id));
            if matches!(action.op, Op::AddToGroup | Op::RemoveFromGroup) {
                // The group too is decided on what the service calls it, not on the name the script gave.
                let named_group = backends::group_of(&action)?;
                let group = backend.group_id(&named_group).await?;
                if group != named_group {
                    set_param(&mut action, "group_named", json!(named_group));
                }
                set_param(&mut action, "group", json!(group));
            }
            if named != account.address {
                set_param(&mut action, "named", json!(named));
            }
            action.target = Some(account.address.clone());
            Ok(Some(Resolved { action, account_id: account.id.clone(), account: Some(account) }))
        }
        Reaches::Credential => {
            action.target()?;
            let owner = backend.owner_of(&action).await?;
            set_param(&mut action, "owner_id", json!(owner));
            Ok(Some(Resolved { action, account: None, account_id: owner }))
        }
    }
}

/// Why `resolved` must not be sent by an operation that takes from its account, if it must not.
pub(crate) fn refusal<'g>(guard: &'g Guard, backend: &dyn Backend, resolved: &Resolved) -> Option<&'g Refusal> {
    if !takes_from(resolved.action.op, &resolved.action.params) {
        return None;
    }
    match &resolved.account {
        Some(account) => guard.refusal(backend, account),
        None => guard.refusal_of_id(&resolved.account_id),
    }
}

/// Does `op` take access or privilege from the account it reaches (or act as it)? Every credential deletion
/// does, whoever the script said owned it.
pub(crate) fn takes_from(op: Op, params: &Value) -> bool {
    op.guards_target() || op.reaches(params) == Reaches::Credential
}

fn set_param(action: &mut Action, key: &str, value: Value) {
    if !action.params.is_object() {
        action.params = json!({});
    }
    action.params[key] = value;
}
