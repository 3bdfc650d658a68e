//! A webhook receiver on loopback, as a customer's backend would run one: a
//! real HTTP server (axum) that checks every request it gets — the signature
//! (HMAC-SHA256 computed here, independently of the server's code) against the
//! secrets it was given, the timestamp's age, the headers against the body —
//! and records it. Tests choose how it answers (200, an error status, slowly)
//! and read what arrived.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 at once.
    Ok,
    /// This status at once.
    Status(u16),
    /// 200 after this long.
    Slow(Duration),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub kind: String,
    pub conversation: Option<String>,
    /// The body as JSON.
    pub body: Value,
    /// Indexes (into the secrets given) of the secrets a `v1` signature verified with.
    pub verified_with: Vec<usize>,
    /// How many `v1` signatures the header carried.
    pub signatures: usize,
    /// The status the receiver answered.
    pub answered: u16,
    pub started: Instant,
    pub ended: Instant,
}

impl Delivery {
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.answered)
    }
}

#[derive(Default)]
struct Shared {
    secrets: Vec<Vec<u8>>,
    answer: Option<Answer>,
    deliveries: Vec<Delivery>,
    /// Requests refused for a bad signature, header or body, with why.
    invalid: Vec<String>,
    /// Requests in progress per conversation ('' for none).
    in_flight: HashMap<String, usize>,
    /// Conversations that had two requests in progress at once.
    overlaps: Vec<String>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Tolerance on the signed timestamp, as the examples use.
const TOLERANCE_S: i64 = 300;

impl Receiver {
    pub async fn start() -> Receiver {
        let shared: Arc<Mutex<Shared>> = Default::default();
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            shared,
            task,
        }
    }

    /// The same receiver over HTTPS with `cert` (for `localhost`), at
    /// `https://localhost:PORT/hook`: the server must trust the certificate's
    /// CA (`--outbound-ca`) to reach it.
    pub async fn start_tls(cert: &crate::tls::ServerCert) -> Receiver {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        crate::tls::install_provider();
        let chain = CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let shared: Arc<Mutex<Shared>> = Default::default();
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate ends here.
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                });
            }
        });
        Receiver {
            url: format!("https://localhost:{port}/hook"),
            shared,
            task,
        }
    }

    /// The secrets signatures are checked against (index = `verified_with`).
    pub fn set_secrets(&self, secrets: &[&str]) {
        self.shared.lock().unwrap().secrets =
            secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
    }

    pub fn answer(&self, answer: Answer) {
        self.shared.lock().unwrap().answer = Some(answer);
    }

    /// Every request so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().unwrap().deliveries.clone()
    }

    /// Requests answered 2xx.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(Delivery::accepted)
            .collect()
    }

    /// Panics if any request failed a check.
    #[track_caller]
    pub fn assert_all_valid(&self) {
        let s = self.shared.lock().unwrap();
        assert!(
            s.invalid.is_empty(),
            "invalid webhook requests: {:?}",
            s.invalid
        );
    }

    /// Conversations that had two requests in progress at once.
    pub fn overlaps(&self) -> Vec<String> {
        self.shared.lock().unwrap().overlaps.clone()
    }

    /// Waits until `done` holds for the requests so far; panics after `within`.
    pub async fn wait_until(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.deliveries();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "webhook receiver: {what} not reached within {within:?}; got {} requests ({} accepted); invalid: {:?}",
                got.len(),
                got.iter().filter(|d| d.accepted()).count(),
                self.shared.lock().unwrap().invalid,
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every id in `ids` was accepted at least once.
    pub async fn wait_for_ids(&self, ids: &[String], within: Duration) -> Vec<Delivery> {
        self.wait_until(within, &format!("{} events accepted", ids.len()), |got| {
            ids.iter()
                .all(|id| got.iter().any(|d| d.accepted() && &d.id == id))
        })
        .await
    }
}

/// HMAC-SHA256, written out (RFC 2104) so the check shares no code with the server.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Checks a request; answers the body as JSON, the secrets that verified and
/// the number of signatures, or why it is refused.
fn check(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[Vec<u8>],
) -> Result<(Value, Vec<usize>, usize), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| format!("no {name} header"))
    };
    let content_type = header("content-type")?;
    if !content_type.starts_with("application/json") {
        return Err(format!("content-type {content_type}"));
    }
    let agent = header("user-agent")?;
    if !agent.starts_with("Mkondo-Webhooks/") {
        return Err(format!("user-agent {agent}"));
    }
    let signature = header("mkondo-signature")?;
    let mut t = None;
    let mut v1 = Vec::new();
    for part in signature.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1.push(value.to_owned()),
            _ => return Err(format!("signature part {part:?}")),
        }
    }
    let t = t.ok_or("no t= in the signature")?;
    let now = crate::now_secs();
    if (now - t).abs() > TOLERANCE_S {
        return Err(format!("signature timestamp {t} is {}s off", now - t));
    }
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    let verified: Vec<usize> = secrets
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            let expected = hex::encode(hmac_sha256(s, &signed));
            v1.contains(&expected)
        })
        .map(|(i, _)| i)
        .collect();
    if verified.is_empty() {
        return Err(format!("no signature verifies: {signature}"));
    }
    let json: Value = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
    if json["id"].as_str() != Some(header("mkondo-event-id")?.as_str()) {
        return Err("Mkondo-Event-Id differs from the body's id".into());
    }
    if json["type"].as_str() != Some(header("mkondo-event-type")?.as_str()) {
        return Err("Mkondo-Event-Type differs from the body's type".into());
    }
    Ok((json, verified, v1.len()))
}

async fn receive(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let started = Instant::now();
    let (checked, answer) = {
        let s = shared.lock().unwrap();
        (
            check(&headers, &body, &s.secrets),
            s.answer.unwrap_or(Answer::Ok),
        )
    };
    let (json, verified_with, signatures) = match checked {
        Ok(ok) => ok,
        Err(why) => {
            shared.lock().unwrap().invalid.push(why);
            return StatusCode::BAD_REQUEST;
        }
    };
    let conversation = json["conversation_id"].as_str().map(str::to_owned);
    let stream = conversation.clone().unwrap_or_default();
    let _in_flight = InFlight::enter(&shared, &stream);
    let status = match answer {
        Answer::Ok => 200,
        Answer::Status(code) => code,
        Answer::Slow(pause) => {
            tokio::time::sleep(pause).await;
            200
        }
    };
    let mut s = shared.lock().unwrap();
    s.deliveries.push(Delivery {
        id: json["id"].as_str().unwrap_or_default().to_owned(),
        kind: json["type"].as_str().unwrap_or_default().to_owned(),
        conversation,
        body: json,
        verified_with,
        signatures,
        answered: status,
        started,
        ended: Instant::now(),
    });
    StatusCode::from_u16(status).unwrap()
}

/// A request in progress for a conversation, until answered or dropped (the
/// sender hung up: a killed server).
struct InFlight {
    shared: Arc<Mutex<Shared>>,
    stream: String,
}

impl InFlight {
    fn enter(shared: &Arc<Mutex<Shared>>, stream: &str) -> InFlight {
        let mut s = shared.lock().unwrap();
        let n = s.in_flight.entry(stream.to_owned()).or_default();
        *n += 1;
        if *n > 1 {
            s.overlaps.push(stream.to_owned());
        }
        InFlight {
            shared: shared.clone(),
            stream: stream.to_owned(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shared.lock() {
            if let Some(n) = s.in_flight.get_mut(&self.stream) {
                *n -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hmac_sha256;

    /// RFC 4231, test case 2.
    #[test]
    fn hmac_matches_the_rfc() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
