//! Native targets: tokio's runtime and clock. The clock is tokio's so that tests
//! with a paused runtime (`start_paused`) drive the client on virtual time.

use std::future::Future;

use super::Instant;

/// Spawns `fut` on the current tokio runtime (the caller's: the core owns none).
pub fn spawn<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(fut);
}

/// Now, on tokio's clock (virtual when the runtime is paused).
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Waits until `deadline` on tokio's clock.
pub async fn sleep_until(deadline: Instant) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
}

/// Milliseconds since the Unix epoch, from the wall clock.
#[allow(clippy::disallowed_methods)] // the one place that reads it
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A seed for the jitter and client-id generator: not cryptographic, only
/// different between processes, clients and calls.
pub fn entropy() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS once per thread, then incremented.
    let mut h = RandomState::new().build_hasher();
    h.write_i64(unix_ms());
    h.finish()
}
