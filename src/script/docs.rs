//! The documentation of every registered function: `:help` prints it, completion reads its names, and a test
//! runs every example against the sandbox.

/// One registered function (all its arities share one entry).
#[derive(Clone, Copy, Debug)]
pub struct FnDoc {
    pub name: &'static str,
    /// How it is called, e.g. `h.suspend(login, #{reason})`.
    pub signature: &'static str,
    pub summary: &'static str,
    /// A runnable example (on `steward --sandbox`).
    pub example: &'static str,
    /// Called as a method on a handle (`h.name(...)`).
    pub method: bool,
}

pub fn all() -> impl Iterator<Item = &'static FnDoc> {
    super::packages::admin::DOCS
        .iter()
        .chain(super::packages::data::DOCS.iter())
        .chain(super::packages::deprovision::DOCS.iter())
        .chain(super::packages::membership::DOCS.iter())
        .chain(super::packages::audit::DOCS.iter())
}

pub fn find(name: &str) -> Option<&'static FnDoc> {
    all().find(|d| d.name == name)
}

/// `:help NAME` text.
pub fn render(doc: &FnDoc) -> String {
    format!("{}\n  {}\n  example: {}", doc.signature, doc.summary, doc.example)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of the functions steward registers in its engine (Rhai's own packages left out).
    fn registered() -> Vec<String> {
        use crate::audit::AuditTarget;
        use std::sync::Arc;
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let interrupt = crate::interrupt::Interrupt::default();
        let dispatcher = Arc::new(crate::dispatch::Dispatcher::new(
            AuditTarget::Memory,
            None,
            crate::audit::RunInfo::default(),
            Arc::new(crate::prompt::TerminalPrompt::default()),
            Arc::new(crate::output::progress::SilentReporter),
            crate::dispatch::Mode::default(),
            interrupt.clone(),
        ));
        let connections = Arc::new(crate::connections::Connections::new(
            Default::default(),
            None,
            dispatcher.clone(),
            crate::audit::fingerprint::Fingerprints::new(AuditTarget::Memory),
            false,
        ));
        let host = std::rc::Rc::new(super::super::bridge::Host {
            runtime: runtime.handle().clone(),
            dispatcher,
            connections,
            audit_target: AuditTarget::Memory,
        });
        let watchdog = std::rc::Rc::new(super::super::watchdog::Watchdog::new(interrupt, Default::default()));
        let engine = super::super::engine::build(host, watchdog, None);
        let mut names: Vec<String> = engine
            .gen_fn_signatures(false)
            .iter()
            .filter_map(|sig| sig.split('(').next().map(|n| n.trim().to_string()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn every_registered_function_is_documented() {
        // Plumbing Rhai calls on steward's own types (printing; getters and indexers, named with a `$`).
        const PLUMBING: &[&str] = &["to_string", "to_debug", "keys", "values", "len", "contains", "is_empty"];
        let names = registered();
        assert!(names.iter().any(|n| n == "suspend_all"), "the registry was read: {names:?}");
        let undocumented: Vec<&String> =
            names.iter().filter(|n| !PLUMBING.contains(&n.as_str()) && !n.contains('$') && find(n).is_none()).collect();
        assert!(
            undocumented.is_empty(),
            "registered without a FnDoc (and so without :help or a tested example): {undocumented:?}"
        );
    }

    #[test]
    fn every_entry_is_complete_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for d in all() {
            assert!(seen.insert(d.name), "{} documented twice", d.name);
            assert!(d.signature.contains(d.name), "{}: signature {:?} lacks the name", d.name, d.signature);
            assert!(!d.summary.is_empty() && d.example.contains(d.name), "{}: example {:?}", d.name, d.example);
        }
    }
}
