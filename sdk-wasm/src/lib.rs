//! `@mkondo/sdk`: Mkondo's client core compiled to wasm, behind a JavaScript API.
//! Every behaviour lives in `mkondo-sdk`; this crate only converts types, errors
//! and callbacks, and wires the browser's own signals into the core's hooks.
//!
//! The code is wasm32-only: on native targets the crate is empty so that the
//! workspace builds and lints without a browser toolchain (`scripts/test.sh` lints
//! it with `--target wasm32-unknown-unknown`).
#![cfg(target_arch = "wasm32")]

mod browser;
mod client;
mod convert;
mod files;
mod options;

pub use client::JsClient;
