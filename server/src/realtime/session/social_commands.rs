//! Commands between people: hide (delete chat), block, unblock, signal, and
//! acknowledging notifications.

use mkondo_proto::v1::{client_frame::Command, reply::Result as R};
use mkondo_proto::ErrorCode;

use super::Session;
use crate::error::{Error, Result};

impl Session {
    pub(super) async fn social_command(
        &mut self,
        _app: &str,
        _me: &str,
        _command: Command,
    ) -> Result<R> {
        Err(Error::new(
            ErrorCode::Unavailable,
            "this command is not available on this server version",
        ))
    }
}
