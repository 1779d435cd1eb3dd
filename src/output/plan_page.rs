//! A policy's plan as a page people would rather look at than read: per profile, how many days its accounts
//! have been idle (a histogram, the buckets a stage reaches marked), then every change with the numbers behind
//! it, and everyone left alone with the reason. Self-contained, every value escaped (see `html`).

use super::html::{esc, head};
use crate::policy::plan::Plan;
use std::fmt::Write as _;

/// The page for `plan`; `first_stage_days` marks the idle buckets a stage reaches.
pub fn page(plan: &Plan, first_stage_days: Option<u32>) -> String {
    let mut h = head(&format!("Policy {}, plan {}", plan.policy, plan.short_digest()));
    let _ = write!(
        h,
        "<h1>Policy {} · plan {}</h1><p class=\"muted\">made {} by {} · digest <code>{}</code> · recorded in the audit log \
         (<code>steward audit list --op policy_plan</code>)</p>",
        esc(&plan.policy),
        esc(plan.short_digest()),
        esc(&plan.made_at),
        esc(&plan.planned_by),
        esc(&plan.digest)
    );
    match &plan.halted {
        Some(why) => {
            let _ = write!(
                h,
                "<p class=\"warn\" id=\"halted\"><b>Halted by a guard:</b> {}. Nothing will be applied.</p>",
                esc(why)
            );
        }
        None => {
            let _ = write!(h, "<p id=\"changes\"><b>{} changes</b> planned.</p>", plan.steps.len());
        }
    }
    for (profile, s) in &plan.profiles {
        let _ = write!(
            h,
            "<h2>{}</h2><p>{} accounts, {} never active, {} changes planned.</p>",
            esc(profile),
            s.accounts,
            s.never_active,
            s.changes
        );
        if let Some(m) = &s.misses {
            let _ = write!(h, "<p class=\"warn\">Not in this plan: {}</p>", esc(m));
        }
        let most = s.idle_histogram.values().copied().max().unwrap_or(1).max(1);
        let _ = write!(h, "<table class=\"bars\" aria-label=\"days idle, {}\">", esc(profile));
        for (bucket, n) in &s.idle_histogram {
            let reached =
                first_stage_days.is_some_and(|d| bucket_start(bucket).is_some_and(|b| b + 29 >= i64::from(d)));
            let width = 100 * n / most;
            let _ = write!(
                h,
                "<tr><td>{} days</td><td style=\"width:70%\"><div class=\"bar{}\" style=\"width:{width}%\"></div></td><td>{n}</td></tr>",
                esc(bucket),
                if reached { " due" } else { "" }
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Changes</h2><table id=\"steps\"><tr><th>Profile</th><th>Account</th><th>Action</th><th>Idle days</th><th>Last active</th><th>Why</th></tr>");
    for s in &plan.steps {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.profile),
            esc(&s.account),
            esc(s.action.name()),
            s.idle_days,
            esc(&s.last_active.map(crate::dates::rfc3339).unwrap_or_else(|| "never".into())),
            esc(&s.why())
        );
    }
    h.push_str("</table><h2>Left alone</h2><table id=\"spared\"><tr><th>Profile</th><th>Account</th><th>Why</th></tr>");
    for l in &plan.left_alone {
        let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&l.profile), esc(&l.account), esc(&l.why));
    }
    h.push_str("</table></body></html>\n");
    h
}

/// The first day of a histogram bucket (`090-119` → 90, `360+` → 360); `never` has none.
fn bucket_start(bucket: &str) -> Option<i64> {
    bucket.split(['-', '+']).next().and_then(|d| d.parse().ok())
}
