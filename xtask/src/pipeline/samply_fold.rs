//! Folds a samply recording into the stacks perf's recordings fold into
//! (`thread;frame;…;leaf count`, shared-library frames marked `_[lib]`, kernel frames `_[k]`),
//! so flamegraphs, the analysis, the signals and the verdicts read both profilers alike.
//!
//! samply saves the Firefox profiler's processed format with addresses, not names; with
//! `--unstable-presymbolicate` it also writes the symbol of every address the profile uses
//! beside it (`<profile>.syms.json`), which is what names the frames here, so folding needs
//! neither samply nor the binaries. The format is read with serde by hand because the crate
//! that defines it (`fxprof-processed-profile`) only writes it.
//!
//! Every sample carries the CPU time its thread used since the one before
//! (`threadCPUDelta`), and the stacks weigh each sample by it, counted in sampling intervals:
//! the unit of perf's `cpu-clock` samples. On Linux, where samply samples a thread only while
//! it runs, that is one interval per sample; where samply also samples sleeping threads
//! (macOS), their samples weigh nothing.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::library_frames::{is_shared_library, LIBRARY_SUFFIX};
use crate::analysis::KERNEL_SUFFIX;

/// The symbol file samply writes beside `profile` with `--unstable-presymbolicate`.
pub fn symbols_path(profile: &Path) -> PathBuf {
    profile.with_extension("syms.json")
}

/// Folds the recording `profile` (gzipped or not) with the symbols beside it: CPU time per
/// stack, in sampling intervals.
pub fn fold(profile: &Path) -> Result<String> {
    let recording: Recording = read_json(profile)?;
    let syms_path = symbols_path(profile);
    let symbols: SymbolFile = read_json(&syms_path).with_context(|| {
        format!(
            "samply's symbols for {} are missing or unreadable; record with `samply record --unstable-presymbolicate`",
            profile.display()
        )
    })?;
    fold_recording(&recording, &Symbols::new(&symbols, &recording.libs))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut text = String::new();
    reader
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn fold_recording(recording: &Recording, symbols: &Symbols<'_>) -> Result<String> {
    let interval_us = recording.meta.interval * 1000.0;
    if interval_us <= 0.0 {
        bail!("the samply recording gives no sampling interval");
    }
    let delta_us = recording.meta.cpu_delta_unit_us();
    let mut on_cpu: BTreeMap<String, f64> = BTreeMap::new();
    for thread in &recording.threads {
        let stacks = thread.stack_names(symbols, &recording.libs);
        let samples = &thread.samples;
        for (i, stack) in samples.stack.iter().enumerate() {
            let Some(stack) = stack else { continue };
            let weight = samples.weight.as_ref().map_or(1.0, |w| w[i]);
            let cpu_us = samples
                .thread_cpu_delta
                .as_ref()
                .and_then(|d| d[i])
                .map_or(weight * interval_us, |d| d * delta_us);
            *on_cpu.entry(stacks[*stack].clone()).or_default() += cpu_us / interval_us;
        }
    }
    Ok(lines(&on_cpu))
}

/// Folded lines, counts rounded to whole units; stacks that round to nothing are left out.
fn lines(counts: &BTreeMap<String, f64>) -> String {
    counts
        .iter()
        .filter_map(|(stack, n)| {
            let n = n.round() as u64;
            (n > 0).then(|| format!("{stack} {n}\n"))
        })
        .collect()
}

#[derive(Deserialize)]
struct Recording {
    meta: Meta,
    libs: Vec<Lib>,
    threads: Vec<Thread>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    /// Milliseconds between samples.
    interval: f64,
    #[serde(default)]
    sample_units: Option<SampleUnits>,
}

impl Meta {
    /// Microseconds per unit of `threadCPUDelta`.
    fn cpu_delta_unit_us(&self) -> f64 {
        match self
            .sample_units
            .as_ref()
            .and_then(|u| u.thread_cpu_delta.as_deref())
        {
            Some("ns") => 1e-3,
            Some("ms") => 1e3,
            _ => 1.0,
        }
    }
}

#[derive(Deserialize)]
struct SampleUnits {
    #[serde(rename = "threadCPUDelta")]
    thread_cpu_delta: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Lib {
    name: String,
    debug_name: String,
    breakpad_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Thread {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    process_name: Option<String>,
    samples: Samples,
    stack_table: StackTable,
    frame_table: FrameTable,
    func_table: FuncTable,
    resource_table: ResourceTable,
    string_array: Vec<String>,
}

#[derive(Deserialize)]
struct Samples {
    stack: Vec<Option<usize>>,
    #[serde(default)]
    weight: Option<Vec<f64>>,
    #[serde(default, rename = "threadCPUDelta")]
    thread_cpu_delta: Option<Vec<Option<f64>>>,
}

#[derive(Deserialize)]
struct StackTable {
    prefix: Vec<Option<usize>>,
    frame: Vec<usize>,
}

#[derive(Deserialize)]
struct FrameTable {
    /// The frame's address relative to its library, -1 where there is none.
    address: Vec<i64>,
    func: Vec<usize>,
}

#[derive(Deserialize)]
struct FuncTable {
    name: Vec<usize>,
    /// Index into the resource table, -1 where there is none.
    resource: Vec<i64>,
}

#[derive(Deserialize)]
struct ResourceTable {
    lib: Vec<Option<usize>>,
}

impl Thread {
    /// Every stack of the thread as a folded line without its count, root first.
    fn stack_names(&self, symbols: &Symbols<'_>, libs: &[Lib]) -> Vec<String> {
        let root = self
            .name
            .as_deref()
            .or(self.process_name.as_deref())
            .unwrap_or("[unknown]")
            .replace([';', ' '], "_");
        let frames: Vec<String> = (0..self.frame_table.func.len())
            .map(|f| self.frame_name(f, symbols, libs))
            .collect();
        // A stack's prefix always comes before it, so one pass builds them all.
        let mut stacks: Vec<String> = Vec::with_capacity(self.stack_table.frame.len());
        for (s, frame) in self.stack_table.frame.iter().enumerate() {
            let parent = match self.stack_table.prefix[s] {
                Some(p) if p < s => stacks[p].as_str(),
                _ => root.as_str(),
            };
            stacks.push(format!("{parent};{}", frames[*frame]));
        }
        stacks
    }

    /// A frame's name as perf's folding would write it.
    fn frame_name(&self, frame: usize, symbols: &Symbols<'_>, libs: &[Lib]) -> String {
        let func = self.frame_table.func[frame];
        let lib = usize::try_from(self.func_table.resource[func])
            .ok()
            .and_then(|r| self.resource_table.lib.get(r).copied().flatten())
            .and_then(|l| libs.get(l).map(|lib| (l, lib)));
        let recorded = &self.string_array[self.func_table.name[func]];
        let address = u32::try_from(self.frame_table.address[frame]).ok();
        let name = match (lib, address) {
            (Some((l, _)), Some(rva)) => symbols.name(l, rva),
            _ => None,
        };
        let Some((_, lib)) = lib else {
            return recorded.replace(';', ":");
        };
        let name = match name {
            Some(name) => name.to_owned(),
            // samply names what it could resolve itself (the kernel's symbols) already.
            None if !recorded.starts_with("0x") => recorded.clone(),
            None => return format!("[{}]", lib.name),
        };
        let name = name.replace(';', ":");
        // inferno marks the vDSO's frames as the kernel's; so do we, so names match perf's.
        if lib.name.starts_with("[kernel") || lib.name == "[vdso]" {
            format!("{name}{KERNEL_SUFFIX}")
        } else if is_shared_library(&lib.name) {
            format!("{name}{LIBRARY_SUFFIX}")
        } else {
            name
        }
    }
}

#[derive(Deserialize)]
struct SymbolFile {
    string_table: Vec<String>,
    data: Vec<LibrarySymbols>,
}

#[derive(Deserialize)]
struct LibrarySymbols {
    debug_name: String,
    debug_id: String,
    symbol_table: Vec<SymbolEntry>,
    /// (relative address, index in `symbol_table`) for every address the profile uses.
    known_addresses: Vec<(u32, usize)>,
}

#[derive(Deserialize)]
struct SymbolEntry {
    symbol: usize,
}

/// Symbol names by library (index in the profile's `libs`) and relative address.
struct Symbols<'a> {
    names: HashMap<(usize, u32), &'a str>,
}

impl<'a> Symbols<'a> {
    fn new(file: &'a SymbolFile, libs: &[Lib]) -> Symbols<'a> {
        let mut names = HashMap::new();
        for lib_symbols in &file.data {
            let id = uuid_part(&lib_symbols.debug_id);
            let Some(l) = libs.iter().position(|lib| {
                lib.debug_name == lib_symbols.debug_name && uuid_part(&lib.breakpad_id) == id
            }) else {
                continue;
            };
            for (rva, index) in &lib_symbols.known_addresses {
                let name = lib_symbols
                    .symbol_table
                    .get(*index)
                    .and_then(|s| file.string_table.get(s.symbol));
                if let Some(name) = name {
                    names.insert((l, *rva), name.as_str());
                }
            }
        }
        Symbols { names }
    }

    fn name(&self, lib: usize, rva: u32) -> Option<&'a str> {
        self.names.get(&(lib, rva)).copied()
    }
}

/// The 32 hex digits of a debug id's UUID, in one case: samply's symbol file writes the
/// UUID form (`8c4b…-…`), the profile breakpad's (`8C4B…` with the age appended).
fn uuid_part(id: &str) -> String {
    id.chars()
        .filter(char::is_ascii_hexdigit)
        .take(32)
        .collect::<String>()
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{analyse, Options};

    /// A real recording: `samply record --save-only --unstable-presymbolicate --rate 997` of
    /// the fixture workspace's bench for one second of profile time, with its symbol file.
    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samply/profile.json.gz")
    }

    fn top_self(folded: &str) -> Vec<(String, f64)> {
        let analysis = analyse(
            folded,
            Options {
                hot_path_pct: 5.0,
                first_frame_is_process: true,
            },
        )
        .expect("the folded stacks analyse");
        analysis
            .top_self
            .into_iter()
            .map(|f| (f.function, f.self_pct))
            .collect()
    }

    #[test]
    fn the_fixture_recording_folds_with_the_hot_function_first() {
        let folded = fold(&fixture()).expect("the fixture folds");
        let top = top_self(&folded);
        // The fixture spends about three quarters of its time in the hot kernel and a
        // quarter in the cold helper.
        let (hot, hot_pct) = &top[0];
        assert!(hot.ends_with("xtask_fixture_hot_kernel"), "{top:?}");
        assert!((55.0..92.0).contains(hot_pct), "{top:?}");
        let (cold, _) = &top[1];
        assert!(cold.ends_with("xtask_fixture_cold_helper"), "{top:?}");
        // Every line is a thread, frames, and a count, as perf's folding writes them.
        for line in folded.lines() {
            let (stack, count) = line.rsplit_once(' ').expect("a count");
            assert!(count.parse::<u64>().is_ok_and(|n| n > 0), "{line}");
            assert!(stack.contains(';'), "{line}");
            assert!(!stack.contains("0x"), "an unsymbolicated frame: {line}");
        }
    }

    #[test]
    fn cpu_time_is_counted_in_sampling_intervals() {
        let recording: Recording = read_json(&fixture()).unwrap();
        let folded = fold(&fixture()).unwrap();
        let counted: u64 = folded
            .lines()
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum();
        // The bench's main thread computes the whole second: at least most of the profile
        // time's worth of intervals, and no more than the wall time allows for its threads.
        let intervals_per_sec = 1000.0 / recording.meta.interval;
        assert!(
            counted as f64 > 0.5 * intervals_per_sec,
            "{counted} intervals of {} ms",
            recording.meta.interval
        );
    }

    #[test]
    fn a_recording_without_its_symbols_is_refused_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("profile.json.gz");
        std::fs::copy(fixture(), &copy).unwrap();
        let err = fold(&copy).unwrap_err();
        assert!(
            format!("{err:#}").contains("--unstable-presymbolicate"),
            "{err:#}"
        );
    }

    #[test]
    fn debug_ids_compare_across_their_two_spellings() {
        assert_eq!(
            uuid_part("8c4b2e6f-1a2b-3c4d-5e6f-7a8b9c0d1e2f"),
            uuid_part("8C4B2E6F1A2B3C4D5E6F7A8B9C0D1E2F0")
        );
        assert_ne!(
            uuid_part("8c4b2e6f-1a2b-3c4d-5e6f-7a8b9c0d1e2f"),
            uuid_part("9C4B2E6F1A2B3C4D5E6F7A8B9C0D1E2F0")
        );
    }
}
