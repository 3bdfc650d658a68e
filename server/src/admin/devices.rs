//! Push devices, muting and "do not disturb" over the Admin API, for a user
//! the backend names: the twins of `/v1/users/{id}/devices`,
//! `/v1/users/{id}/conversations/{conversation}/mute` and
//! `/v1/users/{id}/do-not-disturb` (`rest/devices.rs`).

use mkondo_proto::convert::timestamp_to_millis;
use mkondo_proto::v1::*;
use pbjson_types::Empty;

use super::conversations::view;
use crate::error::{Error, Result};
use crate::node::Node;
use crate::views;

pub(super) async fn list_devices(
    node: &Node,
    app: &str,
    req: UserIdRequest,
) -> Result<DevicesResult> {
    let devices = node.devices(app, &req.id).await?;
    Ok(DevicesResult {
        devices: devices.iter().map(views::device).collect(),
        web_push_key: node.web_push_key(app).await?.unwrap_or_default(),
    })
}

pub(super) async fn register_device(
    node: &Node,
    app: &str,
    req: RegisterDeviceForUserRequest,
) -> Result<Device> {
    let device = req
        .device
        .ok_or_else(|| Error::invalid("device is required"))?;
    let row = node
        .register_device(app, &req.user_id, device.into())
        .await?;
    Ok(views::device(&row))
}

pub(super) async fn delete_device(
    node: &Node,
    app: &str,
    req: DeleteDeviceRequest,
) -> Result<Empty> {
    node.unregister_device(app, &req.user_id, &req.device)
        .await?;
    Ok(Empty {})
}

pub(super) async fn mute_conversation(
    node: &Node,
    app: &str,
    req: MuteConversationRequest,
) -> Result<Conversation> {
    let conv = node
        .set_muted(app, &req.user_id, &req.conversation_id, req.muted)
        .await?;
    Ok(view(&conv))
}

pub(super) async fn set_do_not_disturb(
    node: &Node,
    app: &str,
    req: SetDoNotDisturbRequest,
) -> Result<DoNotDisturbResult> {
    let until = node
        .set_do_not_disturb(
            app,
            &req.user_id,
            req.until.as_ref().map(timestamp_to_millis),
        )
        .await?;
    Ok(views::do_not_disturb(until))
}
