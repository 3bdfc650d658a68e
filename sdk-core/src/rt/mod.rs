//! The platform seam for time and tasks: everything the client needs from a
//! runtime, defined once for native targets (tokio) and once for the browser
//! (`wasm-bindgen-futures`, `gloo-timers`, `performance.now()`).
//!
//! Business logic never names a platform: it calls [`now`], [`sleep_until`] and
//! [`spawn`], and bounds futures with [`SendOutsideWasm`] so that the same code
//! is `Send` on native targets (multi-threaded runtimes) and need not be on wasm
//! (JavaScript values are not `Send`).

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
use native as imp;

#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
use wasm as imp;

use std::{future::Future, pin::Pin};

pub use imp::{entropy, now, sleep_until, spawn, unix_ms};
/// A monotonic instant that also works in browsers (`std`'s panics there).
pub use web_time::Instant;

/// `Send` off wasm, nothing on wasm: the bound futures and callbacks carry.
#[cfg(not(target_arch = "wasm32"))]
pub trait SendOutsideWasm: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send> SendOutsideWasm for T {}
/// `Send` off wasm, nothing on wasm: the bound futures and callbacks carry.
#[cfg(target_arch = "wasm32")]
pub trait SendOutsideWasm {}
#[cfg(target_arch = "wasm32")]
impl<T> SendOutsideWasm for T {}

/// `Sync` off wasm, nothing on wasm.
#[cfg(not(target_arch = "wasm32"))]
pub trait SyncOutsideWasm: Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Sync> SyncOutsideWasm for T {}
/// `Sync` off wasm, nothing on wasm.
#[cfg(target_arch = "wasm32")]
pub trait SyncOutsideWasm {}
#[cfg(target_arch = "wasm32")]
impl<T> SyncOutsideWasm for T {}

/// A boxed future that is `Send` off wasm.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A boxed future that is `Send` off wasm.
#[cfg(target_arch = "wasm32")]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Runs `fut` with a deadline; `None` when the deadline came first.
pub async fn timeout<F: Future>(duration: std::time::Duration, fut: F) -> Option<F::Output> {
    let deadline = now() + duration;
    tokio::select! {
        out = fut => Some(out),
        () = sleep_until(deadline) => None,
    }
}
