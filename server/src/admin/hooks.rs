//! The app's before-send hook over the Admin API, the twins of
//! `rest/hooks.rs`: get, set (answering the new secret once), delete.

use mkondo_proto::v1::{BeforeSendHook, SetBeforeSendHookRequest};
use pbjson_types::Empty;

use crate::error::Result;
use crate::node::hooks::HookInput;
use crate::node::Node;
use crate::store::HookInfo;

fn wire(hook: HookInfo) -> BeforeSendHook {
    BeforeSendHook {
        url: hook.url,
        timeout_ms: u32::try_from(hook.timeout_ms).unwrap_or(u32::MAX),
        fail_open: hook.fail_open,
        secret: hook.secret.unwrap_or_default(),
    }
}

pub(super) async fn get_before_send_hook(
    node: &Node,
    app: &str,
    _: Empty,
) -> Result<BeforeSendHook> {
    Ok(wire(node.before_send_hook(app).await?))
}

pub(super) async fn set_before_send_hook(
    node: &Node,
    app: &str,
    req: SetBeforeSendHookRequest,
) -> Result<BeforeSendHook> {
    let input = HookInput {
        url: req.url,
        timeout_ms: req.timeout_ms.map(u64::from),
        fail_open: req.fail_open,
    };
    Ok(wire(node.set_before_send_hook(app, input).await?))
}

pub(super) async fn delete_before_send_hook(node: &Node, app: &str, _: Empty) -> Result<Empty> {
    node.delete_before_send_hook(app).await?;
    Ok(Empty {})
}
