//! Rows that do not decode, the same on both engines: the store reads every
//! record by column name and a value that does not fit its type — JSON that
//! does not parse, an unknown role or kind, a number out of range, TEXT where a
//! BIGINT belongs — fails that read with `internal`. Nothing panics, nothing is
//! silently defaulted, and the rows around it still read.

use mkondo_proto::ErrorCode;
use mkondo_server::error::Error;
use mkondo_server::store::{Engine, Store};
use sqlx::AnyPool;

use super::{new_app, new_group, new_users, send, Db};

/// Changes a row behind the store's back, as a bad migration or a hand-made
/// fix would.
async fn corrupt(raw: &AnyPool, sql: &str, app: &str) {
    let done = sqlx::query(sql).bind(app).execute(raw).await.unwrap();
    assert_eq!(done.rows_affected(), 1, "{sql}");
}

#[track_caller]
fn assert_internal<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(err) => assert_eq!(err.code, ErrorCode::Internal, "{what}: {err}"),
        Ok(value) => panic!("{what}: read {value:?} from a row that does not decode"),
    }
}

pub async fn a_row_that_does_not_decode_is_internal_not_a_panic(db: Db) {
    let store = db.open().await;
    let app = new_app(&store, "main").await;
    new_users(&store, &app, &["alice", "bob"]).await;
    let conv = new_group(&store, &app, Some("alice"), &["bob"]).await;
    let other = new_group(&store, &app, Some("alice"), &[]).await;
    send(&store, &app, &conv, "alice", "hello").await;
    send(&store, &app, &conv, "alice", "again").await;
    let raw = db.raw().await;

    corrupt(
        &raw,
        "UPDATE users SET data = '{not json' WHERE app_id = $1 AND id = 'bob'",
        &app,
    )
    .await;
    assert_internal(
        store.get_user(&app, "bob").await,
        "JSON that does not parse",
    );
    assert_internal(
        store.list_users(&app, None, None, 10).await,
        "a page holding that user",
    );
    assert!(store.get_user(&app, "alice").await.unwrap().is_some());

    corrupt(
        &raw,
        "UPDATE members SET role = 'king' WHERE app_id = $1 AND user_id = 'bob'",
        &app,
    )
    .await;
    assert_internal(store.member(&app, &conv, "bob").await, "an unknown role");
    let alice = store.member(&app, &conv, "alice").await.unwrap().unwrap();
    assert_eq!(alice.last_read_seq, 2);

    corrupt(
        &raw,
        &format!("UPDATE conversations SET kind = 'triangle' WHERE app_id = $1 AND id = '{other}'"),
        &app,
    )
    .await;
    assert_internal(
        store.get_conversation(&app, &other, None).await,
        "an unknown conversation kind",
    );
    assert_internal(
        store.user_conversations(&app, "alice", None, 10).await,
        "a list holding that conversation",
    );

    corrupt(
        &raw,
        "INSERT INTO revocations (id, app_id, code, created_at) VALUES (1, $1, 70000, 0)",
        &app,
    )
    .await;
    assert_internal(
        store.revocations_after(0).await,
        "a disconnect code out of range",
    );

    corrupt(
        &raw,
        &format!(
            "UPDATE messages SET data = '[' WHERE app_id = $1 AND conversation_id = '{conv}' AND seq = 2"
        ),
        &app,
    )
    .await;
    assert_internal(store.message(&app, &conv, 2).await, "a message's data");
    assert!(store.message(&app, &conv, 1).await.unwrap().is_some());

    if db.engine == Engine::Sqlite {
        // SQLite keeps any value in any column; PostgreSQL would refuse this.
        corrupt(
            &raw,
            &format!(
                "UPDATE messages SET created_at = 'yesterday' \
                 WHERE app_id = $1 AND conversation_id = '{conv}' AND seq = 1"
            ),
            &app,
        )
        .await;
        assert_internal(
            store.message(&app, &conv, 1).await,
            "TEXT in a BIGINT column",
        );
    }

    still_works(&store, &app).await;
}

/// The store goes on after failed reads: nothing was poisoned or left locked.
async fn still_works(store: &Store, app: &str) {
    let conv = new_group(store, app, Some("alice"), &[]).await;
    assert_eq!(send(store, app, &conv, "alice", "still here").await, 1);
    let read = store.message(app, &conv, 1).await.unwrap().unwrap();
    assert_eq!(read.text, "still here");
}
