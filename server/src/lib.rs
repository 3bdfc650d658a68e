//! The Mkondo reference server: real-time chat over WebSocket and gRPC, a REST
//! API for backends, embedded SQLite storage. `main.rs` is only the CLI; everything
//! else is here so tests and tools can build a server in-process.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod dev;
pub mod engine;
pub mod error;
pub mod files;
pub mod node;
pub mod outbound;
pub mod realtime;
pub mod rest;
pub mod server;
pub mod store;
pub mod tls;
pub mod views;

pub use error::{Error, Result};
