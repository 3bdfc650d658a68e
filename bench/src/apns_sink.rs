//! A loopback APNs for the push scenario: TLS with a CA made here, HTTP/2
//! only (ALPN `h2`, as Apple's), `POST /3/device/<hex token>`, answering 200
//! with the `apns-id` every push Apple would take. The Python provider of the
//! end-to-end tests (tests/push-providers/apns.py) checks more and answers as
//! scripted, but takes milliseconds a push; this one must keep up with the
//! server, so it checks what a provider must to call a push accepted — the
//! provider token's ES256 signature against the app key's public key, its
//! `kid`, `iss` and age, the topic, push type, `apns-id`, a device token of
//! hex, a JSON payload with `aps` within 4 KB — and counts.
//!
//! A provider token is verified once: the sender reuses one for about 50
//! minutes (mkondo-push's `TOKEN_REFRESH`), and Apple too checks a token when
//! it first sees it on a connection, not on every push. Each distinct token
//! is still verified in full, and its age checked on every push.
//!
//! What it counts ([`Tally`]) is per phase: [`ApnsSink::take`] hands over the
//! counts so far and starts new ones, so one sink (one CA, one address)
//! serves the server and the direct client in turn.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rcgen::KeyPair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// Apple refuses a provider token older than an hour (`ExpiredProviderToken`).
const TOKEN_MAX_AGE_SECS: u64 = 3600;
/// The largest payload of an alert push (Apple: 4 KB).
const MAX_PAYLOAD: usize = 4096;
/// Streams per connection. APNs allows up to 1,000 once the provider token
/// is accepted; hyper's default (200) would hold the sender's 256 back.
const MAX_STREAMS: u32 = 1000;

/// The app's APNs credentials as the operator sets them, with the public
/// half the sink checks signatures against.
pub struct ApnsApp {
    /// The `.p8`: PKCS#8 PEM of a P-256 key.
    pub p8: String,
    public_pem: String,
    pub key_id: String,
    pub team_id: String,
    pub topic: String,
}

impl ApnsApp {
    /// A new signing key (rcgen's default: ECDSA P-256, PKCS#8, public key
    /// inside, as Apple's `.p8` files are).
    pub fn generate(key_id: &str, team_id: &str, topic: &str) -> anyhow::Result<ApnsApp> {
        let key = KeyPair::generate()?;
        Ok(ApnsApp {
            p8: key.serialize_pem(),
            public_pem: key.public_key_pem(),
            key_id: key_id.to_owned(),
            team_id: team_id.to_owned(),
            topic: topic.to_owned(),
        })
    }
}

/// What the sink received in one phase.
#[derive(Debug, Default)]
pub struct Tally {
    /// Pushes answered 200 (a push sent twice counts twice).
    pub accepted: u64,
    pub first: Option<Instant>,
    /// When the last push with an `apns-id` not seen before was accepted:
    /// a duplicate arriving later does not move the end of delivery.
    pub last_new: Option<Instant>,
    pub ids: HashSet<String>,
    pub tokens: HashSet<String>,
    /// Payload bytes of the accepted pushes.
    pub payload_bytes: u64,
    pub refused: u64,
    /// Why the first refused push was refused.
    pub first_refusal: Option<String>,
    /// TLS connections the client opened (HTTP/2 carries many pushes on one).
    pub connections: u64,
}

impl Tally {
    /// Pushes accepted again under an `apns-id` already accepted.
    pub fn duplicates(&self) -> u64 {
        self.accepted - self.ids.len() as u64
    }

    pub fn mean_payload(&self) -> f64 {
        self.payload_bytes as f64 / self.accepted.max(1) as f64
    }
}

struct State {
    key: DecodingKey,
    key_id: String,
    team_id: String,
    topic: String,
    /// Provider tokens whose signature checked out, with their `iat`.
    verified: Mutex<HashMap<String, u64>>,
    tally: Mutex<Tally>,
}

/// The running sink; it stops accepting connections when dropped.
pub struct ApnsSink {
    /// `https://127.0.0.1:<port>`: `--apns-url` and the client's base.
    pub url: String,
    /// The CA's certificate (PEM) in a file: `--outbound-ca`.
    pub ca_file: PathBuf,
    /// The same CA, for this process's own clients.
    pub ca_pem: String,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl ApnsSink {
    /// Makes a CA and a certificate for 127.0.0.1 signed by it (the CA goes
    /// to `dir`), and listens on a free loopback port.
    pub async fn start(app: &ApnsApp, dir: &Path) -> anyhow::Result<ApnsSink> {
        // An IP address SAN: the server calls https://127.0.0.1:<port>.
        let made = crate::tls::make_cert("127.0.0.1")?;
        std::fs::create_dir_all(dir)?;
        let ca_file = dir.join("apns-sink-ca.pem");
        std::fs::write(&ca_file, &made.ca_pem)
            .with_context(|| format!("writing {}", ca_file.display()))?;

        let mut tls =
            rustls::ServerConfig::builder_with_provider(mkondo_sdk::transport::tls::provider())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from_pem_slice(made.cert_pem.as_bytes())?],
                    PrivateKeyDer::from_pem_slice(made.key_pem.as_bytes())?,
                )?;
        // `h2` alone: a client that cannot speak HTTP/2 fails the handshake,
        // as it would at Apple.
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let state = Arc::new(State {
            key: DecodingKey::from_ec_pem(app.public_pem.as_bytes())?,
            key_id: app.key_id.clone(),
            team_id: app.team_id.clone(),
            topic: app.topic.clone(),
            verified: Mutex::default(),
            tally: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://{}", listener.local_addr()?);
        let accept = tokio::spawn(serve(listener, acceptor, state.clone()));
        Ok(ApnsSink {
            url,
            ca_file,
            ca_pem: made.ca_pem,
            state,
            accept,
        })
    }

    /// Distinct pushes (by `apns-id`) accepted so far in this phase.
    pub fn distinct(&self) -> u64 {
        self.state.tally.lock().expect("tally").ids.len() as u64
    }

    /// The counts of this phase; the next phase starts from zero.
    pub fn take(&self) -> Tally {
        std::mem::take(&mut *self.state.tally.lock().expect("tally"))
    }
}

impl Drop for ApnsSink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<State>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors, most likely: wait for some to close.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, state) = (acceptor.clone(), state.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            state.tally.lock().expect("tally").connections += 1;
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, req).await) }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .max_concurrent_streams(MAX_STREAMS)
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Apple's answer to one request: 200 with the `apns-id`, or the status and
/// `reason` Apple documents for the first check that fails.
async fn answer(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match check(state, req).await {
        Ok((id, token, payload_bytes)) => {
            let now = Instant::now();
            let mut t = state.tally.lock().expect("tally");
            t.accepted += 1;
            t.first.get_or_insert(now);
            if t.ids.insert(id.clone()) {
                t.last_new = Some(now);
            }
            t.tokens.insert(token);
            t.payload_bytes += payload_bytes as u64;
            drop(t);
            Response::builder()
                .status(StatusCode::OK)
                .header("apns-id", id)
                .body(Full::default())
                .expect("a valid response")
        }
        Err((status, reason)) => {
            let mut t = state.tally.lock().expect("tally");
            t.refused += 1;
            t.first_refusal
                .get_or_insert_with(|| format!("{} {reason}", status.as_u16()));
            drop(t);
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(format!(
                    r#"{{"reason":"{reason}"}}"#
                ))))
                .expect("a valid response")
        }
    }
}

type Refusal = (StatusCode, &'static str);

/// The checks, in Apple's order of concern; the push's `apns-id`, device
/// token and payload size when all pass.
async fn check(state: &State, req: Request<Incoming>) -> Result<(String, String, usize), Refusal> {
    if req.method() != Method::POST {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"));
    }
    let token = req
        .uri()
        .path()
        .strip_prefix("/3/device/")
        .ok_or((StatusCode::NOT_FOUND, "BadPath"))?;
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err((StatusCode::BAD_REQUEST, "BadDeviceToken"));
    }
    let token = token.to_ascii_lowercase();
    let headers = req.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let jwt = header("authorization")
        .and_then(|v| v.strip_prefix("bearer "))
        .ok_or((StatusCode::FORBIDDEN, "MissingProviderToken"))?;
    provider_token(state, jwt)?;
    match header("apns-topic") {
        None => return Err((StatusCode::BAD_REQUEST, "MissingTopic")),
        Some(t) if t != state.topic => return Err((StatusCode::BAD_REQUEST, "BadTopic")),
        Some(_) => {}
    }
    if header("apns-push-type").is_none_or(str::is_empty) {
        return Err((StatusCode::BAD_REQUEST, "InvalidPushType"));
    }
    let id = header("apns-id")
        .filter(|id| is_uuid(id))
        .ok_or((StatusCode::BAD_REQUEST, "BadMessageId"))?
        .to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|_| (StatusCode::BAD_REQUEST, "PayloadEmpty"))?
        .to_bytes();
    if body.len() > MAX_PAYLOAD {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"));
    }
    let payload: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| (StatusCode::BAD_REQUEST, "PayloadEmpty"))?;
    if !payload["aps"].is_object() {
        return Err((StatusCode::BAD_REQUEST, "PayloadEmpty"));
    }
    Ok((id, token, body.len()))
}

#[derive(Deserialize)]
struct Claims {
    iat: u64,
}

/// A provider token signed by the app's key (ES256, its `kid`, the team as
/// `iss`) and younger than an hour.
fn provider_token(state: &State, jwt: &str) -> Result<(), Refusal> {
    const INVALID: Refusal = (StatusCode::FORBIDDEN, "InvalidProviderToken");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let known = state.verified.lock().expect("verified").get(jwt).copied();
    let iat = match known {
        Some(iat) => iat,
        None => {
            let mut validation = Validation::new(Algorithm::ES256);
            validation.validate_exp = false;
            validation.set_required_spec_claims(&["iss"]);
            validation.set_issuer(&[&state.team_id]);
            let data = jsonwebtoken::decode::<Claims>(jwt, &state.key, &validation)
                .map_err(|_| INVALID)?;
            if data.header.kid.as_deref() != Some(state.key_id.as_str()) {
                return Err(INVALID);
            }
            state
                .verified
                .lock()
                .expect("verified")
                .insert(jwt.to_owned(), data.claims.iat);
            data.claims.iat
        }
    };
    if iat + TOKEN_MAX_AGE_SECS < now {
        return Err((StatusCode::FORBIDDEN, "ExpiredProviderToken"));
    }
    Ok(())
}

/// 8-4-4-4-12 hex digits.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mkondo_push::apns::{new_apns_id, ApnsClient, ApnsKey, ApnsNotification, ApnsPayload};
    use mkondo_push::Outcome;

    fn client(sink: &ApnsSink, app: &ApnsApp, alpn: &[u8]) -> ApnsClient {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(sink.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let mut tls =
            rustls::ClientConfig::builder_with_provider(mkondo_sdk::transport::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        tls.alpn_protocols = vec![alpn.to_vec()];
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        let key = ApnsKey::from_p8(&app.p8, &app.key_id, &app.team_id).unwrap();
        ApnsClient::new(http, reqwest::Url::parse(&sink.url).unwrap(), key)
    }

    fn push(topic: &str) -> ApnsNotification {
        ApnsNotification::new(
            "ab".repeat(32),
            topic,
            mkondo_push::apns::PushType::Alert,
            new_apns_id(),
            ApnsPayload::default(),
        )
    }

    /// The sink takes only what Apple would: a token signed by the app's
    /// key, over HTTP/2, for the app's topic.
    #[tokio::test]
    async fn accepts_the_apps_pushes_and_refuses_others() {
        let dir = std::env::temp_dir().join(format!("apns-sink-test-{}", std::process::id()));
        let app = ApnsApp::generate("ABC123DEFG", "DEF123GHIJ", "com.example.chat").unwrap();
        let sink = ApnsSink::start(&app, &dir).await.unwrap();

        let good = client(&sink, &app, b"h2");
        let accepted = good.send(&push("com.example.chat")).await.unwrap();
        assert!(matches!(accepted, Outcome::Accepted { .. }), "{accepted:?}");
        let refused = good.send(&push("com.example.other")).await.unwrap();
        assert!(
            matches!(refused, Outcome::Rejected { status: 400, .. }),
            "{refused:?}"
        );

        // The same ids, another key: the signature does not check out.
        let other = ApnsApp::generate("ABC123DEFG", "DEF123GHIJ", "com.example.chat").unwrap();
        let forged = client(&sink, &other, b"h2")
            .send(&push("com.example.chat"))
            .await;
        assert!(
            matches!(
                forged,
                Err(mkondo_push::Error::Unauthorized { status: 403, .. })
            ),
            "{forged:?}"
        );
        // HTTP/1.1 only: no handshake.
        assert!(client(&sink, &app, b"http/1.1")
            .send(&push("com.example.chat"))
            .await
            .is_err());

        let tally = sink.take();
        assert_eq!(
            (tally.accepted, tally.ids.len(), tally.duplicates()),
            (1, 1, 0)
        );
        assert_eq!(
            tally.tokens.iter().next().map(String::as_str),
            Some(&*"ab".repeat(32))
        );
        assert!(tally.refused >= 2, "{tally:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
