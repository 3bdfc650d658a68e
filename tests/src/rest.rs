//! The REST API (`/v1`), with an API key, a user token, or no credentials.

use std::net::SocketAddr;

use reqwest::Method;
use serde_json::{json, Value};

/// A response: its status and JSON body (`Value::Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    /// The body as text, for failure messages.
    pub text: String,
}

impl Resp {
    /// The body of a 2xx response; panics otherwise.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(
            (200..300).contains(&self.status),
            "expected a 2xx status, got {}: {}",
            self.status,
            self.text
        );
        self.body
    }

    /// Asserts the status; returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self.body
    }

    /// Asserts an error status with the SPEC's error body
    /// (`{"error": {"code", "message", "request_id"}}`) and the given code.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status, status,
            "expected {status} {code}; body: {}",
            self.text
        );
        let err = &self.body["error"];
        assert_eq!(
            err["code"].as_str(),
            Some(code),
            "error code; body: {}",
            self.text
        );
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error.message missing; body: {}",
            self.text
        );
        assert!(
            err["request_id"].as_str().is_some_and(|m| !m.is_empty()),
            "error.request_id missing; body: {}",
            self.text
        );
        self.body
    }

    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

/// A REST client for one server and one credential.
#[derive(Debug, Clone)]
pub struct Rest {
    http: reqwest::Client,
    base: String,
    auth: Option<String>,
}

impl Rest {
    pub fn new(addr: SocketAddr, bearer: Option<&str>) -> Rest {
        Rest {
            http: reqwest::Client::builder()
                .timeout(crate::WAIT)
                .build()
                .unwrap(),
            base: format!("http://{addr}"),
            auth: bearer.map(str::to_owned),
        }
    }

    /// Any request; `path` starts with `/` (e.g. `/v1/users`). `body` is sent as is
    /// with `content-type: application/json`.
    pub async fn request(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Resp {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(auth) = &self.auth {
            req = req.bearer_auth(auth);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, body, text }
    }

    /// POSTs a prepared JSON body and returns only the status (the response body is
    /// read and dropped unparsed): for floods.
    pub async fn post_bytes_status(&self, path: &str, body: Vec<u8>) -> u16 {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(auth) = &self.auth {
            req = req.bearer_auth(auth);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = resp.status().as_u16();
        let _ = resp.bytes().await;
        status
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.request(Method::POST, path, Some(serde_json::to_vec(&body).unwrap()))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.request(
            Method::PATCH,
            path,
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.request(Method::PUT, path, Some(serde_json::to_vec(&body).unwrap()))
            .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.request(Method::DELETE, path, None).await
    }

    // --- helpers that assert success ---

    /// `POST /v1/users` for each id (name = id).
    pub async fn create_users(&self, ids: &[&str]) {
        for id in ids {
            self.post("/v1/users", json!({"id": id, "name": id}))
                .await
                .ok();
        }
    }

    /// `POST /v1/conversations` of a group; returns its id.
    pub async fn create_group(&self, name: &str, members: &[&str]) -> String {
        let body = self
            .post(
                "/v1/conversations",
                json!({"kind": "group", "name": name, "members": members}),
            )
            .await
            .ok();
        body["id"].as_str().expect("conversation id").to_owned()
    }

    /// `POST /v1/conversations` of a group with a chosen id.
    pub async fn create_group_with_id(&self, id: &str, name: &str, members: &[&str]) -> String {
        let body = self
            .post(
                "/v1/conversations",
                json!({"id": id, "kind": "group", "name": name, "members": members}),
            )
            .await
            .ok();
        let got = body["id"].as_str().expect("conversation id").to_owned();
        assert_eq!(got, id, "the conversation did not keep its chosen id");
        got
    }

    /// `POST /v1/conversations` of a direct conversation; returns its id.
    pub async fn create_direct(&self, a: &str, b: &str) -> String {
        let body = self
            .post(
                "/v1/conversations",
                json!({"kind": "direct", "members": [a, b]}),
            )
            .await
            .ok();
        body["id"].as_str().expect("conversation id").to_owned()
    }

    /// `POST /v1/conversations/{conv}/messages`; returns the message.
    pub async fn send(&self, conv: &str, sender: &str, text: &str, client_id: &str) -> Value {
        self.post(
            &format!("/v1/conversations/{conv}/messages"),
            json!({"sender_id": sender, "text": text, "client_id": client_id}),
        )
        .await
        .ok()
    }

    /// Every message of `conv`, oldest first: the newest page, then every page
    /// `next_cursor` leads to.
    pub async fn history_all(&self, conv: &str) -> Vec<Value> {
        let mut all: Vec<Value> = Vec::new();
        let mut path = format!("/v1/conversations/{conv}/messages?limit=100");
        for _ in 0..10_000 {
            let page = self.get(&path).await.ok();
            all.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(cursor) if !cursor.is_empty() => {
                    path = format!(
                        "/v1/conversations/{conv}/messages?limit=100&cursor={}",
                        urlencode(cursor)
                    );
                }
                _ => break,
            }
        }
        all.sort_by_key(seq_of);
        all
    }
}

/// The `seq` of a REST message (a JSON number).
#[track_caller]
pub fn seq_of(message: &Value) -> u64 {
    match &message["seq"] {
        Value::Number(n) => n.as_u64().expect("seq is a positive integer"),
        other => panic!("message without a numeric seq ({other}): {message}"),
    }
}

/// A counter in a REST body: a JSON number, or (as proto3 JSON writes 64-bit
/// integers) a decimal string; absent (proto3 JSON leaves out zeros) reads as 0.
pub fn json_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        Value::Null => Some(0),
        _ => None,
    }
}

/// Percent-encodes `s` for a query string (everything but RFC 3986 unreserved characters).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A tus `PATCH` of `bytes` from `offset` to an upload `link` (the path and
/// grant the server answered), as a browser sends it when `origin` is given.
pub async fn tus_patch(
    addr: SocketAddr,
    link: &str,
    offset: usize,
    bytes: &[u8],
    origin: Option<&str>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .patch(format!("http://{addr}{link}"))
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", offset.to_string())
        .header("content-type", "application/offset+octet-stream")
        .body(bytes.to_vec());
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("PATCH {link}: {e}"))
}
