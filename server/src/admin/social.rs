//! Blocks and hiding a conversation over the Admin API, for a user of the app
//! the backend names: the twins of `/v1/users/{id}/blocks` and
//! `/v1/users/{id}/conversations/{conversation}/hide` (`rest/social.rs`), and
//! a user's read position and total unread count.

use mkondo_proto::v1::*;
use pbjson_types::Empty;

use super::conversations::view;
use super::page;
use crate::error::Result;
use crate::node::requests::wire_seq;
use crate::node::Node;

pub(super) async fn block_user(
    node: &Node,
    app: &str,
    req: BlockUserRequest,
) -> Result<BlockUserResponse> {
    let created = node.block(app, &req.user_id, &req.blocked_user_id).await?;
    Ok(BlockUserResponse {
        user_id: req.blocked_user_id,
        blocked: true,
        created,
    })
}

pub(super) async fn unblock_user(node: &Node, app: &str, req: BlockUserRequest) -> Result<Empty> {
    node.unblock(app, &req.user_id, &req.blocked_user_id)
        .await?;
    Ok(Empty {})
}

pub(super) async fn list_blocks(node: &Node, app: &str, req: UserPageRequest) -> Result<BlockPage> {
    let page = node
        .blocks_of(app, &req.id, &page(req.cursor, req.limit))
        .await?;
    Ok(BlockPage {
        items: page.items.iter().map(crate::views::block).collect(),
        next_cursor: page.next_cursor.unwrap_or_default(),
    })
}

pub(super) async fn hide_conversation(
    node: &Node,
    app: &str,
    req: HideConversationRequest,
) -> Result<Conversation> {
    let conv = node
        .hide_for_user(app, &req.user_id, &req.conversation_id)
        .await?;
    Ok(view(&conv))
}

pub(super) async fn mark_read(node: &Node, app: &str, req: MarkReadRequest) -> Result<ReadResult> {
    let seq = wire_seq(req.seq, "seq")?;
    let (read, unread) = node
        .mark_read(app, &req.user_id, &req.conversation_id, seq)
        .await?;
    Ok(ReadResult {
        last_read_seq: u64::try_from(read).unwrap_or(0),
        unread_count: u64::try_from(unread).unwrap_or(0),
    })
}

pub(super) async fn get_unread_total(
    node: &Node,
    app: &str,
    req: UserIdRequest,
) -> Result<UnreadResult> {
    let total = node.total_unread_of(app, &req.id).await?;
    Ok(UnreadResult {
        total: u64::try_from(total).unwrap_or(0),
    })
}
