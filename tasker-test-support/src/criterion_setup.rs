//! The one criterion configuration and `main` every bench executable shares, so that warm-up,
//! noise threshold, the counting pass's profiler hook and the closing teardown cannot differ
//! from one bench file to the next.

use std::time::Duration;

use criterion::Criterion;

/// The criterion configuration every bench starts from: one second of warm-up, a 5 % noise
/// threshold (a shared machine), the given measurement time and sample count, and the
/// profiler hook through which the counting pass reads each benchmark's database counts
/// ([`crate::bench_db_stats`]).
pub fn criterion_config(measurement: Duration, sample_size: usize) -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measurement)
        .sample_size(sample_size)
        .noise_threshold(0.05)
        .with_profiler(crate::bench_db_stats::DbStats)
}

/// A bench executable's `main`: runs `targets` under `config` with criterion's command line
/// applied (what `criterion_group!` and `criterion_main!` expand to), then `after` (the
/// bench's own closing work, such as writing percentiles or stopping its servers, which must
/// happen before the databases go), criterion's final summary, and [`crate::teardown`].
pub fn bench_main(config: Criterion, targets: &[fn(&mut Criterion)], after: impl FnOnce()) {
    {
        let mut criterion = config.configure_from_args();
        for target in targets {
            target(&mut criterion);
        }
    }
    after();
    Criterion::default().configure_from_args().final_summary();
    crate::bench_database::teardown();
}
