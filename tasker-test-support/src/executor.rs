//! Where the benchmarks' async code runs: one tokio runtime per process, and the executor
//! handed to criterion, which wraps every sample in the counting pass's readings and, when
//! the xtask pairs two processes, in their turn-taking.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// The runtime every benchmark runs its async code on: tokio's multi-thread scheduler, the
/// flavour the services run on, so scheduling costs are the service's, not a test harness's.
///
/// One per process: sqlx connections are bound to the runtime that opened them, so pools,
/// listeners and the throwaway cluster must all live on this one.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("bench-rt")
            .build()
            .expect("building the benchmark tokio runtime")
    })
}

/// The executor benchmarks hand criterion (`b.to_async(timed())`): [`runtime`], with each
/// criterion sample taken in turn with a partner process when `cargo xtask profile-post
/// --against` asks for it (see [`crate::bench_turns`]).
pub fn timed() -> Timed {
    Timed
}

/// See [`timed`].
pub struct Timed;

impl criterion::async_executor::AsyncExecutor for Timed {
    fn block_on<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        #[cfg(unix)]
        crate::bench_turns::take();
        let output = crate::bench_db_stats::around_sample(|| runtime().block_on(future));
        #[cfg(unix)]
        crate::bench_turns::pass();
        output
    }
}
