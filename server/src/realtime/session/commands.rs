//! Command handlers: each turns one client frame into one reply, calling the
//! node's operations (the same ones REST uses).

use std::sync::Arc;

use mkondo_proto::convert::{millis_to_timestamp, struct_to_json};
use mkondo_proto::v1::{self, client_frame::Command, reply::Result as R, server_frame::Body};
use mkondo_proto::{DisconnectCode, ErrorCode, Reason};
use tokio::time::Instant;

use super::{error_frame, Authed, Session};
use crate::engine::presence::AppState;
use crate::error::{Error, Result};
use crate::node::Actor;
use crate::store::{self, messages::HistoryQuery, NewGroup, NewMessage};
use crate::views;

const MAX_CONVERSATIONS_LIMIT: u32 = 100;

impl Session {
    /// Handles one frame; returns the reply to write (none for `pong`).
    pub(super) async fn handle(&mut self, frame: v1::ClientFrame) -> Option<v1::ServerFrame> {
        let id = frame.id;
        if matches!(frame.command, Some(Command::Pong(_))) {
            return None;
        }
        // Every frame counts against the rate, even one the server cannot use.
        if let Err(wait) = self.bucket.take() {
            return Some(error_frame(id, &Error::rate_limited(wait)));
        }
        let Some(command) = frame.command else {
            return Some(error_frame(
                id,
                &Error::invalid("frame has no known command"),
            ));
        };
        let result = match (&self.authed, command) {
            (None, Command::Connect(req)) => self.connect(req).await,
            (Some(_), Command::Connect(_)) => Err(Error::invalid("already connected")),
            (None, _) => {
                self.close_after_reply = Some(DisconnectCode::BadProtocol);
                Err(Error::unauthenticated("the first command must be connect"))
            }
            (Some(_), command) => self.command(command).await,
        };
        Some(match result {
            Ok(result) => v1::ServerFrame {
                id,
                body: Some(Body::Reply(v1::Reply {
                    result: Some(result),
                })),
            },
            Err(err) => error_frame(id, &err),
        })
    }

    fn me(&self) -> (Arc<str>, Arc<str>) {
        let a = self
            .authed
            .as_ref()
            .expect("command() runs only when authenticated");
        (a.app.clone(), a.user.clone())
    }

    /// A refused token (or connection) ends the connection, with the code that says
    /// why: the table in `mkondo_proto`, which the SDKs read the reply with too.
    fn refuse(&mut self, err: Error) -> Error {
        self.close_after_reply = Some(DisconnectCode::for_refusal(err.code, err.reason));
        err
    }

    async fn connect(&mut self, req: v1::ConnectRequest) -> Result<R> {
        let node = self.node.clone();
        let revocations = node.hub.revocations();
        let (claims, stamp) = match node.authenticate_stamped(&req.token).await {
            Ok(c) => c,
            Err(err) => return Err(self.refuse(err)),
        };
        let Some(app_state) = AppState::parse(&req.app_state) else {
            return Err(Error::invalid("app_state must be foreground or background"));
        };
        let user = node.user_for_claims(&claims).await?;
        let app: Arc<str> = Arc::from(claims.app_id.as_str());
        let user_id: Arc<str> = Arc::from(claims.user_id.as_str());
        if node.hub.user_session_count(&app, &user_id)
            >= node.config.limits.max_connections_per_user
        {
            return Err(self.refuse(
                Error::new(
                    ErrorCode::PermissionDenied,
                    "too many connections for this user",
                )
                .with_reason(Reason::ConnectionLimit),
            ));
        }
        // Subscribe to live traffic before reading the store (see the module doc).
        node.hub.add(self.handle_for_hub(&app, &user_id, &stamp));
        if let Err(err) = node.recheck_token(&req.token, revocations).await {
            node.hub.remove(self.id, []);
            return Err(self.refuse(err));
        }
        let deadline_ms = claims.exp * 1000 - store::now_ms();
        self.authed = Some(Authed {
            app: app.clone(),
            user: user_id.clone(),
            token_deadline: deadline(deadline_ms, node.config.limits.token_grace),
        });
        self.app_state = app_state;
        node.set_presence(&app, &user_id, self.id, app_state)
            .await?;

        let limit = match req.conversations_limit {
            0 => 10,
            n => n.min(MAX_CONVERSATIONS_LIMIT),
        };
        let page = node
            .store
            .user_conversations(&app, &user_id, None, limit)
            .await?;
        let mut conversations = Vec::with_capacity(page.items.len());
        for c in &page.items {
            conversations.push(node.conversation_view(&app, &user_id, c).await?);
            // The reply shows each listed conversation up to its `last_seq`: live
            // pushes start after it, and one that overtakes another (two nodes
            // publishing) is gap-filled rather than taken as the starting point.
            self.delivered
                .insert(c.id.clone(), c.last_seq.max(0) as u64);
        }

        let replay_limit = node.config.limits.replay_limit;
        let mut recovered = Vec::new();
        for (conv, position) in req.resume {
            let Some(c) = node
                .store
                .get_conversation(&app, &conv, Some(&user_id))
                .await?
            else {
                continue;
            };
            let Some(viewer) = &c.viewer else { continue };
            let position = position.min(i64::MAX as u64) as i64;
            let (messages, more) = node
                .store
                .history(
                    &app,
                    &conv,
                    None,
                    Some(position),
                    replay_limit,
                    viewer.cleared_seq,
                )
                .await?;
            let replayed = messages.last().map_or(position, |m| m.seq);
            // Past the replay limit the client pages history up to `last_seq`
            // itself: live pushes start after it, without a gap fill.
            let handed_over = if more {
                replayed.max(c.last_seq)
            } else {
                replayed
            };
            let last_delivered = handed_over.max(0) as u64;
            self.delivered.insert(conv.clone(), last_delivered);
            recovered.push(v1::Recovery {
                conversation_id: conv,
                messages: messages.iter().map(views::message).collect(),
                more,
                last_seq: c.last_seq as u64,
            });
        }
        recovered.sort_by(|a, b| a.conversation_id.cmp(&b.conversation_id));
        let l = &node.config.limits;
        Ok(R::Connect(v1::ConnectResult {
            user: Some(views::user(&user)),
            conversations,
            notifications: node.connect_notifications(&app, &user_id).await?,
            token_expires_at: Some(millis_to_timestamp(claims.exp * 1000)),
            limits: Some(v1::Limits {
                max_frame_bytes: l.max_frame_bytes as u32,
                rate_per_second: l.rate_per_second,
                rate_burst: l.rate_burst,
                ping_interval_ms: l.ping_interval.as_millis() as u32,
                pong_timeout_ms: l.pong_timeout.as_millis() as u32,
                replay_limit: l.replay_limit,
                max_text_bytes: store::messages::MAX_TEXT_BYTES as u32,
            }),
            recovered,
            session_id: self.id.to_string(),
        }))
    }

    async fn command(&mut self, command: Command) -> Result<R> {
        let node = self.node.clone();
        let (app, me) = self.me();
        let ok = || R::Ok(v1::Ok {});
        match command {
            Command::Connect(_) | Command::Pong(_) => Err(Error::invalid("unexpected command")),
            Command::Ping(_) => Ok(R::Pong(v1::PongResult {})),
            Command::Refresh(req) => {
                let revocations = node.hub.revocations();
                let (claims, stamp) = node.authenticate_stamped(&req.token).await?;
                if *claims.app_id != *app || *claims.user_id != *me {
                    return Err(Error::new(
                        ErrorCode::InvalidToken,
                        "the token is for another user",
                    )
                    .with_reason(Reason::WrongUser));
                }
                node.hub.set_token(self.id, stamp);
                if let Err(err) = node.recheck_token(&req.token, revocations).await {
                    return Err(self.refuse(err));
                }
                let deadline_ms = claims.exp * 1000 - store::now_ms();
                if let Some(a) = self.authed.as_mut() {
                    a.token_deadline = deadline(deadline_ms, node.config.limits.token_grace);
                }
                Ok(R::Refresh(v1::RefreshResult {
                    token_expires_at: Some(millis_to_timestamp(claims.exp * 1000)),
                }))
            }
            Command::Subscribe(req) => {
                let c = node
                    .visible_conversation(&app, Actor::User(&me), &req.conversation_id)
                    .await?;
                node.hub.subscribe(&app, &c.id, self.id);
                self.subscriptions.insert(c.id.clone());
                // As for the connect reply's list: live pushes continue from here.
                self.delivered
                    .entry(c.id.clone())
                    .or_insert(c.last_seq.max(0) as u64);
                let mut members = node.store.members(&app, &c.id, None, 100).await?.items;
                members.retain(|m| *m.user_id != *me);
                let ids: Vec<String> = members.into_iter().map(|m| m.user_id).collect();
                let presence = node.presence_seen_by(&app, &me, &ids).await?;
                let typing = node.typing_seen_by(&app, &me, &c.id).await?;
                Ok(R::Subscribe(v1::SubscribeResult {
                    conversation: Some(node.conversation_view(&app, &me, &c).await?),
                    presence: presence.iter().map(views::presence).collect(),
                    typing,
                }))
            }
            Command::Unsubscribe(req) => {
                node.hub.unsubscribe(&app, &req.conversation_id, self.id);
                self.subscriptions.remove(&req.conversation_id);
                Ok(ok())
            }
            Command::Send(req) => {
                let msg = NewMessage {
                    sender_id: me.to_string(),
                    kind: "user".into(),
                    text: req.text,
                    data: req.data.as_ref().map(struct_to_json),
                    client_id: (!req.client_id.is_empty()).then_some(req.client_id),
                    reply_to: (req.reply_to > 0).then_some(req.reply_to as i64),
                };
                let sent = node
                    .send_message(&app, Actor::User(&me), &req.conversation_id, msg)
                    .await?;
                Ok(R::Send(v1::SendResult {
                    message: Some(views::message(&sent.message)),
                    duplicate: sent.duplicate,
                }))
            }
            Command::History(req) => {
                if req.before > 0 && req.after > 0 {
                    return Err(Error::invalid("give before or after, not both"));
                }
                let limit = if req.limit == 0 {
                    50
                } else {
                    req.limit.min(100)
                };
                let page = node
                    .history(
                        &app,
                        Actor::User(&me),
                        &req.conversation_id,
                        &HistoryQuery {
                            before: (req.before > 0).then_some(req.before as i64),
                            after: (req.after > 0).then_some(req.after as i64),
                            cursor: None,
                            limit,
                        },
                    )
                    .await?;
                Ok(R::History(v1::HistoryResult {
                    messages: page.items.iter().map(views::message).collect(),
                    more: page.next_cursor.is_some(),
                }))
            }
            Command::Read(req) => {
                let (read, unread) = node
                    .mark_read(&app, &me, &req.conversation_id, req.seq as i64)
                    .await?;
                Ok(R::Read(v1::ReadResult {
                    last_read_seq: read as u64,
                    unread_count: unread as u64,
                }))
            }
            Command::Typing(req) => {
                node.typing(&app, &me, &req.conversation_id, req.stop)
                    .await?;
                Ok(ok())
            }
            Command::Conversations(req) => {
                let limit = if req.limit == 0 {
                    20
                } else {
                    req.limit.min(MAX_CONVERSATIONS_LIMIT)
                };
                let cursor = (!req.cursor.is_empty()).then_some(req.cursor.as_str());
                let page = node
                    .store
                    .user_conversations(&app, &me, cursor, limit)
                    .await?;
                let mut conversations = Vec::with_capacity(page.items.len());
                for c in &page.items {
                    conversations.push(node.conversation_view(&app, &me, c).await?);
                }
                Ok(R::Conversations(v1::ConversationsResult {
                    conversations,
                    next_cursor: page.next_cursor.unwrap_or_default(),
                }))
            }
            Command::CreateGroup(req) => {
                let group = NewGroup {
                    id: (!req.id.is_empty()).then_some(req.id),
                    name: req.name,
                    icon_url: req.icon_url,
                    data: req.data.as_ref().map(struct_to_json),
                    creator: None,
                    members: req.members,
                };
                let c = node.create_group(&app, Actor::User(&me), group).await?;
                self.conversation_result(&app, &me, &c.id).await
            }
            Command::StartDirect(req) => {
                let c = node.start_direct(&app, &me, &req.user_id, false).await?;
                self.conversation_result(&app, &me, &c.id).await
            }
            Command::AddMembers(req) => {
                node.add_members(&app, Actor::User(&me), &req.conversation_id, &req.user_ids)
                    .await?;
                self.conversation_result(&app, &me, &req.conversation_id)
                    .await
            }
            Command::RemoveMember(req) => {
                node.remove_member(&app, Actor::User(&me), &req.conversation_id, &req.user_id)
                    .await?;
                Ok(ok())
            }
            Command::Leave(req) => {
                node.remove_member(&app, Actor::User(&me), &req.conversation_id, &me)
                    .await?;
                node.hub.unsubscribe(&app, &req.conversation_id, self.id);
                self.subscriptions.remove(&req.conversation_id);
                Ok(ok())
            }
            Command::Presence(req) => {
                let presence = node.visible_presence(&app, &me, &req.user_ids).await?;
                Ok(R::Presence(v1::PresenceResult {
                    presence: presence.iter().map(views::presence).collect(),
                }))
            }
            Command::AppState(req) => {
                let state = AppState::parse(&req.state)
                    .ok_or_else(|| Error::invalid("state must be foreground or background"))?;
                self.app_state = state;
                node.set_presence(&app, &me, self.id, state).await?;
                Ok(ok())
            }
            command @ (Command::Edit(_)
            | Command::Delete(_)
            | Command::React(_)
            | Command::Unreact(_)) => self.message_command(&app, &me, command).await,
            command @ (Command::Hide(_)
            | Command::Block(_)
            | Command::Unblock(_)
            | Command::Signal(_)
            | Command::AckNotification(_)) => self.social_command(&app, &me, command).await,
        }
    }

    async fn conversation_result(&self, app: &str, me: &str, conv: &str) -> Result<R> {
        let c = self
            .node
            .visible_conversation(app, Actor::User(me), conv)
            .await?;
        Ok(R::Conversation(v1::ConversationResult {
            conversation: Some(self.node.conversation_view(app, me, &c).await?),
        }))
    }
}

fn deadline(in_ms: i64, grace: std::time::Duration) -> Instant {
    let until_expiry = std::time::Duration::from_millis(in_ms.max(0) as u64);
    Instant::now() + until_expiry + grace
}
