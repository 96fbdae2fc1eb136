//! Phase 2 of the plan: hot-path analysis of folded stacks (`frame;frame;leaf count`).
//! Self and total time per function, time per lifecycle module, and the share of time in
//! database client, serialization, locks, allocation, message passing and logging code.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The lifecycle modules the plan asks about, as they appear in Rust paths.
pub const LIFECYCLE_MODULES: [&str; 4] = [
    "task_initializer",
    "step_enqueuer",
    "result_processor",
    "task_finalizer",
];

/// Kinds of work the plan asks to quantify, each recognised by crate or symbol names in the
/// frames. A pattern matches at identifier boundaries, so `log::` does not match
/// `catalog::` and `free` does not match `freeze`.
pub const CATEGORIES: [(&str, &[&str]); 6] = [
    (
        "database",
        &[
            "sqlx",
            "sqlx_core",
            "sqlx_postgres",
            "tokio_postgres",
            "postgres_protocol",
            "pgmq",
        ],
    ),
    (
        "serialization",
        &["serde", "serde_json", "serde_yaml", "rmp_serde", "rmp"],
    ),
    (
        "locks",
        &[
            "parking_lot",
            "parking_lot_core",
            "std::sync::mutex",
            "std::sync::rwlock",
            "std::sys::sync::mutex",
            "std::sys::sync::rwlock",
            "tokio::sync::mutex",
            "tokio::sync::rwlock",
            "tokio::sync::batch_semaphore",
            "pthread_mutex_lock",
            "futex_wait",
            "lock_contended",
        ],
    ),
    (
        "allocation",
        &[
            "malloc",
            "calloc",
            "realloc",
            "free",
            "cfree",
            "_int_malloc",
            "_int_free",
            "__libc_malloc",
            "__libc_free",
            "__rust_alloc",
            "__rust_dealloc",
            "__rust_realloc",
            "alloc::alloc",
            "alloc::raw_vec",
            "jemalloc",
            "mimalloc",
        ],
    ),
    (
        "message_passing",
        &[
            "tokio::sync::mpsc",
            "tokio::sync::broadcast",
            "tokio::sync::oneshot",
            "tokio::sync::watch",
            "std::sync::mpsc",
            "std::sync::mpmc",
            "crossbeam_channel",
            "flume",
            "async_channel",
            // Actor frameworks and mailboxes, for the Actor/Services refactor the plan prepares.
            "actix",
            "kameo",
            "ractor",
            "xactor",
            "mailbox",
        ],
    ),
    (
        "logging",
        &[
            "tracing",
            "tracing_core",
            "tracing_subscriber",
            "log",
            "env_logger",
        ],
    ),
];

/// Frames that only wrap the work below them and say nothing about its kind: an
/// `Instrumented` future (sqlx wraps every query in one) has every sample of the query on its
/// stack, which would count all database time as logging.
const WRAPPER_FRAMES: [&str; 2] = [
    "tracing::instrument::Instrumented",
    "tracing::instrument::WithDispatch",
];

/// Whether a frame belongs to a category given by its patterns.
fn in_category(frame: &str, patterns: &[&str]) -> bool {
    !WRAPPER_FRAMES.iter().any(|w| frame.contains(w))
        && patterns.iter().any(|p| matches_pattern(frame, p))
}

/// How many functions and paths the lists keep.
const TOP: usize = 25;
const TOP_PATHS: usize = 10;
/// Frames of a hot path shown, counted from the leaf.
const PATH_FRAMES: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionShare {
    pub function: String,
    pub self_samples: u64,
    pub total_samples: u64,
    pub self_pct: f64,
    pub total_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub name: String,
    pub samples: u64,
    pub pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HotPath {
    /// Root-to-leaf, the last frames only.
    pub frames: Vec<String>,
    pub samples: u64,
    pub pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recursion {
    pub function: String,
    /// Most times the function appears on one stack.
    pub max_depth: usize,
    pub samples: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub total_samples: u64,
    /// Share above which a function is called out (the plan: ">5% each").
    pub hot_path_pct: f64,
    pub top_self: Vec<FunctionShare>,
    pub top_total: Vec<FunctionShare>,
    /// Functions whose self time is at or above `hot_path_pct`: the hot paths a later run
    /// is compared against.
    pub hot_functions: Vec<FunctionShare>,
    pub lifecycle_modules: Vec<Share>,
    pub categories: Vec<Share>,
    /// Processes or threads at the root of the stacks.
    pub roots: Vec<Share>,
    pub hot_paths: Vec<HotPath>,
    pub max_stack_depth: usize,
    pub recursion: Vec<Recursion>,
    /// Share of samples taken in the kernel or a shared library; their self time is charged
    /// to the program's innermost frame (see [`Stack::self_frame`]).
    #[serde(default)]
    pub outside_program_pct: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub hot_path_pct: f64,
    /// inferno's perf folder puts the process (thread) name first; it is not a function.
    pub first_frame_is_process: bool,
}

/// Drops the `::h0123456789abcdef` hash suffix of legacy-mangled Rust symbols so one function
/// is one name.
pub fn normalise(frame: &str) -> &str {
    if let Some(idx) = frame.rfind("::h") {
        let hash = &frame[idx + 3..];
        if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return &frame[..idx];
        }
    }
    frame
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `pattern` occurs in `frame` starting at an identifier boundary and, when the
/// pattern ends in an identifier character, ending at one.
pub fn matches_pattern(frame: &str, pattern: &str) -> bool {
    let ends_ident = pattern.chars().last().is_some_and(is_ident);
    frame.match_indices(pattern).any(|(i, _)| {
        let before_ok = frame[..i].chars().next_back().is_none_or(|c| !is_ident(c));
        let after = frame[i + pattern.len()..].chars().next();
        let after_ok = !ends_ident || after.is_none_or(|c| !is_ident(c));
        before_ok && after_ok
    })
}

/// The suffix inferno's perf folder gives kernel frames (`annotate_kernel`).
pub const KERNEL_SUFFIX: &str = "_[k]";
/// The marks of frames outside the program: the kernel's, and shared libraries' (libc).
const OUTSIDE_SUFFIXES: [&str; 2] = [
    KERNEL_SUFFIX,
    crate::pipeline::library_frames::LIBRARY_SUFFIX,
];

/// One line of folded stacks: process (when `first_frame_is_process`), frames root to
/// leaf with hash suffixes and kernel and library marks removed, and its sample count.
pub struct Stack<'a> {
    pub root: Option<&'a str>,
    pub frames: Vec<&'a str>,
    /// How many frames, from the root, end at the innermost frame of the program: the frames
    /// after them are the kernel's (a system call, a page fault, an interrupt) or a shared
    /// library's (libc's system call wrappers, its allocator).
    pub program_frames: usize,
    pub count: u64,
}

impl<'a> Stack<'a> {
    /// The frame a sample's self time is charged to: the innermost frame of the program, so
    /// time in the kernel or libc counts for the code that asked for it (the leaf when the
    /// whole stack is outside the program).
    pub fn self_frame(&self) -> Option<&'a str> {
        match self.program_frames {
            0 => self.frames.last().copied(),
            n => Some(self.frames[n - 1]),
        }
    }

    pub fn outside_program(&self) -> bool {
        self.program_frames < self.frames.len()
    }
}

/// Parses folded stacks; the comparison of two runs reuses it for its own counts.
pub fn parse(folded: &str, opts: Options) -> Result<Vec<Stack<'_>>> {
    let mut stacks = Vec::new();
    for (n, line) in folded.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let Some((stack, count)) = line.rsplit_once(' ') else {
            bail!("folded stacks line {}: no sample count in `{line}`", n + 1);
        };
        let Ok(count) = count.parse::<u64>() else {
            bail!(
                "folded stacks line {}: `{count}` is not a sample count",
                n + 1
            );
        };
        let mut frames: Vec<&str> = Vec::new();
        let mut program_frames = 0;
        for raw in stack.split(';') {
            match OUTSIDE_SUFFIXES.iter().find_map(|s| raw.strip_suffix(s)) {
                Some(outside) => frames.push(normalise(outside)),
                // A frame without a symbol (`[unknown]`, or inferno's `[libc.so.6]`, the
                // module of one) names no function; its time goes to the named caller too.
                None if raw.starts_with('[') && raw.ends_with(']') => frames.push(raw),
                None => {
                    frames.push(normalise(raw));
                    program_frames = frames.len();
                }
            }
        }
        let root = if opts.first_frame_is_process && !frames.is_empty() {
            program_frames = program_frames.saturating_sub(1);
            Some(frames.remove(0))
        } else {
            None
        };
        stacks.push(Stack {
            root,
            frames,
            program_frames,
            count,
        });
    }
    Ok(stacks)
}

fn pct(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

pub fn analyse(folded: &str, opts: Options) -> Result<Analysis> {
    let stacks = parse(folded, opts)?;
    let mut tally = Tally::default();
    for stack in &stacks {
        tally.add(stack);
    }
    Ok(tally.into_analysis(opts.hot_path_pct))
}

/// Samples counted per function, module, category, root, recursion and path.
#[derive(Default)]
struct Tally<'a> {
    total: u64,
    self_samples: HashMap<&'a str, u64>,
    total_samples: HashMap<&'a str, u64>,
    modules: BTreeMap<&'static str, u64>,
    categories: BTreeMap<&'static str, u64>,
    roots: HashMap<&'a str, u64>,
    /// Per recursive function: the deepest it went, and the samples it was recursive in.
    recursion: HashMap<&'a str, (usize, u64)>,
    paths: HashMap<Vec<&'a str>, u64>,
    max_depth: usize,
    outside_samples: u64,
}

impl<'a> Tally<'a> {
    fn add(&mut self, stack: &Stack<'a>) {
        self.total += stack.count;
        self.max_depth = self.max_depth.max(stack.frames.len());
        if let Some(root) = stack.root {
            *self.roots.entry(root).or_default() += stack.count;
        }
        if let Some(leaf) = stack.self_frame() {
            *self.self_samples.entry(leaf).or_default() += stack.count;
        }
        if stack.outside_program() {
            self.outside_samples += stack.count;
        }
        self.add_frames(stack);
        for module in LIFECYCLE_MODULES {
            let in_module = stack.frames.iter().any(|f| {
                matches_pattern(f, &format!("lifecycle::{module}"))
                    || matches_pattern(f, &format!("{module}::"))
            });
            if in_module {
                *self.modules.entry(module).or_default() += stack.count;
            }
        }
        for (category, patterns) in CATEGORIES {
            if stack.frames.iter().any(|f| in_category(f, patterns)) {
                *self.categories.entry(category).or_default() += stack.count;
            }
        }
        let start = stack.frames.len().saturating_sub(PATH_FRAMES);
        *self
            .paths
            .entry(stack.frames[start..].to_vec())
            .or_default() += stack.count;
    }

    /// Total samples per function, and recursion: a recursive function is on the stack
    /// several times but spends the time once.
    fn add_frames(&mut self, stack: &Stack<'a>) {
        let mut seen: HashMap<&'a str, usize> = HashMap::new();
        for &frame in &stack.frames {
            *seen.entry(frame).or_default() += 1;
        }
        for (frame, times) in seen {
            *self.total_samples.entry(frame).or_default() += stack.count;
            if times > 1 {
                let entry = self.recursion.entry(frame).or_default();
                entry.0 = entry.0.max(times);
                entry.1 += stack.count;
            }
        }
    }

    fn into_analysis(self, hot_path_pct: f64) -> Analysis {
        let total = self.total;
        let share_of = |f: &str| FunctionShare {
            function: f.to_owned(),
            self_samples: self.self_samples.get(f).copied().unwrap_or(0),
            total_samples: self.total_samples.get(f).copied().unwrap_or(0),
            self_pct: pct(self.self_samples.get(f).copied().unwrap_or(0), total),
            total_pct: pct(self.total_samples.get(f).copied().unwrap_or(0), total),
        };
        let by_self = ranked(&self.self_samples);
        let by_total = ranked(&self.total_samples);
        Analysis {
            total_samples: total,
            hot_path_pct,
            top_self: by_self.iter().take(TOP).map(|f| share_of(f)).collect(),
            top_total: by_total.iter().take(TOP).map(|f| share_of(f)).collect(),
            hot_functions: by_self
                .iter()
                .map(|f| share_of(f))
                .filter(|s| s.self_pct >= hot_path_pct)
                .collect(),
            lifecycle_modules: shares_in_order(
                LIFECYCLE_MODULES.iter().copied(),
                &self.modules,
                total,
            ),
            categories: shares_in_order(
                CATEGORIES.iter().map(|(c, _)| *c),
                &self.categories,
                total,
            ),
            roots: top_roots(&self.roots, total),
            hot_paths: top_paths(self.paths, total),
            max_stack_depth: self.max_depth,
            recursion: top_recursion(self.recursion),
            outside_program_pct: pct(self.outside_samples, total),
        }
    }
}

/// Names by samples, most first; ties broken by name so the output is stable from run to run.
fn ranked<'a>(counts: &HashMap<&'a str, u64>) -> Vec<&'a str> {
    let mut names: Vec<&str> = counts.keys().copied().collect();
    names.sort_by(|a, b| counts[b].cmp(&counts[a]).then(a.cmp(b)));
    names
}

/// A share for every name, in the order given (zero where nothing was counted).
fn shares_in_order(
    names: impl Iterator<Item = &'static str>,
    counts: &BTreeMap<&'static str, u64>,
    total: u64,
) -> Vec<Share> {
    names
        .map(|name| {
            let samples = counts.get(name).copied().unwrap_or(0);
            Share {
                name: name.to_owned(),
                samples,
                pct: pct(samples, total),
            }
        })
        .collect()
}

fn top_roots(roots: &HashMap<&str, u64>, total: u64) -> Vec<Share> {
    let mut roots: Vec<Share> = roots
        .iter()
        .map(|(name, &samples)| Share {
            name: (*name).to_owned(),
            samples,
            pct: pct(samples, total),
        })
        .collect();
    roots.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.name.cmp(&b.name)));
    roots.truncate(TOP_PATHS);
    roots
}

fn top_paths(paths: HashMap<Vec<&str>, u64>, total: u64) -> Vec<HotPath> {
    let mut hot_paths: Vec<HotPath> = paths
        .into_iter()
        .map(|(frames, samples)| HotPath {
            frames: frames.into_iter().map(str::to_owned).collect(),
            samples,
            pct: pct(samples, total),
        })
        .collect();
    hot_paths.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.frames.cmp(&b.frames)));
    hot_paths.truncate(TOP_PATHS);
    hot_paths
}

fn top_recursion(recursion: HashMap<&str, (usize, u64)>) -> Vec<Recursion> {
    let mut recursion: Vec<Recursion> = recursion
        .into_iter()
        .map(|(f, (depth, samples))| Recursion {
            function: f.to_owned(),
            max_depth: depth,
            samples,
        })
        .collect();
    recursion.sort_by(|a, b| {
        b.samples
            .cmp(&a.samples)
            .then(b.max_depth.cmp(&a.max_depth))
            .then(a.function.cmp(&b.function))
    });
    recursion.truncate(TOP_PATHS);
    recursion
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: Options = Options {
        hot_path_pct: 5.0,
        first_frame_is_process: true,
    };

    fn find<'a>(list: &'a [FunctionShare], name: &str) -> &'a FunctionShare {
        list.iter()
            .find(|f| f.function == name)
            .unwrap_or_else(|| panic!("{name} missing from {list:?}"))
    }

    fn share(list: &[Share], name: &str) -> f64 {
        list.iter()
            .find(|s| s.name == name)
            .map(|s| s.pct)
            .unwrap_or_else(|| panic!("{name} missing from {list:?}"))
    }

    #[test]
    fn self_and_total_time() {
        let folded = "\
app;main;a;b 60
app;main;a 10
app;main;c 30
";
        let a = analyse(folded, OPTS).expect("valid input");
        assert_eq!(a.total_samples, 100);
        assert_eq!(a.top_self[0].function, "b");
        assert_eq!(a.top_self[0].self_pct, 60.0);
        assert_eq!(a.top_self[1].function, "c");
        assert_eq!(find(&a.top_total, "a").total_samples, 70);
        assert_eq!(find(&a.top_total, "a").self_samples, 10);
        assert_eq!(a.top_total[0].function, "main");
        assert_eq!(a.top_total[0].total_pct, 100.0);
        assert!(
            a.top_total.iter().all(|f| f.function != "app"),
            "process name is not a function"
        );
        assert_eq!(a.roots[0].name, "app");
        let hot: Vec<&str> = a
            .hot_functions
            .iter()
            .map(|f| f.function.as_str())
            .collect();
        assert_eq!(hot, ["b", "c", "a"]);
        assert_eq!(a.max_stack_depth, 3);
        assert_eq!(a.hot_paths[0].frames, ["main", "a", "b"]);
    }

    #[test]
    fn kernel_and_libc_time_is_charged_to_the_function_that_called_them() {
        let folded = "\
app;main;send;__send_[lib];__x64_sys_sendto_[k];_raw_spin_unlock_irqrestore_[k] 60
app;main;parse;[unknown] 30
swapper;cpu_idle_[k] 10
";
        let a = analyse(folded, OPTS).expect("valid input");
        assert_eq!(a.top_self[0].function, "send");
        assert_eq!(a.top_self[0].self_samples, 60);
        assert!(
            a.top_self
                .iter()
                .all(|f| f.function != "_raw_spin_unlock_irqrestore"),
            "a kernel frame below the program's gets no self time"
        );
        assert_eq!(
            find(&a.top_total, "_raw_spin_unlock_irqrestore").total_samples,
            60,
            "kernel frames keep their total time, without the mark"
        );
        assert_eq!(
            find(&a.top_self, "cpu_idle").self_samples,
            10,
            "a stack of only kernel frames keeps its leaf"
        );
        assert_eq!(
            a.top_self[1].function, "parse",
            "a frame without a symbol is no function"
        );
        assert_eq!(a.outside_program_pct, 100.0);
        assert_eq!(find(&a.top_total, "__send").total_samples, 60);
    }

    #[test]
    fn hot_function_threshold_is_applied() {
        let folded = "p;main;big 96\np;main;small 4\n";
        let a = analyse(folded, OPTS).expect("valid input");
        let hot: Vec<&str> = a
            .hot_functions
            .iter()
            .map(|f| f.function.as_str())
            .collect();
        assert_eq!(hot, ["big"], "4 % is below the 5 % call-out");
    }

    #[test]
    fn recursion_counts_time_once() {
        let folded = "p;main;walk;walk;walk;leaf 10\np;main;other 10\n";
        let a = analyse(folded, OPTS).expect("valid input");
        assert_eq!(find(&a.top_total, "walk").total_samples, 10);
        assert_eq!(find(&a.top_total, "walk").total_pct, 50.0);
        assert_eq!(a.recursion[0].function, "walk");
        assert_eq!(a.recursion[0].max_depth, 3);
    }

    #[test]
    fn lifecycle_modules_and_categories() {
        let folded = "\
p;tasker_orchestration::orchestration::lifecycle::task_initializer::TaskInitializer::create;sqlx_core::pool::acquire 30
p;tasker_orchestration::orchestration::lifecycle::step_enqueuer::StepEnqueuer::run;serde_json::ser::to_vec;malloc 20
p;<tasker_orchestration::orchestration::lifecycle::result_processor::ResultProcessor as X>::handle;tokio::sync::mpsc::chan::Tx<T,S>::send 10
p;tasker_orchestration::orchestration::lifecycle::task_finalizer::finalize;parking_lot::raw_mutex::RawMutex::lock_slow 5
p;catalog::lookup;freeze_all;tracing_core::event::Event::dispatch 35
";
        let a = analyse(folded, OPTS).expect("valid input");
        assert_eq!(share(&a.lifecycle_modules, "task_initializer"), 30.0);
        assert_eq!(share(&a.lifecycle_modules, "step_enqueuer"), 20.0);
        assert_eq!(share(&a.lifecycle_modules, "result_processor"), 10.0);
        assert_eq!(share(&a.lifecycle_modules, "task_finalizer"), 5.0);
        assert_eq!(share(&a.categories, "database"), 30.0);
        assert_eq!(share(&a.categories, "serialization"), 20.0);
        assert_eq!(
            share(&a.categories, "allocation"),
            20.0,
            "freeze_all is not free"
        );
        assert_eq!(share(&a.categories, "message_passing"), 10.0);
        assert_eq!(share(&a.categories, "locks"), 5.0);
        assert_eq!(
            share(&a.categories, "logging"),
            35.0,
            "catalog:: is not log::"
        );
    }

    #[test]
    fn hashes_are_stripped() {
        let folded = "p;main;core::fmt::write::h0123456789abcdef 3\np;main;core::fmt::write::hfedcba9876543210 1\n";
        let a = analyse(folded, OPTS).expect("valid input");
        assert_eq!(a.top_self[0].function, "core::fmt::write");
        assert_eq!(a.top_self[0].self_samples, 4);
        assert_eq!(normalise("a::hash::hot"), "a::hash::hot");
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let err = analyse("p;main 3\np;main x\n", OPTS)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = analyse("p;main 3\nnocount\n", OPTS)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn empty_input_has_no_samples() {
        let a = analyse("", OPTS).expect("empty is valid");
        assert_eq!(a.total_samples, 0);
        assert!(a.top_self.is_empty());
        assert!(a.categories.iter().all(|c| c.pct == 0.0));
    }

    #[test]
    fn an_instrumented_future_is_not_logging() {
        let folded = "p;main;<tracing::instrument::Instrumented<T> as core::future::future::Future>::poll;sqlx_core::pool::acquire 90\n\
                      p;main;tracing_core::event::Event::dispatch 10\n";
        let a = analyse(folded, OPTS).expect("valid input");
        assert_eq!(share(&a.categories, "logging"), 10.0, "{:?}", a.categories);
        assert_eq!(share(&a.categories, "database"), 90.0, "{:?}", a.categories);
    }
}
