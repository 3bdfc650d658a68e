//! The `mkondo.v1.Admin` gRPC service: the backend REST API (API-key scope) as
//! gRPC, on the shared port next to `mkondo.v1.Realtime`. Each RPC authenticates
//! its API key, decodes the request and calls the same `Node` operation as its
//! REST twin (`node/requests.rs` holds the input rules both share), so the two
//! APIs answer the same entities and the same error codes and cannot drift.
//!
//! Errors become a gRPC status through `impl From<Error> for tonic::Status`, with
//! the SPEC's code in the details (`google.rpc.ErrorInfo`, reason = the code,
//! domain `mkondo`, metadata `reason`) and in the `mkondo-error-code` metadata.

mod conversations;
mod devices;
mod events;
mod hooks;
mod messages;
mod social;
mod users;
mod webhooks;

use std::sync::Arc;

use mkondo_proto::convert::{millis_to_timestamp, struct_to_json};
use mkondo_proto::v1::admin_server::{Admin, AdminServer};
use mkondo_proto::v1::*;
use mkondo_proto::Reason;
use pbjson_types::Empty;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::auth;
use crate::error::{Error, Result};
use crate::node::requests::{self, wire_seq};
use crate::node::{ClientAddr, Node};
use crate::rest::extract::MAX_BODY_BYTES;

/// Largest answer: a page of 100 messages at the text limit with their data
/// fits many times over.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// The Admin service for the server's router, with the REST API's request size limit.
pub fn service(node: Arc<Node>) -> AdminServer<AdminApi> {
    AdminServer::new(AdminApi { node })
        .max_decoding_message_size(MAX_BODY_BYTES)
        .max_encoding_message_size(MAX_REPLY_BYTES)
}

/// Server reflection listing every Mkondo service, in both versions clients
/// speak: `grpc.reflection.v1` (grpcurl tries it first) and `grpc.reflection.v1alpha`
/// (the only one Python's `grpcio-reflection` and several GUI clients know).
pub fn add_reflection(routes: tonic::service::Routes) -> anyhow::Result<tonic::service::Routes> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(mkondo_proto::FILE_DESCRIPTOR_SET)
    };
    Ok(routes
        .add_service(builder().build_v1()?)
        .add_service(builder().build_v1alpha()?))
}

pub struct AdminApi {
    node: Arc<Node>,
}

impl AdminApi {
    /// The app whose API key is in `authorization: Bearer <key>`, once the key is
    /// checked and charged (`node::floods`). User tokens are refused: the Admin
    /// API is the backend's.
    async fn authenticate<T>(&self, request: &Request<T>) -> Result<String> {
        let metadata = request.metadata();
        let missing = || {
            Error::unauthenticated("missing metadata authorization: Bearer <API key>")
                .with_reason(Reason::MissingCredentials)
        };
        let value = metadata
            .get("authorization")
            .ok_or_else(missing)?
            .to_str()
            .map_err(|_| missing())?;
        let (scheme, key) = value.trim().split_once(' ').ok_or_else(missing)?;
        let key = key.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() {
            return Err(missing());
        }
        let from = client_addr(request, &self.node);
        if !auth::looks_like_api_key(key) {
            // As REST's backend-only routes: a bad token fails as such, a good
            // one is refused for what it is.
            self.node
                .guard_auth(from, self.node.authenticate(key))
                .await?;
            return Err(Error::denied("the Admin API requires an API key"));
        }
        // gRPC is not a browser's protocol: no Origin to check.
        self.node.api_key_request(key, from, None).await
    }
}

/// The client's address: the TCP peer, or what a trusted proxy forwarded.
fn client_addr<T>(request: &Request<T>, node: &Node) -> ClientAddr {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let forwarded = forwarded_for(request.metadata());
    node.client_addr(peer, &forwarded)
}

fn forwarded_for(metadata: &MetadataMap) -> Vec<&str> {
    metadata
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// Implements `Admin`: every RPC authenticates, then hands the request to
/// `area::method(node, app, request)`.
macro_rules! admin_rpcs {
    ($($area:ident::$method:ident($req:ty) -> $resp:ty;)* @streams { $($streams:tt)* }) => {
        #[async_trait::async_trait]
        impl Admin for AdminApi {
            $($streams)*
            $(
                async fn $method(
                    &self,
                    request: Request<$req>,
                ) -> std::result::Result<Response<$resp>, Status> {
                    let app = self.authenticate(&request).await?;
                    let reply = $area::$method(&self.node, &app, request.into_inner()).await?;
                    Ok(Response::new(reply))
                }
            )*
        }
    };
}

admin_rpcs! {
    users::create_user(CreateUserRequest) -> CreateUserResponse;
    users::get_user(GetUserRequest) -> User;
    users::update_user(UpdateUserRequest) -> User;
    users::list_users(ListUsersRequest) -> UserPage;
    users::delete_user(DeleteUserRequest) -> DeleteUserResponse;
    users::deactivate_user(UserIdRequest) -> User;
    users::reactivate_user(UserIdRequest) -> User;
    users::revoke_user_tokens(UserIdRequest) -> RevokeTokensResponse;
    users::revoke_app_tokens(Empty) -> RevokeTokensResponse;
    users::list_user_conversations(UserPageRequest) -> ConversationPage;
    users::list_user_messages(UserPageRequest) -> MessagePage;
    users::send_notification(SendNotificationRequest) -> Notification;
    users::get_presence(GetPresenceRequest) -> PresenceResult;
    users::mint_token(MintTokenRequest) -> MintTokenResponse;
    conversations::create_conversation(CreateConversationRequest) -> CreateConversationResponse;
    conversations::get_conversation(ConversationIdRequest) -> Conversation;
    conversations::list_conversations(PageRequest) -> ConversationPage;
    conversations::update_conversation(UpdateConversationRequest) -> Conversation;
    conversations::delete_conversation(ConversationIdRequest) -> Empty;
    conversations::list_members(ListMembersRequest) -> MemberPage;
    conversations::add_members(AddMembersRequest) -> AddMembersResponse;
    conversations::remove_member(RemoveMemberRequest) -> Empty;
    conversations::set_member_role(SetMemberRoleRequest) -> Member;
    messages::history(HistoryPageRequest) -> MessagePage;
    messages::send_message(SendMessageRequest) -> SendMessageResponse;
    messages::edit_message(EditMessageRequest) -> Message;
    messages::delete_message(MessageRef) -> Message;
    messages::add_reaction(ReactionRequest) -> AddReactionResponse;
    messages::remove_reaction(ReactionRequest) -> Message;
    social::block_user(BlockUserRequest) -> BlockUserResponse;
    social::unblock_user(BlockUserRequest) -> Empty;
    social::list_blocks(UserPageRequest) -> BlockPage;
    social::hide_conversation(HideConversationRequest) -> Conversation;
    social::mark_read(MarkReadRequest) -> ReadResult;
    social::get_unread_total(UserIdRequest) -> UnreadResult;
    hooks::get_before_send_hook(Empty) -> BeforeSendHook;
    hooks::set_before_send_hook(SetBeforeSendHookRequest) -> BeforeSendHook;
    hooks::delete_before_send_hook(Empty) -> Empty;
    webhooks::create_webhook(CreateWebhookRequest) -> WebhookWithSecret;
    webhooks::list_webhooks(PageRequest) -> WebhookPage;
    webhooks::get_webhook(WebhookIdRequest) -> Webhook;
    webhooks::update_webhook(UpdateWebhookRequest) -> Webhook;
    webhooks::delete_webhook(WebhookIdRequest) -> Empty;
    webhooks::rotate_webhook_secret(WebhookIdRequest) -> WebhookWithSecret;
    webhooks::list_webhook_attempts(WebhookPageRequest) -> WebhookAttemptPage;
    webhooks::redeliver_webhook_event(RedeliverWebhookEventRequest) -> Empty;
    webhooks::test_webhook(WebhookIdRequest) -> WebhookTestResult;
    devices::list_devices(UserIdRequest) -> DevicesResult;
    devices::register_device(RegisterDeviceForUserRequest) -> Device;
    devices::delete_device(DeleteDeviceRequest) -> Empty;
    devices::mute_conversation(MuteConversationRequest) -> Conversation;
    devices::set_do_not_disturb(SetDoNotDisturbRequest) -> DoNotDisturbResult;
    @streams {
        type StreamEventsStream = events::EventStream;

        async fn stream_events(
            &self,
            request: Request<StreamEventsRequest>,
        ) -> std::result::Result<Response<Self::StreamEventsStream>, Status> {
            let app = self.authenticate(&request).await?;
            let stream = events::stream_events(self.node.clone(), app, request.into_inner())?;
            Ok(Response::new(stream))
        }
    }
}

// ----- decoding helpers shared by the areas

/// Page bounds as the request gives them (the node checks them).
fn page(cursor: String, limit: u32) -> requests::PageRequest {
    requests::PageRequest::from_wire(cursor, limit)
}

/// An optional string field: "" is absent.
fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn owned(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn json(data: Option<pbjson_types::Struct>) -> Option<serde_json::Value> {
    data.as_ref().map(struct_to_json)
}

/// A seq from the wire (u64) as the store holds it.
fn seq(n: u64) -> Result<i64> {
    wire_seq(n, "seq")
}

fn timestamp(ms: i64) -> Option<pbjson_types::Timestamp> {
    Some(millis_to_timestamp(ms))
}
