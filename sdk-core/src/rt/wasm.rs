//! The browser: tasks on the JavaScript event loop, timers from `setTimeout`,
//! randomness from `Math.random()`.

use std::future::Future;

use super::Instant;

/// Spawns `fut` on the browser's event loop.
pub fn spawn<F>(fut: F)
where
    F: Future<Output = ()> + 'static,
{
    wasm_bindgen_futures::spawn_local(fut);
}

/// Now (`performance.now()`).
pub fn now() -> Instant {
    Instant::now()
}

/// Waits until `deadline` with `setTimeout`.
pub async fn sleep_until(deadline: Instant) {
    let wait = deadline.saturating_duration_since(Instant::now());
    gloo_timers::future::sleep(wait).await;
}

/// Milliseconds since the Unix epoch (`Date.now()`).
pub fn unix_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// A seed for the jitter and client-id generator (`Math.random()`, twice).
pub fn entropy() -> u64 {
    let hi = (js_sys::Math::random() * f64::from(u32::MAX)) as u64;
    let lo = (js_sys::Math::random() * f64::from(u32::MAX)) as u64;
    (hi << 32) ^ lo ^ (unix_ms() as u64)
}
