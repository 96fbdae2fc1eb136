//! Step handlers written in Ruby, run by a Tasker worker through an embedded Ruby VM.
//!
//! The binding is [magnus](https://docs.rs/magnus): it embeds the VM with a safe entry point
//! (`Ruby::init`, so this crate needs no `unsafe`), converts Ruby errors to Rust results, and
//! with `serde_magnus` turns JSON values into Ruby hashes and back. rb-sys alone would mean
//! writing those conversions and the exception handling by hand over raw C calls.
//!
//! How calls reach Ruby: Ruby allows one VM per process, bound to the thread that started it,
//! and its global VM lock lets one thread run Ruby at a time. So one OS thread (`tasker-ruby`)
//! owns the VM and serves a queue; a handler call on a tokio task sends its step there and
//! awaits the answer without blocking its runtime thread. Ruby handlers therefore run one at
//! a time per process, while heartbeats, claims and Rust handlers go on around them.

mod error;
mod handler;
mod signals;
mod vm;

pub use error::RubyError;
pub use handler::{load, RubyHandler, RubyHandlers};

/// The Ruby example handlers (the linear and diamond fixture workflows), shipped with the crate.
pub fn examples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ruby/examples")
}
