//! The referee of two benchmark executables run at the same time that take turns sample by
//! sample (`tasker_test_support::bench_turns` is the other end). Each gets a Unix socket named
//! by `TASKER_BENCH_TURNS`; it connects before its first sample, and from then on runs only
//! while it holds the turn: the referee sends one byte to give it, the executable sends one
//! back after each sample. Both executables set up (databases, data) at the same time, then
//! the first sample waits until both are ready, so no sample of one competes with the other.
//!
//! Why: on a shared host the machine's speed drifts by tens of percent within seconds (a
//! pure CPU loop measured 13–26 ms from one second to the next on the 2-core build VM).
//! Whole runs of two executables, even alternated, each see a different stretch of that
//! drift; samples taken in turn a fraction of a second apart see the same.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

/// The variable the benchmark executables read (and whose name they therefore contain).
pub const TURNS_ENV: &str = "TASKER_BENCH_TURNS";

/// How often the referee looks for a connection or an exit while both set up.
const POLL: Duration = Duration::from_millis(10);

/// One executable in the pair.
struct Player {
    child: Child,
    listener: UnixListener,
    socket: PathBuf,
    stream: Option<UnixStream>,
    /// Exited, or stopped answering: it gets no more turns.
    done: bool,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// Runs both commands to completion, taking turns, player `first` first; returns their
/// outputs in the order given. `dir` holds the sockets and the captured output.
pub fn run_pair(commands: [Command; 2], first: usize, dir: &Path) -> Result<[Output; 2]> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let [a, b] = commands;
    let mut players = [start(a, dir, 0)?, start(b, dir, 1)?];
    wait_until_ready(&mut players)?;
    let mut turn = first.min(1);
    while !players.iter().all(|p| p.done) {
        if players[turn].done {
            turn = 1 - turn;
            continue;
        }
        give_turn(&mut players[turn]);
        if !players[1 - turn].done {
            turn = 1 - turn;
        }
    }
    let [a, b] = players;
    Ok([finish(a)?, finish(b)?])
}

fn start(mut command: Command, dir: &Path, index: usize) -> Result<Player> {
    let socket = dir.join(format!("turns-{index}.sock"));
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("listening on {}", socket.display()))?;
    listener
        .set_nonblocking(true)
        .context("making the turn socket non-blocking")?;
    // Files, not pipes: nobody reads a pipe while the referee waits on a socket.
    let stdout = dir.join(format!("stdout-{index}.log"));
    let stderr = dir.join(format!("stderr-{index}.log"));
    let create =
        |p: &Path| std::fs::File::create(p).with_context(|| format!("creating {}", p.display()));
    let child = command
        .env(TURNS_ENV, &socket)
        .stdin(Stdio::null())
        .stdout(create(&stdout)?)
        .stderr(create(&stderr)?)
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    Ok(Player {
        child,
        listener,
        socket,
        stream: None,
        done: false,
        stdout,
        stderr,
    })
}

/// Until each player has connected (it is set up and waits for its first turn) or exited.
fn wait_until_ready(players: &mut [Player; 2]) -> Result<()> {
    loop {
        for p in players.iter_mut() {
            if p.stream.is_some() || p.done {
                continue;
            }
            match p.listener.accept() {
                Ok((stream, _)) => {
                    stream
                        .set_nonblocking(false)
                        .context("making the turn connection blocking")?;
                    p.stream = Some(stream);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if p.child
                        .try_wait()
                        .context("checking a benchmark process")?
                        .is_some()
                    {
                        p.done = true;
                    }
                }
                Err(e) => return Err(e).context("accepting a benchmark's connection"),
            }
        }
        if players.iter().all(|p| p.stream.is_some() || p.done) {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}

/// Gives the player one turn and waits until it passes it back (or is gone).
fn give_turn(player: &mut Player) {
    let Some(stream) = player.stream.as_mut() else {
        player.done = true;
        return;
    };
    let mut byte = [0u8; 1];
    let answered = stream.write_all(b"g").is_ok()
        && stream.flush().is_ok()
        && matches!(stream.read(&mut byte), Ok(1));
    if !answered {
        player.done = true;
    }
}

fn finish(mut player: Player) -> Result<Output> {
    drop(player.stream.take());
    let status = player
        .child
        .wait()
        .context("waiting for a benchmark process")?;
    let _ = std::fs::remove_file(&player.socket);
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    Ok(Output {
        status,
        stdout: read(&player.stdout)?,
        stderr: read(&player.stderr)?,
    })
}
