//! `steward shell` (the default): the REPL.

use crate::context::Context;

pub fn run(ctx: &Context) -> anyhow::Result<()> {
    let session = super::session(ctx, &[], None);
    crate::repl::run(ctx, session)
}
