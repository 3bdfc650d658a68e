//! Storage conformance: every scenario runs against SQLite and PostgreSQL through
//! `mkondo_server::store::Store`, so both engines keep the same behaviour.
//!
//! On PostgreSQL the concurrent scenarios open several `Store`s on one database —
//! several pools, as several server nodes would — and race them: seqs stay gap-free
//! and unique, retried sends are deduplicated, check-then-insert paths (direct
//! conversations, users, members) create exactly once, and the last owner of a
//! group cannot be lost. SQLite serves one node, so there the same races run
//! through one `Store`. The PostgreSQL half starts PostgreSQL itself (see
//! `mkondo_tests::fresh_postgres`), or is listed as ignored when it is not installed.
//!
//! `main.rs` holds the harness (one `Db` per engine, the `conformance!` macro
//! that runs each scenario on both); the scenarios are in `concurrency.rs` (races
//! between writers, migrations, failures), `behaviour.rs` (what one writer sees)
//! and `decoding.rs` (rows that do not decode); `events.rs`, `webhooks.rs` and
//! `push.rs` the event outbox, webhook delivery state and the push queue.

mod behaviour;
mod concurrency;
mod decoding;
mod events;
mod push;
mod webhooks;

use mkondo_server::store::messages::HistoryQuery;
use mkondo_server::store::system_messages::Notice;
use mkondo_server::store::users::UserPatch;
use mkondo_server::store::{Engine, NewGroup, NewMessage, Store};
use mkondo_tests::fresh_postgres;
use serde_json::json;
use sqlx::AnyPool;
use tempfile::TempDir;

use behaviour::*;
use concurrency::*;
use decoding::*;
use events::*;
use push::*;
use webhooks::*;

/// One database under test, on either engine.
pub struct Db {
    url: String,
    engine: Engine,
    _dir: Option<TempDir>,
}

impl Db {
    async fn sqlite() -> Db {
        let dir = tempfile::Builder::new()
            .prefix("mkondo-store-")
            .tempdir()
            .expect("tempdir");
        let url = dir.path().join("mkondo.db").to_str().unwrap().to_owned();
        Db {
            url,
            engine: Engine::Sqlite,
            _dir: Some(dir),
        }
    }

    async fn postgres() -> Db {
        Db {
            url: fresh_postgres().await,
            engine: Engine::Postgres,
            _dir: None,
        }
    }

    /// A new `Store` on this database: on PostgreSQL, a pool of its own.
    pub async fn open(&self) -> Store {
        let store = Store::open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e:#}", self.url));
        assert_eq!(store.engine(), self.engine);
        store
    }

    /// The stores concurrent writers spread over: three nodes on PostgreSQL, the
    /// one node SQLite serves.
    pub async fn nodes(&self) -> Vec<Store> {
        let n = match self.engine {
            Engine::Sqlite => 1,
            Engine::Postgres => 3,
        };
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(self.open().await);
        }
        nodes
    }

    /// A plain connection pool, for looking at rows the `Store` never shows.
    pub async fn raw(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        let url = match self.engine {
            Engine::Sqlite => format!("sqlite://{}", self.url),
            Engine::Postgres => self.url.clone(),
        };
        AnyPool::connect(&url).await.expect("raw connection")
    }
}

/// Runs each scenario `async fn name(db: Db)` once per engine: `sqlite::name` and
/// `postgres::name`.
macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(super::Db::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[cfg_attr(
                    not(has_services),
                    ignore = "PostgreSQL/Redis not installed: apt-get install postgresql redis-server"
                )]
                async fn $scenario() {
                    super::$scenario(super::Db::postgres().await).await
                }
            )*
        }
    };
}

conformance!(
    migrations_apply_once_however_many_nodes_open_the_database,
    seqs_are_gap_free_and_unique_under_20_concurrent_writers,
    retried_sends_are_deduplicated_under_concurrency,
    concurrent_sends_share_commits_and_each_gets_its_own_answer,
    concurrent_creations_happen_exactly_once,
    the_last_owner_survives_concurrent_demotions,
    lists_page_completely_in_bytewise_order,
    unread_counts_follow_read_positions,
    a_hidden_conversation_returns_with_the_next_message,
    blocks_stand_in_either_direction,
    peers_and_the_directory_stay_in_their_app,
    expired_notifications_are_never_returned_and_get_purged,
    apps_never_see_each_other,
    app_settings_and_new_keys_are_per_app,
    a_closed_database_is_unavailable_not_internal,
    a_row_that_does_not_decode_is_internal_not_a_panic,
    every_change_records_its_event_and_a_refused_one_none,
    the_feed_never_skips_an_event_under_concurrent_writers,
    erasing_a_user_takes_their_events,
    retention_purges_the_oldest_events,
    deleting_a_message_or_conversation_redacts_its_events,
    webhook_events_are_copied_and_streams_leased_exactly_once,
    push_jobs_are_copied_once_and_leases_go_to_one_node,
    the_badge_is_each_users_total_unread,
);

// ----- helpers

async fn new_app(store: &Store, name: &str) -> String {
    store.create_app(name, None).await.unwrap().app_id
}

pub async fn new_users(store: &Store, app: &str, ids: &[&str]) {
    for id in ids {
        store
            .upsert_user(app, id, &UserPatch::default())
            .await
            .unwrap();
    }
}

pub async fn new_group(
    store: &Store,
    app: &str,
    creator: Option<&str>,
    members: &[&str],
) -> String {
    store
        .create_group(
            app,
            NewGroup {
                creator: creator.map(str::to_owned),
                members: members.iter().map(|m| m.to_string()).collect(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id
}

pub fn text(sender: &str, text: &str) -> NewMessage {
    NewMessage {
        sender_id: sender.to_owned(),
        kind: "user".to_owned(),
        text: text.to_owned(),
        ..Default::default()
    }
}

pub async fn send(store: &Store, app: &str, conv: &str, sender: &str, body: &str) -> i64 {
    store
        .send_message(app, conv, &text(sender, body))
        .await
        .unwrap()
        .message
        .seq
}

/// Every message of `conv`, paged forward 7 at a time.
pub async fn all_history(store: &Store, app: &str, conv: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut q = HistoryQuery {
        after: Some(0),
        limit: 7,
        ..Default::default()
    };
    loop {
        let page = store.history_page(app, conv, &q, 0).await.unwrap();
        out.extend(page.items.iter().map(|m| (m.seq, m.text.clone())));
        match page.next_cursor {
            Some(cursor) => {
                q = HistoryQuery {
                    cursor: Some(cursor),
                    limit: 7,
                    ..Default::default()
                }
            }
            None => return out,
        }
    }
}

pub fn notice(text: &str) -> Notice {
    Notice {
        text: text.to_owned(),
        data: json!({ "event": "test" }),
    }
}
