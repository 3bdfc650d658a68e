//! Races between writers — on PostgreSQL through several `Store`s (pools), as
//! several nodes would — and what happens around them: migrations run by nodes
//! starting together, a database that went away.

use std::collections::HashSet;

use mkondo_proto::ErrorCode;
use mkondo_server::store::system_messages::{ChangeBy, Owners};
use mkondo_server::store::users::UserPatch;
use mkondo_server::store::{NewMessage, Role, Store, MIGRATOR};
use tokio::task::JoinSet;

use super::{all_history, new_app, new_group, new_users, notice, send, text, Db};

pub async fn migrations_apply_once_however_many_nodes_open_the_database(db: Db) {
    // Nodes starting together on an empty database: one applies the migrations.
    let mut opening = JoinSet::new();
    for _ in 0..3 {
        let url = db.url.clone();
        opening.spawn(async move { Store::open(&url).await.map(|_| ()) });
    }
    while let Some(done) = opening.join_next().await {
        done.unwrap().expect("every node opens the database");
    }
    let store = db.open().await;
    let raw = db.raw().await;
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&raw)
            .await
            .unwrap();
    let embedded: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(applied, embedded, "every migration applied exactly once");
    for table in [
        "apps",
        "signing_keys",
        "api_keys",
        "users",
        "conversations",
        "members",
        "messages",
        "reactions",
        "notifications",
        "blocks",
        "deleted_users",
        "revocations",
        "events",
    ] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&raw)
            .await
            .unwrap_or_else(|e| panic!("table {table}: {e}"));
        assert_eq!(n, 0, "{table} starts empty");
    }
    store.ping().await.unwrap();
}

pub async fn seqs_are_gap_free_and_unique_under_20_concurrent_writers(db: Db) {
    let nodes = db.nodes().await;
    let app = new_app(&nodes[0], "main").await;
    let senders: Vec<String> = (0..20).map(|i| format!("u{i:02}")).collect();
    let members: Vec<&str> = senders.iter().map(String::as_str).collect();
    let conv = new_group(&nodes[0], &app, None, &members).await;
    const EACH: usize = 5;

    let mut writers = JoinSet::new();
    for (i, sender) in senders.iter().enumerate() {
        let (store, app, conv, sender) = (
            nodes[i % nodes.len()].clone(),
            app.clone(),
            conv.clone(),
            sender.clone(),
        );
        writers.spawn(async move {
            let mut seqs = Vec::new();
            for k in 0..EACH {
                seqs.push(send(&store, &app, &conv, &sender, &format!("{sender}/{k}")).await);
            }
            (sender, seqs)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = writers.join_next().await {
        let (sender, seqs) = done.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{sender}'s own sends get increasing seqs: {seqs:?}"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    let total = (senders.len() * EACH) as i64;
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "seqs 1..={total}, no gap, no duplicate"
    );

    let history = all_history(&nodes[0], &app, &conv).await;
    assert_eq!(
        history.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    for sender in &senders {
        let own: Vec<&str> = history
            .iter()
            .map(|(_, t)| t.as_str())
            .filter(|t| t.starts_with(&format!("{sender}/")))
            .collect();
        let want: Vec<String> = (0..EACH).map(|k| format!("{sender}/{k}")).collect();
        assert_eq!(own, want, "{sender}'s messages in the order sent");
    }
    let conversation = nodes[1 % nodes.len()]
        .get_conversation(&app, &conv, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conversation.last_seq, total);
}

pub async fn retried_sends_are_deduplicated_under_concurrency(db: Db) {
    let nodes = db.nodes().await;
    let app = new_app(&nodes[0], "main").await;
    let conv = new_group(&nodes[0], &app, None, &["alice", "bob"]).await;
    const ROUNDS: usize = 10;
    const COPIES: usize = 4;

    // Each round: the same send four times at once (a client retrying through
    // several nodes), while bob sends something else in between.
    let mut sends = JoinSet::new();
    for round in 0..ROUNDS {
        for copy in 0..COPIES {
            let (store, app, conv) = (nodes[copy % nodes.len()].clone(), app.clone(), conv.clone());
            sends.spawn(async move {
                let msg = NewMessage {
                    client_id: Some(format!("cid-{round}")),
                    ..text("alice", &format!("round {round}"))
                };
                let sent = store.send_message(&app, &conv, &msg).await.unwrap();
                (round, sent)
            });
        }
        let (store, app, conv) = (
            nodes[round % nodes.len()].clone(),
            app.clone(),
            conv.clone(),
        );
        sends.spawn(async move {
            let sent = store
                .send_message(&app, &conv, &text("bob", "between"))
                .await
                .unwrap();
            (usize::MAX, sent)
        });
    }
    let mut rounds: Vec<Vec<_>> = vec![Vec::new(); ROUNDS];
    while let Some(done) = sends.join_next().await {
        let (round, sent) = done.unwrap();
        if round != usize::MAX {
            rounds[round].push(sent);
        }
    }
    for (round, copies) in rounds.iter().enumerate() {
        assert_eq!(copies.len(), COPIES);
        let ids: HashSet<&str> = copies.iter().map(|s| s.message.id.as_str()).collect();
        let seqs: HashSet<i64> = copies.iter().map(|s| s.message.seq).collect();
        assert_eq!(
            (ids.len(), seqs.len()),
            (1, 1),
            "round {round}: one message for every copy"
        );
        let originals = copies.iter().filter(|s| !s.duplicate).count();
        assert_eq!(originals, 1, "round {round}: exactly one send wrote it");
    }
    let history = all_history(&nodes[0], &app, &conv).await;
    let total = (ROUNDS * 2) as i64;
    assert_eq!(
        history.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "one row per distinct send, seqs without gaps (a duplicate takes no seq)"
    );
}

pub async fn concurrent_creations_happen_exactly_once(db: Db) {
    let nodes = db.nodes().await;
    let app = new_app(&nodes[0], "main").await;
    const RACERS: usize = 8;

    // A direct conversation started by both users at once, on every node.
    let mut racing = JoinSet::new();
    for i in 0..RACERS {
        let (store, app) = (nodes[i % nodes.len()].clone(), app.clone());
        racing.spawn(async move {
            let (a, b) = if i % 2 == 0 {
                ("ann", "ben")
            } else {
                ("ben", "ann")
            };
            store.direct_conversation(&app, a, b).await.unwrap()
        });
    }
    let results = racing.join_all().await;
    let ids: HashSet<&str> = results.iter().map(|(c, _)| c.id.as_str()).collect();
    assert_eq!(ids.len(), 1, "one direct conversation per pair");
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
    let direct = results[0].0.id.clone();
    let conv = nodes[0]
        .get_conversation(&app, &direct, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conv.member_count, 2);

    // A user created on first connect through several nodes at once.
    let mut racing = JoinSet::new();
    for i in 0..RACERS {
        let (store, app) = (nodes[i % nodes.len()].clone(), app.clone());
        racing.spawn(async move {
            store
                .upsert_user(&app, "zoe", &UserPatch::default())
                .await
                .unwrap()
                .1
        });
    }
    let created = racing.join_all().await;
    assert_eq!(
        created.iter().filter(|c| **c).count(),
        1,
        "zoe created once"
    );

    // The same member added by several nodes at once.
    let group = new_group(&nodes[0], &app, Some("ann"), &[]).await;
    let mut racing = JoinSet::new();
    for i in 0..RACERS {
        let (store, app, group) = (nodes[i % nodes.len()].clone(), app.clone(), group.clone());
        racing.spawn(async move {
            store
                .add_members(&app, &group, &["zoe".to_owned()], Role::Member)
                .await
                .unwrap()
                .len()
        });
    }
    let added = racing.join_all().await;
    assert_eq!(added.iter().sum::<usize>(), 1, "zoe added once");
    let members = nodes[0].member_ids(&app, &group).await.unwrap();
    assert_eq!(members, ["ann", "zoe"]);
}

pub async fn the_last_owner_survives_concurrent_demotions(db: Db) {
    let nodes = db.nodes().await;
    let app = new_app(&nodes[0], "main").await;
    for round in 0..5 {
        let group = new_group(&nodes[0], &app, Some("o1"), &["o2", "m"]).await;
        let by_o1 = ChangeBy {
            member: Some("o1"),
            owners: Owners::KeepOne,
        };
        nodes[0]
            .set_role_noticed(&app, &group, "o2", Role::Owner, notice("o2 owner"), by_o1)
            .await
            .unwrap()
            .expect("o2 is a member");
        // Both owners step down at once, on different nodes.
        let mut racing = JoinSet::new();
        for (i, owner) in ["o1", "o2"].into_iter().enumerate() {
            let (store, app, group) = (nodes[i % nodes.len()].clone(), app.clone(), group.clone());
            racing.spawn(async move {
                let by = ChangeBy {
                    member: Some(owner),
                    owners: Owners::KeepOne,
                };
                store
                    .set_role_noticed(
                        &app,
                        &group,
                        owner,
                        Role::Member,
                        notice("stepped down"),
                        by,
                    )
                    .await
            });
        }
        let results = racing.join_all().await;
        let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(
            refused.len(),
            1,
            "round {round}: exactly one may step down: {results:?}"
        );
        assert_eq!(refused[0].reason, mkondo_proto::Reason::LastOwner);
        let page = nodes[0].members(&app, &group, None, 10).await.unwrap();
        let owners = page.items.iter().filter(|m| m.role == Role::Owner).count();
        assert_eq!(owners, 1, "round {round}: the group keeps one owner");
    }
}

pub async fn a_closed_database_is_unavailable_not_internal(db: Db) {
    let store = db.open().await;
    let app = new_app(&store, "main").await;
    let conv = new_group(&store, &app, None, &["alice"]).await;
    store.close().await;
    let err = store.ping().await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    let err = store
        .send_message(&app, &conv, &text("alice", "after close"))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    assert!(err.code.temporary(), "clients retry it");
}

/// Group commit: hundreds of sends at once share a few transactions, and each
/// gets its own answer — refusals (not found, not a member, blocked, a bad
/// `reply_to`) and retries among them take no seq and cost the others nothing.
pub async fn concurrent_sends_share_commits_and_each_gets_its_own_answer(db: Db) {
    let store = db.open().await;
    let app = new_app(&store, "main").await;
    let senders: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
    let members: Vec<&str> = senders.iter().map(String::as_str).collect();
    new_users(&store, &app, &members).await;
    let mut groups = Vec::new();
    for _ in 0..20 {
        groups.push(new_group(&store, &app, None, &members).await);
    }
    new_users(&store, &app, &["outsider"]).await;
    let (direct, _) = store.direct_conversation(&app, "u0", "u1").await.unwrap();
    assert!(store.block(&app, "u1", "u0").await.unwrap());
    let (batches_before, _) = store.group_commit_stats();

    // Every sender writes once into every group, each send with a client_id;
    // u3 retries each of its sends once, concurrently.
    let mut sends = JoinSet::new();
    let spawn = |sends: &mut JoinSet<_>, conv: &str, msg: NewMessage| {
        let (store, app, conv) = (store.clone(), app.clone(), conv.to_owned());
        sends.spawn(async move {
            let r = store.send_message(&app, &conv, &msg).await;
            (conv, msg, r)
        });
    };
    for conv in &groups {
        for sender in &senders {
            let msg = NewMessage {
                client_id: Some(format!("{sender}-{conv}")),
                ..text(sender, &format!("{sender} in {conv}"))
            };
            if sender == "u3" {
                spawn(&mut sends, conv, msg.clone());
            }
            spawn(&mut sends, conv, msg);
        }
    }
    spawn(&mut sends, &groups[0], text("outsider", "let me in"));
    spawn(&mut sends, &direct.id, text("u0", "hello?"));
    spawn(&mut sends, "no-such-conversation", text("u0", "anyone?"));
    let bad_reply = NewMessage {
        reply_to: Some(1_000_000),
        ..text("u1", "a reply to nothing")
    };
    spawn(&mut sends, &groups[1], bad_reply);

    let mut stored: std::collections::HashMap<String, Vec<i64>> = Default::default();
    let mut retried: std::collections::HashMap<String, Vec<(bool, String)>> = Default::default();
    let mut refusals = Vec::new();
    while let Some(done) = sends.join_next().await {
        let (conv, msg, result) = done.unwrap();
        match result {
            Ok(sent) => {
                assert_eq!(sent.message.text, msg.text);
                assert_eq!(sent.recipients, senders, "every member receives it");
                if msg.sender_id == "u3" {
                    retried
                        .entry(conv.clone())
                        .or_default()
                        .push((sent.duplicate, sent.message.id.clone()));
                }
                if !sent.duplicate {
                    stored.entry(conv).or_default().push(sent.message.seq);
                }
            }
            Err(err) => refusals.push((msg.sender_id, err.code)),
        }
    }
    refusals.sort_by_key(|(sender, code)| (sender.clone(), code.as_str()));
    assert_eq!(
        refusals,
        [
            ("outsider".to_owned(), ErrorCode::PermissionDenied),
            ("u0".to_owned(), ErrorCode::Blocked),
            ("u0".to_owned(), ErrorCode::NotFound),
            ("u1".to_owned(), ErrorCode::InvalidArgument),
        ],
        "each refusal is its own send's answer"
    );
    for conv in &groups {
        let mut seqs = stored.remove(conv).unwrap_or_default();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "{conv}: gap-free");
        let history = all_history(&store, &app, conv).await;
        assert_eq!(history.len(), 10, "{conv}: one row per distinct send");
        let copies = &retried[conv];
        assert_eq!(copies.len(), 2);
        assert_eq!(
            copies[0].1, copies[1].1,
            "{conv}: the retry finds the original"
        );
        assert_eq!(copies.iter().filter(|(dup, _)| *dup).count(), 1);
        let sender = store.member(&app, conv, "u5").await.unwrap().unwrap();
        let own = history
            .iter()
            .find(|(_, t)| t.starts_with("u5 in"))
            .unwrap()
            .0;
        assert!(
            sender.last_read_seq >= own,
            "{conv}: sending moved u5's read position to its message"
        );
    }
    assert_eq!(
        store
            .get_conversation(&app, &direct.id, None)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        0
    );

    let (batches_after, _) = store.group_commit_stats();
    let batches = batches_after - batches_before;
    let total = (groups.len() * (senders.len() + 1) + 4) as u64;
    assert!(
        batches * 4 <= total,
        "{total} concurrent sends shared transactions: {batches} batches"
    );
}
