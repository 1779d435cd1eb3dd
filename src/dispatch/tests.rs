//! The pipeline with a fake backend, an in-memory audit log and a scripted prompt: milliseconds each, and the
//! fake counts every request, so each rule is checked where it matters (nothing sent where it must not be).

use super::*;
use crate::audit::AuditTarget;
use crate::backends::model::Account;
use crate::backends::{Backend, Op};
use crate::dispatch::bulk::{BulkProgress, BulkReporter};
use async_trait::async_trait;
use std::sync::Mutex;

/// A service of `@alice:hs` (who the token is), `@bob:hs`, `@carol:hs` and `@user1:hs`…`@user99:hs`. It
/// remembers who is suspended and can lose answers, fail to prepare or stop the run on purpose.
#[derive(Default)]
struct Fake {
    suspended: Mutex<Vec<String>>,
    /// Every call, in order: `execute suspend @bob:hs`, `state @bob:hs`.
    calls: Mutex<Vec<String>>,
    /// The next `execute` applies the change and then loses its answer.
    lose_answer_after_apply: Mutex<bool>,
    /// The next `execute` fails before applying anything.
    fail_before_apply: Mutex<bool>,
    /// Admins, who the service says are "already an admin" when promoted (it cannot be asked beforehand).
    admins: Mutex<Vec<String>>,
    /// Suspensions go in bulk requests (of up to 10), as Travis's and a SCIM server's /Bulk do.
    batches: bool,
    /// Accounts whose `prepare` read fails (as TransactionLink's read of a role can).
    unpreparable: Mutex<Vec<String>>,
    /// Changing this account stops the run (Ctrl-C pressed while its request is answered).
    stop_at: Mutex<Option<(String, Interrupt)>>,
    /// Changing the first account waits until the second has been changed (an item held up, as by a retry's
    /// backoff); `executed` wakes it.
    hold: Mutex<Option<(String, String)>>,
    executed: tokio::sync::Notify,
}

impl Fake {
    fn full_id(name: &str) -> String {
        let local = name.trim_start_matches('@').split(':').next().unwrap_or_default().to_lowercase();
        format!("@{local}:hs")
    }

    fn sent(&self, what: &str) -> usize {
        self.calls.lock().unwrap().iter().filter(|c| c.starts_with(what)).count()
    }
}

#[async_trait]
impl Backend for Fake {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn supported(&self) -> &'static [Op] {
        &[Op::Whoami, Op::GetUser, Op::Suspend, Op::Unsuspend, Op::Demote, Op::Promote]
    }

    fn base_url(&self) -> String {
        "http://fake.invalid/".into()
    }

    async fn identity(&self) -> Result<String, ApiError> {
        Ok("@alice:hs".into())
    }

    /// Reads the account (a call counted as `state`): its id, localpart and suspension.
    async fn lookup(&self, name: &str, _params: &Value) -> Result<Option<Account>, ApiError> {
        let id = Fake::full_id(name);
        self.calls.lock().unwrap().push(format!("state {id}"));
        let local = id.trim_start_matches('@').split(':').next().unwrap_or_default().to_string();
        let numbered =
            local.strip_prefix("user").and_then(|n| n.parse::<u8>().ok()).is_some_and(|n| (1..100).contains(&n));
        let suspended = self.suspended.lock().unwrap().contains(&id);
        Ok((numbered || ["@alice:hs", "@bob:hs", "@carol:hs"].contains(&id.as_str())).then(|| Account {
            names: vec![id.clone(), local],
            address: id.clone(),
            record: json!({"id": id, "suspended": suspended}),
            id,
            aliases: Vec::new(),
        }))
    }

    async fn prepare(&self, action: &Action) -> Result<Option<Value>, ApiError> {
        let target = Fake::full_id(action.target.as_deref().unwrap_or_default());
        match self.unpreparable.lock().unwrap().contains(&target) {
            true => Err(ApiError::new(ErrorKind::Unavailable, format!("could not read {target}"))),
            false => Ok(None),
        }
    }

    async fn batch_size(&self, op: Op) -> Option<usize> {
        (self.batches && matches!(op, Op::Suspend | Op::Unsuspend)).then_some(10)
    }

    async fn execute_batch(&self, op: Op, actions: &[Action]) -> Vec<Result<Value, ApiError>> {
        self.calls.lock().unwrap().push(format!("batch {} of {}", op.name(), actions.len()));
        for a in actions {
            let target = Fake::full_id(a.target.as_deref().unwrap_or_default());
            match op {
                Op::Suspend => self.suspended.lock().unwrap().push(target),
                _ => self.suspended.lock().unwrap().retain(|t| *t != target),
            }
        }
        let lost = std::mem::take(&mut *self.lose_answer_after_apply.lock().unwrap());
        actions
            .iter()
            .map(|a| match lost {
                true => Err(ApiError::new(ErrorKind::Unavailable, "the bulk answer was lost")),
                false => Ok(json!({"ok": true, "target": a.target})),
            })
            .collect()
    }

    async fn settle(&self, action: &Action) -> Result<crate::backends::Outcome, ApiError> {
        let target = Fake::full_id(action.target.as_deref().unwrap_or_default());
        if action.op == Op::Promote && self.admins.lock().unwrap().contains(&target) {
            self.calls.lock().unwrap().push(format!("execute promote {target}"));
            return Ok(crate::backends::Outcome::Already("already an admin".into()));
        }
        self.execute(action).await.map(crate::backends::Outcome::Done)
    }

    async fn execute(&self, action: &Action) -> Result<Value, ApiError> {
        let target = Fake::full_id(action.target.as_deref().unwrap_or_default());
        let until = self.hold.lock().unwrap().clone().filter(|(held, _)| *held == target).map(|(_, until)| until);
        while let Some(until) = &until {
            let next = self.executed.notified();
            if self.sent(&format!("execute {} {until}", action.op.name())) > 0 {
                break;
            }
            next.await;
        }
        self.calls.lock().unwrap().push(format!("execute {} {target}", action.op.name()));
        self.executed.notify_waiters();
        if let Some((_, stop)) = self.stop_at.lock().unwrap().as_ref().filter(|(at, _)| *at == target) {
            stop.raise();
        }
        if std::mem::take(&mut *self.fail_before_apply.lock().unwrap()) {
            return Err(ApiError::new(ErrorKind::Unavailable, "connection reset before the request was applied"));
        }
        match action.op {
            Op::Suspend => self.suspended.lock().unwrap().push(target.clone()),
            Op::Unsuspend => self.suspended.lock().unwrap().retain(|t| *t != target),
            _ => {}
        }
        if std::mem::take(&mut *self.lose_answer_after_apply.lock().unwrap()) {
            return Err(ApiError::new(ErrorKind::Unavailable, "connection reset after the request was applied"));
        }
        Ok(json!({"ok": true, "op": action.op.name(), "target": target}))
    }
}

/// Answers every confirmation the same way, and counts the questions.
struct Scripted {
    answer: Result<bool, String>,
    asked: Mutex<Vec<String>>,
}

impl Prompt for Scripted {
    fn confirm(&self, question: &str) -> Result<bool, NoAnswer> {
        self.asked.lock().unwrap().push(question.to_string());
        self.answer.clone().map_err(NoAnswer)
    }
}

struct Quiet;

impl BulkReporter for Quiet {
    fn begin(&self, _label: &str, _total: usize) -> Box<dyn BulkProgress> {
        Box::new(Quiet)
    }
}

impl BulkProgress for Quiet {
    fn advance(&self, _status: ItemStatus) {}
    fn finish(&self, _label: &str, _counts: &[(ItemStatus, usize)], _elapsed: std::time::Duration) {}
}

fn pipeline(answer: Result<bool, String>, assume_yes: bool) -> (Dispatcher, Arc<Scripted>) {
    pipeline_stopped_by(answer, assume_yes, Interrupt::default())
}

fn pipeline_stopped_by(
    answer: Result<bool, String>,
    assume_yes: bool,
    interrupt: Interrupt,
) -> (Dispatcher, Arc<Scripted>) {
    let prompt = Arc::new(Scripted { answer, asked: Mutex::new(Vec::new()) });
    let mode = Mode { dry_run: false, assume_yes, max_changes: 50 };
    let d = Dispatcher::new(
        AuditTarget::Memory,
        None,
        RunInfo::default(),
        prompt.clone(),
        Arc::new(Quiet),
        mode,
        interrupt,
    );
    (d, prompt)
}

fn connection(fake: &Arc<Fake>, protected: &[&str]) -> Connection {
    connection_of_width(fake, protected, 4)
}

fn connection_of_width(fake: &Arc<Fake>, protected: &[&str], concurrency: usize) -> Connection {
    let backend: Arc<dyn Backend> = fake.clone();
    let protected = protected.iter().map(|p| p.to_string()).collect();
    Connection::new("p", backend, protected, TokenRecord::default(), concurrency)
}

fn items(targets: &[&str]) -> Vec<BulkItem> {
    targets.iter().map(|t| BulkItem { target: Some(t.to_string()), ..Default::default() }).collect()
}

#[tokio::test]
async fn protected_and_own_accounts_are_refused_by_any_name_on_both_paths() {
    let fake = Arc::new(Fake::default());
    let conn = connection(&fake, &["bob"]);
    let (d, _) = pipeline(Ok(true), true);
    for name in ["bob", "@bob:hs", "BOB", "@BOB:hs", "alice", "@alice:hs"] {
        let e = d.perform(&conn, Action::new(Op::Suspend, Some(name.into()), json!({}))).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protected, "{name}: {e}");
    }
    let results =
        d.perform_all(&conn, Op::Suspend, items(&["@bob:hs", "Alice", "carol"]), json!({"reason": "x"})).await.unwrap();
    let statuses: Vec<ItemStatus> = results.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [ItemStatus::Skipped, ItemStatus::Skipped, ItemStatus::Ok]);
    assert_eq!(fake.sent("execute"), 1, "only carol: {:?}", fake.calls.lock().unwrap());
    // Granting is not guarded on either path.
    d.perform(&conn, Action::new(Op::Promote, Some("bob".into()), json!({}))).await.unwrap();
}

#[tokio::test]
async fn destructive_bulk_work_asks_once_and_is_refused_without_an_answer() {
    let fake = Arc::new(Fake::default());
    let conn = connection(&fake, &[]);
    let (d, prompt) = pipeline(Err("no terminal to ask at; pass --yes".into()), false);
    let e = d.perform_all(&conn, Op::Demote, items(&["bob", "carol"]), json!({})).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Cancelled, "{e}");
    assert!(e.message.contains("demote takes access away from 2 accounts"), "{e}");
    assert_eq!(prompt.asked.lock().unwrap().len(), 1, "one question for the whole job");
    assert_eq!(fake.sent("execute"), 0);
    let single = d.perform(&conn, Action::new(Op::Demote, Some("bob".into()), json!({}))).await.unwrap_err();
    assert_eq!(single.kind, ErrorKind::Cancelled, "the single call asks too: {single}");
    assert_eq!(fake.sent("execute"), 0);
}

#[tokio::test]
async fn a_change_whose_answer_was_lost_is_read_before_anything_is_sent_again() {
    let fake = Arc::new(Fake::default());
    let conn = connection(&fake, &[]);
    let (d, _) = pipeline(Ok(true), true);
    *fake.lose_answer_after_apply.lock().unwrap() = true;
    let done = d.perform(&conn, Action::new(Op::Suspend, Some("bob".into()), json!({}))).await.unwrap();
    assert!(done["reconciled"].is_string(), "{done}");
    assert_eq!(fake.sent("execute suspend"), 1, "applied once: {:?}", fake.calls.lock().unwrap());

    *fake.fail_before_apply.lock().unwrap() = true;
    d.perform(&conn, Action::new(Op::Suspend, Some("carol".into()), json!({}))).await.unwrap();
    let calls = fake.calls.lock().unwrap().clone();
    let carol: Vec<&str> = calls.iter().filter(|c| c.ends_with("@carol:hs")).map(String::as_str).collect();
    // The plan's read, the lost attempt, the read that shows it was not applied, then the second attempt.
    assert_eq!(carol, ["state @carol:hs", "execute suspend @carol:hs", "state @carol:hs", "execute suspend @carol:hs"]);
}

#[tokio::test]
async fn a_single_call_on_an_account_already_in_that_state_sends_nothing() {
    let fake = Arc::new(Fake::default());
    fake.suspended.lock().unwrap().push("@carol:hs".into());
    let conn = connection(&fake, &[]);
    let (d, _) = pipeline(Ok(true), true);
    let r = d.perform(&conn, Action::new(Op::Suspend, Some("carol".into()), json!({}))).await.unwrap();
    assert_eq!(r["noop"], true, "{r}");
    assert_eq!(fake.sent("execute"), 0);
}

#[tokio::test]
async fn a_service_saying_already_so_is_a_noop_on_both_paths() {
    let fake = Arc::new(Fake::default());
    fake.admins.lock().unwrap().push("@bob:hs".into());
    let conn = connection(&fake, &[]);
    let (d, _) = pipeline(Ok(true), true);
    let r = d.perform(&conn, Action::new(Op::Promote, Some("bob".into()), json!({}))).await.unwrap();
    assert_eq!(
        (r["noop"].clone(), r["note"].clone()),
        (json!(true), json!("nothing changed: the service says already an admin"))
    );
    let results = d.perform_all(&conn, Op::Promote, items(&["bob", "carol"]), json!({})).await.unwrap();
    let statuses: Vec<ItemStatus> = results.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [ItemStatus::Noop, ItemStatus::Ok]);
}

#[tokio::test]
async fn a_bulk_request_whose_answer_was_lost_is_settled_by_reading_not_resent() {
    let fake = Arc::new(Fake { batches: true, ..Fake::default() });
    let conn = connection(&fake, &[]);
    let (d, _) = pipeline(Ok(true), true);
    *fake.lose_answer_after_apply.lock().unwrap() = true;
    let results = d.perform_all(&conn, Op::Suspend, items(&["bob", "carol"]), json!({"reason": "x"})).await.unwrap();
    let statuses: Vec<ItemStatus> = results.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [ItemStatus::Ok, ItemStatus::Ok], "{results:?}");
    assert_eq!(fake.sent("batch suspend"), 1);
    assert_eq!(fake.sent("execute"), 0, "nothing sent twice: {:?}", fake.calls.lock().unwrap());
}

/// A found bug: an item whose preparation failed took the next item's intent, so each later item of its chunk
/// was reported against another's intent, and the last as "not recorded".
#[tokio::test]
async fn an_item_that_cannot_be_prepared_leaves_the_others_their_own_intents() {
    let fake = Arc::new(Fake::default());
    fake.unpreparable.lock().unwrap().push("@bob:hs".into());
    let conn = connection(&fake, &[]);
    let (d, _) = pipeline(Ok(true), true);
    let results = d.perform_all(&conn, Op::Suspend, items(&["bob", "carol"]), json!({"reason": "x"})).await.unwrap();
    let statuses: Vec<ItemStatus> = results.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [ItemStatus::Failed, ItemStatus::Ok], "{results:?}");
    assert!(results[0].error.as_deref().unwrap_or_default().contains("could not read @bob:hs"), "{results:?}");
    assert_eq!(
        fake.calls.lock().unwrap().iter().filter(|c| c.starts_with("execute")).collect::<Vec<_>>(),
        ["execute suspend @carol:hs"]
    );
}

/// Ctrl-C during a long job: what was not sent is `cancelled` (not failed), and once stopped the job writes
/// no more intents, so the log holds the few committed ahead (each closed) instead of two rows per item left.
#[tokio::test]
async fn a_stopped_job_reports_the_rest_cancelled_and_writes_no_more_intents() {
    let stop = Interrupt::default();
    let fake = Arc::new(Fake { stop_at: Mutex::new(Some(("@user3:hs".into(), stop.clone()))), ..Fake::default() });
    let conn = connection_of_width(&fake, &[], 1);
    let (d, _) = pipeline_stopped_by(Ok(true), true, stop);
    let names: Vec<String> = (1..=60).map(|n| format!("user{n}")).collect();
    let targets: Vec<&str> = names.iter().map(String::as_str).collect();
    let results =
        d.perform_all(&conn, Op::Suspend, items(&targets), json!({"reason": "x", "precheck": false})).await.unwrap();
    let count = |s: ItemStatus| results.iter().filter(|r| r.status == s).count();
    assert_eq!((count(ItemStatus::Ok), count(ItemStatus::Cancelled)), (3, 57), "{results:?}");
    assert_eq!(fake.sent("execute"), 3);
    // An intent and an outcome for each of the 3 sent and of the at most 8 chunks of 1 committed ahead.
    let events = d.recorder.head().await.unwrap();
    assert!(events <= 2 * (3 + 8 + 1), "{events} events for 3 requests");
}

/// An item held up (as by a retry's backoff) holds no request slot: at a concurrency of one, the next item is
/// sent while it waits.
#[tokio::test]
async fn an_item_held_up_does_not_hold_up_the_next() {
    let fake = Arc::new(Fake { hold: Mutex::new(Some(("@user1:hs".into(), "@user2:hs".into()))), ..Fake::default() });
    let conn = connection_of_width(&fake, &[], 1);
    let (d, _) = pipeline(Ok(true), true);
    let job = d.perform_all(&conn, Op::Suspend, items(&["user1", "user2"]), json!({"reason": "x", "precheck": false}));
    let results = tokio::time::timeout(std::time::Duration::from_secs(10), job).await.expect("the job stalled");
    let statuses: Vec<ItemStatus> = results.unwrap().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [ItemStatus::Ok, ItemStatus::Ok]);
    let calls = fake.calls.lock().unwrap().clone();
    let sent: Vec<&String> = calls.iter().filter(|c| c.starts_with("execute")).collect();
    assert_eq!(sent, ["execute suspend @user2:hs", "execute suspend @user1:hs"]);
}

/// A job in windows: an account named again in a later window is a duplicate (sent once), every item is told,
/// and once the run is stopped the windows after are reported cancelled without a read or a send.
#[tokio::test]
async fn a_windowed_job_finds_duplicates_across_windows_and_stops_between_them() {
    let fake = Arc::new(Fake::default());
    let conn = connection(&fake, &[]);
    let (d, _) = pipeline(Ok(true), true);
    let mut windows = vec![items(&["bob"]), items(&["carol", "user7"]), items(&["@bob:hs"])].into_iter();
    let mut next = move || Ok(windows.next().unwrap_or_default());
    let told = Mutex::new(Vec::new());
    let each =
        |r: &super::bulk::BulkResult| told.lock().unwrap().push((r.target.clone().unwrap_or_default(), r.status));
    let params = json!({"reason": "x"});
    let counts = d.perform_all_windowed(&conn, Op::Suspend, (4, &mut next), params, &each).await.unwrap();
    assert_eq!(counts, [(ItemStatus::Ok, 3), (ItemStatus::Skipped, 1)], "{:?}", told.lock().unwrap());
    assert_eq!(fake.sent("execute"), 3, "bob once, across windows");
    assert_eq!(told.lock().unwrap().len(), 4);

    let stop = Interrupt::default();
    let (d, _) = pipeline_stopped_by(Ok(true), true, stop.clone());
    let fake = Arc::new(Fake::default());
    let conn = connection(&fake, &[]);
    let mut windows = vec![items(&["user1"]), items(&["user2", "user3"])].into_iter();
    let mut next = move || {
        let window = windows.next().unwrap_or_default();
        // Ctrl-C as the second window is read.
        if window.len() == 2 {
            stop.raise();
        }
        Ok(window)
    };
    let counts = d.perform_all_windowed(&conn, Op::Suspend, (3, &mut next), json!({"reason": "x"}), &|_| {}).await;
    assert_eq!(counts.unwrap(), [(ItemStatus::Ok, 1), (ItemStatus::Cancelled, 2)]);
    let later = fake.calls.lock().unwrap().iter().filter(|c| c.contains("user2") || c.contains("user3")).count();
    assert_eq!(later, 0, "nothing of the second window was read or sent");
}
