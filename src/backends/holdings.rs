//! What an account holds on a service (keys, tokens, sessions, group memberships, 2FA) and the ordered steps that
//! take it away: the per-service knowledge `deprovision` needs. A backend reads its holdings (`Backend::snapshot`)
//! and may adjust the standard cascade (`Backend::cascade`); dispatch does everything else, once.

use super::{Action, Backend, Op};
use serde::Serialize;
use serde_json::{json, Value};

/// A kind of thing an account holds that deprovisioning takes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldingKind {
    /// A token that acts as the user, made by an admin (GHES impersonation tokens).
    ImpersonationToken,
    SshKey,
    /// A personal or user API token.
    Token,
    /// A logged-in device or session.
    Session,
    /// Membership of a group.
    Group,
}

impl HoldingKind {
    /// The operation that removes one, and whether its target is the holding (a key id) or the user.
    fn removal(self) -> Op {
        match self {
            HoldingKind::ImpersonationToken => Op::DeleteImpersonationToken,
            HoldingKind::SshKey => Op::DeleteKey,
            HoldingKind::Token => Op::DeleteToken,
            HoldingKind::Session => Op::DeleteSession,
            HoldingKind::Group => Op::RemoveFromGroup,
        }
    }

    /// Words for a person reading the plan.
    pub fn words(self) -> &'static str {
        match self {
            HoldingKind::ImpersonationToken => "impersonation token",
            HoldingKind::SshKey => "SSH key",
            HoldingKind::Token => "API token",
            HoldingKind::Session => "session",
            HoldingKind::Group => "group membership",
        }
    }

    /// Credentials are counted at verification: zero must remain. (A group is not a credential.)
    pub fn is_credential(self) -> bool {
        !matches!(self, HoldingKind::Group)
    }
}

/// One thing an account holds, described without secret material: ids, titles, fingerprints, dates.
#[derive(Clone, Debug, Serialize)]
pub struct Holding {
    pub kind: HoldingKind,
    pub id: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used: Option<String>,
}

/// An account's state on one service at one moment: the normalized user (without the service's raw JSON), what
/// it holds, its 2FA state where the service says, and what could not be read.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    /// The name actions address the account by (a login; a Travis user id).
    pub target: String,
    pub user: Value,
    pub holdings: Vec<Holding>,
    pub two_factor: Option<bool>,
    /// What this service cannot list, and so cannot count (GHES impersonation tokens).
    pub unlisted: Vec<String>,
}

impl Snapshot {
    /// The account as a snapshot knows it before its holdings are read.
    pub fn of_user(user: &Value) -> Snapshot {
        let mut user = user.clone();
        if let Some(o) = user.as_object_mut() {
            o.remove("raw");
        }
        let id = match user.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let target = match user.get("login").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(login) => login.to_string(),
            None => id,
        };
        Snapshot { target, user, holdings: Vec::new(), two_factor: None, unlisted: Vec::new() }
    }

    pub fn flag(&self, key: &str) -> Option<bool> {
        self.user.get(key).and_then(Value::as_bool)
    }

    /// How many credentials of each kind remain (for verification and the report).
    pub fn credential_count(&self) -> usize {
        self.holdings.iter().filter(|h| h.kind.is_credential()).count()
    }
}

/// What the person deprovisioning asked for beyond the standard cascade.
#[derive(Clone, Debug, Default)]
pub struct Wishes {
    pub reason: String,
    /// Synapse: deactivate the account (irreversible; revokes every token) rather than only suspend it.
    pub deactivate: bool,
    /// Turn off two-factor authentication where the service can (Terraform Enterprise, TransactionLink MFA).
    pub reset_2fa: bool,
}

/// One step of a plan: the action, whether `undo` can put it back, and what it does in words.
#[derive(Clone, Debug)]
pub struct Step {
    pub action: Action,
    pub reversible: bool,
    pub says: String,
}

/// A service's plan for one account: its steps in the order the service needs them, and what it cannot do.
#[derive(Clone, Debug, Default)]
pub struct Cascade {
    pub steps: Vec<Step>,
    /// What this service cannot take away through its API, said plainly (Travis: suspension does not cut access).
    pub caveats: Vec<String>,
}

impl Cascade {
    pub fn push(&mut self, op: Op, target: &str, params: Value, says: String) {
        let reversible = op.inverse().is_some();
        self.steps.push(Step { action: Action::new(op, Some(target.to_string()), params), reversible, says });
    }
}

/// The cascade every service starts from, in the order that works everywhere: take admin rights (GHES will not
/// suspend a site admin), suspend, remove credentials (impersonation tokens, keys, tokens, sessions), leave
/// groups, then what was asked beyond that (2FA, deactivation). Only what the service supports and the
/// snapshot says is there is planned, so a second run plans nothing.
pub fn standard_cascade<B: Backend + ?Sized>(backend: &B, snap: &Snapshot, wishes: &Wishes) -> Cascade {
    let supports = |op: Op| backend.supported().contains(&op);
    let user = snap.target.clone();
    let mut plan = Cascade::default();
    if snap.flag("admin") == Some(true) && supports(Op::Demote) {
        plan.push(Op::Demote, &user, json!({}), "take administrator rights away".into());
    }
    if snap.flag("suspended") != Some(true) && supports(Op::Suspend) {
        plan.push(Op::Suspend, &user, json!({"reason": wishes.reason}), "suspend".into());
    }
    for kind in [
        HoldingKind::ImpersonationToken,
        HoldingKind::SshKey,
        HoldingKind::Token,
        HoldingKind::Session,
        HoldingKind::Group,
    ] {
        let op = kind.removal();
        if !supports(op) {
            continue;
        }
        if kind == HoldingKind::ImpersonationToken && snap.unlisted.iter().any(|u| u == kind.words()) {
            // Unlistable: deleted whatever there is (the service answers 204 either way).
            plan.push(op, &user, json!({}), "delete impersonation tokens (GHES cannot list them)".into());
        }
        for h in snap.holdings.iter().filter(|h| h.kind == kind) {
            let (target, params) = match kind {
                HoldingKind::Group => (user.clone(), json!({"group": h.id})),
                _ => (h.id.clone(), json!({"owner": user, "title": h.title})),
            };
            let says = format!("remove {} {:?}", kind.words(), h.title);
            // A membership comes back with undo (add_to_group); a deleted credential does not.
            let reversible = op.inverse().is_some();
            plan.steps.push(Step { action: Action::new(op, Some(target), params), reversible, says });
        }
    }
    if wishes.reset_2fa && snap.two_factor == Some(true) && supports(Op::Reset2fa) {
        plan.push(Op::Reset2fa, &user, json!({}), "turn two-factor authentication off".into());
    }
    plan
}

/// The normalized user behind `target`, as `get_user` reads it, made a snapshot with no holdings.
pub async fn user_snapshot<B: Backend + ?Sized>(
    backend: &B,
    target: &str,
) -> Result<Snapshot, crate::http::error::ApiError> {
    let user = backend.execute(&Action::new(Op::GetUser, Some(target.to_string()), Value::Null)).await?;
    Ok(Snapshot::of_user(&user))
}

/// `SHA256:…` of an OpenSSH public key line's key blob, as `ssh-keygen -l` prints it; None if it is not one.
pub fn ssh_fingerprint(key_line: &str) -> Option<String> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let blob = key_line.split_whitespace().nth(1)?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(blob).ok()?;
    let digest = sha2::Sha256::digest(&bytes);
    Some(format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_fingerprint_is_the_sha256_of_its_blob() {
        // ssh-keygen -lf of this key prints SHA256:… of the decoded blob; a line that is not a key has none.
        let fp = ssh_fingerprint("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample mona@laptop").expect("a key");
        assert!(fp.starts_with("SHA256:") && fp.len() == 50, "{fp}");
        assert_eq!(ssh_fingerprint("not a key"), None);
        assert_eq!(ssh_fingerprint("ssh-rsa !!!notbase64"), None);
    }
}
