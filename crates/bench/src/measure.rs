//! Timing helpers: throughput on several threads for a fixed time, medians, one timed call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Operations per second when `threads` threads run `work` for about `seconds`: each call
/// of `work(thread_index)` does a small chunk and returns how many operations it did. The
/// calling thread is one of the threads (as in `ParallelVerifier`), so a one-thread rate is
/// measured exactly where a one-thread verifier runs.
pub(crate) fn rate_on_threads(
    threads: usize,
    seconds: f64,
    work: &(dyn Fn(usize) -> u64 + Sync),
) -> f64 {
    let total = AtomicU64::new(0);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let run = |thread_index: usize| {
        let mut done = 0u64;
        while Instant::now() < deadline {
            done += work(thread_index);
        }
        total.fetch_add(done, Ordering::Relaxed);
    };
    std::thread::scope(|scope| {
        for thread_index in 1..threads.max(1) {
            let run = &run;
            scope.spawn(move || run(thread_index));
        }
        run(0);
    });
    // The last chunks end after the deadline and count, so time them too.
    total.into_inner() as f64 / started.elapsed().as_secs_f64()
}

/// The median of `values` (the mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        length if length % 2 == 1 => sorted[length / 2],
        length => (sorted[length / 2 - 1] + sorted[length / 2]) / 2.0,
    }
}

/// Runs `work` and returns its result and how long it took, in seconds.
pub(crate) fn timed<T>(work: impl FnOnce() -> T) -> (T, f64) {
    let started = Instant::now();
    let result = work();
    (result, started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_medians() {
        let rate = rate_on_threads(2, 0.05, &|_| {
            std::hint::black_box((0..100u64).sum::<u64>());
            100
        });
        assert!(rate > 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
