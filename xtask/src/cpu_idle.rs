//! Keeps idle CPUs polling instead of halting while a measured run is in progress, through
//! the kernel's PM QoS request file `/dev/cpu_dma_latency`, and records what was in force.
//!
//! Why: a benchmark of round trips (client, then PostgreSQL, then client again) leaves a CPU
//! idle and wakes it at least twice per call. On a virtual machine whose idle CPUs halt (the
//! `haltpoll` cpuidle driver with polling off, or a plain `hlt`), each of those wake-ups goes
//! through the hypervisor and can cost more than the work measured: on the 2-core VM this
//! workspace is measured on, `SELECT 1` through `pgbench` took 90–122 µs per call with halting
//! idle and 18–20 µs with this request held. The wake-up cost also follows whatever else the
//! host is doing, which makes it the largest source of difference between runs. A latency
//! request of 0 µs makes the kernel's idle loop poll rather than enter any halting state.
//!
//! The kernel keeps the request only while the file stays open and drops it when the
//! descriptor closes, so nothing outlives the run, not even a crash. The request is written
//! by hand (four bytes to a device file) because it is the whole of the interface.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// The kernel's system-wide CPU latency request file.
pub const QOS_FILE: &str = "/dev/cpu_dma_latency";

/// What the run asks of idle CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuIdle {
    /// Hold a 0 µs latency request, so idle CPUs poll and wake without delay.
    Poll,
    /// Leave the system's idle policy alone (what a deployment gets unless it is tuned).
    System,
}

impl CpuIdle {
    pub fn name(self) -> &'static str {
        match self {
            CpuIdle::Poll => "poll",
            CpuIdle::System => "system",
        }
    }
}

/// What the run asked for and what was in force, for the manifest and the comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdleRecord {
    /// `poll` or `system`; empty in manifests written before this was recorded.
    pub requested: String,
    /// Whether idle CPUs were held polling for the run.
    pub held: bool,
    /// How, or why not.
    pub note: String,
}

impl IdleRecord {
    /// One phrase for reports and comparisons.
    pub fn describe(&self) -> String {
        match (self.requested.as_str(), self.held) {
            ("", _) => "not recorded".to_owned(),
            (_, true) => "idle CPUs polling (0 µs latency request held)".to_owned(),
            ("poll", false) => format!(
                "system idle policy (polling requested, not held: {})",
                self.note
            ),
            _ => "system idle policy".to_owned(),
        }
    }
}

/// The request, held until this is dropped.
#[derive(Debug)]
pub struct Hold {
    _file: Option<File>,
    pub record: IdleRecord,
}

/// Asks for polling idle CPUs when `mode` is [`CpuIdle::Poll`]. Not being able to is not an
/// error (the run is still a valid measurement of another condition); the record says why.
pub fn hold(mode: CpuIdle) -> Hold {
    hold_at(mode, Path::new(QOS_FILE))
}

fn hold_at(mode: CpuIdle, path: &Path) -> Hold {
    let record = |held: bool, note: String| IdleRecord {
        requested: mode.name().to_owned(),
        held,
        note,
    };
    if mode == CpuIdle::System {
        return Hold {
            _file: None,
            record: record(false, "not requested (--cpu-idle system)".to_owned()),
        };
    }
    match request_zero(path) {
        Ok((file, in_force)) => Hold {
            _file: Some(file),
            record: record(
                in_force == 0,
                format!(
                    "{} held at 0 µs; the kernel reads back {in_force} µs",
                    path.display()
                ),
            ),
        },
        Err(reason) => Hold {
            _file: None,
            record: record(false, reason),
        },
    }
}

/// Opens `path`, writes a 0 µs request and reads back the latency the kernel now enforces
/// (the smallest of all open requests).
fn request_zero(path: &Path) -> Result<(File, i32), String> {
    let mut file = OpenOptions::new().write(true).open(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => format!(
            "{} does not exist (not Linux, or a kernel without PM QoS); idle CPUs keep the system's policy",
            path.display()
        ),
        ErrorKind::PermissionDenied => format!(
            "writing {} needs root; run the command as root, or pass --cpu-idle system to measure with the system's idle policy",
            path.display()
        ),
        _ => format!("opening {}: {e}", path.display()),
    })?;
    file.write_all(&0i32.to_ne_bytes())
        .map_err(|e| format!("writing a 0 µs request to {}: {e}", path.display()))?;
    let enforced = in_force(path).map_err(|e| format!("reading back {}: {e}", path.display()))?;
    Ok((file, enforced))
}

/// The latency, in µs, the kernel enforces now: reading the file gives it as a native `i32`.
pub fn in_force(path: &Path) -> std::io::Result<i32> {
    let mut value = [0u8; 4];
    File::open(path)?.read_exact(&mut value)?;
    Ok(i32::from_ne_bytes(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_mode_requests_nothing() {
        let hold = hold(CpuIdle::System);
        assert!(!hold.record.held);
        assert_eq!(hold.record.requested, "system");
        assert_eq!(hold.record.describe(), "system idle policy");
    }

    #[test]
    fn a_missing_request_file_is_recorded_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let hold = hold_at(CpuIdle::Poll, &dir.path().join("cpu_dma_latency"));
        assert!(!hold.record.held);
        assert!(
            hold.record.note.contains("does not exist"),
            "{}",
            hold.record.note
        );
        assert!(hold.record.describe().contains("not held"));
    }

    /// On the real file: as root the request is in force while held and gone once dropped;
    /// otherwise the record names the file and the fix.
    #[test]
    fn the_request_lasts_as_long_as_the_hold() {
        let path = Path::new(QOS_FILE);
        let writable = OpenOptions::new().write(true).open(path).is_ok();
        let before = in_force(path).ok();
        let hold = hold(CpuIdle::Poll);
        match writable {
            true => {
                assert!(hold.record.held, "{}", hold.record.note);
                assert_eq!(in_force(path).ok(), Some(0));
                drop(hold);
                assert_eq!(in_force(path).ok(), before, "the request outlived the hold");
            }
            false => {
                assert!(!hold.record.held);
                assert!(hold.record.note.contains(QOS_FILE), "{}", hold.record.note);
            }
        }
    }
}
