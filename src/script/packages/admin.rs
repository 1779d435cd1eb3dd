//! Admin verbs: `connect`, `profiles`, and every operation as a method on a handle, each routed through dispatch.

use crate::backends::Op;
use crate::error::ErrorKind;
use crate::http::Hold;
use crate::script::bridge::Host;
use crate::script::bulk_input;
use crate::script::docs::FnDoc;
use crate::script::listing::Users;
use crate::script::types::{
    bulk_items, error_map, invalid, target_text, to_dynamic, to_json, Handle, RawJson, ScriptResult,
};
use rhai::{Array, Dynamic, Engine, Map};
use serde_json::{json, Value};
use std::rc::Rc;

pub const DOCS: &[FnDoc] = &[
    FnDoc { name: "connect", signature: "connect(profile) / connect()", summary: "Opens a profile and returns its handle; with no name, the default profile.", example: r#"connect("github")"#, method: false },
    FnDoc { name: "profiles", signature: "profiles()", summary: "The names of the configured profiles.", example: "profiles()", method: false },
    FnDoc { name: "whoami", signature: "h.whoami()", summary: "The account the profile's token belongs to.", example: r#"connect("github").whoami()"#, method: true },
    FnDoc { name: "list_users", signature: "h.list_users() / h.list_users(#{q, admin, suspended, detail})", summary: "Every user (all pages), optionally filtered. On GHES, email, name and suspended are read from each user's own record: unasked for lists of up to 100 users, with `detail: true` for longer ones (`detail: false` skips it); a `suspended` filter always reads them. A record that lacks them lists them in `unknown`, and tables and CSV show `?` for them.", example: r#"connect("github").list_users(#{admin: true})"#, method: true },
    FnDoc { name: "users", signature: "for u in h.users() { … } / h.users(#{q, admin, suspended, detail})", summary: "Every user, read page by page as a `for` loop walks them (the next page is fetched while the script works on this one), so memory stays flat whatever the number of users; filters as list_users (on GHES, `detail: true` reads each user's own record). Use it for reports over large instances; list_users holds the whole list.", example: r#"let admins = 0; for u in connect("github").users(#{admin: true}) { admins += 1; } admins"#, method: true },
    FnDoc { name: "get_user", signature: "h.get_user(login)", summary: "One user's record; throws not_found if there is none.", example: r#"connect("github").get_user("user0001")"#, method: true },
    FnDoc { name: "create_user", signature: "h.create_user(#{login, email}) / h.create_user(login, email)", summary: "Creates a user (GHES normalizes the login: octo_cat becomes octo-cat).", example: r#"connect("github").create_user(#{login: "mona", email: "mona@example.com"})"#, method: true },
    FnDoc { name: "rename_user", signature: "h.rename_user(login, new_login)", summary: "Renames a user (GHES queues the rename and answers 202).", example: r#"connect("github").rename_user("user0003", "user0003-renamed")"#, method: true },
    FnDoc { name: "delete_user", signature: "h.delete_user(login)", summary: "Deletes a user and everything they own; asks first unless --yes. Suspending is usually better.", example: r#"connect("github").delete_user("user0004")"#, method: true },
    FnDoc { name: "suspend", signature: "h.suspend(login) / h.suspend(login, #{reason})", summary: "Suspends a user; the reason lands in the service's and steward's audit logs.", example: r#"connect("github").suspend("user0005", #{reason: "left the company"})"#, method: true },
    FnDoc { name: "unsuspend", signature: "h.unsuspend(login) / h.unsuspend(login, #{reason})", summary: "Lifts a suspension.", example: r#"connect("github").unsuspend("user0025", #{reason: "back from leave"})"#, method: true },
    FnDoc { name: "promote", signature: "h.promote(login)", summary: "Makes a user a site administrator.", example: r#"connect("github").promote("user0006")"#, method: true },
    FnDoc { name: "demote", signature: "h.demote(login)", summary: "Takes site administrator rights away; asks first unless --yes.", example: r#"connect("github").demote("user0050")"#, method: true },
    FnDoc { name: "create_impersonation_token", signature: "h.create_impersonation_token(login, scopes)", summary: "An OAuth token that acts as the user (GHES); the token is shown once and never audited.", example: r#"connect("github").create_impersonation_token("user0007", ["repo"])"#, method: true },
    FnDoc { name: "delete_impersonation_token", signature: "h.delete_impersonation_token(login)", summary: "Deletes the user's impersonation token; asks first unless --yes.", example: r#"connect("github").delete_impersonation_token("user0007")"#, method: true },
    FnDoc { name: "list_keys", signature: "h.list_keys()", summary: "Every public SSH key on the instance.", example: r#"connect("github").list_keys()"#, method: true },
    FnDoc { name: "delete_key", signature: "h.delete_key(key_id)", summary: "Deletes a public key; asks first unless --yes.", example: r#"connect("github").delete_key(1)"#, method: true },
    FnDoc { name: "list_tokens", signature: "h.list_tokens()", summary: "Every personal access token (for all users, admins included).", example: r#"connect("github").list_tokens()"#, method: true },
    FnDoc { name: "delete_token", signature: "h.delete_token(token_id)", summary: "Deletes a personal access token; asks first unless --yes (GHES refuses a token in use).", example: r#"connect("github").delete_token(2)"#, method: true },
    FnDoc { name: "rate_limit", signature: "h.rate_limit()", summary: "The service's rate-limit budget (`enabled: false` when the admin turned limits off).", example: r#"connect("github").rate_limit()"#, method: true },
    FnDoc { name: "activity", signature: "h.activity(#{since, status}) / h.activity(#{user})", summary: "Users active, inactive or never active since a date, from the service's own dates of use (GHES: the all-users report; Synapse: last seen; Travis: last activity); a service without them refuses, saying why.", example: r#"connect("github").activity(#{since: "2000-01-01", status: "inactive"}).len()"#, method: true },
    FnDoc { name: "schedule", signature: "h.schedule(at, verb, user, #{reason})", summary: "A change made later (by `steward schedule run` or `policy run --due`), through the same checks then; only a change steward can take back waits. Timed changes: `h.suspend(u, #{reason, until: \"2027-01-15\"})`, `h.promote(u, #{for: \"4h\"})` are taken back at that time unless the account was changed since.", example: r#"connect("github").schedule("2d", "suspend", "user0001", #{reason: "leaves on Friday"}).scheduled"#, method: true },
    FnDoc { name: "activity_source", signature: "h.activity_source()", summary: "Where the service's activity dates come from, whether they are sign-ins, and who its listing cannot show (`misses`).", example: r#"connect("travis").activity_source().misses != ()"#, method: true },
    FnDoc { name: "user_activity", signature: "h.user_activity(#{since, status})", summary: "Travis CI Enterprise's word for activity: members active (or inactive) since a YYYY-MM-DD date, all pages. Users never active appear in neither list; status \"all\" gives both lists.", example: r#"connect("travis").user_activity(#{since: "2026-01-01", status: "inactive"}).len()"#, method: true },
    FnDoc { name: "reset_2fa", signature: "h.reset_2fa(login)", summary: "Resets a user's two-factor authentication, where the service allows it.", example: r#"let why = (); try { connect("github").reset_2fa("user0008"); } catch (e) { why = e.message; } why"#, method: true },
    FnDoc { name: "suspend_all", signature: "h.suspend_all(ids, #{reason}) / h.suspend_all(\"leavers.csv\", #{reason, results}) / h.suspend_all(h.users(filter), #{reason})", summary: "Suspends many users concurrently (logins, ids, user maps or CSV rows; a CSV file's path, read line by line, a malformed line failing with its number; or a walk of the users); one #{target, status, http_status, error} per item: ok, noop (already suspended), failed, skipped (protected, duplicate), cancelled (not sent: the run stopped), in-doubt (sent as the run stopped: a resume settles it) or dry-run. A reason is required. Options: `dry_run: true` for a plan only; `precheck: false` skips reading each user's state first (half the requests; already-suspended users then report ok, not noop); `results: \"out.csv\"` writes each item's result to that CSV as it is known and returns the counts instead (#{total, ok, noop, failed, …, results}), for jobs of any size (a CSV is then read, planned and carried out 5,000 rows at a time, in flat memory).", example: r#"connect("github").suspend_all(["user0010", "user0011", "user0025"], #{reason: "left the company"})"#, method: true },
    FnDoc { name: "unsuspend_all", signature: "h.unsuspend_all(ids) / h.unsuspend_all(ids, #{reason})", summary: "Lifts many suspensions concurrently; results as suspend_all.", example: r#"connect("github").unsuspend_all(["user0025", "user0050"])"#, method: true },
    FnDoc { name: "promote_all", signature: "h.promote_all(ids)", summary: "Makes many users site administrators; results as suspend_all.", example: r#"connect("github").promote_all(["user0012", "user0013"])"#, method: true },
    FnDoc { name: "demote_all", signature: "h.demote_all(ids)", summary: "Takes administrator rights from many users; results as suspend_all.", example: r#"connect("github").demote_all(["user0050", "user0100"])"#, method: true },
    FnDoc { name: "grant_admin", signature: "h.grant_admin(login)", summary: "Terraform Enterprise's word for promote: makes a user a site administrator.", example: r#"connect("terraform").grant_admin("tfuser0011")"#, method: true },
    FnDoc { name: "revoke_admin", signature: "h.revoke_admin(login)", summary: "Terraform Enterprise's word for demote; asks first unless --yes.", example: r#"connect("terraform").revoke_admin("tfuser0050")"#, method: true },
    FnDoc { name: "disable_two_factor", signature: "h.disable_two_factor(login)", summary: "Terraform Enterprise's word for reset_2fa: turns off a user's 2FA after a lost device.", example: r#"connect("terraform").disable_two_factor("tfuser0003")"#, method: true },
    FnDoc { name: "impersonate", signature: "h.impersonate(login, reason)", summary: "Starts a Terraform Enterprise impersonation session (needs the profile's browser session: session_cookie_env, csrf_token_env).", example: r#"let kind = (); try { connect("terraform").impersonate("tfuser0002", "ticket 42"); } catch (e) { kind = e.kind; } kind"#, method: true },
    FnDoc { name: "unimpersonate", signature: "h.unimpersonate()", summary: "Ends the Terraform Enterprise impersonation session.", example: r#"let kind = (); try { connect("terraform").unimpersonate(); } catch (e) { kind = e.kind; } kind"#, method: true },
    FnDoc { name: "terminate", signature: "h.terminate(id)", summary: "TransactionLink's word for suspend: deactivates a user (steward records their role first, for reinstate).", example: r#"connect("transactionlink").terminate("tluser0003@example.com")"#, method: true },
    FnDoc { name: "reinstate", signature: "h.reinstate(id) / h.reinstate(id, role)", summary: "TransactionLink's word for unsuspend: reactivates a user with a role (an id or a name), by default the one they had.", example: r#"connect("transactionlink").reinstate("tluser0025@example.com", "member")"#, method: true },
    FnDoc { name: "set_role", signature: "h.set_role(id, role)", summary: "Gives a TransactionLink user an organization role, by role id or name (see roles()).", example: r#"connect("transactionlink").set_role("tluser0004@example.com", "admin")"#, method: true },
    FnDoc { name: "update_profile", signature: "h.update_profile(id, #{first_name, last_name, title})", summary: "Changes a TransactionLink user's profile fields.", example: r#"connect("transactionlink").update_profile("tluser0005@example.com", #{title: "Lead"})"#, method: true },
    FnDoc { name: "roles", signature: "h.roles()", summary: "The organization's roles (id, name) on TransactionLink.", example: r#"connect("transactionlink").roles()"#, method: true },
    FnDoc { name: "list_groups", signature: "h.list_groups()", summary: "Every group (id, name; SCIM and Synapse a member count), where the service has groups (GHES organisations and teams, Terraform teams, SCIM groups, Synapse rooms).", example: r#"connect("github").list_groups().map(|g| g.id)"#, method: true },
    FnDoc { name: "members", signature: "h.members(group)", summary: "A group's members (id, login; GHES their role), named as add_to_group names it.", example: r#"connect("github").members("acme/engineering").filter(|m| m.role == "maintainer")"#, method: true },
    FnDoc { name: "add_to_group", signature: "h.add_to_group(user, group, #{role})", summary: "Adds a user to a group, or gives a member another role (GHES: an organisation `org` or team `org/team`, roles admin/maintainer/member; Terraform: a team `org/team` or its id; SCIM: by displayName or id; Synapse: a room by id, alias or its one name).", example: r#"connect("github").add_to_group("user0030", "acme/ops", #{role: "maintainer"})"#, method: true },
    FnDoc { name: "remove_from_group", signature: "h.remove_from_group(user, group)", summary: "Removes a user from a group; asks first unless --yes, and never touches a protected account or your own.", example: r#"connect("github").remove_from_group("user0003", "acme/engineering")"#, method: true },
    FnDoc { name: "list_sessions", signature: "h.list_sessions(user)", summary: "A user's logged-in sessions (Synapse: their devices, with display name and when last seen; never the access token).", example: r#"let kind = (); try { connect("github").list_sessions("user0001"); } catch (e) { kind = e.kind; } kind"#, method: true },
    FnDoc { name: "delete_session", signature: "h.delete_session(user, session_id)", summary: "Logs one session out (Synapse: deletes the device and its access token); asks first unless --yes, and never on a protected account or your own.", example: r#"let kind = (); try { connect("github").delete_session("user0001", "ABCDEFGH"); } catch (e) { kind = e.kind; } kind"#, method: true },
    FnDoc { name: "api", signature: "h.api(method, path) / h.api(method, path, body)", summary: "Any request under the profile's URL, audited like every action (like `gh api`).", example: r#"connect("github").api("GET", "users/user0001")"#, method: true },
];

pub fn register(engine: &mut Engine, host: Rc<Host>) {
    engine.register_type_with_name::<Handle>("Handle");
    engine.register_fn("to_string", |h: &mut Handle| h.describe());
    engine.register_fn("to_debug", |h: &mut Handle| h.describe());
    engine.register_get("profile", |h: &mut Handle| h.conn.profile.clone());
    engine.register_get("kind", |h: &mut Handle| h.conn.backend.kind().to_string());
    let h = host.clone();
    engine.register_fn(
        "schedule",
        move |handle: &mut Handle, at: &str, op: &str, target: Dynamic, opts: Map| -> ScriptResult<Dynamic> {
            let op =
                Op::from_name(op).ok_or_else(|| invalid(format!("schedule: {op:?} is not a verb steward knows")))?;
            let target = target_text(&target)?;
            let params = to_json(&opts.into())?;
            h.schedule(&handle.conn, op, &target, at, params)
        },
    );
    engine.register_fn("activity_source", |h: &mut Handle| {
        to_dynamic(crate::backends::activity_source(h.conn.backend.kind()).describe())
    });
    engine.register_type_with_name::<RawJson>("Json");
    engine.register_indexer_get(RawJson::get);
    engine.register_fn("keys", RawJson::keys);
    engine.register_fn("to_string", RawJson::text);
    engine.register_fn("to_debug", RawJson::text);

    let h = host.clone();
    engine.register_fn("connect", move |name: &str| -> ScriptResult<Handle> { connect(&h, Some(name)) });
    let h = host.clone();
    engine.register_fn("connect", move || -> ScriptResult<Handle> { connect(&h, None) });
    let h = host.clone();
    engine.register_fn("profiles", move || -> Array { h.connections.names().into_iter().map(Dynamic::from).collect() });
    register_reads(engine, &host);
    register_streams(engine, &host);
    register_changes(engine, &host);
    register_groups(engine, &host);
    register_own_words(engine, &host);
    register_bulk(engine, &host);
    register_api(engine, host);
}

/// The verbs that take no argument, or only an options map.
fn register_reads(engine: &mut Engine, host: &Rc<Host>) {
    for (name, op) in [
        ("whoami", Op::Whoami),
        ("list_keys", Op::ListKeys),
        ("list_tokens", Op::ListTokens),
        ("rate_limit", Op::RateLimit),
        ("activity", Op::Activity),
        ("list_groups", Op::ListGroups),
    ] {
        let h = host.clone();
        engine.register_fn(name, move |handle: &mut Handle| h.perform(&handle.conn, op, None, Value::Null));
    }
    for (name, op) in [("activity", Op::Activity), ("user_activity", Op::Activity), ("create_user", Op::CreateUser)] {
        let h = host.clone();
        engine.register_fn(name, move |handle: &mut Handle, opts: Map| -> ScriptResult<Dynamic> {
            own_word(handle, name)?;
            let params = to_json(&opts.into())?;
            // A new user's login is the action's target, so the audit log names who was created.
            let target = (op == Op::CreateUser)
                .then(|| params.get("login").and_then(Value::as_str).map(str::to_string))
                .flatten();
            h.perform(&handle.conn, op, target, params)
        });
    }
}

/// `h.list_users()`, and `h.users()`: the listing as a lazy sequence for `for`.
fn register_streams(engine: &mut Engine, host: &Rc<Host>) {
    engine.register_type_with_name::<Users>("Users");
    engine.register_iterator_result::<Users, Dynamic>();
    engine.register_fn("to_string", |u: &mut Users| u.describe());
    engine.register_fn("to_debug", |u: &mut Users| u.describe());
    let h = host.clone();
    engine.register_fn("list_users", move |handle: &mut Handle| h.list_users(&handle.conn, Value::Null));
    let h = host.clone();
    engine.register_fn("list_users", move |handle: &mut Handle, filter: Map| -> ScriptResult<Dynamic> {
        h.list_users(&handle.conn, to_json(&filter.into())?)
    });
    let h = host.clone();
    engine.register_fn("users", move |handle: &mut Handle| h.stream_users(&handle.conn, Value::Null, Hold::Walked));
    let h = host.clone();
    engine.register_fn("users", move |handle: &mut Handle, filter: Map| -> ScriptResult<Users> {
        h.stream_users(&handle.conn, to_json(&filter.into())?, Hold::Walked)
    });
}

/// The vendors' own words: aliases of the common verbs, and operations only one service has.
fn register_own_words(engine: &mut Engine, host: &Rc<Host>) {
    for (name, op) in [("grant_admin", Op::Promote), ("revoke_admin", Op::Demote), ("disable_two_factor", Op::Reset2fa)]
    {
        let h = host.clone();
        engine.register_fn(name, move |handle: &mut Handle, target: Dynamic| -> ScriptResult<Dynamic> {
            own_word(handle, name)?;
            h.perform(&handle.conn, op, Some(target_text(&target)?), json!({}))
        });
    }
    let h = host.clone();
    engine.register_fn(
        "impersonate",
        move |handle: &mut Handle, target: Dynamic, reason: &str| -> ScriptResult<Dynamic> {
            own_word(handle, "impersonate")?;
            h.perform(&handle.conn, Op::Impersonate, Some(target_text(&target)?), json!({"reason": reason}))
        },
    );
    let h = host.clone();
    engine.register_fn("terminate", move |handle: &mut Handle, target: Dynamic| -> ScriptResult<Dynamic> {
        own_word(handle, "terminate")?;
        h.perform(&handle.conn, Op::Suspend, Some(target_text(&target)?), json!({}))
    });
    let h = host.clone();
    engine.register_fn("reinstate", move |handle: &mut Handle, target: Dynamic| -> ScriptResult<Dynamic> {
        own_word(handle, "reinstate")?;
        h.perform(&handle.conn, Op::Unsuspend, Some(target_text(&target)?), json!({}))
    });
    let h = host.clone();
    engine.register_fn("reinstate", move |handle: &mut Handle, target: Dynamic, role: &str| -> ScriptResult<Dynamic> {
        own_word(handle, "reinstate")?;
        h.perform(&handle.conn, Op::Unsuspend, Some(target_text(&target)?), json!({"role": role}))
    });
    let h = host.clone();
    engine.register_fn("set_role", move |handle: &mut Handle, target: Dynamic, role: &str| -> ScriptResult<Dynamic> {
        own_word(handle, "set_role")?;
        h.perform(&handle.conn, Op::SetRole, Some(target_text(&target)?), json!({"role": role}))
    });
    let h = host.clone();
    engine.register_fn(
        "update_profile",
        move |handle: &mut Handle, target: Dynamic, fields: Map| -> ScriptResult<Dynamic> {
            own_word(handle, "update_profile")?;
            h.perform(&handle.conn, Op::UpdateProfile, Some(target_text(&target)?), to_json(&fields.into())?)
        },
    );
    let h = host.clone();
    engine.register_fn("roles", move |handle: &mut Handle| -> ScriptResult<Dynamic> {
        own_word(handle, "roles")?;
        h.perform(&handle.conn, Op::Roles, None, Value::Null)
    });
    let h = host.clone();
    engine.register_fn("unimpersonate", move |handle: &mut Handle| -> ScriptResult<Dynamic> {
        own_word(handle, "unimpersonate")?;
        h.perform(&handle.conn, Op::Unimpersonate, None, json!({}))
    });
}

/// The common verbs on one user (or key, or token), with their extra arguments.
/// A group's members, and changes to them (`h.add_to_group(user, group)`).
fn register_groups(engine: &mut Engine, host: &Rc<Host>) {
    for op in [Op::AddToGroup, Op::RemoveFromGroup] {
        let h = host.clone();
        engine.register_fn(
            op.name(),
            move |handle: &mut Handle, target: Dynamic, group: &str| -> ScriptResult<Dynamic> {
                h.perform(&handle.conn, op, Some(target_text(&target)?), json!({"group": group}))
            },
        );
        // With options: `#{role: "maintainer", reason: "…", until: "2027-01-15"}`.
        let h = host.clone();
        engine.register_fn(
            op.name(),
            move |handle: &mut Handle, target: Dynamic, group: &str, opts: Map| -> ScriptResult<Dynamic> {
                let mut params = to_json(&opts.into())?;
                if !params.is_object() {
                    params = json!({});
                }
                params["group"] = json!(group);
                h.perform(&handle.conn, op, Some(target_text(&target)?), params)
            },
        );
    }
    let h = host.clone();
    engine.register_fn("members", move |handle: &mut Handle, group: &str| -> ScriptResult<Dynamic> {
        h.perform(&handle.conn, Op::Members, None, json!({"group": group}))
    });
}

fn register_changes(engine: &mut Engine, host: &Rc<Host>) {
    for op in [
        Op::GetUser,
        Op::DeleteUser,
        Op::Suspend,
        Op::Unsuspend,
        Op::Promote,
        Op::Demote,
        Op::CreateImpersonationToken,
        Op::DeleteImpersonationToken,
        Op::DeleteKey,
        Op::DeleteToken,
        Op::Reset2fa,
    ] {
        let h = host.clone();
        engine.register_fn(op.name(), move |handle: &mut Handle, target: Dynamic| -> ScriptResult<Dynamic> {
            h.perform(&handle.conn, op, Some(target_text(&target)?), json!({}))
        });
    }
    for op in [Op::Suspend, Op::Unsuspend, Op::Promote, Op::Demote] {
        let h = host.clone();
        engine.register_fn(
            op.name(),
            move |handle: &mut Handle, target: Dynamic, opts: Map| -> ScriptResult<Dynamic> {
                h.perform(&handle.conn, op, Some(target_text(&target)?), to_json(&opts.into())?)
            },
        );
    }
    let h = host.clone();
    engine.register_fn("list_sessions", move |handle: &mut Handle, user: Dynamic| -> ScriptResult<Dynamic> {
        h.perform(&handle.conn, Op::ListSessions, Some(target_text(&user)?), json!({}))
    });
    // The session is the target; its owner is named so the guard protects it like the account itself.
    let h = host.clone();
    engine.register_fn(
        "delete_session",
        move |handle: &mut Handle, user: Dynamic, session: Dynamic| -> ScriptResult<Dynamic> {
            let owner = target_text(&user)?;
            h.perform(&handle.conn, Op::DeleteSession, Some(target_text(&session)?), json!({"owner": owner}))
        },
    );
    let h = host.clone();
    engine.register_fn("create_user", move |handle: &mut Handle, login: &str, email: &str| {
        h.perform(&handle.conn, Op::CreateUser, Some(login.to_string()), json!({"login": login, "email": email}))
    });
    let h = host.clone();
    engine.register_fn(
        "rename_user",
        move |handle: &mut Handle, target: Dynamic, new_login: &str| -> ScriptResult<Dynamic> {
            h.perform(&handle.conn, Op::RenameUser, Some(target_text(&target)?), json!({"login": new_login}))
        },
    );
    let h = host.clone();
    engine.register_fn(
        "create_impersonation_token",
        move |handle: &mut Handle, target: Dynamic, scopes: Array| -> ScriptResult<Dynamic> {
            let scopes = to_json(&scopes.into())?;
            h.perform(
                &handle.conn,
                Op::CreateImpersonationToken,
                Some(target_text(&target)?),
                json!({"scopes": scopes}),
            )
        },
    );
}

/// The bulk forms (`suspend_all`) of the verbs that have one.
fn register_bulk(engine: &mut Engine, host: &Rc<Host>) {
    for verb in crate::backends::VERBS {
        let (op, Some(name)) = (verb.op, verb.bulk) else { continue };
        let h = host.clone();
        engine.register_fn(name, move |handle: &mut Handle, ids: Array| {
            h.perform_all(&handle.conn, op, bulk_items(&ids, handle.conn.backend.target_keys()), json!({}))
        });
        let h = host.clone();
        engine.register_fn(name, move |handle: &mut Handle, ids: Array, opts: Map| -> ScriptResult<Dynamic> {
            h.perform_all(&handle.conn, op, bulk_items(&ids, handle.conn.backend.target_keys()), to_json(&opts.into())?)
        });
        // A CSV file's path, read straight into items; and a walk of the users.
        let h = host.clone();
        engine.register_fn(name, move |handle: &mut Handle, csv: &str| -> ScriptResult<Dynamic> {
            h.perform_all(&handle.conn, op, csv_items(&h, handle, csv)?, json!({}))
        });
        let h = host.clone();
        engine.register_fn(name, move |handle: &mut Handle, users: Users| -> ScriptResult<Dynamic> {
            let items = bulk_input::from_users(&users, handle.conn.backend.target_keys())?;
            h.perform_all(&handle.conn, op, items, json!({}))
        });
        let h = host.clone();
        engine.register_fn(name, move |handle: &mut Handle, csv: &str, opts: Map| -> ScriptResult<Dynamic> {
            let params = to_json(&opts.into())?;
            bulk_input::results_apart_from(csv, params.get("results").and_then(Value::as_str))?;
            // Results written as they come: the job reads, plans and acts in windows, in flat memory.
            match params.get("results").is_some_and(Value::is_string) {
                true => h.perform_all_csv(&handle.conn, op, csv, params),
                false => h.perform_all(&handle.conn, op, csv_items(&h, handle, csv)?, params),
            }
        });
        let h = host.clone();
        engine.register_fn(name, move |handle: &mut Handle, users: Users, opts: Map| -> ScriptResult<Dynamic> {
            let items = bulk_input::from_users(&users, handle.conn.backend.target_keys())?;
            h.perform_all(&handle.conn, op, items, to_json(&opts.into())?)
        });
    }
}

/// A bulk job's items from a CSV file; rows that name a user only by email are looked up first, in one walk of
/// the users in detail (a GHES listing says no emails), only when there are any.
fn csv_items(host: &Host, handle: &Handle, csv: &str) -> ScriptResult<Vec<crate::dispatch::BulkItem>> {
    let read = bulk_input::from_csv(csv, handle.conn.backend.target_keys())?;
    if read.by_email.is_empty() {
        return Ok(read.items);
    }
    read.settle_emails(&host.stream_users(&handle.conn, json!({"detail": true}), Hold::Walked)?)
}

/// `api(method, path[, body])`: any request under the profile's URL, audited like every action.
fn register_api(engine: &mut Engine, host: Rc<Host>) {
    let h = host.clone();
    engine.register_fn("api", move |handle: &mut Handle, method: &str, path: &str| {
        h.perform(&handle.conn, Op::Api, Some(path.to_string()), json!({"method": method, "path": path}))
    });
    let h = host;
    engine.register_fn(
        "api",
        move |handle: &mut Handle, method: &str, path: &str, body: Dynamic| -> ScriptResult<Dynamic> {
            let body = to_json(&body)?;
            h.perform(
                &handle.conn,
                Op::Api,
                Some(path.to_string()),
                json!({"method": method, "path": path, "body": body}),
            )
        },
    );
}

/// Whether `method` works on a handle of `kind`: its service's own words and the common operations it supports
/// (what REPL completion offers after `h.`). Methods that are not operations work everywhere.
pub fn offered_on(kind: &str, method: &str) -> bool {
    if let Some((owner, _)) = crate::backends::word_owner(method) {
        return owner.name == kind;
    }
    // `users` is list_users read lazily; `suspend_all` is suspend in bulk.
    let op = match method {
        "users" => Some(Op::ListUsers),
        _ => Op::from_name(method).or_else(|| method.strip_suffix("_all").and_then(Op::from_name)),
    };
    match (op, crate::backends::kind(kind)) {
        (Some(op), Some(k)) => k.supported.contains(&op),
        _ => true,
    }
}

/// `Ok` when `word` may be called on this handle (a service's own word works on its handles only: on GitHub,
/// `terminate` is not a word for suspend, and must not quietly become one); otherwise `unsupported`, naming the
/// common verb to use.
fn own_word(handle: &Handle, word: &str) -> ScriptResult<()> {
    let kind = handle.conn.backend.kind();
    match crate::backends::word_owner(word) {
        Some((owner, _)) if owner.name == kind => Ok(()),
        Some((owner, common)) => {
            let owner = owner.name;
            let instead = if common.is_empty() { String::new() } else { format!("; on {kind} use {common}") };
            Err(error_map(
                ErrorKind::Unsupported,
                format!("{word} is {owner}'s word and not supported by {kind}{instead}"),
            ))
        }
        None => Ok(()),
    }
}

fn connect(host: &Host, name: Option<&str>) -> ScriptResult<Handle> {
    host.connections.connect(name).map(|conn| Handle { conn }).map_err(|e| invalid(e.to_string()))
}
