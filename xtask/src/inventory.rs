//! The workspace's benchmark inventory: every bench target (from `cargo metadata`), whether
//! it is implemented or a placeholder, and whether the profile plan covers it. `audit` prints
//! it; `profile-baseline` reads the placeholder marker.
//!
//! A bench is a placeholder when its `//!` header contains the line
//! `//! Status: placeholder` (text may follow, e.g. `//! Status: placeholder, planned for
//! future implementation`).

use std::path::Path;

use crate::plan::{Kind, Plan};
use crate::workspace;

pub const PLACEHOLDER_MARKER: &str = "//! Status: placeholder";

/// Looks for the marker in the leading `//!` block only, so a sentence about placeholders
/// further down a file does not count.
pub fn is_placeholder(src: &str) -> bool {
    src.lines()
        .map(str::trim)
        .take_while(|l| l.is_empty() || l.starts_with("//!") || l.starts_with("#!["))
        .any(|l| {
            l.strip_prefix("//!")
                .map(str::trim)
                .and_then(|rest| rest.strip_prefix("Status:"))
                .is_some_and(|status| {
                    status
                        .trim()
                        .to_ascii_lowercase()
                        .starts_with("placeholder")
                })
        })
}

pub struct Row {
    pub package: String,
    pub bench: String,
    pub location: String,
    pub placeholder: bool,
    pub in_plan: bool,
    pub command: String,
}

pub fn inventory(root: &Path, metadata: &workspace::Metadata, plan: Option<&Plan>) -> Vec<Row> {
    let mut rows = Vec::new();
    for package in &metadata.packages {
        for target in package.targets.iter().filter(|t| t.is("bench")) {
            let src = std::fs::read_to_string(&target.src_path).unwrap_or_default();
            let planned = plan.and_then(|p| {
                p.targets.iter().find(|t| {
                    t.kind == Kind::Bench && t.package == package.name && t.binary == target.name
                })
            });
            let mut command = format!("cargo bench --package {}", package.name);
            if !target.required_features.is_empty() {
                command.push_str(&format!(
                    " --features {}",
                    target.required_features.join(",")
                ));
            } else if let Some(p) = planned {
                if !p.features.is_empty() {
                    command.push_str(&format!(" --features {}", p.features.join(",")));
                }
            }
            command.push_str(&format!(" --bench {}", target.name));
            rows.push(Row {
                package: package.name.clone(),
                bench: target.name.clone(),
                location: target
                    .src_path
                    .strip_prefix(root)
                    .unwrap_or(&target.src_path)
                    .display()
                    .to_string(),
                placeholder: is_placeholder(&src),
                in_plan: planned.is_some(),
                command,
            });
        }
    }
    rows.sort_by(|a, b| {
        (a.placeholder, &a.package, &a.bench).cmp(&(b.placeholder, &b.package, &b.bench))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::is_placeholder;

    #[test]
    fn marker_in_header_only() {
        assert!(is_placeholder("//! Worker benchmarks.\n//!\n//! Status: placeholder, planned for future implementation\nfn main() {}\n"));
        assert!(is_placeholder("//! Status: Placeholder\n"));
        assert!(!is_placeholder(
            "//! SQL function benchmarks.\n//! Status: implemented\nfn main() {}\n"
        ));
        assert!(!is_placeholder(
            "//! Benchmarks.\nuse x;\n// Status: placeholder\n"
        ));
        assert!(!is_placeholder(
            "//! Benchmarks.\nfn main() {}\n//! Status: placeholder\n"
        ));
    }
}
