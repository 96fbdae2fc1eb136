//! `cargo xtask audit`: the plan's benchmark inventory (see [`crate::inventory`]) as a
//! table, and with `--check` a failure when the workspace and the plan disagree.

use std::process::ExitCode;

use anyhow::{bail, Result};
use xshell::Shell;

use crate::flags::{AuditArgs, WorkspaceArgs};
use crate::inventory::{inventory, PLACEHOLDER_MARKER};
use crate::plan::{Kind, Plan};
use crate::workspace;

pub fn run(ws: &WorkspaceArgs, args: &AuditArgs) -> ExitCode {
    super::finish(audit(ws, args))
}

fn audit(ws: &WorkspaceArgs, args: &AuditArgs) -> Result<()> {
    let root = ws.workspace.clone().unwrap_or_else(workspace::default_root);
    let plan_path = ws
        .plan
        .clone()
        .unwrap_or_else(|| root.join("xtask/profile-plan.toml"));
    let sh = Shell::new()?;
    let metadata = workspace::metadata(&sh, &root)?;
    let plan = Plan::load(&plan_path)?;
    let rows = inventory(&root, &metadata, Some(&plan));
    println!("| # | Benchmark | Package | Location | Status | In profile plan | Run command |");
    println!("|---|---|---|---|---|---|---|");
    for (i, r) in rows.iter().enumerate() {
        println!(
            "| {} | {} | {} | `{}` | {} | {} | `{}` |",
            i + 1,
            r.bench,
            r.package,
            r.location,
            if r.placeholder {
                "⚠️ placeholder"
            } else {
                "✅ implemented"
            },
            if r.in_plan { "yes" } else { "no" },
            r.command
        );
    }
    let implemented = rows.iter().filter(|r| !r.placeholder).count();
    println!(
        "\n{} bench targets: {implemented} implemented, {} placeholders (marker: `{PLACEHOLDER_MARKER}`).",
        rows.len(),
        rows.len() - implemented
    );
    let mut problems = Vec::new();
    for r in rows.iter().filter(|r| !r.placeholder && !r.in_plan) {
        problems.push(format!(
            "implemented bench `{}` of `{}` is not in {}",
            r.bench,
            r.package,
            plan_path.display()
        ));
    }
    for t in plan.targets.iter().filter(|t| t.kind == Kind::Bench) {
        if !rows
            .iter()
            .any(|r| r.package == t.package && r.bench == t.binary)
        {
            problems.push(format!(
                "plan target `{}` names bench `{}` of `{}`, which does not exist",
                t.name, t.binary, t.package
            ));
        }
    }
    for p in &problems {
        println!("warning: {p}");
    }
    if args.check && !problems.is_empty() {
        bail!(
            "{} problem(s) between the workspace's benches and the profile plan",
            problems.len()
        );
    }
    Ok(())
}
