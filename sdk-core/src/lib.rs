//! Mkondo's client core: every client behaviour, written once and shared by the
//! web (wasm) and mobile (uniffi) SDKs, which only translate types and callbacks.
//!
//! ```no_run
//! # async fn demo() -> mkondo_sdk::Result<()> {
//! use mkondo_sdk::{Client, Config, Event, TransportKind};
//!
//! let config = Config::new("http://127.0.0.1:8080", TransportKind::WebSocketJson)
//!     .with_token("eyJ…");
//! let (client, mut events) = Client::with_channel(config)?;
//! client.connect();
//! let sent = client.send_text("launch-team", "hello").await?;
//! println!("stored as seq {}", sent.seq);
//! while let Some(event) = events.recv().await {
//!     if let Event::Message(m) = event {
//!         println!("{}: {}", m.sender_id, m.text);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Layers, inside out:
//! - [`session`]: the sans-IO state machine (states, reconnect, tokens,
//!   subscriptions, outbox, recovery, cache). No I/O, no clock.
//! - `driver`: the one async loop feeding the session.
//! - [`transport`] and [`rt`]: the only platform code (native WebSocket and
//!   gRPC, browser WebSocket, an in-memory transport for tests; tasks and time).
//! - [`Client`]: the handle, one method per call.

pub mod backoff;
pub mod cache;
mod calls;
mod client;
pub mod config;
mod driver;
pub mod error;
pub mod event;
mod people;
pub mod rt;
pub mod session;
pub mod store;
pub mod transport;
mod uploads;

/// `docs/sdk/rust.md`: its examples are compiled as doc-tests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/sdk/rust.md")]
pub struct RustGuide;

pub use cache::Cache;
pub use calls::{HistoryQuery, NewGroup, NewMessage, PushCredential};
pub use client::{Call, Client};
pub use config::{Config, StoreConfig, TokenError, TokenProvider, TransportKind};
pub use driver::EventListener;
pub use error::{Error, Result};
pub use event::{codes, AppState, ConnectionState, Event, SubscriptionState};
/// The wire types events and results carry.
pub use mkondo_proto::v1;
pub use mkondo_proto::ErrorCode;
pub use people::{ConversationUpdate, Page, ProfileUpdate, Role};
pub use uploads::{NewUpload, ProgressFn, Upload, UploadSource, UploadStatus};
