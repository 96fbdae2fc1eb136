//! Turn-taking between two benchmark processes measured side by side. `cargo xtask
//! profile-post --against` runs the benchmark executables of two revisions at the same time
//! and lets them measure one criterion sample each in turn, so both see the machine as it is
//! during the same fraction of a second; on a shared host whose speed drifts by tens of
//! percent within seconds, that is what makes the two comparable.
//!
//! The referee (the xtask) listens on a Unix socket named by `TASKER_BENCH_TURNS`. The
//! benchmark connects before its first sample and waits for a byte (its turn); after every
//! sample it sends a byte back (the turn is passed) and waits for the next. Everything between
//! samples (criterion's analysis, the next benchmark's setup) happens while it holds the
//! turn, so the other process never competes with a sample. Without the variable, or when
//! the referee goes away, every call returns at once.

use std::io::{Read, Write};
use std::sync::Mutex;

/// The environment variable naming the referee's socket.
pub const TURNS_ENV: &str = "TASKER_BENCH_TURNS";

enum State {
    /// Not asked for yet.
    Unknown,
    /// No referee: nothing to wait for.
    Alone,
    /// Connected; `holding` while this process has the turn.
    Paired {
        stream: std::os::unix::net::UnixStream,
        holding: bool,
    },
}

static STATE: Mutex<State> = Mutex::new(State::Unknown);

/// Waits until this process has the turn (returns at once without a referee).
pub fn take() {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if matches!(*state, State::Unknown) {
        *state = connect();
    }
    if let State::Paired { stream, holding } = &mut *state {
        if !*holding {
            *holding = receive(stream);
            if !*holding {
                *state = State::Alone;
            }
        }
    }
}

/// Passes the turn after a sample and waits until it comes back.
pub fn pass() {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if let State::Paired { stream, holding } = &mut *state {
        if *holding {
            let passed = stream.write_all(b"p").and_then(|()| stream.flush()).is_ok();
            if !(passed && receive(stream)) {
                *state = State::Alone;
            }
        }
    }
}

fn connect() -> State {
    let Some(path) = std::env::var_os(TURNS_ENV).filter(|p| !p.is_empty()) else {
        return State::Alone;
    };
    match std::os::unix::net::UnixStream::connect(&path) {
        Ok(stream) => State::Paired {
            stream,
            holding: false,
        },
        Err(e) => {
            eprintln!(
                "warning: {TURNS_ENV} names {}, which does not answer ({e}); measuring without taking turns",
                std::path::Path::new(&path).display()
            );
            State::Alone
        }
    }
}

/// Waits for the referee's byte; false when the referee is gone.
fn receive(stream: &mut std::os::unix::net::UnixStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(1))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;
    use std::time::{Duration, Instant};

    use super::*;

    /// A referee that holds each turn back for a while: `take` must wait for it, and every
    /// `pass` must hand it back before the next sample may start.
    #[test]
    fn samples_wait_for_their_turn_and_hand_it_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("turns.sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let hold_back = Duration::from_millis(150);
        let referee = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("the benchmark connects");
            let mut passed = 0;
            for _ in 0..3 {
                std::thread::sleep(hold_back);
                stream.write_all(b"g").expect("grant");
                let mut byte = [0u8; 1];
                if stream.read(&mut byte).expect("read") == 1 {
                    passed += 1;
                }
            }
            passed
        });
        std::env::set_var(TURNS_ENV, &socket);
        let started = Instant::now();
        let mut sample_starts = Vec::new();
        for _ in 0..3 {
            take();
            sample_starts.push(started.elapsed());
            pass();
        }
        std::env::remove_var(TURNS_ENV);
        // The third pass waits for a fourth turn that never comes: the referee hangs up.
        assert_eq!(referee.join().expect("referee"), 3);
        for (i, at) in sample_starts.iter().enumerate() {
            assert!(
                *at >= hold_back * (i as u32 + 1),
                "sample {i} started at {at:?}, before its turn"
            );
        }
        // Without a referee nothing waits.
        assert!(matches!(
            *STATE.lock().unwrap_or_else(|e| e.into_inner()),
            State::Alone
        ));
        take();
        pass();
    }
}
