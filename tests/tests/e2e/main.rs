//! The end-to-end suite in one test binary (one link instead of one per area):
//! the real server (`mkondo-e2e-server`, the `mkondo` program) on
//! `127.0.0.1:0`, driven over real sockets by the harness in `mkondo_tests`.
//! One module per area; `admin_common` and `sdk_common` are helpers shared by
//! the Admin gRPC and the SDK modules. A test's name starts with its module
//! (`chat::…`, `durability::…`): `cargo test -p mkondo-tests --test e2e chat::`
//! runs one area, and `./scripts/test.sh` runs a slice of them again on
//! PostgreSQL (`MKONDO_TEST_STORE=postgres`) by those names.

mod admin_common;
mod admin_grpc;
mod admin_grpc_conversations;
mod admin_grpc_messages;
mod admin_grpc_webhooks;
mod auth;
mod blocks;
mod chat;
mod cors;
mod delete_conversation;
mod devices;
mod durability;
mod error_format;
mod events;
mod files;
mod floods;
mod hide;
mod hooks;
mod input_caps;
mod lifecycle;
mod limits;
mod message_changes;
mod notifications;
mod one_door;
mod openapi;
mod openapi_rules;
mod operations;
mod operator;
mod ordering;
mod ownership;
mod presence;
mod push;
mod push_settings;
mod receivers;
mod reflection;
mod rest;
mod resume;
mod roles;
mod sdk_chaos;
mod sdk_chat;
mod sdk_common;
mod sdk_files;
mod sdk_offline;
mod sdk_people;
mod sdk_tls;
mod sdk_tokens;
mod session;
mod signal;
mod tls;
mod unread;
mod webhooks;
