//! The rustyline helper: completion of functions, variables, methods and profile names.

use super::input::{slot, Receiver, Slot};
use crate::script::docs;
use crate::script::packages::admin;
use rustyline::completion::{Completer, Pair};
use rustyline::{Context, Helper, Highlighter, Hinter, Validator};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

pub const COMMANDS: &[(&str, &str)] = &[
    (":help", "list every function, or `:help NAME` for one"),
    (":profiles", "the configured profiles"),
    (":vars", "the variables defined so far"),
    (":quit", "leave (Ctrl-D does too)"),
];

const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "for", "in", "while", "loop", "break", "continue", "return", "import", "try",
    "catch", "throw", "true", "false",
];

/// Methods Rhai itself gives arrays, maps and strings, worth offering after a dot.
const BUILTIN_METHODS: &[&str] = &[
    "len", "filter", "map", "reduce", "sort", "contains", "keys", "values", "to_upper", "to_lower", "split", "trim",
    "push", "index_of",
];

#[derive(Helper, Highlighter, Hinter, Validator)]
pub struct StewardHelper {
    pub profiles: Vec<String>,
    /// Each profile's kind of service, and the default profile: what `connect("x").` offers.
    pub profile_kinds: HashMap<String, String>,
    pub default_profile: Option<String>,
    pub variables: Rc<RefCell<Vec<String>>>,
    /// Variables holding a handle, with its kind of service: what `gh.` offers.
    pub handles: Rc<RefCell<HashMap<String, String>>>,
}

impl StewardHelper {
    /// The kind of service a method's receiver is a handle of, when the line tells.
    fn kind_of(&self, receiver: &Receiver<'_>) -> Option<String> {
        match receiver {
            Receiver::Var(v) => self.handles.borrow().get(*v).cloned(),
            Receiver::Profile(p) => self.profile_kinds.get(*p).cloned(),
            Receiver::DefaultProfile => self.default_profile.as_ref().and_then(|p| self.profile_kinds.get(p)).cloned(),
            Receiver::Unknown => None,
        }
    }

    fn candidates(&self, slot: &Slot<'_>) -> Vec<String> {
        let (word, pool): (&str, Vec<String>) = match slot {
            // On a known handle, what works on it; on a variable holding something else, Rhai's own methods.
            Slot::Method(w, receiver) => {
                let kind = self.kind_of(receiver);
                let not_a_handle = matches!(receiver, Receiver::Var(_)) && kind.is_none();
                let admin = docs::all()
                    .filter(|d| d.method && !not_a_handle)
                    .filter(|d| kind.as_deref().is_none_or(|k| admin::offered_on(k, d.name)))
                    .map(|d| d.name.to_string());
                let builtin = BUILTIN_METHODS.iter().filter(|_| kind.is_none()).map(|m| m.to_string());
                (w, admin.chain(builtin).collect())
            }
            Slot::Profile(w) => (w, self.profiles.clone()),
            Slot::Command(w) => (w, COMMANDS.iter().map(|(c, _)| c.to_string()).collect()),
            Slot::Help(w) => (w, docs::all().map(|d| d.name.to_string()).collect()),
            Slot::Name(w) => (
                w,
                docs::all()
                    .filter(|d| !d.method)
                    .map(|d| d.name.to_string())
                    .chain(self.variables.borrow().iter().cloned())
                    .chain(KEYWORDS.iter().map(|k| k.to_string()))
                    .collect(),
            ),
        };
        let mut out: Vec<String> = pool.into_iter().filter(|c| c.starts_with(word)).collect();
        out.sort();
        out.dedup();
        out
    }
}

impl Completer for StewardHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, slot) = slot(line, pos);
        // A profile name is completed with its closing quote, unless the line already has one.
        let close = match slot {
            Slot::Profile(_) if !line[pos..].starts_with('"') => "\"",
            _ => "",
        };
        let pairs = self
            .candidates(&slot)
            .into_iter()
            .map(|c| Pair { replacement: format!("{c}{close}"), display: c })
            .collect();
        Ok((start, pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper() -> StewardHelper {
        let kinds = [("gh", "github"), ("tl", "transactionlink"), ("tr", "travis")];
        StewardHelper {
            profiles: kinds.iter().map(|(p, _)| p.to_string()).collect(),
            profile_kinds: kinds.iter().map(|(p, k)| (p.to_string(), k.to_string())).collect(),
            default_profile: Some("gh".into()),
            variables: Rc::new(RefCell::new(vec!["t".into(), "xs".into()])),
            handles: Rc::new(RefCell::new([("t".to_string(), "travis".to_string())].into())),
        }
    }

    #[test]
    fn after_a_handle_only_what_works_on_its_service_is_offered() {
        let h = helper();
        assert_eq!(
            h.candidates(&Slot::Method("", Receiver::Var("t"))),
            [
                "activity",
                "activity_source",
                "api",
                "deprovision",
                "deprovision_all",
                "schedule",
                "suspend",
                "suspend_all",
                "unsuspend",
                "unsuspend_all",
                "user_activity"
            ]
        );
        let github = h.candidates(&Slot::Method("", Receiver::DefaultProfile));
        assert!(github.contains(&"suspend".to_string()) && github.contains(&"create_impersonation_token".to_string()));
        assert!(!github.iter().any(|m| ["terminate", "grant_admin", "user_activity", "len"].contains(&m.as_str())));
        let tl = h.candidates(&Slot::Method("", Receiver::Profile("tl")));
        assert!(tl.contains(&"terminate".to_string()) && tl.contains(&"set_role".to_string()), "{tl:?}");
        assert!(!tl.contains(&"revoke_admin".to_string()));
    }

    #[test]
    fn help_completes_methods_and_a_profile_closes_its_quote() {
        let h = helper();
        let (start, slot) = crate::repl::input::slot(":help susp", 10);
        assert_eq!(start, 6);
        assert_eq!(h.candidates(&slot), ["suspend", "suspend_all"]);
        let history = rustyline::history::DefaultHistory::new();
        let ctx = Context::new(&history);
        let (_, pairs) = h.complete(r#"connect("t"#, 10, &ctx).unwrap();
        let offered: Vec<&str> = pairs.iter().map(|p| p.replacement.as_str()).collect();
        assert_eq!(offered, [r#"tl""#, r#"tr""#]);
        let (_, pairs) = h.complete(r#"connect("t").x"#, 10, &ctx).unwrap();
        assert_eq!(pairs.iter().map(|p| p.replacement.as_str()).collect::<Vec<_>>(), ["tl", "tr"], "quote kept");
    }

    #[test]
    fn elsewhere_a_dot_offers_rhai_methods_and_every_operation() {
        let h = helper();
        let on_data = h.candidates(&Slot::Method("", Receiver::Var("xs")));
        assert!(on_data.contains(&"len".to_string()) && !on_data.contains(&"suspend".to_string()), "{on_data:?}");
        let unknown = h.candidates(&Slot::Method("", Receiver::Unknown));
        assert!(unknown.contains(&"len".to_string()) && unknown.contains(&"terminate".to_string()));
    }
}
