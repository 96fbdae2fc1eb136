//! The run pipeline behind `profile-baseline` (and, later, `profile-post`): preflight,
//! clean build, timing pass, profiling pass, analysis, all written into a staging directory
//! that replaces the output directory only when the run is complete.

pub mod build;
pub mod database;
pub mod manifest;
mod outdir;
pub mod profiler;
mod progress;
pub mod report;
pub mod schedstat;
mod timing;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Cmd, Shell};

use crate::analysis::{self, Analysis};
use crate::flags::ProfilerChoice;
use crate::interference::Status;
use crate::plan::{Kind, Plan, Target};
use crate::{audit, check_env, clock, host, redact, workspace};
use manifest::{
    AnalysisFile, BuildRecord, DatabaseRecord, Manifest, OptionsRecord, TargetAnalysis,
    TargetRecord, TargetStatus, Timings, SCHEMA_VERSION,
};

/// Profile time per benchmark for `--quick` smoke runs.
const QUICK_PROFILE_SECS: f64 = 2.0;

/// Everything a run needs; `profile-baseline` and `profile-post` differ only in these.
#[derive(Debug, Clone)]
pub struct Options {
    pub workspace: PathBuf,
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

/// The last `n` lines of a command's output, for error messages.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("serialising JSON")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

struct Preflight {
    git: host::Git,
    toolchain: host::Toolchain,
    host: host::Host,
    interference: crate::interference::Report,
    tools: std::collections::BTreeMap<String, String>,
    metadata: workspace::Metadata,
    perf: profiler::PerfSetup,
}

/// Everything that can be wrong before a build is checked here, so a run that cannot
/// finish stops before spending time, with the command that fixes it.
fn preflight(sh: &Shell, opts: &Options, plan: &Plan, targets: &[Target]) -> Result<Preflight> {
    outdir::check_target(&opts.out, opts.force)?;
    let metadata = workspace::metadata(sh, &opts.workspace)?;
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
    if targets.iter().any(|t| t.needs_database)
        && database::needs_throwaway()
        && metadata.package(database::TASKER_PACKAGE).is_none()
    {
        bail!(
            "the plan needs a database, DATABASE_URL is unset and package `{}` (which provides `tasker db`) is missing; set DATABASE_URL",
            database::TASKER_PACKAGE
        );
    }

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
    let toolchain = host::toolchain(sh)?;
    let mut tools = std::collections::BTreeMap::new();
    for tool in ["perf", "samply"] {
        if let Some(v) = host::tool_version(sh, tool) {
            tools.insert(tool.to_owned(), v);
        }
    }
    tools.insert(
        "inferno".to_owned(),
        "0.12 (library, linked into xtask)".to_owned(),
    );
    let perf = profiler::PerfSetup::for_this_user();
    match opts.profiler {
        ProfilerChoice::Perf => {
            if !tools.contains_key("perf") {
                bail!("perf is not installed; run `cargo xtask install-tools` (or pass --profiler none to skip profiling)");
            }
            probe_perf(sh, &perf)?;
        }
        ProfilerChoice::Samply => {
            if !tools.contains_key("samply") {
                bail!("samply is not installed; run `cargo xtask install-tools` (or pass --profiler none to skip profiling)");
            }
        }
        ProfilerChoice::None => {}
    }

    let interference = check_env::check_settled(opts.profiler, opts.frequency, opts.settle);
    eprint!("{}", check_env::render(&interference));
    if interference.worst == Status::Fail {
        if opts.allow_interference {
            eprintln!("warning: the interference check failed; continuing because of --allow-interference (recorded in the manifest)");
        } else {
            bail!("the interference check failed (see above); fix the `fail` findings or pass --allow-interference");
        }
    }
    Ok(Preflight {
        git,
        toolchain,
        host: host::host(),
        interference,
        tools,
        metadata,
        perf,
    })
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

fn target_record(t: &Target, profile_time_secs: f64) -> TargetRecord {
    TargetRecord {
        name: t.name.clone(),
        package: t.package.clone(),
        kind: t.kind,
        binary: t.binary.clone(),
        category: t.category,
        features: t.features.clone(),
        all_features: t.all_features,
        filter: t.filter.clone(),
        needs_database: t.needs_database,
        thresholds: t.thresholds.clone(),
        profile_time_secs,
        cargo_command: t.cargo_command(),
        status: TargetStatus::Ok,
        notes: Vec::new(),
        error: None,
        executable: None,
        build_command: None,
        build_secs: None,
        timing: None,
        profile: None,
        analysis_secs: None,
    }
}

/// Whether the bench's source declares itself a placeholder (see `cargo xtask audit`).
fn is_placeholder(metadata: &workspace::Metadata, t: &Target) -> bool {
    if t.kind != Kind::Bench {
        return false;
    }
    metadata
        .package(&t.package)
        .and_then(|p| {
            p.targets
                .iter()
                .find(|c| c.name == t.binary && c.is("bench"))
        })
        .and_then(|c| std::fs::read_to_string(&c.src_path).ok())
        .is_some_and(|src| audit::is_placeholder(&src))
}

pub fn run(opts: &Options) -> Result<Outcome> {
    let started_at = clock::now_rfc3339();
    let run_started = Instant::now();
    let sh = Shell::new().context("creating a shell")?;
    sh.change_dir(&opts.workspace);
    let plan = Plan::load(&opts.plan)?;
    let targets = plan.select(&opts.only)?;
    let pre = preflight(&sh, opts, &plan, &targets)?;

    if ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("\ninterrupted: stopping after the current step and cleaning up");
    })
    .is_err()
    {
        eprintln!("warning: could not install the Ctrl-C handler; an interrupted run may leave a database running");
    }

    let staging = outdir::Staging::create(&opts.out, opts.keep_failed)?;
    let out = staging.path().to_owned();
    let target_dir = opts
        .target_dir
        .clone()
        .unwrap_or_else(|| pre.metadata.target_directory.clone());
    let cargo = build::Cargo::for_workspace(&opts.workspace, target_dir.clone());

    let mut records: Vec<TargetRecord> = targets
        .iter()
        .map(|t| {
            let secs = opts.profile_time.unwrap_or(if opts.quick {
                t.profile_time_secs.min(QUICK_PROFILE_SECS)
            } else {
                t.profile_time_secs
            });
            target_record(t, secs)
        })
        .collect();
    for (t, r) in targets.iter().zip(records.iter_mut()) {
        if is_placeholder(&pre.metadata, t) {
            r.status = TargetStatus::Skipped;
            r.notes.push(format!(
                "placeholder bench (`{}` in its header): not measured",
                audit::PLACEHOLDER_MARKER
            ));
        }
    }

    // Build: clean, then every target once. The database binary is built with the same flags,
    // so dependencies are shared.
    let mut build_record = BuildRecord {
        cargo_profile: build::CARGO_PROFILE.to_owned(),
        rustflags: cargo.rustflags.clone(),
        clean_command: None,
        clean_secs: 0.0,
        build_secs: 0.0,
    };
    if opts.clean {
        eprintln!("cleaning {}", target_dir.display());
        let (command, took) = cargo.clean(&sh)?;
        build_record.clean_command = Some(command);
        build_record.clean_secs = took.as_secs_f64();
    }
    let mut executables: Vec<Option<PathBuf>> = vec![None; targets.len()];
    let build_started = Instant::now();
    for (i, (t, r)) in targets.iter().zip(records.iter_mut()).enumerate() {
        if r.status == TargetStatus::Skipped {
            continue;
        }
        if interrupted() {
            bail!("interrupted");
        }
        eprintln!("building {} ({}/{})", t.name, i + 1, targets.len());
        let built =
            cargo.build_target(&sh, t, &out.join("logs").join(&t.name).join("build.log"))?;
        r.executable = Some(built.executable.display().to_string());
        r.build_command = Some(built.command);
        r.build_secs = Some(built.duration.as_secs_f64());
        executables[i] = Some(built.executable);
    }
    let needs_db = targets
        .iter()
        .zip(&records)
        .any(|(t, r)| t.needs_database && r.status != TargetStatus::Skipped);
    let db_exe = if needs_db && database::needs_throwaway() {
        Some(database::build_tasker(
            &sh,
            &cargo,
            &out.join("logs").join("tasker-build.log"),
        )?)
    } else {
        None
    };
    build_record.build_secs = build_started.elapsed().as_secs_f64();

    // Idle CPUs: held from here (the build is over) until the run returns, so the database's
    // start and every measurement see the same condition.
    let idle = crate::cpu_idle::hold(opts.cpu_idle);
    eprintln!("cpu idle: {}", idle.record.describe());

    // Database: one for all targets, stopped when `_db` drops (end, error or Ctrl-C).
    let mut env = RunEnv::empty();
    let mut database_record = None;
    let _db = if needs_db {
        let provided = database::provide(&sh, db_exe.as_deref(), &target_dir)?;
        database_record = Some(DatabaseRecord {
            source: provided.source.to_owned(),
            url: redact::url(&provided.url),
        });
        env.add_database_url(provided.url);
        provided.guard
    } else {
        None
    };

    let criterion_args: Vec<String> = if opts.quick {
        timing::QUICK_ARGS.iter().map(|s| (*s).to_owned()).collect()
    } else {
        Vec::new()
    };
    let scratch =
        target_dir
            .join("xtask-criterion")
            .join(format!("{}-{}", opts.label, std::process::id()));
    let title_rev = match (&pre.git.revision, pre.git.dirty) {
        (Some(rev), dirty) => format!(
            "{}{}",
            &rev[..rev.len().min(12)],
            if dirty == Some(true) { "+dirty" } else { "" }
        ),
        (None, _) => "no git revision".to_owned(),
    };

    let mut timings = Timings {
        schema_version: SCHEMA_VERSION,
        targets: Vec::new(),
    };
    let mut analyses = AnalysisFile {
        schema_version: SCHEMA_VERSION,
        targets: Vec::new(),
    };
    let mut progress = progress::Progress::new(targets.len());
    for (i, (t, r)) in targets.iter().zip(records.iter_mut()).enumerate() {
        if interrupted() {
            progress.done();
            bail!("interrupted; nothing was written to {}", opts.out.display());
        }
        let Some(exe) = executables[i].as_deref() else {
            continue;
        };
        progress.start_target();
        let result = measure_target(MeasureCtx {
            sh: &sh,
            env: &env,
            exe,
            target: t,
            record: r,
            out: &out,
            scratch: &scratch,
            criterion_args: &criterion_args,
            opts,
            progress: &progress,
            index: i,
            perf: &pre.perf,
            title: format!("{} @ {title_rev}", t.name),
        });
        match result {
            Ok((timing, analysis)) => {
                if let Some(timing) = timing {
                    timings.targets.push(timing);
                }
                if let Some(analysis) = analysis {
                    analyses.targets.push(TargetAnalysis {
                        name: t.name.clone(),
                        category: t.category,
                        analysis,
                    });
                }
            }
            Err(e) => {
                r.status = TargetStatus::Failed;
                r.error = Some(env.scrub(&format!("{e:#}")));
            }
        }
        progress.finish_target();
        progress.note(&format!(
            "[{}/{}] {}: {}",
            i + 1,
            targets.len(),
            t.name,
            r.status.name()
        ));
    }
    progress.done();
    let _ = std::fs::remove_dir_all(&scratch);
    if interrupted() {
        bail!("interrupted; nothing was written to {}", opts.out.display());
    }

    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        label: opts.label.clone(),
        started_at,
        finished_at: clock::now_rfc3339(),
        command_line: opts.command_line.clone(),
        options: OptionsRecord {
            quick: opts.quick,
            runs: opts.runs,
            profiler: opts.profiler,
            sample_frequency_hz: opts.frequency,
            profile_time_override_secs: opts.profile_time,
            only: opts.only.clone(),
            clean: opts.clean,
            allow_interference: opts.allow_interference,
            criterion_args,
            cpu_idle: idle.record.clone(),
        },
        git: pre.git,
        toolchain: pre.toolchain,
        host: pre.host,
        interference: pre.interference,
        tools: pre.tools,
        database: database_record,
        build: build_record,
        plan_source: plan.path.display().to_string(),
        targets: records,
        total_secs: run_started.elapsed().as_secs_f64(),
    };
    std::fs::write(out.join(manifest::PLAN_FILE), &plan.text).context("copying the plan")?;
    write_json(&out.join(manifest::TIMINGS_FILE), &timings)?;
    write_json(&out.join(manifest::ANALYSIS_FILE), &analyses)?;
    std::fs::write(
        out.join(manifest::SUMMARY_FILE),
        report::summary(&manifest, &timings, &analyses),
    )
    .context("writing summary.md")?;
    write_json(&out.join(manifest::MANIFEST_FILE), &manifest)?;

    print!("{}", report::final_table(&manifest));
    let failed: Vec<&str> = manifest
        .targets
        .iter()
        .filter(|r| r.status == TargetStatus::Failed)
        .map(|r| r.name.as_str())
        .collect();
    if !failed.is_empty() {
        for r in manifest
            .targets
            .iter()
            .filter(|r| r.status == TargetStatus::Failed)
        {
            eprintln!(
                "{} failed: {}",
                r.name,
                r.error.as_deref().unwrap_or("unknown error")
            );
        }
        bail!(
            "{} of {} targets failed ({}); {} was left as it was",
            failed.len(),
            manifest.targets.len(),
            failed.join(", "),
            opts.out.display()
        );
    }
    let final_dir = staging.commit(opts.force)?;
    if let Some(doc) = &opts.baseline_doc {
        if let Some(dir) = doc.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let rel = final_dir
            .strip_prefix(&opts.workspace)
            .unwrap_or(&final_dir);
        std::fs::write(
            doc,
            report::baseline_doc(&manifest, &timings, &analyses, rel),
        )
        .with_context(|| format!("writing {}", doc.display()))?;
        eprintln!("wrote {}", doc.display());
    }
    Ok(Outcome {
        out: final_dir,
        manifest,
    })
}

struct MeasureCtx<'a> {
    sh: &'a Shell,
    env: &'a RunEnv,
    exe: &'a Path,
    target: &'a Target,
    record: &'a mut TargetRecord,
    out: &'a Path,
    scratch: &'a Path,
    criterion_args: &'a [String],
    opts: &'a Options,
    progress: &'a progress::Progress,
    index: usize,
    perf: &'a profiler::PerfSetup,
    title: String,
}

/// Timing, profiling and analysis of one target.
fn measure_target(
    ctx: MeasureCtx<'_>,
) -> Result<(Option<manifest::TargetTimings>, Option<Analysis>)> {
    let t = ctx.target;
    let mut timings = None;
    if t.kind == Kind::Bench {
        let pass = timing::TimingPass {
            sh: ctx.sh,
            env: ctx.env,
            exe: ctx.exe,
            target: t,
            out: ctx.out,
            scratch: ctx.scratch,
            criterion_args: ctx.criterion_args,
            runs: ctx.opts.runs,
        };
        let (record, target_timings) = pass.run(|run| {
            ctx.progress.phase(
                ctx.index,
                &t.name,
                &format!("timing run {run}/{}", ctx.opts.runs),
            );
        })?;
        if record.noisy {
            ctx.record.status = TargetStatus::Noisy;
            ctx.record.notes.push(format!(
                "runs disagree by {:.1}% (> {:.1}% allowed): timings are not reliable enough to judge a change",
                record.spread_pct.unwrap_or(0.0),
                t.thresholds.noise_pct
            ));
        }
        ctx.record.timing = Some(record);
        timings = Some(target_timings);
    }
    if interrupted() {
        bail!("interrupted");
    }
    if ctx.opts.profiler == ProfilerChoice::None {
        return Ok((timings, None));
    }
    ctx.progress.phase(
        ctx.index,
        &t.name,
        &format!("profiling with {}", ctx.opts.profiler.name()),
    );
    let pass = profiler::ProfilePass {
        sh: ctx.sh,
        env: ctx.env,
        exe: ctx.exe,
        target: t,
        out: ctx.out,
        profiler: ctx.opts.profiler,
        frequency: ctx.opts.frequency,
        profile_time_secs: ctx.record.profile_time_secs,
        perf: ctx.perf,
        title: ctx.title.clone(),
    };
    let profiled = pass.run()?;
    ctx.record.profile = Some(profiled.record);
    let Some(folded) = profiled.folded else {
        ctx.record
            .notes
            .push("samply profile saved; open it with `samply load` (folded stacks and analysis need perf)".to_owned());
        return Ok((timings, None));
    };
    ctx.progress.phase(ctx.index, &t.name, "analysing");
    let started = Instant::now();
    let analysis = analysis::analyse(
        &folded,
        analysis::Options {
            hot_path_pct: t.thresholds.hot_path_pct,
            first_frame_is_process: true,
        },
    )?;
    ctx.record.analysis_secs = Some(Duration::as_secs_f64(&started.elapsed()));
    if let (Some(profile), Some(top)) = (ctx.record.profile.as_mut(), analysis.top_self.first()) {
        profile.top_self = Some(manifest::TopFunction {
            function: top.function.clone(),
            self_pct: top.self_pct,
        });
    }
    Ok((timings, Some(analysis)))
}
