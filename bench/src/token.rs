//! User tokens, signed here the way a customer's backend signs them: HS256 with
//! the app's signing secret from `mkondo app create`, its `kid` in the header.
//! The socket.io peer verifies the very same tokens, so both servers pay for a
//! signature check on every connect.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// What `mkondo app create --json` printed.
#[derive(Debug, Clone)]
pub struct App {
    pub app_id: String,
    pub kid: String,
    pub secret: String,
    pub api_key: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    app: &'a str,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
}

impl App {
    /// A token for `user`, valid for two hours (longer than any run).
    pub fn token(&self, user: &str, groups: &[String]) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let claims = Claims {
            sub: user,
            app: &self.app_id,
            iat: now,
            exp: now + 7200,
            groups,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(self.secret.as_bytes()),
        )
        .expect("HS256 signing cannot fail")
    }
}
