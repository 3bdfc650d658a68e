//! Commands between people: hide (delete chat), block, unblock, signal,
//! acknowledging notifications, and what decides whether the user is pushed:
//! their devices, muting a conversation, "do not disturb". Each is one call to
//! the node, which holds the rules and the fan-out (REST calls the same
//! functions).

use mkondo_proto::convert::timestamp_to_millis;
use mkondo_proto::v1::{self, client_frame::Command, reply::Result as R};

use super::Session;
use crate::error::{Error, Result};
use crate::views;

impl Session {
    pub(super) async fn social_command(
        &mut self,
        app: &str,
        me: &str,
        command: Command,
    ) -> Result<R> {
        let node = self.node.clone();
        match command {
            Command::Hide(req) => {
                node.hide(app, me, &req.conversation_id).await?;
            }
            Command::Block(req) => {
                node.block(app, me, &req.user_id).await?;
            }
            Command::Unblock(req) => {
                node.unblock(app, me, &req.user_id).await?;
            }
            Command::Signal(req) => {
                let ring = req.ring;
                node.signal(
                    app,
                    me,
                    &req.conversation_id,
                    &req.to_user_id,
                    req.payload,
                    ring,
                )
                .await?;
            }
            Command::AckNotification(req) => {
                node.ack_notification(app, me, &req.notification_id).await?;
            }
            Command::RegisterDevice(req) => {
                let device = node.register_device(app, me, req.into()).await?;
                return Ok(R::Device(v1::DeviceResult {
                    device: Some(views::device(&device)),
                }));
            }
            Command::UnregisterDevice(req) => {
                node.unregister_device(app, me, &req.device).await?;
            }
            Command::Devices(_) => {
                let devices = node.devices(app, me).await?;
                return Ok(R::Devices(v1::DevicesResult {
                    devices: devices.iter().map(views::device).collect(),
                    web_push_key: node.web_push_key(app).await?.unwrap_or_default(),
                }));
            }
            Command::Mute(req) => {
                let c = node
                    .set_muted(app, me, &req.conversation_id, req.muted)
                    .await?;
                return Ok(R::Conversation(v1::ConversationResult {
                    conversation: Some(node.conversation_view(app, me, &c).await?),
                }));
            }
            Command::DoNotDisturb(req) => {
                let until = req.until.as_ref().map(timestamp_to_millis);
                let until = node.set_do_not_disturb(app, me, until).await?;
                return Ok(R::DoNotDisturb(views::do_not_disturb(until)));
            }
            _ => return Err(Error::invalid("unexpected command")),
        }
        Ok(R::Ok(v1::Ok {}))
    }
}
