//! Commands between people: hide (delete chat), block, unblock, signal, and
//! acknowledging notifications. Each is one call to the node, which holds the
//! rules and the fan-out (REST calls the same functions).

use mkondo_proto::v1::{self, client_frame::Command, reply::Result as R};

use super::Session;
use crate::error::{Error, Result};

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
                node.signal(app, me, &req.conversation_id, &req.to_user_id, req.payload)
                    .await?;
            }
            Command::AckNotification(req) => {
                node.ack_notification(app, me, &req.notification_id).await?;
            }
            _ => return Err(Error::invalid("unexpected command")),
        }
        Ok(R::Ok(v1::Ok {}))
    }
}
