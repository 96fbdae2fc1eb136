//! Off-CPU time: where the program's threads block and for how long, by call stack.
//!
//! The whole-machine recording also holds every `sched:sched_switch` with its call stack.
//! When one of the program's threads leaves a CPU asleep (`S`) or in an uninterruptible wait
//! (`D`), the stack it left with is charged the time until the scheduler puts it back on a
//! CPU: the switch whose `next_pid` is that thread, recorded on whichever CPU it woke on and
//! in the context of whatever ran there before, hence whole-machine recording only. A thread
//! preempted while runnable (`R`) waits for a CPU, not for something, and is left out.
//!
//! Two passes over the recording, as for on-CPU stacks: the first prints every switch without
//! symbols (cheap) and gives each of the program's switch-outs its blocked time; the second
//! prints the program's switches with symbols, each with that time (µs) as its period, into
//! inferno's folder, so off-CPU frames are named exactly as on-CPU ones.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use inferno::collapse::Collapse;

use super::library_frames::marked;
use super::map_lines::MapLines;

/// The tracepoint recorded next to the sampling event.
pub const SWITCH_EVENT: &str = "sched:sched_switch";
/// The name inferno's folder gives the tracepoint's records (the text before its colon).
const SWITCH_EVENT_NAME: &str = "sched";

/// A thread's switch-out: thread id and timestamp exactly as `perf script` prints it, so
/// the two passes meet on the same text.
type SwitchOut = (u32, String);

/// What the off-CPU fold found.
#[derive(Debug, Default)]
pub struct OffCpu {
    /// Folded stacks weighed in microseconds blocked.
    pub folded: String,
    /// Switch-outs of the program that were switched back in during the recording.
    pub switches: u64,
    pub blocked_us: u64,
}

/// The program's off-CPU stacks of `raw`, whose processes are `pids`.
pub fn fold(raw: &Path, pids: &BTreeSet<u32>, log: &Path) -> Result<OffCpu> {
    let (switches, text) = perf_script(raw, &["-F", "sw:", "-F", "trace:pid,tid,time,trace"], log)?;
    let blocked = blocked_times(BufReader::new(text), pids)?;
    switches.finish("the scheduler switches")?;
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    let (stacks, text) = perf_script(
        raw,
        &[
            "--pid",
            &list.join(","),
            "--no-inline",
            "-F",
            "sw:",
            "-F",
            "trace:comm,pid,tid,time,event,ip,sym,dso",
        ],
        &log.with_extension("stacks.log"),
    )?;
    let folded = fold_stacks(BufReader::new(text), &blocked);
    stacks.finish("the off-CPU stacks")?;
    Ok(OffCpu {
        folded: folded?,
        switches: blocked.len() as u64,
        blocked_us: blocked.values().sum(),
    })
}

/// The second pass's text (`perf script --pid … -F comm,pid,tid,time,event,ip,sym,dso`)
/// folded with each switch-out weighed by its blocked time.
fn fold_stacks(script: impl BufRead, blocked: &HashMap<SwitchOut, u64>) -> Result<String> {
    let mut folded = Vec::new();
    let mut options = inferno::collapse::perf::Options::default();
    options.annotate_kernel = true;
    options.event_filter = Some(SWITCH_EVENT_NAME.to_owned());
    inferno::collapse::perf::Folder::from(options)
        .collapse(marked(with_periods(script, blocked)), &mut folded)
        .context("folding the off-CPU stacks")?;
    String::from_utf8(folded).context("off-CPU stacks are not UTF-8")
}

/// A running `perf script`, whose output is read as it streams.
struct Script {
    child: std::process::Child,
    text: String,
    log: std::path::PathBuf,
}

impl Script {
    fn finish(mut self, what: &str) -> Result<()> {
        let status = self
            .child
            .wait()
            .with_context(|| format!("waiting for `{}`", self.text))?;
        if !status.success() {
            bail!(
                "`{}` failed ({status}) reading {what}; see {}",
                self.text,
                self.log.display()
            );
        }
        Ok(())
    }
}

fn perf_script(
    raw: &Path,
    args: &[&str],
    log: &Path,
) -> Result<(Script, std::process::ChildStdout)> {
    let stderr = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let text = format!("perf script -i {} {}", raw.display(), args.join(" "));
    let mut child = Command::new("perf")
        .arg("script")
        .arg("-i")
        .arg(raw)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .with_context(|| format!("running `{text}`"))?;
    let stdout = child.stdout.take().context("capturing `perf script`")?;
    let script = Script {
        child,
        text,
        log: log.to_owned(),
    };
    Ok((script, stdout))
}

/// One switch as the first pass prints it:
/// `1234/1240 63426.506220: prev_comm=x prev_pid=1240 prev_prio=120 prev_state=S ==> next_comm=y next_pid=77 next_prio=120`.
struct Switch<'a> {
    /// The process of the thread switching out (the context the event was recorded in).
    pid: u32,
    time: &'a str,
    seconds: f64,
    prev: u32,
    prev_state: &'a str,
    next: u32,
}

impl<'a> Switch<'a> {
    fn parse(line: &'a str) -> Option<Switch<'a>> {
        let (head, trace) = line.split_once(": prev_comm=")?;
        let mut words = head.split_whitespace();
        let (pid, _tid) = words.next()?.split_once('/')?;
        let time = words.next()?;
        let field = |name: &str| trace.split_whitespace().find_map(|w| w.strip_prefix(name));
        Some(Switch {
            pid: pid.parse().ok()?,
            time,
            seconds: time.parse().ok()?,
            prev: field("prev_pid=")?.parse().ok()?,
            prev_state: field("prev_state=")?,
            next: field("next_pid=")?.parse().ok()?,
        })
    }

    /// Asleep or waiting, rather than preempted while it could run.
    fn blocks(&self) -> bool {
        !self.prev_state.starts_with('R')
    }
}

/// Microseconds blocked per switch-out of a thread of `pids`, from the first pass's lines.
/// A switch-out never followed by its thread's switch-in (the recording ended) is left out.
fn blocked_times(script: impl BufRead, pids: &BTreeSet<u32>) -> Result<HashMap<SwitchOut, u64>> {
    let mut asleep_since: HashMap<u32, (String, f64)> = HashMap::new();
    let mut blocked = HashMap::new();
    for line in script.lines() {
        let line = line.context("reading `perf script`")?;
        let Some(switch) = Switch::parse(&line) else {
            continue;
        };
        if let Some((time, since)) = asleep_since.remove(&switch.next) {
            let us = ((switch.seconds - since) * 1e6).round().max(0.0) as u64;
            blocked.insert((switch.next, time), us);
        }
        if pids.contains(&switch.pid) && switch.blocks() {
            asleep_since.insert(switch.prev, (switch.time.to_owned(), switch.seconds));
        }
    }
    Ok(blocked)
}

/// The second pass's text with every switch-out header given its blocked time as perf's
/// period (`comm pid/tid time: <µs> sched:sched_switch:`), which inferno sums; every other
/// record (switches never switched back in, a sample's) is dropped with its stack.
fn with_periods<R: BufRead>(
    inner: R,
    blocked: &HashMap<SwitchOut, u64>,
) -> MapLines<R, impl FnMut(String) -> String + '_> {
    // Whether the lines of the current record are passed on.
    let mut keep = false;
    MapLines::new(inner, move |line: String| {
        if line.starts_with(char::is_whitespace) || line.trim().is_empty() {
            return if keep { line } else { String::new() };
        }
        let period = switch_out(&line).and_then(|(head, tid, time)| {
            blocked
                .get(&(tid, time.to_owned()))
                .map(|us| format!("{head} {us} {SWITCH_EVENT}:\n"))
        });
        keep = period.is_some();
        period.unwrap_or_default()
    })
}

/// A switch record's header (`comm pid/tid time:`), thread and time, from its first line.
fn switch_out(line: &str) -> Option<(&str, u32, &str)> {
    let head = &line[..line.find(&format!(" {SWITCH_EVENT}:"))?];
    let mut words = head.rsplit(' ');
    let time = words.next()?.trim_end_matches(':');
    let tid = words
        .find(|w| !w.is_empty())?
        .rsplit('/')
        .next()?
        .parse()
        .ok()?;
    Some((head, tid, time))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/offcpu")
            .join(name);
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(&path).expect("the fixture exists"))
            .read_to_string(&mut text)
            .expect("the fixture is gzip text");
        text
    }

    /// A real recording of threads waiting for a lock another holds (see the fixture's
    /// README): the lock's stack is where they blocked most.
    #[test]
    fn a_real_recording_shows_the_held_lock_at_the_top_of_the_off_cpu_stacks() {
        let stacks = fixture("stacks.txt.gz");
        let pids: BTreeSet<u32> = stacks
            .lines()
            .filter(|l| l.contains(SWITCH_EVENT))
            .filter_map(|l| l.split_whitespace().find_map(|w| w.split_once('/')))
            .filter_map(|(pid, _)| pid.parse().ok())
            .collect();
        let blocked = blocked_times(fixture("switches.txt.gz").as_bytes(), &pids).unwrap();
        assert!(blocked.len() > 50, "{} switch-outs", blocked.len());
        let folded = fold_stacks(stacks.as_bytes(), &blocked).unwrap();
        let (top, us) = folded
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(stack, n)| (stack, n.parse::<u64>().unwrap()))
            .max_by_key(|(_, n)| *n)
            .expect("stacks");
        assert!(
            top.contains("profile_fixture::xtask_fixture_locked_section;")
                && top.contains("futex_wait"),
            "{top} {us}"
        );
        let analysis = crate::analysis::analyse(
            &folded,
            crate::analysis::Options {
                hot_path_pct: 5.0,
                first_frame_is_process: true,
            },
        )
        .unwrap();
        let first = &analysis.top_self[0];
        assert_eq!(
            first.function,
            "profile_fixture::xtask_fixture_locked_section",
            "{:?}",
            &analysis.top_self[..3]
        );
        assert!(first.self_pct > 40.0, "{}", first.self_pct);
    }

    const PASS_ONE: &str = "\
  700/701 10.000100: prev_comm=worker prev_pid=701 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120
  700/702 10.000200: prev_comm=worker prev_pid=702 prev_prio=120 prev_state=R+ ==> next_comm=pg next_pid=900 next_prio=120
  900/900 10.000300: prev_comm=pg prev_pid=900 prev_prio=120 prev_state=D ==> next_comm=worker next_pid=702 next_prio=120
  700/700 10.000250
    0/0   10.002100: prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=worker next_pid=701 next_prio=120
  700/703 10.003000: prev_comm=worker prev_pid=703 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120
";

    fn pids() -> BTreeSet<u32> {
        BTreeSet::from([700])
    }

    #[test]
    fn a_sleeping_switch_out_is_charged_until_its_switch_in_and_preemption_is_not() {
        let blocked = blocked_times(PASS_ONE.as_bytes(), &pids()).expect("parses");
        // 701 slept 10.000100 → 10.002100; 702 was preempted; 900 is another process; 703
        // never came back before the recording ended.
        assert_eq!(
            blocked,
            HashMap::from([((701, "10.000100".to_owned()), 2000)])
        );
    }

    #[test]
    fn switch_outs_get_their_blocked_time_as_period_and_the_rest_is_dropped() {
        let blocked = HashMap::from([((701, "10.000100".to_owned()), 2000)]);
        let text = "\
worker   700/701 10.000100: sched:sched_switch: \n\
\tffffffff8 __schedule ([kernel.kallsyms])\n\
\t55 app::wait (/bin/app)\n\
\n\
worker   700/701 10.000150: cpu-clock: \n\
\t55 app::spin (/bin/app)\n\
\n\
worker   700/702 10.000200: sched:sched_switch: \n\
\t55 app::other (/bin/app)\n\
\n";
        let mut out = String::new();
        with_periods(text.as_bytes(), &blocked)
            .read_to_string(&mut out)
            .expect("reads");
        assert_eq!(
            out,
            "worker   700/701 10.000100: 2000 sched:sched_switch:\n\
             \tffffffff8 __schedule ([kernel.kallsyms])\n\t55 app::wait (/bin/app)\n\n"
        );
        let mut folded = Vec::new();
        let mut options = inferno::collapse::perf::Options::default();
        options.annotate_kernel = true;
        options.event_filter = Some(SWITCH_EVENT_NAME.to_owned());
        inferno::collapse::perf::Folder::from(options)
            .collapse(out.as_bytes(), &mut folded)
            .expect("folds");
        assert_eq!(
            String::from_utf8(folded).unwrap(),
            "worker;app::wait;__schedule_[k] 2000\n"
        );
    }
}
