//! The offline store as the session sees it: every change to what survives
//! leaves as a `Persist` batch ahead of the events and call outcomes of the
//! same step; a restored snapshot is the cache, the resume positions and the
//! outbox of the next run, whose results come back as `Sent` events.

use mkondo_proto::v1::{self, client_frame::Command, reply::Result as Reply};

use super::delivery::send;
use super::*;
use crate::session::StoreSettings;
use crate::store::{Change, Pending, Snapshot};

fn with_store() -> SessionConfig {
    SessionConfig {
        store: Some(StoreSettings {
            user_id: "alice".into(),
            messages_per_conversation: 2,
        }),
        ..config()
    }
}

fn persisted(outputs: &[Output]) -> Vec<Change> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Persist(changes) => Some(changes.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn push_message(m: v1::Message) -> v1::ServerFrame {
    v1::ServerFrame {
        id: 0,
        body: Some(Body::Push(v1::Push {
            push: Some(Push::Message(m)),
        })),
    }
}

#[test]
fn changes_are_persisted_before_the_events_and_outcomes_of_their_step() {
    let mut sim = Sim::new(with_store());
    let op = sim.call(send("c", "offline"));
    let queued = persisted(&sim.take());
    let client_id = match &queued[..] {
        [Change::OutboxAdd(p)] => p.key.clone(),
        other => panic!("the queued message is stored at once: {other:?}"),
    };
    let mut result = connect_result(None);
    result.conversations = vec![v1::Conversation {
        id: "c".into(),
        last_seq: 4,
        ..Default::default()
    }];
    let (conn, _) = sim.connect_with(result);
    let connected = sim.take();
    let sent: Vec<v1::ClientFrame> = connected
        .iter()
        .filter_map(|o| match o {
            Output::Send { frames, .. } => Some(frames.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let changes = persisted(&connected);
    assert!(changes.contains(&Change::Position {
        conversation_id: "c".into(),
        seq: 4
    }));
    assert!(changes
        .iter()
        .any(|c| matches!(c, Change::User(u) if u.id == "alice")));
    let persist_at = connected
        .iter()
        .position(|o| matches!(o, Output::Persist(_)))
        .unwrap();
    let event_at = connected
        .iter()
        .position(|o| {
            matches!(o, Output::Event(Event::StateChanged { new, .. }) if *new == ConnectionState::Connected)
        })
        .unwrap();
    assert!(
        persist_at < event_at,
        "stored before the app hears: {connected:?}"
    );

    // The ack: removed from the store before the call completes.
    let frame = sent
        .iter()
        .find(|f| matches!(f.command, Some(Command::Send(_))))
        .unwrap();
    let mut stored = message("c", 5, "alice");
    stored.client_id = client_id.clone();
    sim.frames(
        conn,
        vec![reply(
            frame.id,
            Reply::Send(v1::SendResult {
                message: Some(stored),
                duplicate: false,
            }),
        )],
    );
    let acked = sim.take();
    let remove_at = acked
        .iter()
        .position(|o| matches!(o, Output::Persist(c) if c.contains(&Change::OutboxRemove(client_id.clone()))))
        .expect("the ack removes it from the store");
    let done_at = acked
        .iter()
        .position(|o| matches!(o, Output::Done { op: o2, .. } if *o2 == op))
        .unwrap();
    assert!(remove_at < done_at);

    // Pushed messages (the own one first): kept (the newest two), their
    // position, their conversation.
    for seq in 5..=8 {
        let sender = if seq == 5 { "alice" } else { "bob" };
        sim.frames(conn, vec![push_message(message("c", seq, sender))]);
    }
    let changes = persisted(&sim.take());
    assert!(changes.contains(&Change::Position {
        conversation_id: "c".into(),
        seq: 8
    }));
    let kept: Vec<u64> = sim
        .s
        .cache()
        .lock()
        .unwrap()
        .messages("c")
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(kept, [7, 8]);
    assert!(changes
        .iter()
        .any(|c| matches!(c, Change::Conversation(c) if c.last_seq == 8 && c.unread_count == 3)));
}

#[test]
fn a_restored_outbox_is_sent_with_its_ids_and_answered_by_events() {
    let mut sim = Sim::new(with_store());
    let waiting = v1::SendRequest {
        conversation_id: "c".into(),
        text: "written before the restart".into(),
        client_id: "c-restored-1".into(),
        ..Default::default()
    };
    sim.input(Input::Restore(Snapshot {
        user: Some(v1::User {
            id: "alice".into(),
            ..Default::default()
        }),
        conversations: vec![v1::Conversation {
            id: "c".into(),
            last_seq: 9,
            ..Default::default()
        }],
        messages: vec![message("c", 9, "bob")],
        outbox: vec![
            Pending {
                key: waiting.client_id.clone(),
                command: Command::Send(waiting.clone()),
            },
            Pending {
                key: "q-edit".into(),
                command: Command::Edit(v1::EditRequest {
                    conversation_id: "c".into(),
                    seq: 9,
                    text: "edited offline".into(),
                    data: None,
                }),
            },
        ],
        positions: vec![("c".into(), 9)],
    }));
    let restored = sim.take();
    assert!(
        persisted(&restored).is_empty(),
        "a restore writes nothing back"
    );
    assert!(restored
        .iter()
        .any(|o| matches!(o, Output::Event(Event::ConversationUpdated(c)) if c.id == "c")));
    assert_eq!(sim.s.cache().lock().unwrap().messages("c").len(), 1);
    assert_eq!(sim.s.outbox_len(), 2);

    let (conn, _) = sim.connect_with(connect_result(None));
    let sent: Vec<v1::ClientFrame> = sim
        .take()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { frames, .. } => Some(frames),
            _ => None,
        })
        .flatten()
        .collect();
    let connect = sim.s.positions();
    assert_eq!(
        connect.get("c"),
        Some(&9),
        "resumes from the stored position"
    );
    let frame = sent
        .iter()
        .find(|f| matches!(&f.command, Some(Command::Send(s)) if s.client_id == "c-restored-1"))
        .expect("the stored message goes with its own client_id");
    let mut stored = message("c", 10, "alice");
    stored.client_id = waiting.client_id.clone();
    sim.frames(
        conn,
        vec![reply(
            frame.id,
            Reply::Send(v1::SendResult {
                message: Some(stored.clone()),
                duplicate: true,
            }),
        )],
    );
    let events = sim.events();
    assert!(
        events.contains(&Event::Sent {
            client_id: "c-restored-1".into(),
            result: Ok(stored)
        }),
        "{events:?}"
    );
    // The edit went after it, in order; its outcome is told the same way.
    let edit_at = sent
        .iter()
        .position(|f| matches!(&f.command, Some(Command::Edit(e)) if e.text == "edited offline"))
        .expect("the stored edit is sent");
    let send_at = sent.iter().position(|f| f.id == frame.id).unwrap();
    assert!(send_at < edit_at, "in the order they were made");
    let mut edited = message("c", 9, "bob");
    edited.text = "edited offline".into();
    sim.frames(
        conn,
        vec![reply(
            sent[edit_at].id,
            Reply::Message(v1::MessageResult {
                message: Some(edited.clone()),
            }),
        )],
    );
    assert!(sim.events().contains(&Event::Sent {
        client_id: "q-edit".into(),
        result: Ok(edited)
    }));
    assert_eq!(sim.s.outbox_len(), 0);
}

#[test]
fn another_users_connection_leaves_the_store_alone() {
    let mut sim = Sim::new(with_store());
    sim.input(Input::Restore(Snapshot {
        conversations: vec![v1::Conversation {
            id: "secret".into(),
            ..Default::default()
        }],
        outbox: vec![Pending {
            key: "c-alices".into(),
            command: Command::Send(v1::SendRequest {
                conversation_id: "secret".into(),
                text: "alice's words".into(),
                client_id: "c-alices".into(),
                ..Default::default()
            }),
        }],
        ..Default::default()
    }));
    sim.take();
    let mut result = connect_result(None);
    result.user = Some(v1::User {
        id: "mallory".into(),
        ..Default::default()
    });
    sim.connect_with(result);
    let outputs = sim.take();
    assert!(
        persisted(&outputs).is_empty(),
        "nothing written: {outputs:?}"
    );
    assert!(outputs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Error(Error::Config(_))))));
    assert!(sim
        .s
        .cache()
        .lock()
        .unwrap()
        .conversation("secret")
        .is_none());
    assert!(
        !outputs
            .iter()
            .any(|o| matches!(o, Output::Send { frames, .. }
            if frames.iter().any(|f| matches!(f.command, Some(Command::Send(_)))))),
        "alice's message is never sent as mallory: {outputs:?}"
    );
    assert_eq!(sim.s.outbox_len(), 0);
}

#[test]
fn forgetting_wipes_the_store() {
    let mut sim = Sim::new(with_store());
    let (conn, _) = sim.connect_with(connect_result(None));
    sim.take();
    sim.input(Input::Forget);
    // A message arriving before the client's own shutdown writes nothing back.
    sim.frames(conn, vec![push_message(message("c", 7, "bob"))]);
    sim.input(Input::Shutdown);
    assert_eq!(persisted(&sim.take()), [Change::Wipe]);
}

#[test]
fn edits_reactions_and_reads_made_offline_wait_and_are_stored() {
    let mut sim = Sim::new(with_store());
    let edit = sim.call(Call::Queue(Command::Edit(v1::EditRequest {
        conversation_id: "c".into(),
        seq: 3,
        text: "fixed".into(),
        data: None,
    })));
    let read = sim.call(Call::Queue(Command::Read(v1::ReadRequest {
        conversation_id: "c".into(),
        seq: 3,
    })));
    let changes = persisted(&sim.take());
    assert_eq!(changes.len(), 2, "both stored at once: {changes:?}");
    sim.advance(Duration::from_secs(60));
    assert!(
        sim.done(edit).is_none(),
        "offline changes wait, they do not time out"
    );
    let (conn, _) = sim.connect_with(connect_result(None));
    let sent: Vec<v1::ClientFrame> = sim
        .take()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { conn: c, frames } if c == conn => Some(frames),
            _ => None,
        })
        .flatten()
        .collect();
    let kinds: Vec<bool> = sent
        .iter()
        .map(|f| matches!(f.command, Some(Command::Edit(_))))
        .collect();
    assert_eq!(kinds, [true, false], "the edit, then the read: {sent:?}");
    sim.frames(
        conn,
        vec![reply(
            sent[1].id,
            Reply::Read(v1::ReadResult {
                last_read_seq: 3,
                unread_count: 0,
            }),
        )],
    );
    assert!(matches!(sim.done(read), Some(Ok(Reply::Read(_)))));
    assert!(sim.done(edit).is_none(), "the edit waits for its own reply");
}

#[test]
fn entries_a_closed_tab_left_are_sent_once_and_answered_by_events() {
    let mut sim = Sim::new(with_store());
    let (conn, _) = sim.connect_with(connect_result(None));
    sim.take();
    let left = v1::SendRequest {
        conversation_id: "c".into(),
        text: "written in a tab since closed".into(),
        client_id: "c-tab-1".into(),
        ..Default::default()
    };
    let pending = Pending {
        key: left.client_id.clone(),
        command: Command::Send(left.clone()),
    };
    sim.input(Input::Adopt(vec![pending.clone()]));
    // Handed over twice (a second wake-up): still one entry, sent once.
    sim.input(Input::Adopt(vec![pending]));
    assert_eq!(sim.s.outbox_len(), 1);
    let outputs = sim.take();
    assert!(
        persisted(&outputs).is_empty(),
        "the store holds it already: {outputs:?}"
    );
    let sent: Vec<v1::ClientFrame> = outputs
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { frames, .. } => Some(frames),
            _ => None,
        })
        .flatten()
        .filter(|f| matches!(&f.command, Some(Command::Send(s)) if s.client_id == "c-tab-1"))
        .collect();
    assert_eq!(sent.len(), 1, "sent once, with its own client_id");
    let mut stored = message("c", 3, "alice");
    stored.client_id = left.client_id.clone();
    sim.frames(
        conn,
        vec![reply(
            sent[0].id,
            Reply::Send(v1::SendResult {
                message: Some(stored.clone()),
                duplicate: false,
            }),
        )],
    );
    let outputs = sim.take();
    assert!(persisted(&outputs).contains(&Change::OutboxRemove("c-tab-1".into())));
    assert!(outputs.contains(&Output::Event(Event::Sent {
        client_id: "c-tab-1".into(),
        result: Ok(stored)
    })));
    assert_eq!(sim.s.outbox_len(), 0);
}

#[test]
fn nothing_is_taken_over_once_the_store_is_not_used() {
    let mut sim = Sim::new(with_store());
    let mut result = connect_result(None);
    result.user = Some(v1::User {
        id: "mallory".into(),
        ..Default::default()
    });
    sim.connect_with(result);
    sim.take();
    sim.input(Input::Adopt(vec![Pending {
        key: "c-alices".into(),
        command: Command::Send(v1::SendRequest {
            conversation_id: "c".into(),
            text: "alice's words".into(),
            client_id: "c-alices".into(),
            ..Default::default()
        }),
    }]));
    assert_eq!(
        sim.s.outbox_len(),
        0,
        "alice's entry is never sent as mallory"
    );
}

#[test]
fn a_store_that_could_not_be_read_records_nothing() {
    let mut sim = Sim::new(with_store());
    sim.s.without_store();
    assert!(!sim.s.uses_store());
    let (conn, _) = sim.connect_with(connect_result(None));
    sim.frames(conn, vec![push_message(message("c", 7, "bob"))]);
    sim.call(send("c", "still sent"));
    let outputs = sim.take();
    assert!(persisted(&outputs).is_empty(), "{outputs:?}");
    assert!(outputs
        .iter()
        .any(|o| matches!(o, Output::Send { frames, .. }
            if frames.iter().any(|f| matches!(f.command, Some(Command::Send(_)))))));
}
