//! Mkondo for Swift, Kotlin and Python: a thin uniffi layer over `mkondo-sdk`.
//!
//! It only converts: types ([`types`]), errors ([`error`]) and callbacks
//! (listener and token provider as foreign traits, [`client`]). Every behaviour
//! — reconnect, outbox, recovery, token refresh — is the core's. The core owns no
//! runtime, so this crate builds one tokio runtime lazily and runs every client
//! on it; async methods are exported with `async_runtime = "tokio"`.

use std::sync::OnceLock;

#[cfg(target_os = "android")]
mod android;
pub mod client;
pub mod error;
pub mod files;
pub mod types;

pub use client::{Client, Subscription};
pub use error::{MkondoError, TokenError};
pub use files::{Upload, UploadListener};

uniffi::setup_scaffolding!("mkondo");

/// The one runtime every client of the process runs on, built on first use.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mkondo")
            .enable_all()
            .build()
            .expect("cannot start the mkondo runtime")
    })
}
