//! Helpers shared by the Admin gRPC tests (`admin_grpc*.rs`): an Admin client
//! with an API key, and the comparison of a gRPC answer (in its proto3 JSON
//! mapping) with the REST body of its twin, and of their error codes.

#![allow(dead_code)] // each test file uses its own subset

use mkondo_proto::convert::json_to_struct;
use mkondo_proto::v1::admin_client::AdminClient;
use mkondo_tests::{Resp, Rest, ServerOptions, TestServer};
use serde::Serialize;
use serde_json::Value;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Adds `authorization: Bearer <credential>` to every call.
#[derive(Clone)]
pub struct Bearer(pub Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(credential) = &self.0 {
            let value = format!("Bearer {credential}")
                .parse()
                .expect("ascii credential");
            req.metadata_mut().insert("authorization", value);
        }
        Ok(req)
    }
}

pub type Admin = AdminClient<InterceptedService<Channel, Bearer>>;

pub async fn channel(server: &TestServer) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .expect("gRPC connection")
}

pub async fn admin_as(server: &TestServer, credential: Option<&str>) -> Admin {
    AdminClient::with_interceptor(channel(server).await, Bearer(credential.map(str::to_owned)))
}

/// The Admin client with the main app's API key.
pub async fn admin(server: &TestServer) -> Admin {
    admin_as(server, Some(&server.app.api_key)).await
}

pub fn ok<T>(what: &str, r: Result<tonic::Response<T>, Status>) -> T {
    match r {
        Ok(resp) => resp.into_inner(),
        Err(status) => panic!("{what}: {status:?}"),
    }
}

pub fn error_code(status: &Status) -> String {
    status
        .metadata()
        .get("mkondo-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The gRPC status code the server maps each error code to.
pub fn grpc_code(code: &str) -> Code {
    match code {
        "unauthenticated" | "token_expired" | "invalid_token" => Code::Unauthenticated,
        "permission_denied" | "blocked" | "rejected" => Code::PermissionDenied,
        "not_found" => Code::NotFound,
        "already_exists" => Code::AlreadyExists,
        "invalid_argument" | "too_large" => Code::InvalidArgument,
        "rate_limited" => Code::ResourceExhausted,
        "unavailable" => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// The gRPC call failed with `want`, and so did its REST twin.
#[track_caller]
pub fn same_error<T: std::fmt::Debug>(
    what: &str,
    want: &str,
    grpc: Result<tonic::Response<T>, Status>,
    rest: Resp,
) {
    let status = match grpc {
        Ok(resp) => panic!("{what}: gRPC succeeded: {:?}", resp.into_inner()),
        Err(status) => status,
    };
    assert_eq!(rest.error_code(), Some(want), "{what}: REST {}", rest.text);
    assert_eq!(error_code(&status), want, "{what}: gRPC {status:?}");
    assert_eq!(status.code(), grpc_code(want), "{what}: gRPC {status:?}");
    assert!(!status.message().is_empty(), "{what}: no message");
}

/// Times as REST writes them (RFC 3339, milliseconds, `Z`), whichever way they came.
pub fn normalize_time(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if s.len() < 20 || b[4] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    let body = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (base, frac) = body.split_at(19);
    let digits = frac.strip_prefix('.').unwrap_or(frac);
    let mut millis: String = digits.chars().take(3).collect();
    while millis.len() < 3 {
        millis.push('0');
    }
    Some(format!("{base}.{millis}Z"))
}

/// A JSON value with numbers as strings (proto3 JSON writes 64-bit integers as
/// strings) and times in one format.
pub fn normalize(v: &Value) -> Value {
    match v {
        // Struct numbers are doubles: 3 arrives as 3.0.
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => Value::String(format!("{}", f as i64)),
            _ => Value::String(n.to_string()),
        },
        Value::String(s) => Value::String(normalize_time(s).unwrap_or_else(|| s.clone())),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        other => other.clone(),
    }
}

/// What proto3 JSON leaves out: a field at its default.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty() || s == "0",
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    }
}

pub fn compare(path: &str, rest: &Value, grpc: &Value, skip: &[&str], diffs: &mut Vec<String>) {
    match (rest, grpc) {
        (Value::Object(r), Value::Object(g)) => {
            let mut keys: Vec<&String> = r.keys().chain(g.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                if skip.contains(&key.as_str()) {
                    continue;
                }
                let rv = r.get(key).unwrap_or(&Value::Null);
                let gv = g.get(key).unwrap_or(&Value::Null);
                compare(&format!("{path}.{key}"), rv, gv, skip, diffs);
            }
        }
        (Value::Array(r), Value::Array(g)) if r.len() == g.len() => {
            for (i, (rv, gv)) in r.iter().zip(g).enumerate() {
                compare(&format!("{path}[{i}]"), rv, gv, skip, diffs);
            }
        }
        (r, g) if is_empty(r) && is_empty(g) => {}
        (r, g) if r == g => {}
        (r, g) => diffs.push(format!("{path}: REST {r} != gRPC {g}")),
    }
}

/// Keys only REST has (store bookkeeping the wire entities leave out).
pub const REST_ONLY: &[&str] = &["updated_at", "last_activity_at", "members", "last_seen"];

/// The gRPC answer, in its proto3 JSON mapping, says what the REST body says.
/// `skip` names keys that only one side has.
#[track_caller]
pub fn assert_same(what: &str, rest: &Value, grpc: &impl Serialize, skip: &[&str]) {
    let grpc = serde_json::to_value(grpc).unwrap();
    let mut diffs = Vec::new();
    compare("", &normalize(rest), &normalize(&grpc), skip, &mut diffs);
    assert!(
        diffs.is_empty(),
        "{what}: REST and gRPC differ:\n  {}\nREST: {rest}\ngRPC: {grpc}",
        diffs.join("\n  ")
    );
}

/// A user's `updated_at` is theirs (both APIs show it); a conversation's is not
/// on the wire.
pub const CONVERSATION_SKIP: &[&str] = &["updated_at", "last_activity_at", "members"];

pub fn data(v: Value) -> Option<pbjson_types::Struct> {
    Some(json_to_struct(&v).unwrap())
}

/// A server with users alice, bob, carol and a group of the three with messages.
pub async fn setup() -> (TestServer, Admin, Rest, String) {
    let server = TestServer::start(ServerOptions::new().extra_apps(1)).await;
    let grpc = admin(&server).await;
    let api = server.api();
    api.create_users(&["alice", "bob", "carol"]).await;
    let group = api.create_group("trio", &["alice", "bob", "carol"]).await;
    for i in 1..=5 {
        api.send(&group, "alice", &format!("hello {i}"), &format!("m-{i}"))
            .await;
    }
    (server, grpc, api, group)
}
