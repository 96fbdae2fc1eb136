//! The profiling pass: the built bench executable (`--bench --profile-time N`) or test
//! executable (with its filter) under perf or samply, never cargo. A test executable is run
//! again and again until the profile time has passed, so a one-second test still yields
//! enough samples at a low sampling rate. perf's output is folded with inferno, samply's by
//! [`super::samply_fold`], into the same stacks, and rendered as a flamegraph SVG.
//!
//! perf samples the whole machine (`-a`) where it may, and the folding keeps only the
//! measured program's processes. Sampling the program's own threads instead costs every
//! context switch of those threads a stop and restart of perf's sampling timer, which is
//! most of what the engine's short, switch-heavy operations do: measured with
//! `cargo xtask profiler-overhead` on the 2-core build machine, `handler_overhead/
//! executor_execute` ran 17 % slower under per-thread sampling and no slower (inside the
//! noise) under whole-machine sampling at the same rate.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use inferno::collapse::Collapse;
use xshell::{cmd, Shell};

use super::manifest::{OffCpuProfile, ProfileRecord, ServerProfile, TopFunction};
use super::{offcpu, samply_fold, RunEnv};
use crate::plan::{Kind, Target};
use crate::profiler_choice::ProfilerChoice;

pub struct ProfilePass<'a> {
    pub sh: &'a Shell,
    pub env: &'a RunEnv,
    pub exe: &'a Path,
    pub target: &'a Target,
    pub out: &'a Path,
    pub profiler: ProfilerChoice,
    pub frequency: u32,
    pub profile_time_secs: f64,
    pub perf: &'a PerfSetup,
    /// A title for the flamegraph (target and git revision).
    pub title: String,
    /// Profile only these benchmarks (criterion ids), instead of the target's filter.
    pub benchmarks: Option<&'a [String]>,
}

pub struct Profiled {
    pub record: ProfileRecord,
    /// The folded stacks, when the profiler's output could be folded.
    pub folded: Option<String>,
}

impl ProfilePass<'_> {
    /// The arguments the profiled executable gets.
    pub fn target_args(&self) -> Vec<String> {
        let t = self.target;
        let mut args = Vec::new();
        match t.kind {
            Kind::Bench => {
                args.extend([
                    "--bench".to_owned(),
                    "--profile-time".to_owned(),
                    format!("{}", self.profile_time_secs),
                ]);
            }
            Kind::Test => {}
        }
        match (t.kind, self.benchmarks) {
            (Kind::Bench, Some(ids)) => args.push(exact_filter(ids)),
            _ => args.extend(t.filter.clone()),
        }
        args
    }

    pub fn run(&self) -> Result<Profiled> {
        let t = self.target;
        let dir = self.out.join("profiles").join(&t.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let exe = self.exe;
        let args = self.target_args();
        let (program, raw_name, mut argv): (&str, &str, Vec<String>) = match self.profiler {
            ProfilerChoice::Perf => (
                "perf",
                "perf.data",
                perf_record_args(self.perf, self.frequency, &dir.join("perf.data")),
            ),
            ProfilerChoice::Samply => (
                "samply",
                SAMPLY_PROFILE,
                vec![
                    "record".into(),
                    "--save-only".into(),
                    // The symbols of every address, beside the profile: see `samply_fold`.
                    "--unstable-presymbolicate".into(),
                    "--rate".into(),
                    self.frequency.to_string(),
                    "-o".into(),
                    dir.join(SAMPLY_PROFILE).display().to_string(),
                ],
            ),
            ProfilerChoice::None => bail!("no profiler selected"),
        };
        argv.push("--".into());
        if t.kind == Kind::Test {
            argv.extend(repeat_until(self.profile_time_secs));
        }
        argv.push(exe.display().to_string());
        argv.extend(args);
        let argv_ref = &argv;
        let command = cmd!(self.sh, "{program} {argv_ref...}");
        let text = command.to_string();
        let log = self.out.join("logs").join(&t.name).join("profile.log");
        let started = Instant::now();
        let output = self
            .env
            .apply(command)
            .quiet()
            .ignore_status()
            .output()
            .with_context(|| format!("running `{text}`"))?;
        let duration = started.elapsed();
        self.env.log(&log, &text, &output)?;
        if !output.status.success() {
            bail!(
                "profiling `{}` failed ({}); see {}:\n{}",
                t.name,
                output.status,
                log.display(),
                self.env
                    .scrub(&super::tail(&String::from_utf8_lossy(&output.stderr), 20))
            );
        }
        let mut record = ProfileRecord {
            command: std::iter::once(program.to_owned()).chain(argv).collect(),
            duration_secs: duration.as_secs_f64(),
            // Only the repeat loop around a test executable prints the count.
            repetitions: repetitions(&String::from_utf8_lossy(&output.stderr)),
            raw: format!("profiles/{}/{raw_name}", t.name),
            folded: None,
            flamegraph: None,
            samples: None,
            top_self: None,
            server: None,
            offcpu: None,
        };
        let logs = self.out.join("logs").join(&t.name);
        let folded = match self.profiler {
            ProfilerChoice::Samply => samply_fold::fold(&dir.join(SAMPLY_PROFILE))?,
            _ => {
                let raw = dir.join("perf.data");
                let (folded, pids) = fold_perf(&raw, &logs.join("perf-script.log"), self.perf)?;
                if let (true, Some(mut program)) = (self.perf.off_cpu, pids) {
                    if t.kind == Kind::Test {
                        // The repeat loop's shell waits for the test the whole time.
                        program.pids.remove(&program.root);
                    }
                    record.offcpu = self.offcpu_profile(&dir, &raw, &program.pids)?;
                }
                folded
            }
        };
        std::fs::write(dir.join("folded.txt"), &folded).context("writing folded stacks")?;
        record.folded = Some(format!("profiles/{}/folded.txt", t.name));
        let samples = sample_count(&folded);
        record.samples = Some(samples);
        if samples == 0 {
            bail!(
                "the profile of `{}` holds no samples; the run may be too short (raise profile_time_secs) or perf lacks permission",
                t.name
            );
        }
        let svg = dir.join("flamegraph.svg");
        render_flamegraph(&folded, &svg, &self.title)?;
        record.flamegraph = Some(format!("profiles/{}/flamegraph.svg", t.name));
        if self.profiler == ProfilerChoice::Perf && self.perf.system_wide && t.needs_database {
            record.server = self.server_profile(&dir)?;
        }
        Ok(Profiled {
            record,
            folded: Some(folded),
        })
    }
}

/// The file samply saves its recording to, in the target's profile directory.
const SAMPLY_PROFILE: &str = "profile.json.gz";

/// Functions listed in the manifest for the server's and the off-CPU profiles.
const SIDE_TOP: usize = 10;

impl ProfilePass<'_> {
    /// PostgreSQL's samples in the whole-machine recording: folded, drawn and ranked on
    /// their own, next to the program's.
    fn server_profile(&self, dir: &Path) -> Result<Option<ServerProfile>> {
        let t = self.target;
        let log = self
            .out
            .join("logs")
            .join(&t.name)
            .join("perf-script-server.log");
        let folded = fold_selection(
            &dir.join("perf.data"),
            &log,
            &["--comm".to_owned(), SERVER_COMMAND.to_owned()],
            self.perf.off_cpu,
        )?;
        let samples = sample_count(&folded);
        if samples == 0 {
            return Ok(None);
        }
        let kept = self.keep_beside(
            dir,
            "server",
            &folded,
            flamegraph_options(&format!("PostgreSQL during {}", self.title)),
        )?;
        Ok(Some(ServerProfile {
            folded: kept.folded,
            flamegraph: Some(kept.flamegraph),
            samples,
            top_self: kept.top_self,
        }))
    }

    /// A profile kept beside the program's on-CPU one (the server's, the off-CPU one):
    /// written as `<kind>-folded.txt`, drawn as `<kind>-flamegraph.svg`, and ranked.
    fn keep_beside(
        &self,
        dir: &Path,
        kind: &str,
        folded: &str,
        options: inferno::flamegraph::Options<'_>,
    ) -> Result<KeptProfile> {
        let t = self.target;
        let (folded_name, svg_name) = (
            format!("{kind}-folded.txt"),
            format!("{kind}-flamegraph.svg"),
        );
        std::fs::write(dir.join(&folded_name), folded)
            .with_context(|| format!("writing {folded_name}"))?;
        render_with(folded, &dir.join(&svg_name), options)?;
        let analysis = crate::analysis::analyse(
            folded,
            crate::analysis::Options {
                hot_path_pct: t.thresholds.hot_path_pct,
                first_frame_is_process: true,
            },
        )?;
        Ok(KeptProfile {
            folded: format!("profiles/{}/{folded_name}", t.name),
            flamegraph: format!("profiles/{}/{svg_name}", t.name),
            top_self: analysis
                .top_self
                .iter()
                .take(SIDE_TOP)
                .map(|f| TopFunction {
                    function: f.function.clone(),
                    self_pct: f.self_pct,
                })
                .collect(),
        })
    }
}

/// What [`ProfilePass::keep_beside`] wrote, relative to the output directory.
struct KeptProfile {
    folded: String,
    flamegraph: String,
    top_self: Vec<TopFunction>,
}

/// The sampling event as inferno's folder names it (`cpu-clock` and `cpu-clock:u` alike).
const SAMPLING_EVENT: &str = "cpu-clock";

impl ProfilePass<'_> {
    /// Where the program's threads blocked: folded, drawn and ranked next to the on-CPU
    /// profile. `None` when no thread of the program blocked and woke while recorded.
    fn offcpu_profile(
        &self,
        dir: &Path,
        raw: &Path,
        pids: &BTreeSet<u32>,
    ) -> Result<Option<OffCpuProfile>> {
        let log = self
            .out
            .join("logs")
            .join(&self.target.name)
            .join("perf-script-offcpu.log");
        let off = offcpu::fold(raw, pids, &log)?;
        if off.switches == 0 {
            return Ok(None);
        }
        let mut options = flamegraph_options(&format!("Off-CPU time of {}", self.title));
        options.count_name = "µs blocked".to_owned();
        options.colors =
            inferno::flamegraph::Palette::Basic(inferno::flamegraph::color::BasicPalette::Blue);
        let kept = self.keep_beside(dir, "offcpu", &off.folded, options)?;
        Ok(Some(OffCpuProfile {
            folded: kept.folded,
            flamegraph: Some(kept.flamegraph),
            switches: off.switches,
            blocked_secs: off.blocked_us as f64 / 1e6,
            top_self: kept.top_self,
        }))
    }
}

/// The command name of PostgreSQL's processes (postmaster, backends, background workers).
const SERVER_COMMAND: &str = "postgres";

fn sample_count(folded: &str) -> u64 {
    folded
        .lines()
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, n)| n.parse::<u64>().ok()))
        .sum()
}

/// How perf samples for this user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerfSetup {
    /// `cpu-clock`, a software event, so it works in VMs without hardware counters
    /// (`cpu-clock:u` where kernel samples are off-limits).
    pub event: String,
    /// Whole-machine sampling (`-a`), filtered to the program when folding; see the module
    /// header for why. Needs root or `kernel.perf_event_paranoid` 0 or lower.
    pub system_wide: bool,
    /// The scheduler's switches recorded too, with call stacks, for the off-CPU profile
    /// ([`super::offcpu`]). Needs whole-machine recording and the tracepoint: root, or
    /// `kernel.perf_event_paranoid` -1.
    pub off_cpu: bool,
    /// Stacks unwound from DWARF unwind tables rather than frame pointers.
    pub dwarf: bool,
}

impl PerfSetup {
    /// What this user may record; `off_cpu` when asked for and allowed.
    pub fn for_this_user(off_cpu: bool) -> PerfSetup {
        let is_root = crate::probe::is_root();
        let paranoid = crate::probe::readings().perf_event_paranoid;
        PerfSetup {
            off_cpu: off_cpu && (is_root || paranoid.is_some_and(|p| p <= -1)),
            dwarf: false,
            // Kernel samples are off-limits to a normal user at level 2; ask for user space.
            event: if !is_root && paranoid.is_some_and(|p| p >= 2) {
                "cpu-clock:u".to_owned()
            } else {
                "cpu-clock".to_owned()
            },
            system_wide: is_root || paranoid.is_some_and(|p| p <= 0),
        }
    }
}

/// `perf record`'s arguments up to the command it runs: call stacks by frame pointer, at
/// `frequency` Hz. `profiler-overhead` attaches perf with these very arguments.
///
/// With the off-CPU profile, every switch is recorded (`-c 1`, which a tracepoint needs:
/// `-F` would sample them too) while the sampling event keeps its frequency as its own term,
/// named as without, so the folding finds it by the same name.
pub fn perf_record_args(perf: &PerfSetup, frequency: u32, output: &Path) -> Vec<String> {
    let mut args = vec!["record".to_owned()];
    if perf.system_wide {
        args.push("-a".into());
    }
    if perf.off_cpu {
        args.extend([
            "-c".into(),
            "1".into(),
            "-e".into(),
            format!("{}/freq={frequency},name={}/", perf.event, perf.event),
            "-e".into(),
            super::offcpu::SWITCH_EVENT.into(),
        ]);
    } else {
        args.extend([
            "-e".into(),
            perf.event.clone(),
            "-F".into(),
            frequency.to_string(),
        ]);
    }
    if perf.dwarf {
        args.extend(["--call-graph".into(), "dwarf".into()]);
    } else {
        args.push("-g".into());
    }
    args.extend(["-o".into(), output.display().to_string()]);
    args
}

/// The processes of the program perf ran, from the task events in its recording: the child
/// perf forked (named `perf-exec` until it executes the program) and everything that child
/// and its descendants forked. `None` when the recording names no such child.
fn program_pids(task_events: &str) -> Option<Program> {
    let mut pids = BTreeSet::new();
    let mut root = None;
    for line in task_events.lines() {
        if let Some(rest) = line.split("PERF_RECORD_COMM: perf-exec:").nth(1) {
            if let Some(pid) = rest.split('/').next().and_then(|p| p.trim().parse().ok()) {
                pids.insert(pid);
                root.get_or_insert(pid);
            }
        } else if let Some(rest) = line.split("PERF_RECORD_FORK(").nth(1) {
            // PERF_RECORD_FORK(child_pid:child_tid):(parent_pid:parent_tid)
            let numbers: Vec<u32> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter(|n| !n.is_empty())
                .filter_map(|n| n.parse().ok())
                .collect();
            if let [child, _, parent, _] = numbers[..] {
                if pids.contains(&parent) {
                    pids.insert(child);
                }
            }
        }
    }
    root.map(|root| Program { root, pids })
}

/// The processes of the profiled program.
#[derive(Debug, PartialEq, Eq)]
pub struct Program {
    /// The process perf started: the test executable's repeat loop, or the bench itself.
    pub root: u32,
    /// It and all its descendants.
    pub pids: BTreeSet<u32>,
}

/// The task events of a recording (`perf script --show-task-events`), in time order.
fn task_events(raw: &Path, log: &Path) -> Result<String> {
    let stderr = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let output = Command::new("perf")
        .arg("script")
        .arg("-i")
        .arg(raw)
        .arg("--show-task-events")
        .args(["-F", "comm,pid,tid,event"])
        .stderr(Stdio::from(stderr))
        .output()
        .context("running `perf script --show-task-events`")?;
    if !output.status.success() {
        bail!(
            "`perf script --show-task-events -i {}` failed ({}); see {}",
            raw.display(),
            output.status,
            log.display()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The line the repeat loop prints last, with the number of runs.
const REPETITIONS_PREFIX: &str = "xtask-profile-repetitions=";

/// A bash loop that runs the command it is given until `secs` have passed (at least once) and
/// stops at the first failure. bash's `SECONDS` counts whole seconds from a clock tick, so the
/// loop aims one second further to be sure of the full time. A shell rather than the xtask
/// itself, so the profiled process tree holds only the test executable and a shell that is
/// asleep while it runs.
fn repeat_until(secs: f64) -> Vec<String> {
    let script = format!(
        r#"end=$((SECONDS + $1 + 1)); shift; n=0; while :; do "$@" || exit $?; n=$((n + 1)); [ "$SECONDS" -ge "$end" ] && break; done; echo "{REPETITIONS_PREFIX}$n" >&2"#
    );
    vec![
        "bash".into(),
        "-c".into(),
        script,
        "bash".into(),
        format!("{}", secs.ceil().max(1.0) as u64),
    ]
}

fn repetitions(stderr: &str) -> Option<u32> {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(REPETITIONS_PREFIX))
        .and_then(|n| n.parse().ok())
}

/// `perf script` piped straight into inferno's folder: the text form of a long profile is
/// far bigger than the folded result, so it is never held in memory or on disk whole.
/// xshell cannot stream a child's output, hence `std::process` here.
///
/// The recording is read twice on purpose: the first pass prints only the task events and
/// each sample's pid (no symbols, so it is cheap), and the second resolves symbols for the
/// program's samples alone (`--pid`). One pass filtering as it streams would have perf
/// symbolise every process of a whole-machine recording, PostgreSQL's included, first.
///
/// Returns the folded stacks and the program's processes, when the recording names them.
pub fn fold_perf(raw: &Path, log: &Path, perf: &PerfSetup) -> Result<(String, Option<Program>)> {
    let pids = program_pids(&task_events(raw, &log.with_extension("tasks.log"))?);
    // A whole-machine recording folded unfiltered would pass every process on the machine
    // off as the program's profile.
    if perf.system_wide && pids.is_none() {
        bail!(
            "the whole-machine recording {} names no process perf started (no `perf-exec` task event), \
             so the program's samples cannot be told from the rest of the machine; \
             record it again, and check `perf script --show-task-events -i {}`",
            raw.display(),
            raw.display()
        );
    }
    let selection = match &pids {
        Some(program) => {
            let list: Vec<String> = program.pids.iter().map(u32::to_string).collect();
            vec!["--pid".to_owned(), list.join(",")]
        }
        None => Vec::new(),
    };
    Ok((fold_selection(raw, log, &selection, perf.off_cpu)?, pids))
}

/// `perf script` of the samples `selection` picks (`--pid …`, `--comm …`, or all), folded.
///
/// With `switches` (the recording holds the scheduler's switches too) perf prints the samples
/// alone: symbolising every switch's stack, only for the folder to drop it, would take most
/// of the time on a whole-machine recording.
fn fold_selection(raw: &Path, log: &Path, selection: &[String], switches: bool) -> Result<String> {
    let stderr = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    // Without the `period` field inferno counts one per sample instead of summing periods,
    // so the folded counts are samples.
    const FIELDS: &str = "comm,pid,tid,time,event,ip,sym,dso";
    let fields = if switches {
        vec![
            "-F".to_owned(),
            "trace:".to_owned(),
            "-F".to_owned(),
            format!("sw:{FIELDS}"),
        ]
    } else {
        vec!["-F".to_owned(), FIELDS.to_owned()]
    };
    let mut command = Command::new("perf");
    command.arg("script").arg("-i").arg(raw).args(selection);
    let mut child = command
        // Inline expansion runs addr2line per frame: minutes on big profiles, little gain.
        .arg("--no-inline")
        .args(fields)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .context("running `perf script`")?;
    let stdout = child
        .stdout
        .take()
        .context("capturing `perf script` output")?;
    let mut folded = Vec::new();
    // Kernel (`_[k]`) and shared library (`_[lib]`) frames marked, so that the analysis
    // charges their time to the program's code that called them.
    let mut options = inferno::collapse::perf::Options::default();
    options.annotate_kernel = true;
    // The sampling event only: a recording with the scheduler's switches holds those too.
    options.event_filter = Some(SAMPLING_EVENT.to_owned());
    let mut folder = inferno::collapse::perf::Folder::from(options);
    let collapsed = folder.collapse(
        super::library_frames::marked(BufReader::new(stdout)),
        &mut folded,
    );
    let status = child.wait().context("waiting for `perf script`")?;
    collapsed.context("folding `perf script` output")?;
    if !status.success() {
        bail!(
            "`perf script -i {}` failed ({status}); see {}",
            raw.display(),
            log.display()
        );
    }
    String::from_utf8(folded).context("folded stacks are not UTF-8")
}

pub fn render_flamegraph(folded: &str, svg: &Path, title: &str) -> Result<()> {
    render_with(folded, svg, flamegraph_options(title))
}

fn flamegraph_options(title: &str) -> inferno::flamegraph::Options<'static> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_owned();
    options.count_name = "samples".to_owned();
    options
}

fn render_with(
    folded: &str,
    svg: &Path,
    mut options: inferno::flamegraph::Options<'_>,
) -> Result<()> {
    let file = File::create(svg).with_context(|| format!("creating {}", svg.display()))?;
    inferno::flamegraph::from_lines(&mut options, folded.lines(), BufWriter::new(file))
        .with_context(|| format!("rendering {}", svg.display()))
}

/// A criterion filter (a regular expression) matching exactly the benchmarks `ids`.
fn exact_filter(ids: &[String]) -> String {
    let escaped: Vec<String> = ids
        .iter()
        .map(|id| {
            id.chars()
                .flat_map(|c| {
                    let special = "\\.+*?()|[]{}^$#&-~".contains(c);
                    special
                        .then_some('\\')
                        .into_iter()
                        .chain(std::iter::once(c))
                })
                .collect()
        })
        .collect();
    format!("^(?:{})$", escaped.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_loop(secs: f64, command: &[&str]) -> std::process::Output {
        let argv = repeat_until(secs);
        Command::new(&argv[0])
            .args(&argv[1..])
            .args(command)
            .output()
            .expect("bash runs")
    }

    #[test]
    fn the_repeat_loop_runs_until_its_time_has_passed_and_reports_the_count() {
        let started = Instant::now();
        let out = run_loop(1.0, &["sleep", "0.2"]);
        assert!(out.status.success());
        assert!(started.elapsed().as_secs_f64() >= 0.9);
        let n = repetitions(&String::from_utf8_lossy(&out.stderr)).expect("a count");
        assert!(n >= 2, "ran {n} times");
    }

    #[test]
    fn the_program_is_perfs_child_and_its_descendants() {
        // As `perf script --show-task-events` prints them for `perf record -a -- bash -c ...`:
        // perf (18208) forks a thread of its own and the program (18210), which forks two
        // children; the rest of the machine forks too.
        let events = "\
         kthreadd     0/0     PERF_RECORD_FORK(4:4):(2:2)
            perf     0/0     PERF_RECORD_COMM: perf:18208/18208
            perf     0/0     PERF_RECORD_FORK(18208:18211):(18208:18208)
            perf     0/0     PERF_RECORD_FORK(18210:18210):(18208:18208)
       perf-exec     0/0     PERF_RECORD_COMM: perf-exec:18210/18210
            bash 18210/18210 PERF_RECORD_COMM exec: bash:18210/18210
            bash 18210/18210 PERF_RECORD_FORK(18212:18212):(18210:18210)
              sh 18212/18212 PERF_RECORD_FORK(18212:18215):(18212:18212)
              sh 18212/18212 PERF_RECORD_EXIT(18212:18212):(18210:18210)
            sshd   900/900    PERF_RECORD_FORK(18214:18214):(900:900)
            bash 18210/18210 PERF_RECORD_FORK(18213:18213):(18210:18210)
";
        let program = program_pids(events).expect("the program");
        assert_eq!(program.root, 18210);
        assert_eq!(
            program.pids.into_iter().collect::<Vec<_>>(),
            [18210, 18212, 18213]
        );
        assert_eq!(program_pids("nothing here"), None);
    }

    /// A recording perf made by attaching to a running process has no `perf-exec` event: in
    /// whole-machine mode folding it must fail rather than keep every process's samples.
    #[test]
    fn a_whole_machine_recording_without_the_programs_process_is_refused() {
        let dir = std::env::temp_dir().join(format!("xtask-fold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = dir.join("attach.data");
        let mut busy = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("sh runs");
        // no command after `-p` (a command would be perf's own child), so stopped by SIGINT
        let perf = Command::new("perf")
            .args(["record", "-q", "-F", "99", "-o"])
            .arg(&raw)
            .args(["-p", &busy.id().to_string()])
            .spawn()
            .expect("perf is installed (cargo xtask install-tools)");
        std::thread::sleep(std::time::Duration::from_millis(700));
        let interrupted = Command::new("kill")
            .args(["-INT", &perf.id().to_string()])
            .status()
            .unwrap();
        let recorded = perf.wait_with_output().unwrap();
        busy.kill().unwrap();
        busy.wait().unwrap();
        // perf writes the recording, then re-raises the SIGINT it was stopped with
        assert!(interrupted.success() && raw.exists(), "{recorded:?}");

        let log = dir.join("script.log");
        let mut perf = PerfSetup {
            event: "cpu-clock".into(),
            system_wide: true,
            off_cpu: false,
            dwarf: false,
        };
        let err = fold_perf(&raw, &log, &perf).unwrap_err();
        assert!(
            format!("{err:#}").contains("names no process perf started"),
            "{err:#}"
        );
        // per-thread recordings hold only the program: folded as they are
        perf.system_wide = false;
        let (folded, _) = fold_perf(&raw, &log, &perf).expect("per-thread folding");
        assert!(folded.lines().any(|l| l.starts_with("sh;")), "{folded}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn whole_machine_sampling_adds_dash_a() {
        let out = Path::new("/tmp/p.data");
        let mut perf = PerfSetup {
            event: "cpu-clock".into(),
            system_wide: true,
            off_cpu: false,
            dwarf: false,
        };
        let args = perf_record_args(&perf, 249, out);
        assert_eq!(
            args,
            [
                "record",
                "-a",
                "-e",
                "cpu-clock",
                "-F",
                "249",
                "-g",
                "-o",
                "/tmp/p.data"
            ]
        );
        perf.off_cpu = true;
        let args = perf_record_args(&perf, 249, out).join(" ");
        assert_eq!(
            args,
            "record -a -c 1 -e cpu-clock/freq=249,name=cpu-clock/ -e sched:sched_switch -g -o /tmp/p.data"
        );
        perf.off_cpu = false;
        perf.system_wide = false;
        assert!(!perf_record_args(&perf, 249, out).contains(&"-a".to_owned()));
        perf.dwarf = true;
        let args = perf_record_args(&perf, 249, out).join(" ");
        assert!(
            args.contains("--call-graph dwarf") && !args.contains(" -g "),
            "{args}"
        );
    }

    #[test]
    fn the_exact_filter_matches_the_ids_and_escapes_their_punctuation() {
        let ids = ["e2e_latency/linear_rust".to_owned(), "a.b/(1)".to_owned()];
        assert_eq!(
            exact_filter(&ids),
            r"^(?:e2e_latency/linear_rust|a\.b/\(1\))$"
        );
    }

    #[test]
    fn the_repeat_loop_stops_at_the_first_failure_with_its_status() {
        let out = run_loop(30.0, &["sh", "-c", "exit 3"]);
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(repetitions(&String::from_utf8_lossy(&out.stderr)), None);
    }
}
