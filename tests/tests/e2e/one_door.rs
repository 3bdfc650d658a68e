//! One door into the node: the input rules every interface shares (page bounds,
//! seq ranges) are the node's, so a real-time session, REST and the Admin API
//! refuse the same input with the same code. Before the node held them, the
//! session clamped a page size of 500 to 100 while REST refused it, and wrapped a
//! seq past `i64::MAX` into a negative one.

use mkondo_proto::v1::{self, client_frame::Command, reply::Result as R};
use mkondo_tests::{per_transport, ServerOptions, TestServer, Transport};

per_transport!(
    page_sizes_over_the_maximum_are_refused_in_real_time,
    seqs_past_the_signed_range_are_refused_not_wrapped,
    real_time_creation_goes_through_the_id_rules,
);

/// `history` and `conversations` with a limit over 100 are refused as on REST
/// (they were clamped before); 100 and the default still answer.
async fn page_sizes_over_the_maximum_are_refused_in_real_time(transport: Transport) {
    let server = TestServer::start(ServerOptions::new()).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_group("pages", &["alice", "bob"]).await;
    for i in 0..3 {
        api.send(&conv, "bob", &format!("m{i}"), &format!("c{i}"))
            .await;
    }
    let (alice, _) = server.client(transport, "alice").await;

    let history = |limit| {
        Command::History(v1::HistoryRequest {
            conversation_id: conv.clone(),
            limit,
            ..Default::default()
        })
    };
    let err = alice.request(history(101)).await.unwrap_err();
    assert_eq!(err.code, "invalid_argument", "{err:?}");
    match alice.request(history(100)).await.unwrap() {
        R::History(h) => assert_eq!(h.messages.len(), 3),
        other => panic!("unexpected reply {other:?}"),
    }

    let conversations = |limit| {
        Command::Conversations(v1::ConversationsRequest {
            limit,
            ..Default::default()
        })
    };
    let err = alice.request(conversations(500)).await.unwrap_err();
    assert_eq!(err.code, "invalid_argument", "{err:?}");
    match alice.request(conversations(0)).await.unwrap() {
        R::Conversations(c) => assert_eq!(c.conversations.len(), 1),
        other => panic!("unexpected reply {other:?}"),
    }

    // REST refuses the same page size with the same code.
    let resp = api
        .get(&format!("/v1/conversations/{conv}/messages?limit=101"))
        .await;
    resp.expect_error(422, "invalid_argument");
}

/// A seq of 2^63 or more (a valid protobuf `uint64`) is `invalid_argument` on
/// every command that takes one; the session goes on, and nothing was changed.
async fn seqs_past_the_signed_range_are_refused_not_wrapped(transport: Transport) {
    let server = TestServer::start(ServerOptions::new()).await;
    let api = server.api();
    api.create_users(&["alice", "bob"]).await;
    let conv = api.create_group("seqs", &["alice", "bob"]).await;
    api.send(&conv, "alice", "hello", "h-1").await;
    let (alice, _) = server.client(transport, "alice").await;
    let huge = u64::MAX;
    let commands = [
        Command::Read(v1::ReadRequest {
            conversation_id: conv.clone(),
            seq: huge,
        }),
        Command::Edit(v1::EditRequest {
            conversation_id: conv.clone(),
            seq: huge,
            text: "edited".into(),
            ..Default::default()
        }),
        Command::Delete(v1::DeleteRequest {
            conversation_id: conv.clone(),
            seq: huge,
        }),
        Command::History(v1::HistoryRequest {
            conversation_id: conv.clone(),
            before: huge,
            ..Default::default()
        }),
        Command::Send(v1::SendRequest {
            conversation_id: conv.clone(),
            text: "a reply".into(),
            client_id: "r-1".into(),
            reply_to: 1 << 63,
            ..Default::default()
        }),
    ];
    for command in commands {
        let name = format!("{command:?}");
        let err = alice.request(command).await.unwrap_err();
        assert_eq!(err.code, "invalid_argument", "{name}: {err:?}");
    }
    alice.ping().await.unwrap();
    let history = api.history_all(&conv).await;
    assert_eq!(history.len(), 1, "nothing was sent: {history:?}");
    assert_eq!(history[0]["text"], "hello", "nothing was edited");

    // A resume position past the range refuses the connect the same way.
    let client = server.open(transport).await;
    let token = server.app.token("bob");
    let err = client
        .connect_with(v1::ConnectRequest {
            token,
            resume: [(conv.clone(), huge)].into_iter().collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, "invalid_argument", "{err:?}");
    // Refused before anything was touched: the same connection connects now,
    // and a first page larger than a page holds gets the most a page holds.
    let reply = client
        .connect_with(v1::ConnectRequest {
            token: server.app.token("bob"),
            resume: [(conv.clone(), 0)].into_iter().collect(),
            conversations_limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(reply.conversations.len(), 1);
    assert_eq!(reply.recovered.len(), 1);
    assert_eq!(reply.recovered[0].messages.len(), 1);
}

/// Creating a group or starting a direct conversation in real time passes the
/// same id rules as REST's `POST /v1/conversations`.
async fn real_time_creation_goes_through_the_id_rules(transport: Transport) {
    let server = TestServer::start(ServerOptions::new()).await;
    server.api().create_users(&["alice", "bob"]).await;
    let (alice, _) = server.client(transport, "alice").await;
    let err = alice
        .request(Command::CreateGroup(v1::CreateGroupRequest {
            name: "bad".into(),
            members: vec!["bob".into(), "no spaces allowed".into()],
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code, "invalid_argument", "{err:?}");
    let err = alice
        .request(Command::StartDirect(v1::StartDirectRequest {
            user_id: "not valid!".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code, "invalid_argument", "{err:?}");
    match alice
        .request(Command::StartDirect(v1::StartDirectRequest {
            user_id: "bob".into(),
        }))
        .await
        .unwrap()
    {
        R::Conversation(c) => assert_eq!(c.conversation.unwrap().kind, "direct"),
        other => panic!("unexpected reply {other:?}"),
    }
}
