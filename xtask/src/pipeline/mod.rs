//! The run pipeline behind `profile-baseline` (and, later, `profile-post`): preflight,
//! clean build, timing pass, profiling pass, analysis, all written into a staging directory
//! that replaces the output directory only when the run is complete.

pub mod build;
pub mod counting;
pub mod cpu_split;
pub mod database;
pub mod database_report;
pub mod library_frames;
pub mod manifest;
mod map_lines;
pub mod offcpu;
mod offcpu_report;
pub mod outdir;
pub mod profiler;
mod progress;
mod referee;
pub mod report;
pub mod samply_fold;
pub mod schedstat;
mod side;
pub mod timing;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Cmd, Shell};

use crate::analysis;
use crate::interference::Status;
use crate::plan::{Kind, Plan, Target};
use crate::profiler_choice::ProfilerChoice;
use crate::{clock, host, machine_check, redact, workspace};
use manifest::{
    BuildRecord, DatabaseRecord, Manifest, OptionsRecord, PairSide, Pairing, TargetStatus,
    SCHEMA_VERSION,
};
use side::Side;

/// Profile time per benchmark for `--quick` smoke runs.
pub(crate) const QUICK_PROFILE_SECS: f64 = 2.0;

/// Everything a run needs; `profile-baseline` and `profile-post` differ only in these.
#[derive(Debug, Clone)]
pub struct Options {
    /// The workspace the plan and the outputs belong to.
    pub workspace: PathBuf,
    /// The workspace built and measured, when it is not `workspace` itself: another
    /// revision's worktree (`profile-baseline --rev`).
    pub measured: Option<PathBuf>,
    pub plan: PathBuf,
    pub out: PathBuf,
    /// The output directory's role, recorded in the manifest (`pre-refactor`).
    pub label: String,
    pub force: bool,
    pub clean: bool,
    pub runs: u32,
    pub profiler: ProfilerChoice,
    pub only: Vec<String>,
    pub quick: bool,
    pub profile_time: Option<f64>,
    pub allow_interference: bool,
    /// How long a check failing on the load alone is repeated before the run gives up.
    pub settle: std::time::Duration,
    /// What idle CPUs do while the targets are measured.
    pub cpu_idle: crate::cpu_idle::CpuIdle,
    pub target_dir: Option<PathBuf>,
    /// Where to write the Phase 2 baseline document, if anywhere.
    pub baseline_doc: Option<PathBuf>,
    pub keep_failed: bool,
    pub frequency: u32,
    /// Record the off-CPU profile where perf may (`--no-off-cpu` turns it off).
    pub off_cpu: bool,
    /// perf samples the program's threads only (`--perf-per-thread`).
    pub perf_per_thread: bool,
    /// perf unwinds with DWARF (`--perf-dwarf`).
    pub perf_dwarf: bool,
    pub command_line: Vec<String>,
}

pub struct Outcome {
    pub out: PathBuf,
    pub manifest: Manifest,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Environment of the measured executables, and the secrets to keep out of logs.
pub struct RunEnv {
    vars: Vec<(String, String)>,
    secrets: Vec<String>,
}

impl RunEnv {
    pub fn empty() -> RunEnv {
        RunEnv {
            vars: Vec::new(),
            secrets: Vec::new(),
        }
    }

    /// Hands the measured executables this database; its password never reaches a log.
    pub fn add_database_url(&mut self, url: String) {
        if let Some(p) = redact::password(&url) {
            self.secrets.push(p);
        }
        self.vars.push(("DATABASE_URL".to_owned(), url));
    }

    pub fn has_database(&self) -> bool {
        self.vars.iter().any(|(k, _)| k == "DATABASE_URL")
    }

    pub fn apply<'a>(&self, cmd: Cmd<'a>) -> Cmd<'a> {
        self.vars.iter().fold(cmd, |c, (k, v)| c.env(k, v))
    }

    pub fn scrub(&self, text: &str) -> String {
        redact::text(text, &self.secrets)
    }

    /// Writes a command's output to a log file, secrets removed.
    pub fn log(&self, path: &Path, command: &str, output: &std::process::Output) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = format!(
            "$ {command}\nexit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(path, self.scrub(&text))
            .with_context(|| format!("writing {}", path.display()))
    }
}

fn write_log(path: &Path, command: &str, output: &std::process::Output) -> Result<()> {
    RunEnv::empty().log(path, command, output)
}

/// `n` lines of a failed command's output for its error message: from the first panic on
/// (its message, then the top of its backtrace), or else the last `n`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("thread '") && l.contains(" panicked at "))
        .unwrap_or(lines.len().saturating_sub(n));
    lines[start..lines.len().min(start + n)].join("\n")
}

pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("serialising JSON")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

struct Preflight {
    toolchain: host::Toolchain,
    host: host::Host,
    interference: crate::interference::Report,
    tools: BTreeMap<String, String>,
    metadata: workspace::Metadata,
    perf: profiler::PerfSetup,
}

/// Everything that can be wrong before a build is checked here, so a run that cannot
/// finish stops before spending time, with the command that fixes it.
fn preflight(sh: &Shell, opts: &Options, plan: &Plan, targets: &[Target]) -> Result<Preflight> {
    let metadata = workspace::metadata(sh, &opts.workspace)?;
    check_targets_exist(&metadata, opts, plan, targets)?;
    check_prerequisites(&metadata, targets)?;
    note_revision(sh, opts);
    let toolchain = host::toolchain(sh)?;
    let (tools, perf) = check_profiler(sh, opts)?;
    let interference = check_interference(opts)?;
    Ok(Preflight {
        toolchain,
        host: host::host(),
        interference,
        tools,
        metadata,
        perf,
    })
}

/// Fails unless every target's package and bench or test exists in the workspace.
fn check_targets_exist(
    metadata: &workspace::Metadata,
    opts: &Options,
    plan: &Plan,
    targets: &[Target],
) -> Result<()> {
    for t in targets {
        let Some(package) = metadata.package(&t.package) else {
            bail!(
                "target `{}` in {}: package `{}` is not in the workspace at {}",
                t.name,
                plan.path.display(),
                t.package,
                opts.workspace.display()
            );
        };
        let found = match (t.kind, t.binary.as_str()) {
            (Kind::Test, "lib") => package
                .targets
                .iter()
                .any(|c| c.kind.iter().any(|k| k.ends_with("lib"))),
            (Kind::Test, name) => package
                .targets
                .iter()
                .any(|c| c.name == name && c.is("test")),
            (Kind::Bench, name) => package
                .targets
                .iter()
                .any(|c| c.name == name && c.is("bench")),
        };
        if !found {
            bail!(
                "target `{}` in {}: package `{}` has no {} target `{}` (see `cargo xtask audit`)",
                t.name,
                plan.path.display(),
                t.package,
                match t.kind {
                    Kind::Bench => "bench",
                    Kind::Test => "test",
                },
                t.binary
            );
        }
    }
    Ok(())
}

/// Fails when the Ruby headers are missing for a workspace with Ruby, or when the plan
/// needs a database nothing can provide.
fn check_prerequisites(metadata: &workspace::Metadata, targets: &[Target]) -> Result<()> {
    if metadata.package(crate::ruby_build::RUBY_PACKAGE).is_some() {
        if let Some(reason) = crate::ruby_build::missing() {
            bail!("{reason}");
        }
    }
    if targets.iter().any(|t| t.needs_database)
        && database::needs_throwaway()
        && metadata.package(database::TASKER_PACKAGE).is_none()
    {
        bail!(
            "the plan needs a database, DATABASE_URL is unset and package `{}` (which provides `tasker db`) is missing; set DATABASE_URL",
            database::TASKER_PACKAGE
        );
    }
    Ok(())
}

/// Says when the revision cannot be recorded or the tree has uncommitted changes.
fn note_revision(sh: &Shell, opts: &Options) {
    let git = host::git(sh, &opts.workspace);
    match (&git.revision, git.dirty) {
        (None, _) => eprintln!(
            "note: {} is not a git checkout; the revision is not recorded",
            opts.workspace.display()
        ),
        (Some(rev), Some(true)) => {
            eprintln!("note: the working tree at {rev} has uncommitted changes (recorded as dirty)")
        }
        _ => {}
    }
}

/// How perf will record for this user with these options (before probing what the kernel
/// allows).
pub fn perf_setup(opts: &Options) -> profiler::PerfSetup {
    let mut perf = profiler::PerfSetup::for_this_user(opts.off_cpu);
    if opts.perf_per_thread {
        perf.system_wide = false;
        perf.off_cpu = false;
    }
    perf.dwarf = opts.perf_dwarf;
    perf
}

/// The profilers' versions, and the chosen one checked: installed, and allowed to record.
fn check_profiler(
    sh: &Shell,
    opts: &Options,
) -> Result<(BTreeMap<String, String>, profiler::PerfSetup)> {
    let mut tools = BTreeMap::new();
    for tool in ["perf", "samply"] {
        if let Some(v) = host::tool_version(sh, tool) {
            tools.insert(tool.to_owned(), v);
        }
    }
    tools.insert(
        "inferno".to_owned(),
        "0.12 (library, linked into xtask)".to_owned(),
    );
    let mut perf = perf_setup(opts);
    match opts.profiler {
        ProfilerChoice::Perf => {
            if !tools.contains_key("perf") {
                bail!("perf is not installed; run `cargo xtask install-tools` (or pass --profiler none to skip profiling)");
            }
            if perf.off_cpu && probe_perf(sh, &perf).is_err() {
                eprintln!("note: perf cannot record the scheduler's switches here (`{}`); no off-CPU profiles this run", offcpu::SWITCH_EVENT);
                perf.off_cpu = false;
            }
            probe_perf(sh, &perf)?;
        }
        ProfilerChoice::Samply => {
            if !tools.contains_key("samply") {
                bail!("samply is not installed; run `cargo xtask install-tools` (or pass --profiler none to skip profiling)");
            }
            if let Some(level) = crate::probe::readings()
                .perf_event_paranoid
                .filter(|l| *l > 1)
            {
                bail!(
                    "samply cannot record while kernel.perf_event_paranoid is {level} (it needs 1 or lower, even as root); \
                     run `cargo xtask install-tools --set-perf-paranoid 1` as root, or pass --profiler perf"
                );
            }
        }
        ProfilerChoice::None => {}
    }
    Ok((tools, perf))
}

/// The interference check, waited on while only the load is high; a failure ends the run
/// unless `--allow-interference`.
fn check_interference(opts: &Options) -> Result<crate::interference::Report> {
    let interference = machine_check::check_settled(opts.profiler, opts.frequency, opts.settle);
    eprint!("{}", machine_check::render(&interference));
    if interference.worst == Status::Fail {
        if opts.allow_interference {
            eprintln!("warning: the interference check failed; continuing because of --allow-interference (recorded in the manifest)");
        } else {
            bail!("the interference check failed (see above); fix the `fail` findings or pass --allow-interference");
        }
    }
    Ok(interference)
}

/// A one-second perf recording of `true`: catches permission problems before the build.
pub fn probe_perf(sh: &Shell, perf: &profiler::PerfSetup) -> Result<()> {
    let data = std::env::temp_dir().join(format!("xtask-perf-probe-{}.data", std::process::id()));
    let args = profiler::perf_record_args(perf, 99, &data);
    let argv = &args;
    let result = cmd!(sh, "perf {argv...} -q -- true")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run();
    let _ = std::fs::remove_file(&data);
    result.map_err(|_| {
        anyhow::anyhow!(
            "perf cannot record here (`perf {} -- true` failed); check `cargo xtask check-env` and run `sudo sysctl kernel.perf_event_paranoid=1`",
            args.join(" ")
        )
    })
}

/// Everything the measuring steps of a run share.
struct Session<'a> {
    sh: &'a Shell,
    opts: &'a Options,
    env: RunEnv,
    perf: profiler::PerfSetup,
    criterion_args: Vec<String>,
    scratch: PathBuf,
}

/// A run with one side: the workspace (or `opts.measured`) measured into `opts.out`.
pub fn run(opts: &Options) -> Result<Outcome> {
    let mut outcomes = execute(opts, None)?;
    outcomes.pop().context("the run produced no output")
}

/// What `--against` adds to a run: the revision, where its worktree's workspace is, where
/// its side goes, and how many pairs of timing runs (`--pairs`, for every target).
#[derive(Debug, Clone)]
pub struct Against {
    pub revision: crate::revision::Revision,
    pub workspace: PathBuf,
    pub out: PathBuf,
    pub pairs: Option<u32>,
}

impl Against {
    /// Pairs of timing runs for `t`: `--pairs`, else the plan's for the target, else
    /// [`DEFAULT_PAIRS`](crate::plan::DEFAULT_PAIRS).
    pub fn pairs_for(&self, t: &Target) -> u32 {
        self.pairs.or(t.pairs).unwrap_or(crate::plan::DEFAULT_PAIRS)
    }
}

/// The two sides of a paired run.
pub struct PairedOutcome {
    pub against: Outcome,
    pub post: Outcome,
}

/// A paired run: the revision's worktree and the working tree, built with the same flags,
/// then measured in one session against one database, their timing runs alternating
/// (A B, B A, A B, ...) so a drift of the machine falls on both sides alike, and each side
/// profiled.
pub fn run_paired(opts: &Options, against: &Against) -> Result<PairedOutcome> {
    let mut outcomes = execute(opts, Some(against))?.into_iter();
    match (outcomes.next(), outcomes.next()) {
        (Some(against), Some(post)) => Ok(PairedOutcome { against, post }),
        _ => bail!("the paired run produced fewer than two sides"),
    }
}

/// The steps of every run, for one side or two (the revision's first).
fn execute(opts: &Options, against: Option<&Against>) -> Result<Vec<Outcome>> {
    let started_at = clock::now_rfc3339();
    let run_started = Instant::now();
    let sh = Shell::new().context("creating a shell")?;
    sh.change_dir(&opts.workspace);
    let plan = Plan::load(&opts.plan)?;
    let targets = plan.select(&opts.only)?;
    outdir::check_target(&opts.out, opts.force)?;
    if let Some(a) = against {
        outdir::check_target(&a.out, opts.force)?;
    }
    let pre = preflight(&sh, opts, &plan, &targets)?;
    install_interrupt_handler();

    let mut sides = Vec::new();
    if let Some(a) = against {
        sides.push(Side::new(
            &sh,
            opts,
            &targets,
            (&a.workspace, &a.out),
            true,
        )?);
    }
    let measured = opts.measured.as_deref().unwrap_or(&opts.workspace);
    sides.push(Side::new(
        &sh,
        opts,
        &targets,
        (measured, &opts.out),
        against.is_some(),
    )?);
    let target_dir = target_dir_of(opts, &pre);
    let built = build_sides(&sh, opts, against, &targets, &mut sides, &target_dir)?;
    if let Some(a) = against {
        pair_up(
            &mut sides,
            a,
            &targets,
            &format!("{started_at}-{}", std::process::id()),
        );
    }

    let mut session = Session::start(&sh, opts, &target_dir, pre.perf.clone(), against.is_some());
    let side_refs: Vec<&Side> = sides.iter().collect();
    let resources = session_resources(
        &mut session,
        &targets,
        &side_refs,
        built.database.as_deref(),
        &target_dir,
    )?;
    session.measure_targets(&targets, &mut sides, |t| {
        against.map_or(opts.runs, |a| a.pairs_for(t))
    })?;

    let mut outcomes = Vec::new();
    for (side, build) in sides.into_iter().zip(built.records) {
        let manifest = manifest_of(
            &side,
            &pre,
            opts,
            &plan,
            ManifestParts {
                started_at: started_at.clone(),
                build,
                database: resources.record.clone(),
                idle: resources.idle.record.clone(),
                criterion_args: session.criterion_args.clone(),
                total_secs: run_started.elapsed().as_secs_f64(),
            },
        );
        if side
            .pairing
            .as_ref()
            .is_none_or(|p| p.side == PairSide::Post)
        {
            print!("{}", report::final_table(&manifest));
        }
        let finished = side.finish(manifest, &plan.text, opts.force)?;
        if against.is_none() {
            write_baseline_doc(opts, &finished)?;
        }
        outcomes.push(Outcome {
            out: finished.dir,
            manifest: finished.manifest,
        });
    }
    Ok(outcomes)
}

/// The builds of every side, and the `tasker` binary for the throwaway database.
struct Built {
    records: Vec<BuildRecord>,
    database: Option<PathBuf>,
}

/// Builds every side. A lone side is cleaned first unless `--no-clean`; the two sides of a
/// paired run build incrementally, the revision into a target directory of its own: cargo
/// names a workspace member's artifacts by a hash that leaves out where the workspace lies,
/// so both trees' executables would otherwise land on the same paths. A revision's target
/// that does not build is left out (its compiler output kept); one that builds nothing is
/// an error.
fn build_sides(
    sh: &Shell,
    opts: &Options,
    against: Option<&Against>,
    targets: &[Target],
    sides: &mut [Side],
    target_dir: &Path,
) -> Result<Built> {
    let started = Instant::now();
    let kept_logs = crate::revision::failed_builds_dir(target_dir);
    let mut records = Vec::new();
    let mut cargo = None;
    for side in sides.iter_mut() {
        let revision = side.workspace != opts.measured.as_deref().unwrap_or(&opts.workspace);
        let dir = if revision {
            crate::revision::target_dir(target_dir)
        } else {
            target_dir.to_owned()
        };
        let c = build::Cargo::for_workspace(&side.workspace, dir.clone());
        let mut record = build_record(&c);
        if opts.clean && against.is_none() {
            eprintln!(
                "cleaning the {} build in {}",
                build::CARGO_PROFILE,
                dir.display()
            );
            let (command, took) = c.clean(sh)?;
            record.clean_command = Some(command);
            record.clean_secs = took.as_secs_f64();
        }
        side.build(sh, &c, targets, revision.then_some(kept_logs.as_path()))?;
        if revision && side.executables.iter().all(Option::is_none) {
            bail!(
                "the build of {} failed for every target; its compiler output is kept in {}",
                against.map_or_else(String::new, |a| a.revision.describe()),
                kept_logs.display()
            );
        }
        records.push(record);
        cargo = Some(c);
    }
    // The database comes from the last side built: the working tree's.
    let side_refs: Vec<&Side> = sides.iter().collect();
    let database = match &cargo {
        Some(c) => build_database_binary(sh, c, targets, &side_refs)?,
        None => None,
    };
    let took = started.elapsed().as_secs_f64();
    for r in &mut records {
        r.build_secs = took;
    }
    Ok(Built { records, database })
}

/// Marks the two sides as one paired session (the revision's side first). The recorded
/// pairs are the most any target gets; each target's own are its timing runs.
fn pair_up(sides: &mut [Side], against: &Against, targets: &[Target], session: &str) {
    let pairs = targets
        .iter()
        .map(|t| against.pairs_for(t))
        .max()
        .unwrap_or(crate::plan::DEFAULT_PAIRS);
    let order: Vec<String> = (1..=pairs)
        .map(|k| {
            if second_first(k) {
                "post,against"
            } else {
                "against,post"
            }
            .to_owned()
        })
        .collect();
    let labels: Vec<String> = sides.iter().map(|s| s.label.clone()).collect();
    for (i, side) in sides.iter_mut().enumerate() {
        side.pairing = Some(Pairing {
            session: session.to_owned(),
            pairs,
            side: if i == 0 {
                PairSide::Against
            } else {
                PairSide::Post
            },
            partner: labels[1 - i.min(1)].clone(),
            revision: against.revision.clone(),
            order: order.clone(),
        });
    }
}

/// The benchmarks of target `t` that every side timed, when the sides timed different ones
/// (a benchmark added or removed between the revisions): a profile of benchmarks only one
/// side has would show their functions as new hot paths. `None` when the sides agree.
fn shared_benchmarks(sides: &[&mut Side], t: &Target) -> Option<Vec<String>> {
    let ids = |side: &Side| -> Vec<String> {
        side.timings
            .targets
            .iter()
            .find(|timed| timed.name == t.name)
            .map(|timed| timed.benchmarks.iter().map(|b| b.id.clone()).collect())
            .unwrap_or_default()
    };
    let (first, rest) = sides.split_first()?;
    let first = ids(first);
    let others: Vec<Vec<String>> = rest.iter().map(|s| ids(s)).collect();
    if others.is_empty() || others.iter().all(|o| *o == first) {
        return None;
    }
    Some(
        first
            .into_iter()
            .filter(|id| others.iter().all(|o| o.contains(id)))
            .collect(),
    )
}

/// Whether the second side runs first in pair `k` (from 1): A B, B A, A B, ... so a steady
/// drift of the machine adds as much to one side as to the other over every two pairs.
pub fn second_first(k: u32) -> bool {
    k.is_multiple_of(2)
}

fn install_interrupt_handler() {
    if ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("\ninterrupted: stopping after the current step and cleaning up");
    })
    .is_err()
    {
        eprintln!("warning: could not install the Ctrl-C handler; an interrupted run may leave a database running");
    }
}

/// The cargo target directory a run builds into: `--target-dir`, else the workspace's.
pub fn target_dir(sh: &Shell, opts: &Options) -> Result<PathBuf> {
    match &opts.target_dir {
        Some(dir) => Ok(dir.clone()),
        None => Ok(workspace::metadata(sh, &opts.workspace)?.target_directory),
    }
}

fn target_dir_of(opts: &Options, pre: &Preflight) -> PathBuf {
    opts.target_dir
        .clone()
        .unwrap_or_else(|| pre.metadata.target_directory.clone())
}

fn build_record(cargo: &build::Cargo) -> BuildRecord {
    BuildRecord {
        cargo_profile: build::CARGO_PROFILE.to_owned(),
        rustflags: cargo.rustflags.clone(),
        clean_command: None,
        clean_secs: 0.0,
        build_secs: 0.0,
    }
}

/// Whether any side measures a target that needs a database.
fn needs_database(targets: &[Target], sides: &[&Side]) -> bool {
    targets
        .iter()
        .enumerate()
        .any(|(i, t)| t.needs_database && sides.iter().any(|s| s.executables[i].is_some()))
}

/// The `tasker` binary for the throwaway database, when one is needed; built with the run's
/// flags, so it shares the targets' dependencies.
fn build_database_binary(
    sh: &Shell,
    cargo: &build::Cargo,
    targets: &[Target],
    sides: &[&Side],
) -> Result<Option<PathBuf>> {
    if !(needs_database(targets, sides) && database::needs_throwaway()) {
        return Ok(None);
    }
    let log = sides
        .last()
        .map_or_else(|| PathBuf::from("."), |s| s.dir().join("logs"))
        .join("tasker-build.log");
    database::build_tasker(sh, cargo, &log).map(Some)
}

/// What a session holds until it ends: the idle-CPU condition and the database.
struct Resources {
    idle: crate::cpu_idle::Hold,
    /// The throwaway cluster, stopped and deleted when dropped.
    _db: Option<database::Database>,
    record: Option<DatabaseRecord>,
}

/// Holds idle CPUs (from here, after the build, until the run returns, so the database's
/// start and every measurement see the same condition) and provides the database, whose
/// URL goes into the measured programs' environment.
fn session_resources(
    session: &mut Session<'_>,
    targets: &[Target],
    sides: &[&Side],
    db_exe: Option<&Path>,
    target_dir: &Path,
) -> Result<Resources> {
    let idle = crate::cpu_idle::hold(session.opts.cpu_idle);
    eprintln!("cpu idle: {}", idle.record.describe());
    if !needs_database(targets, sides) {
        return Ok(Resources {
            idle,
            _db: None,
            record: None,
        });
    }
    let provided = database::provide(session.sh, db_exe, target_dir)?;
    let record = DatabaseRecord {
        source: provided.source.to_owned(),
        url: redact::url(&provided.url),
    };
    session.env.add_database_url(provided.url);
    Ok(Resources {
        idle,
        _db: provided.guard,
        record: Some(record),
    })
}

impl<'a> Session<'a> {
    fn start(
        sh: &'a Shell,
        opts: &'a Options,
        target_dir: &Path,
        perf: profiler::PerfSetup,
        paired: bool,
    ) -> Session<'a> {
        let args: &[&str] = match (opts.quick, paired) {
            (true, _) => &timing::QUICK_ARGS,
            (false, true) => &timing::PAIRED_ARGS,
            (false, false) => &[],
        };
        let criterion_args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let scratch = target_dir.join("xtask-criterion").join(format!(
            "{}-{}",
            opts.label,
            std::process::id()
        ));
        Session {
            sh,
            opts,
            env: RunEnv::empty(),
            perf,
            criterion_args,
            scratch,
        }
    }

    fn end(&self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }

    /// Times and profiles every target on every side. A target one side cannot measure is
    /// left out on both, so it shows as not compared; a target that fails is marked failed
    /// on every side and the others go on.
    fn measure_targets(
        &self,
        targets: &[Target],
        sides: &mut [Side],
        rounds: impl Fn(&Target) -> u32,
    ) -> Result<()> {
        let mut progress = progress::Progress::new(targets.len());
        for (i, t) in targets.iter().enumerate() {
            if interrupted() {
                progress.done();
                bail!(
                    "interrupted; nothing was written to {}",
                    self.opts.out.display()
                );
            }
            let measurable = sides.iter().filter(|s| s.executables[i].is_some()).count();
            if measurable < sides.len() {
                if measurable > 0 {
                    for s in sides.iter_mut() {
                        s.skip(
                            i,
                            "not measured: the other side of the pair cannot measure it",
                        );
                    }
                }
                continue;
            }
            progress.start_target();
            let mut refs: Vec<&mut Side> = sides.iter_mut().collect();
            let result = self
                .time(t, &mut refs, i, &progress, rounds(t))
                .and_then(|()| {
                    let shared = shared_benchmarks(&refs, t);
                    refs.iter_mut().try_for_each(|s| {
                        self.profile(t, s, i, &progress, shared.as_deref())?;
                        self.count(t, s, i, &progress)
                    })
                });
            if let Err(e) = result {
                for s in sides.iter_mut() {
                    s.records[i].status = TargetStatus::Failed;
                    s.records[i].error = Some(self.env.scrub(&format!("{e:#}")));
                }
            }
            progress.finish_target();
            let status = sides.last().map_or("?", |s| s.records[i].status.name());
            progress.note(&format!(
                "[{}/{}] {}: {status}",
                i + 1,
                targets.len(),
                t.name
            ));
        }
        progress.done();
        self.end();
        if interrupted() {
            bail!(
                "interrupted; nothing was written to {}",
                self.opts.out.display()
            );
        }
        Ok(())
    }

    /// The timing pass of target `i` on every side: `rounds` rounds, each running every
    /// side once in the round's order (one side: one run per round, `opts.runs` rounds).
    fn time(
        &self,
        t: &Target,
        sides: &mut [&mut Side],
        i: usize,
        progress: &progress::Progress,
        rounds: u32,
    ) -> Result<()> {
        let paired = sides.len() > 1;
        let started = Instant::now();
        let mut runs: Vec<Vec<timing::RunResult>> = sides.iter().map(|_| Vec::new()).collect();
        let places: Vec<(PathBuf, PathBuf, PathBuf, String)> = sides
            .iter()
            .enumerate()
            .map(|(s, side)| {
                (
                    side.executables[i].clone().unwrap_or_default(),
                    side.dir().to_owned(),
                    self.scratch.join(format!("side-{s}")),
                    side.label.clone(),
                )
            })
            .collect();
        let timers: Vec<timing::Timer<'_>> = places
            .iter()
            .map(|(exe, out, scratch, label)| {
                timing::Timer::new(
                    timing::TimingPass {
                        sh: self.sh,
                        env: &self.env,
                        exe,
                        target: t,
                        out,
                        scratch,
                        criterion_args: &self.criterion_args,
                        label,
                    },
                    self.opts.quick,
                )
            })
            .collect();
        let turn_takers = match timers.as_slice() {
            [a, b] => a.turn_taker().zip(b.turn_taker()),
            _ => None,
        };
        for round in 1..=rounds {
            if let Some((a, b)) = turn_takers {
                if interrupted() {
                    bail!("interrupted");
                }
                progress.phase(
                    i,
                    &t.name,
                    &format!("timing pair {round}/{rounds}, both sides taking turns"),
                );
                let sockets = self.scratch.join("turns");
                let (ra, rb) = a.run_interleaved(b, round, second_first(round), &sockets)?;
                runs[0].push(ra);
                runs[1].push(rb);
                continue;
            }
            let order: Vec<usize> = if paired && second_first(round) {
                (0..sides.len()).rev().collect()
            } else {
                (0..sides.len()).collect()
            };
            for s in order {
                if interrupted() {
                    bail!("interrupted");
                }
                progress.phase(
                    i,
                    &t.name,
                    &if paired {
                        format!("timing pair {round}/{rounds}, {}", sides[s].label)
                    } else {
                        format!("timing run {round}/{rounds}")
                    },
                );
                runs[s].push(timers[s].run_once(round)?);
            }
        }
        let took = started.elapsed().as_secs_f64();
        for ((side, timer), side_runs) in sides.iter_mut().zip(&timers).zip(runs) {
            let (mut record, timings) = timer.finish(side_runs, took);
            record.turns = turn_takers.is_some();
            let r = &mut side.records[i];
            if record.noisy && !paired {
                r.status = TargetStatus::Noisy;
                r.notes.push(format!(
                    "runs disagree by {:.1}% (> {:.1}% allowed): timings are not reliable enough to judge a change",
                    record.spread_pct.unwrap_or(0.0),
                    t.thresholds.noise_pct
                ));
            }
            r.timing = Some(record);
            side.add_timings(timings);
        }
        Ok(())
    }

    /// The profiling pass of target `i` on one side, and the analysis of its profile.
    /// Profiles target `i` on `side`: every benchmark, or only `shared` ones (see
    /// [`shared_benchmarks`]).
    fn profile(
        &self,
        t: &Target,
        side: &mut Side,
        i: usize,
        progress: &progress::Progress,
        shared: Option<&[String]>,
    ) -> Result<()> {
        if interrupted() {
            bail!("interrupted");
        }
        if self.opts.profiler == ProfilerChoice::None {
            return Ok(());
        }
        let Some(exe) = side.executables[i].clone() else {
            return Ok(());
        };
        progress.phase(
            i,
            &t.name,
            &format!(
                "profiling {} with {}",
                side.label,
                self.opts.profiler.name()
            ),
        );
        let title_rev = match (&side.git.revision, side.git.dirty) {
            (Some(rev), dirty) => format!(
                "{}{}",
                &rev[..rev.len().min(12)],
                if dirty == Some(true) { "+dirty" } else { "" }
            ),
            (None, _) => "no git revision".to_owned(),
        };
        let out = side.dir().to_owned();
        let pass = profiler::ProfilePass {
            sh: self.sh,
            env: &self.env,
            exe: &exe,
            target: t,
            out: &out,
            profiler: self.opts.profiler,
            frequency: self.opts.frequency,
            profile_time_secs: side.records[i].profile_time_secs,
            perf: &self.perf,
            title: format!("{} @ {title_rev}", t.name),
            benchmarks: shared,
        };
        let profiled = pass.run()?;
        let record = &mut side.records[i];
        if let Some(shared) = shared {
            record.notes.push(format!(
                "profiled on the {} benchmarks both sides have, so the two profiles compare",
                shared.len()
            ));
        }
        record.profile = Some(profiled.record);
        let Some(folded) = profiled.folded else {
            record.notes.push(
                "samply profile saved; open it with `samply load` (folded stacks and analysis need perf)"
                    .to_owned(),
            );
            return Ok(());
        };
        progress.phase(i, &t.name, "analysing");
        let started = Instant::now();
        let analysis = analysis::analyse(
            &folded,
            analysis::Options {
                hot_path_pct: t.thresholds.hot_path_pct,
                first_frame_is_process: true,
            },
        )?;
        record.analysis_secs = Some(Duration::as_secs_f64(&started.elapsed()));
        if let (Some(profile), Some(top)) = (record.profile.as_mut(), analysis.top_self.first()) {
            profile.top_self = Some(manifest::TopFunction {
                function: top.function.clone(),
                self_pct: top.self_pct,
            });
        }
        side.add_analysis(t, analysis);
        Ok(())
    }
}

impl Session<'_> {
    /// The counting pass of bench target `i` on one side: what each benchmark costs the
    /// database per iteration (needs the database the session provides).
    fn count(
        &self,
        t: &Target,
        side: &mut Side,
        i: usize,
        progress: &progress::Progress,
    ) -> Result<()> {
        if interrupted() {
            bail!("interrupted");
        }
        let Some(exe) = side.executables[i].clone() else {
            return Ok(());
        };
        if t.kind != Kind::Bench || !t.needs_database || !self.env.has_database() {
            return Ok(());
        }
        progress.phase(
            i,
            &t.name,
            &format!("counting database statements of {}", side.label),
        );
        let out = side.dir().to_owned();
        let counted = counting::CountingPass {
            sh: self.sh,
            env: &self.env,
            exe: &exe,
            target: t,
            out: &out,
            criterion_home: &self.scratch.join(format!("count-{}", side.label)),
        }
        .run()?;
        side.add_counts(counted);
        Ok(())
    }
}

/// The parts of a manifest that the run's steps produced.
struct ManifestParts {
    started_at: String,
    build: BuildRecord,
    database: Option<DatabaseRecord>,
    idle: crate::cpu_idle::IdleRecord,
    criterion_args: Vec<String>,
    total_secs: f64,
}

fn manifest_of(
    side: &Side,
    pre: &Preflight,
    opts: &Options,
    plan: &Plan,
    parts: ManifestParts,
) -> Manifest {
    Manifest {
        schema_version: SCHEMA_VERSION,
        label: side.label.clone(),
        started_at: parts.started_at,
        finished_at: clock::now_rfc3339(),
        command_line: opts.command_line.clone(),
        options: OptionsRecord {
            quick: opts.quick,
            runs: side.pairing.as_ref().map_or(opts.runs, |p| p.pairs),
            profiler: opts.profiler,
            sample_frequency_hz: opts.frequency,
            profile_time_override_secs: opts.profile_time,
            only: opts.only.clone(),
            clean: opts.clean,
            allow_interference: opts.allow_interference,
            criterion_args: parts.criterion_args,
            cpu_idle: parts.idle,
        },
        git: side.git.clone(),
        toolchain: pre.toolchain.clone(),
        host: pre.host.clone(),
        interference: pre.interference.clone(),
        tools: pre.tools.clone(),
        database: parts.database,
        build: parts.build,
        plan_source: plan.path.display().to_string(),
        targets: side.records.clone(),
        total_secs: parts.total_secs,
        pairing: side.pairing.clone(),
    }
}

/// The Phase 2 document of a finished baseline, if one was asked for.
fn write_baseline_doc(opts: &Options, finished: &side::Finished) -> Result<()> {
    let Some(doc) = &opts.baseline_doc else {
        return Ok(());
    };
    if let Some(dir) = doc.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let rel = finished
        .dir
        .strip_prefix(&opts.workspace)
        .unwrap_or(&finished.dir);
    std::fs::write(
        doc,
        report::baseline_doc(
            &finished.manifest,
            &finished.timings,
            &finished.analyses,
            &finished.database,
            rel,
        ),
    )
    .with_context(|| format!("writing {}", doc.display()))?;
    eprintln!("wrote {}", doc.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failures_excerpt_starts_at_its_panic() {
        let mut text =
            String::from("compiling\nthread 'main' (21732) panicked at src/a.rs:1:1:\nno task\n");
        text.push_str(&"  frame\n".repeat(40));
        let excerpt = tail(&text, 5);
        assert!(
            excerpt.starts_with("thread 'main' (21732) panicked at"),
            "{excerpt}"
        );
        assert!(excerpt.contains("no task"));
        assert_eq!(excerpt.lines().count(), 5);
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
    }
}
