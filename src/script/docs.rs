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
