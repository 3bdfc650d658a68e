//! Subscriptions, the outbox and recovery.

use std::time::Duration;

use mkondo_proto::v1::{self, client_frame::Command, push::Push};

use super::*;
use crate::event::SubscriptionState as Sub;

fn subscribe_result(conv: &str, last_seq: u64) -> Reply {
    Reply::Subscribe(v1::SubscribeResult {
        conversation: Some(v1::Conversation {
            id: conv.into(),
            last_seq,
            ..Default::default()
        }),
        presence: vec![v1::Presence {
            user_id: "bob".into(),
            status: "online".into(),
            ..Default::default()
        }],
        typing: vec!["bob".into()],
    })
}

fn sub_changes(events: &[Event]) -> Vec<(String, Sub, Sub)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SubscriptionStateChanged {
                conversation_id,
                old,
                new,
                ..
            } => Some((conversation_id.clone(), *old, *new)),
            _ => None,
        })
        .collect()
}

pub(super) fn send(conv: &str, text: &str) -> Call {
    Call::Send(v1::SendRequest {
        conversation_id: conv.into(),
        text: text.into(),
        ..Default::default()
    })
}

fn backoff_and_reconnect(
    sim: &mut Sim,
    result: v1::ConnectResult,
) -> (ConnId, Vec<v1::ClientFrame>) {
    let Phase::Backoff { until } = sim.phase() else {
        panic!("expected backoff, got {:?}", sim.phase());
    };
    sim.advance(until - sim.now.at);
    sim.open_and_handshake(result)
}

#[test]
fn subscribe_before_connect_leaves_with_connect_in_one_batch_and_comes_back_after_reconnect() {
    let mut sim = Sim::new(config());
    let a = sim.call(Call::Subscribe("a".into()));
    let b = sim.call(Call::Subscribe("b".into()));
    assert_eq!(
        sub_changes(&sim.events()),
        [
            ("a".into(), Sub::Unsubscribed, Sub::Subscribing),
            ("b".into(), Sub::Unsubscribed, Sub::Subscribing)
        ]
    );
    sim.input(Input::Connect);
    let conn = sim.opened();
    sim.input(Input::TransportOpened { conn });
    let batches = sim.batches(conn);
    assert_eq!(batches.len(), 1, "one message");
    let kinds: Vec<_> = batches[0]
        .iter()
        .map(|f| match &f.command {
            Some(Command::Connect(_)) => "connect".to_owned(),
            Some(Command::Subscribe(s)) => format!("subscribe {}", s.conversation_id),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["connect", "subscribe a", "subscribe b"]);
    let frames = &batches[0];
    sim.frames(
        conn,
        vec![
            reply(frames[0].id, Reply::Connect(connect_result(None))),
            reply(frames[1].id, subscribe_result("a", 3)),
            error(frames[2].id, "not_found", false),
        ],
    );
    let events = sim.events();
    assert_eq!(
        sub_changes(&events),
        [
            ("a".into(), Sub::Subscribing, Sub::Subscribed),
            ("b".into(), Sub::Subscribing, Sub::Unsubscribed)
        ]
    );
    assert!(matches!(sim.done(a), Some(Ok(Reply::Subscribe(_)))));
    assert!(matches!(sim.done(b), Some(Err(e)) if e.code() == mkondo_proto::ErrorCode::NotFound));
    // The cache has what the reply said.
    let cache = sim.s.cache();
    assert_eq!(cache.lock().unwrap().typing("a"), ["bob"]);
    assert_eq!(
        cache.lock().unwrap().presence("bob").unwrap().status,
        "online"
    );
    assert_eq!(cache.lock().unwrap().subscription("a"), Sub::Subscribed);

    // A reconnect resubscribes by itself.
    sim.closed(conn, None);
    assert_eq!(
        sub_changes(&sim.events()),
        [("a".into(), Sub::Subscribed, Sub::Subscribing)]
    );
    let (conn, rest) = backoff_and_reconnect(&mut sim, connect_result(None));
    assert!(
        matches!(&rest[..], [v1::ClientFrame { command: Some(Command::Subscribe(s)), .. }] if s.conversation_id == "a")
    );
    sim.frames(conn, vec![reply(rest[0].id, subscribe_result("a", 3))]);
    assert_eq!(
        sub_changes(&sim.events()),
        [("a".into(), Sub::Subscribing, Sub::Subscribed)]
    );

    // Unsubscribe ends it, and it is not renewed.
    let u = sim.call(Call::Unsubscribe("a".into()));
    let sent = sim.sent(conn);
    assert!(matches!(
        &sent[..],
        [v1::ClientFrame {
            command: Some(Command::Unsubscribe(_)),
            ..
        }]
    ));
    sim.frames(conn, vec![reply(sent[0].id, ok())]);
    assert!(matches!(sim.done(u), Some(Ok(_))));
    sim.closed(conn, None);
    let (_, rest) = backoff_and_reconnect(&mut sim, connect_result(None));
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn the_outbox_queues_offline_sends_in_order_once_and_resends_with_the_same_client_id() {
    let mut sim = Sim::new(SessionConfig {
        outbox_limit: 3,
        ..config()
    });
    let ops: Vec<OpId> = (1..=3)
        .map(|i| sim.call(send("c", &format!("m{i}"))))
        .collect();
    let full = sim.call(send("c", "m4"));
    assert!(matches!(
        sim.done(full),
        Some(Err(Error::OutboxFull { limit: 3 }))
    ));
    assert_eq!(sim.s.outbox_len(), 3);

    let (conn, rest) = sim.connect_with(connect_result(None));
    assert!(rest.is_empty(), "messages wait for the connect reply");
    let first: Vec<v1::SendRequest> = sim
        .sent(conn)
        .into_iter()
        .map(|f| match f.command {
            Some(Command::Send(s)) => s,
            other => panic!("{other:?}"),
        })
        .collect();
    let texts: Vec<&str> = first.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, ["m1", "m2", "m3"]);
    assert!(first.iter().all(|s| !s.client_id.is_empty()));

    // The connection dies before any ack: all three go again, same ids, same order.
    sim.closed(conn, None);
    assert!(
        ops.iter().all(|op| sim.done(*op).is_none()),
        "nothing completes without an ack"
    );
    let (conn, _) = backoff_and_reconnect(&mut sim, connect_result(None));
    let again = sim.sent(conn);
    let ids: Vec<String> = again
        .iter()
        .map(|f| match &f.command {
            Some(Command::Send(s)) => s.client_id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let before: Vec<String> = first.iter().map(|s| s.client_id.clone()).collect();
    assert_eq!(ids, before);

    // Acks (the first was stored before: the server says duplicate) complete each once.
    for (i, f) in again.iter().enumerate() {
        let mut m = message("c", 10 + i as u64, "alice");
        m.client_id = ids[i].clone();
        sim.frames(
            conn,
            vec![reply(
                f.id,
                Reply::Send(v1::SendResult {
                    message: Some(m),
                    duplicate: i == 0,
                }),
            )],
        );
    }
    for op in &ops {
        assert!(matches!(sim.done(*op), Some(Ok(Reply::Send(_)))));
    }
    assert_eq!(sim.s.outbox_len(), 0);
}

#[test]
fn a_rate_limited_message_waits_and_holds_the_ones_after_it() {
    let mut sim = Sim::new(config());
    let conn = sim.connect();
    let a = sim.call(send("c", "a"));
    let frames = sim.sent(conn);
    let mut rl = error(frames[0].id, "rate_limited", true);
    if let Some(v1::server_frame::Body::Error(e)) = &mut rl.body {
        e.retry_after_ms = 300;
    }
    sim.frames(conn, vec![rl]);
    let b = sim.call(send("c", "b"));
    assert!(sim.sent(conn).is_empty(), "b waits behind a");
    sim.advance(Duration::from_millis(300));
    let frames = sim.sent(conn);
    let texts: Vec<String> = frames
        .iter()
        .map(|f| match &f.command {
            Some(Command::Send(s)) => s.text.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(texts, ["a", "b"]);
    for f in &frames {
        sim.frames(
            conn,
            vec![reply(f.id, Reply::Send(v1::SendResult::default()))],
        );
    }
    assert!(sim.done(a).is_some() && sim.done(b).is_some());

    // A permanent refusal completes the call with the error.
    let c = sim.call(send("c", "c"));
    let f = sim.sent(conn).remove(0);
    sim.frames(conn, vec![error(f.id, "permission_denied", false)]);
    assert!(matches!(sim.done(c), Some(Err(e)) if !e.temporary()));
}

#[test]
fn pacing_keeps_a_burst_under_the_server_rate() {
    let mut sim = Sim::new(config());
    let conn = sim.connect();
    for i in 0..200 {
        sim.call(send("c", &format!("m{i}")));
    }
    let first = sim.sent(conn).len();
    assert!(first <= 45, "burst of {first}");
    let mut total = first;
    for _ in 0..10 {
        sim.advance(Duration::from_secs(1));
        let n = sim.sent(conn).len();
        assert!(n <= 19, "{n} in a second");
        total += n;
    }
    assert_eq!(total, 200, "all sent within 10 s");
}

#[test]
fn recovery_resumes_drops_duplicates_and_pages_the_rest() {
    let mut sim = Sim::new(config());
    let mut result = connect_result(None);
    result.conversations = vec![v1::Conversation {
        id: "c".into(),
        last_seq: 5,
        ..Default::default()
    }];
    let (conn, _) = sim.connect_with(result);
    sim.events();
    sim.frames(
        conn,
        vec![
            push(Push::Message(message("c", 6, "bob"))),
            push(Push::Message(message("c", 6, "bob"))),
        ],
    );
    assert_eq!(delivered(&sim.events())["c"], [6]);
    sim.closed(conn, None);

    // The reconnect resumes from 6; the replay is cut at the limit.
    let Phase::Backoff { until } = sim.phase() else {
        panic!("expected backoff");
    };
    sim.advance(until - sim.now.at);
    let conn = sim.opened();
    sim.input(Input::TransportOpened { conn });
    let connect = sim.sent(conn).remove(0);
    let Some(Command::Connect(c)) = &connect.command else {
        panic!("{connect:?}");
    };
    assert_eq!(c.resume.get("c"), Some(&6));
    let mut result = connect_result(None);
    result.recovered = vec![v1::Recovery {
        conversation_id: "c".into(),
        messages: (5..=9).map(|s| message("c", s, "bob")).collect(),
        more: true,
        last_seq: 30,
    }];
    sim.frames(conn, vec![reply(connect.id, Reply::Connect(result))]);
    // A newer live message arrives while the rest is paged: it waits.
    sim.frames(conn, vec![push(Push::Message(message("c", 31, "bob")))]);
    let history = sim.sent(conn);
    let [v1::ClientFrame {
        id,
        command: Some(Command::History(h)),
    }] = &history[..]
    else {
        panic!("{history:?}");
    };
    assert_eq!(h.after, 9);
    sim.frames(
        conn,
        vec![reply(
            *id,
            Reply::History(v1::HistoryResult {
                messages: (10..=30).map(|s| message("c", s, "bob")).collect(),
                more: false,
            }),
        )],
    );
    let seqs = &delivered(&sim.events())["c"];
    assert_eq!(*seqs, (7..=31).collect::<Vec<u64>>(), "once each, in order");
    assert_eq!(sim.s.positions()["c"], 31);
}

#[test]
fn a_gap_is_filled_from_history_or_declared() {
    let mut sim = Sim::new(config());
    let conn = sim.connect();
    sim.frames(conn, vec![push(Push::Message(message("c", 1, "bob")))]);
    sim.frames(conn, vec![push(Push::Message(message("c", 4, "bob")))]);
    let history = sim.sent(conn);
    let [v1::ClientFrame {
        id,
        command: Some(Command::History(h)),
    }] = &history[..]
    else {
        panic!("{history:?}");
    };
    assert_eq!(h.after, 1);
    sim.frames(
        conn,
        vec![reply(
            *id,
            Reply::History(v1::HistoryResult {
                messages: vec![
                    message("c", 2, "bob"),
                    message("c", 3, "bob"),
                    message("c", 4, "bob"),
                ],
                more: false,
            }),
        )],
    );
    assert_eq!(delivered(&sim.events())["c"], [1, 2, 3, 4]);

    // History that cannot fill it: an explicit gap event, then delivery goes on.
    sim.frames(conn, vec![push(Push::Message(message("c", 8, "bob")))]);
    let id = sim.sent(conn)[0].id;
    sim.frames(
        conn,
        vec![reply(
            id,
            Reply::History(v1::HistoryResult {
                messages: vec![message("c", 8, "bob")],
                more: false,
            }),
        )],
    );
    let events = sim.events();
    let gaps: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Gap {
                from_seq, to_seq, ..
            } => Some((*from_seq, *to_seq)),
            _ => None,
        })
        .collect();
    assert_eq!(gaps, [(5, 7)]);
    assert_eq!(delivered(&events)["c"], [8]);
}

#[test]
fn typing_is_throttled_live_only_and_expires() {
    let mut sim = Sim::new(config());
    // Offline: not queued.
    let t = sim.call(Call::Typing {
        conversation_id: "c".into(),
        stop: false,
    });
    assert!(matches!(sim.done(t), Some(Ok(_))));
    let conn = sim.connect();
    assert!(sim.sent(conn).is_empty());
    for _ in 0..10 {
        sim.call(Call::Typing {
            conversation_id: "c".into(),
            stop: false,
        });
        sim.advance(Duration::from_millis(500));
    }
    let typings = sim
        .sent(conn)
        .iter()
        .filter(|f| matches!(f.command, Some(Command::Typing(_))))
        .count();
    assert_eq!(typings, 2, "at most one per 3 s over 5 s");

    // Received typing expires after 6 s without renewal.
    sim.frames(
        conn,
        vec![push(Push::Typing(v1::TypingPush {
            conversation_id: "c".into(),
            user_id: "bob".into(),
            stop: false,
        }))],
    );
    sim.events();
    assert_eq!(sim.s.cache().lock().unwrap().typing("c"), ["bob"]);
    sim.advance(Duration::from_secs(6));
    let events = sim.events();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Typing { typing: false, user_id, .. } if user_id == "bob")));
    assert!(sim.s.cache().lock().unwrap().typing("c").is_empty());
}

#[test]
fn the_cache_follows_messages_and_reads() {
    let mut sim = Sim::new(config());
    let mut result = connect_result(None);
    result.conversations = vec![v1::Conversation {
        id: "c".into(),
        last_seq: 2,
        last_read_seq: 2,
        ..Default::default()
    }];
    let (conn, _) = sim.connect_with(result);
    sim.frames(
        conn,
        vec![
            push(Push::Message(message("c", 3, "bob"))),
            push(Push::Message(message("c", 4, "bob"))),
        ],
    );
    let cache = sim.s.cache();
    let c = cache.lock().unwrap().conversation("c").cloned().unwrap();
    assert_eq!((c.last_seq, c.unread_count), (4, 2));
    assert_eq!(c.last_message.unwrap().seq, 4);
    sim.frames(
        conn,
        vec![push(Push::Read(v1::ReadPush {
            conversation_id: "c".into(),
            user_id: "alice".into(),
            last_read_seq: 4,
            unread_count: 0,
        }))],
    );
    assert_eq!(
        cache
            .lock()
            .unwrap()
            .conversation("c")
            .unwrap()
            .unread_count,
        0
    );
    // My own message leaves nothing unread.
    sim.frames(conn, vec![push(Push::Message(message("c", 5, "alice")))]);
    assert_eq!(cache.lock().unwrap().total_unread(), 0);
}

fn sent_texts(frames: &[v1::ClientFrame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| match &f.command {
            Some(Command::Send(s)) => Some(s.text.clone()),
            _ => None,
        })
        .collect()
}

fn with_files(conv: &str, text: &str, ids: &[&str]) -> Call {
    Call::Send(v1::SendRequest {
        conversation_id: conv.into(),
        text: text.into(),
        attachment_ids: ids.iter().map(|&id| id.into()).collect(),
        ..Default::default()
    })
}

#[test]
fn a_message_waits_for_its_uploads_and_holds_only_its_own_conversation() {
    let mut sim = Sim::new(config());
    let conn = sim.connect();
    sim.input(Input::UploadStarted("upl_a".into()));
    sim.input(Input::UploadStarted("upl_b".into()));
    let photo = sim.call(with_files("c", "photo", &["upl_a", "upl_b"]));
    sim.call(send("c", "after the photo"));
    sim.call(send("d", "elsewhere"));
    // An upload this client is not sending (done before, or another
    // device's) does not hold a message.
    sim.call(with_files("e", "sent before", &["upl_old"]));
    assert_eq!(sent_texts(&sim.sent(conn)), ["elsewhere", "sent before"]);

    sim.input(Input::UploadEnded {
        id: "upl_a".into(),
        result: Ok(()),
    });
    assert!(sim.sent(conn).is_empty(), "upl_b is still on its way");
    sim.input(Input::UploadEnded {
        id: "upl_b".into(),
        result: Ok(()),
    });
    let frames = sim.sent(conn);
    assert_eq!(sent_texts(&frames), ["photo", "after the photo"]);
    let Some(Command::Send(request)) = &frames[0].command else {
        panic!("{frames:?}");
    };
    assert_eq!(request.attachment_ids, ["upl_a", "upl_b"]);
    assert!(
        sim.done(photo).is_none(),
        "it completes with the server's ack"
    );
}

#[test]
fn a_message_whose_upload_failed_or_was_cancelled_fails_and_is_not_sent() {
    let mut sim = Sim::new(config());
    let conn = sim.connect();
    sim.input(Input::UploadStarted("upl_a".into()));
    let photo = sim.call(with_files("c", "photo", &["upl_a"]));
    sim.call(send("c", "next"));
    assert!(sim.sent(conn).is_empty());
    sim.input(Input::UploadEnded {
        id: "upl_a".into(),
        result: Err(Error::Cancelled),
    });
    assert_eq!(sim.done(photo), Some(Err(Error::Cancelled)));
    assert_eq!(sent_texts(&sim.sent(conn)), ["next"]);
    assert_eq!(sim.s.outbox_len(), 1, "only `next` waits for its ack");

    // A message naming it made after it ended fails the same way, unsent.
    let late = sim.call(with_files("c", "too late", &["upl_a"]));
    assert_eq!(sim.done(late), Some(Err(Error::Cancelled)));
    assert!(sim.sent(conn).is_empty());
}
