//! Command handlers: each turns one client frame into one reply, calling the
//! node's operations (the same ones REST uses).

use std::collections::HashMap;
use std::sync::Arc;

use mkondo_proto::convert::{millis_to_timestamp, struct_to_json};
use mkondo_proto::v1::{self, client_frame::Command, reply::Result as R, server_frame::Body};
use mkondo_proto::{DisconnectCode, ErrorCode, Reason};
use tokio::time::Instant;

use super::{error_frame, Authed, Session};
use crate::auth::TokenClaims;
use crate::engine::presence::AppState;
use crate::error::{Error, Result};
use crate::node::requests::{
    wire_seq, HistoryRequest, NewConversation, PageRequest, SendInput, MAX_PAGE_LIMIT,
};
use crate::node::Actor;
use crate::store::{self, Kind};
use crate::views;

impl Session {
    /// Handles one frame; returns the reply to write (none for `pong`).
    pub(super) async fn handle(&mut self, frame: v1::ClientFrame) -> Option<v1::ServerFrame> {
        let id = frame.id;
        if matches!(frame.command, Some(Command::Pong(_))) {
            return None;
        }
        // Every frame counts against the rate, even one the server cannot use.
        if let Err(wait) = self.take_token() {
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
        // Input checked before anything is touched: a refused connect leaves nothing behind.
        let resume = Resume::from_wire(req.resume)?;
        let Some(app_state) = AppState::parse(&req.app_state) else {
            return Err(Error::invalid("app_state must be foreground or background"));
        };
        // The first page of the list; a larger ask gets the most a page holds.
        let limit =
            (req.conversations_limit != 0).then(|| req.conversations_limit.min(MAX_PAGE_LIMIT));
        let revocations = node.revocation_mark();
        // A bad token counts against the client's address (see `node::floods`).
        let authenticated = node.guard_auth(self.from, node.authenticate_stamped(&req.token));
        let (claims, stamp) = match authenticated.await {
            Ok(c) => c,
            Err(err) => return Err(self.refuse(err)),
        };
        // A browser page's origin must be one the token's app allows: checked
        // before the user is created or the session joins the hub.
        if let Err(err) = node
            .check_origin(&claims.app_id, self.origin.as_deref())
            .await
        {
            return Err(self.refuse(err));
        }
        let user = node.user_for_claims(&claims).await?;
        let app: Arc<str> = Arc::from(claims.app_id.as_str());
        let user_id: Arc<str> = Arc::from(claims.user_id.as_str());
        // Subscribe to live traffic before reading the store (see the module doc).
        if let Err(err) = node.attach_session(self.handle_for_hub(&app, &user_id, &stamp)) {
            return Err(self.refuse(err));
        }
        if let Err(err) = node.recheck_token(&req.token, revocations).await {
            node.detach_session(self.id, []);
            return Err(self.refuse(err));
        }
        let deadline_ms = claims.expires_at_ms().saturating_sub(store::now_ms());
        self.authed = Some(Authed {
            app: app.clone(),
            user: user_id.clone(),
            token_deadline: deadline(deadline_ms, node.limits().token_grace),
        });
        self.app_state = app_state;
        let reply = self.connected(&user, &claims, limit, resume).await;
        if reply.is_err() {
            // Out of the hub and offline again: the client may send `connect` anew.
            self.leave().await;
            self.delivered.clear();
        }
        reply
    }

    /// The rest of a `connect` once the session is in the hub: presence, the
    /// conversation list, the resume replay. An error here undoes the attach.
    async fn connected(
        &mut self,
        user: &store::User,
        claims: &TokenClaims,
        limit: Option<u32>,
        resume: Resume,
    ) -> Result<R> {
        let node = self.node.clone();
        let (app, user_id) = self.me();
        node.set_presence(&app, &user_id, self.id, self.app_state)
            .await?;
        let page = node.connect_conversations(&app, &user_id, limit).await?;
        let mut conversations = Vec::with_capacity(page.items.len());
        for c in &page.items {
            conversations.push(node.conversation_view(&app, &user_id, c).await?);
            // The reply shows each listed conversation up to its `last_seq`: live
            // pushes start after it, and one that overtakes another (two nodes
            // publishing) is gap-filled rather than taken as the starting point.
            self.delivered.insert(c.id.clone(), unsigned(c.last_seq));
        }

        let mut recovered = Vec::new();
        for (conv, position) in resume.replayed {
            let Some((_, replay)) = node.replay(&app, &user_id, &conv, position).await? else {
                continue;
            };
            let replayed = replay.messages.last().map_or(position, |m| m.seq);
            // Past the replay limit the client pages history up to `last_seq`
            // itself: live pushes start after it, without a gap fill.
            let handed_over = if replay.more {
                replayed.max(replay.last_seq)
            } else {
                replayed
            };
            self.delivered.insert(conv.clone(), unsigned(handed_over));
            recovered.push(v1::Recovery {
                conversation_id: conv,
                messages: replay.messages.iter().map(views::message).collect(),
                more: replay.more,
                last_seq: unsigned(replay.last_seq),
            });
        }
        // Past the cap: nothing read, `more` tells the client to page `history`
        // from its own position (`last_seq` 0: not read).
        recovered.extend(resume.deferred.into_iter().map(|conv| v1::Recovery {
            conversation_id: conv,
            messages: Vec::new(),
            more: true,
            last_seq: 0,
        }));
        recovered.sort_by(|a, b| a.conversation_id.cmp(&b.conversation_id));
        let l = node.limits();
        Ok(R::Connect(v1::ConnectResult {
            user: Some(views::user(user)),
            conversations,
            notifications: node.connect_notifications(&app, &user_id).await?,
            token_expires_at: Some(millis_to_timestamp(claims.expires_at_ms())),
            limits: Some(v1::Limits {
                max_frame_bytes: l.max_frame_bytes as u32,
                rate_per_second: l.rate_per_second,
                rate_burst: l.rate_burst,
                ping_interval_ms: l.ping_interval.as_millis() as u32,
                pong_timeout_ms: l.pong_timeout.as_millis() as u32,
                replay_limit: l.replay_limit,
                max_text_bytes: store::messages::MAX_TEXT_BYTES as u32,
                max_upload_bytes: node.max_upload_bytes(&app).await?,
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
                let revocations = node.revocation_mark();
                // A bad token here is a guess like one at `connect`: counted
                // against the client's address.
                let (claims, stamp) = node
                    .guard_auth(self.from, node.authenticate_stamped(&req.token))
                    .await?;
                if *claims.app_id != *app || *claims.user_id != *me {
                    return Err(Error::new(
                        ErrorCode::InvalidToken,
                        "the token is for another user",
                    )
                    .with_reason(Reason::WrongUser));
                }
                node.set_session_token(self.id, stamp);
                if let Err(err) = node.recheck_token(&req.token, revocations).await {
                    return Err(self.refuse(err));
                }
                let deadline_ms = claims.expires_at_ms().saturating_sub(store::now_ms());
                if let Some(a) = self.authed.as_mut() {
                    a.token_deadline = deadline(deadline_ms, node.limits().token_grace);
                }
                Ok(R::Refresh(v1::RefreshResult {
                    token_expires_at: Some(millis_to_timestamp(claims.expires_at_ms())),
                }))
            }
            Command::Subscribe(req) => {
                let sub = node
                    .subscribe_session(&app, &me, &req.conversation_id, self.id)
                    .await?;
                let c = &sub.conversation;
                self.subscriptions.insert(c.id.clone());
                // As for the connect reply's list: live pushes continue from here.
                self.delivered
                    .entry(c.id.clone())
                    .or_insert(unsigned(c.last_seq));
                Ok(R::Subscribe(v1::SubscribeResult {
                    conversation: Some(node.conversation_view(&app, &me, c).await?),
                    presence: sub.presence.iter().map(views::presence).collect(),
                    typing: sub.typing,
                }))
            }
            Command::Unsubscribe(req) => {
                node.unsubscribe_session(&app, &req.conversation_id, self.id);
                self.subscriptions.remove(&req.conversation_id);
                Ok(ok())
            }
            Command::Send(req) => {
                let input = SendInput {
                    sender_id: None,
                    system: false,
                    text: req.text,
                    data: req.data.as_ref().map(struct_to_json),
                    client_id: Some(req.client_id),
                    reply_to: optional_seq(req.reply_to, "reply_to")?,
                    attachment_ids: req.attachment_ids,
                };
                let sent = node
                    .send_request(&app, Actor::User(&me), &req.conversation_id, input)
                    .await?;
                Ok(R::Send(v1::SendResult {
                    message: Some(views::message(&sent.message)),
                    duplicate: sent.duplicate,
                }))
            }
            Command::History(req) => {
                // proto3 cannot tell 0 from absent: 0 is "no bound" here.
                let query = HistoryRequest {
                    before: optional_seq(req.before, "before")?,
                    after: optional_seq(req.after, "after")?,
                    page: PageRequest::from_wire(String::new(), req.limit),
                };
                let page = node
                    .history_request(&app, Actor::User(&me), &req.conversation_id, &query)
                    .await?;
                Ok(R::History(v1::HistoryResult {
                    messages: page.items.iter().map(views::message).collect(),
                    more: page.next_cursor.is_some(),
                }))
            }
            Command::Read(req) => {
                let seq = wire_seq(req.seq, "seq")?;
                let (read, unread) = node.mark_read(&app, &me, &req.conversation_id, seq).await?;
                Ok(R::Read(v1::ReadResult {
                    last_read_seq: unsigned(read),
                    unread_count: unsigned(unread),
                }))
            }
            Command::Typing(req) => {
                node.typing(&app, &me, &req.conversation_id, req.stop)
                    .await?;
                Ok(ok())
            }
            Command::Conversations(req) => {
                let page = node
                    .conversations_page(
                        &app,
                        Actor::User(&me),
                        &PageRequest::from_wire(req.cursor, req.limit),
                    )
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
                let group = NewConversation {
                    kind: Kind::Group,
                    members: req.members,
                    id: (!req.id.is_empty()).then_some(req.id),
                    name: Some(req.name),
                    icon_url: Some(req.icon_url),
                    data: req.data.as_ref().map(struct_to_json),
                };
                let (c, _) = node
                    .create_conversation(&app, Actor::User(&me), group)
                    .await?;
                self.conversation_result(&app, &me, &c.id).await
            }
            Command::StartDirect(req) => {
                let direct = NewConversation {
                    kind: Kind::Direct,
                    members: vec![req.user_id],
                    id: None,
                    name: None,
                    icon_url: None,
                    data: None,
                };
                let (c, _) = node
                    .create_conversation(&app, Actor::User(&me), direct)
                    .await?;
                self.conversation_result(&app, &me, &c.id).await
            }
            Command::AddMembers(req) => {
                node.add_members_request(
                    &app,
                    Actor::User(&me),
                    &req.conversation_id,
                    &req.user_ids,
                )
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
                node.unsubscribe_session(&app, &req.conversation_id, self.id);
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
            | Command::AckNotification(_)
            | Command::RegisterDevice(_)
            | Command::UnregisterDevice(_)
            | Command::Devices(_)
            | Command::Mute(_)
            | Command::DoNotDisturb(_)) => self.social_command(&app, &me, command).await,
            Command::CreateUpload(req) => {
                let grant = if req.upload_id.is_empty() {
                    let input = crate::node::files::UploadInput {
                        name: req.name,
                        size: req.size,
                        content_type: req.content_type,
                        user_id: None,
                    };
                    node.create_upload(&app, Actor::User(&me), &req.conversation_id, input)
                        .await?
                } else {
                    node.resume_upload(&app, &me, &req.conversation_id, &req.upload_id)
                        .await?
                };
                Ok(R::Upload(views::upload(&grant)))
            }
            Command::AttachmentUrls(req) => {
                let (links, expires_at) = node
                    .attachment_links(
                        &app,
                        Actor::User(&me),
                        &req.conversation_id,
                        &req.attachment_ids,
                    )
                    .await?;
                Ok(R::AttachmentUrls(views::attachment_urls(
                    &links, expires_at,
                )))
            }
            command @ (Command::Members(_)
            | Command::Users(_)
            | Command::SearchUsers(_)
            | Command::UpdateProfile(_)
            | Command::UpdateConversation(_)
            | Command::SetRole(_)
            | Command::DeleteConversation(_)
            | Command::Blocks(_)
            | Command::Unread(_)) => self.people_command(&app, &me, command).await,
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

/// Most conversations one `connect` replays from its `resume` map.
pub const MAX_RESUME: usize = 200;

/// A connect's `resume` map as the session uses it: the first `MAX_RESUME`
/// conversations by id are replayed, the rest deferred (answered with `more`,
/// nothing read for them), so a map of any size costs at most `MAX_RESUME`
/// replays.
struct Resume {
    replayed: Vec<(String, i64)>,
    deferred: Vec<String>,
}

impl Resume {
    fn from_wire(map: HashMap<String, u64>) -> Result<Self> {
        let mut entries = map
            .into_iter()
            .map(|(conv, position)| Ok((conv, wire_seq(position, "a resume position")?)))
            .collect::<Result<Vec<(String, i64)>>>()?;
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let deferred = entries
            .split_off(entries.len().min(MAX_RESUME))
            .into_iter()
            .map(|(conv, _)| conv)
            .collect();
        Ok(Self {
            replayed: entries,
            deferred,
        })
    }
}

/// A seq or count for the wire; the store never holds a negative one.
pub(super) fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A seq from a protobuf field where 0 means absent.
fn optional_seq(n: u64, field: &str) -> Result<Option<i64>> {
    match n {
        0 => Ok(None),
        n => wire_seq(n, field).map(Some),
    }
}

fn deadline(in_ms: i64, grace: std::time::Duration) -> Instant {
    let until_expiry = std::time::Duration::from_millis(in_ms.max(0) as u64);
    Instant::now() + until_expiry + grace
}
