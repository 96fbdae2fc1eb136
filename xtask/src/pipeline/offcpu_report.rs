//! "Where the threads wait": the Markdown section that `summary.md` and the baseline
//! document give each target's off-CPU profile (`manifest.json`, `offcpu-folded.txt`).

use std::fmt::Write as _;

use super::database_report::{flamegraph_link, function_rows};
use super::manifest::Manifest;

/// Functions listed per target.
const TOP_WAITERS: usize = 5;

pub fn section(out: &mut String, m: &Manifest) {
    let profiles: Vec<_> = m
        .targets
        .iter()
        .filter_map(|t| Some((&t.name, t.profile.as_ref()?.offcpu.as_ref()?)))
        .collect();
    if profiles.is_empty() {
        return;
    }
    out.push_str("\n## Where the threads wait\n\n");
    out.push_str(
        "Off-CPU time of the program's threads during the profile, from the scheduler's \
         switches recorded with their call stacks: each time a thread went to sleep or into \
         an uninterruptible wait, the time until it ran again, charged to the program's \
         function it waited in (system calls and library frames charged to their caller). \
         Idle workers waiting for work count too: read the functions, not the total.\n\n",
    );
    for (name, off) in profiles {
        let _ = writeln!(
            out,
            "### {name}: where its threads blocked\n\n{} switches, {:.2} s blocked{}.\n\n| Function | Share of blocked time |\n|---|---:|",
            off.switches,
            off.blocked_secs,
            flamegraph_link(off.flamegraph.as_deref())
        );
        function_rows(out, &off.top_self, TOP_WAITERS);
    }
}
