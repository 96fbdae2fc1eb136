//! Progress of a long run: target i of n, phase, elapsed time and an estimate of what is
//! left. A status line redrawn in place on a terminal, plain lines otherwise (CI logs).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    total: usize,
    started: Instant,
    target_started: Instant,
    finished: Vec<Duration>,
    tty: bool,
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        Progress {
            total,
            started: Instant::now(),
            target_started: Instant::now(),
            finished: Vec::new(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn start_target(&mut self) {
        self.target_started = Instant::now();
    }

    pub fn finish_target(&mut self) {
        self.finished.push(self.target_started.elapsed());
    }

    /// Remaining time, from the mean duration of the targets done so far.
    fn remaining(&self) -> Option<Duration> {
        if self.finished.is_empty() {
            return None;
        }
        let mean = self.finished.iter().sum::<Duration>() / self.finished.len() as u32;
        let left = self.total.saturating_sub(self.finished.len()) as u32;
        Some((mean * left).saturating_sub(self.target_started.elapsed().min(mean)))
    }

    pub fn phase(&self, index: usize, target: &str, phase: &str) {
        let eta = self
            .remaining()
            .map_or_else(|| "estimating".to_owned(), |d| format!("~{} left", fmt(d)));
        let line = format!(
            "[{}/{}] {target}: {phase} (elapsed {}, {eta})",
            index + 1,
            self.total,
            fmt(self.started.elapsed())
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// A message that must stay visible (a finished target, a warning).
    pub fn note(&self, message: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "{message}");
    }

    pub fn done(&self) {
        if self.tty {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

pub fn fmt(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
