//! TLS on the server's one port (`--tls-cert`/`--tls-key`): the certificate
//! chain and key from PEM files, reloaded without a restart on SIGHUP or when
//! either file changes, and the accept loop that serves the same router over
//! TLS (HTTP/1.1 with WebSocket upgrades, HTTP/2 for gRPC, chosen by ALPN).
//!
//! The crypto provider is ring, the workspace's only one (see ARCHITECTURE.md):
//! [`install_provider`] runs once at process start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// How long a client has to complete its TLS handshake before the connection
/// is dropped: a client that connects and stays silent holds nothing longer.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Installs ring as the process's rustls crypto provider; a second call (or a
/// provider installed by someone else first) changes nothing.
pub fn install_provider() {
    let _ = ring_provider().install_default();
}

/// rustls' ring provider. rustls 0.23.48 deprecates it because ring has no
/// post-quantum key exchange (X25519MLKEM768); the workspace keeps ring
/// knowingly (ARCHITECTURE.md), so the deprecation is allowed here, once.
#[allow(deprecated)]
pub fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Where the certificate and key live and how often their files are checked.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM: the server's certificate first, then the intermediates (full chain).
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files' modification times are compared (`--tls-reload-interval-ms`).
    pub reload_interval: Duration,
}

/// The certificate new handshakes get: swapped whole on a successful reload,
/// so connections already open keep theirs.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

impl CertResolver {
    fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
    }
}

/// The TLS side of a server: the acceptor for handshakes and the resolver that
/// reloads swap certificates in.
pub struct Tls {
    config: TlsConfig,
    resolver: Arc<CertResolver>,
    acceptor: TlsAcceptor,
}

impl Tls {
    /// Reads the certificate chain and key; an unreadable or invalid file, or a
    /// key that does not belong to the certificate, is an error naming the file.
    pub fn load(config: TlsConfig) -> anyhow::Result<Tls> {
        install_provider();
        let key = load_certified_key(&config.cert, &config.key)?;
        let resolver = Arc::new(CertResolver {
            current: RwLock::new(Arc::new(key)),
        });
        let mut server = ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            config,
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(server)),
        })
    }

    /// Reloads the certificate on SIGHUP and whenever the modification time (or
    /// size) of either file changes, until `stop`. A reload that fails is logged
    /// and the certificate in use stays.
    pub fn spawn_reloader(&self, stop: CancellationToken) {
        let config = self.config.clone();
        let resolver = self.resolver.clone();
        tokio::spawn(async move {
            let mut seen = stamps(&config);
            let mut hangup = hangup_signal();
            let mut tick = tokio::time::interval(config.reload_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let why = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        let now = stamps(&config);
                        if now == seen {
                            continue;
                        }
                        seen = now;
                        "a file changed"
                    }
                    _ = recv_hangup(&mut hangup) => {
                        seen = stamps(&config);
                        "SIGHUP"
                    }
                };
                match load_certified_key(&config.cert, &config.key) {
                    Ok(key) => {
                        resolver.set(Arc::new(key));
                        tracing::info!(cause = why, "TLS certificate reloaded");
                    }
                    Err(err) => tracing::error!(
                        cause = why,
                        error = format!("{err:#}"),
                        "TLS certificate not reloaded; the previous one stays in use"
                    ),
                }
            }
        });
    }

    /// Serves `app` over TLS on `listener` until `shutdown` (see
    /// [`serve_connections`]).
    pub async fn serve(&self, listener: TcpListener, app: Router, shutdown: CancellationToken) {
        serve_connections(listener, app, shutdown, Some(self.acceptor.clone())).await;
    }
}

/// The most a connection's HTTP/1.1 read buffer grows to. hyper's default
/// (about 400 KiB) is reached by every upload streaming at full speed, which
/// made 100 concurrent uploads cost 100 × that and more; a body larger than
/// the buffer is read in several chunks, as any body is.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Serves `app` on `listener` (over TLS with `acceptor`) until `shutdown`,
/// then stops accepting, asks every connection to finish gracefully and waits
/// for them.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    acceptor: Option<TlsAcceptor>,
) {
    // Turns the routes into services once (what `into_make_service` does):
    // each connection and request then clones a ready router.
    let app = app.with_state(());
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // A connection that went before it was taken: the next one.
                Err(err) if matches!(
                    err.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) => continue,
                Err(err) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::error!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Pushes are small frames written as they happen: Nagle's algorithm
        // would hold each one back until the previous is acknowledged.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let shutdown = shutdown.clone();
        let app = app.clone();
        // Two tasks of their own kind: one future type for both would give a
        // plaintext connection the size of a TLS one (the stream is inline).
        let Some(acceptor) = acceptor.clone() else {
            connections.spawn(serve_connection(TokioIo::new(tcp), peer, app, shutdown));
            continue;
        };
        // The handshake runs in the connection's own task: a slow client never
        // holds up the accept loop.
        connections.spawn(async move {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                done = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match done {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, error = %err, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
            };
            serve_connection(TokioIo::new(stream), peer, app, shutdown).await;
        });
    }
    drop(listener);
    connections.close();
    // Requests in progress finish, up to a bound: a file transfer (exempt
    // from the request timeout) must not hold the shutdown for hours.
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = connections.len(),
            "connections still open after the shutdown grace; closing"
        );
    }
}

/// How long a shutdown waits for requests in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// One connection, HTTP/1.1 (with upgrades) or HTTP/2, until it ends or
/// `shutdown`: then it finishes the request in progress and closes (an
/// upgraded WebSocket has left hyper already: the node's shutdown tells its
/// session to reconnect).
async fn serve_connection<S>(
    io: TokioIo<S>,
    peer: std::net::SocketAddr,
    app: Router,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // The peer's address goes with each request (`ConnectInfo`): failed
    // authentications are counted per client address, `/dev` answers
    // loopback only.
    let service = tower::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(READ_BUFFER_BYTES);
    builder.http2().enable_connect_protocol();
    let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::trace!(%peer, error = %err, "connection ended with an error");
    }
}

/// Modification time and size of both files (`None` for one that cannot be read).
type Stamps = [Option<(SystemTime, u64)>; 2];

fn stamps(config: &TlsConfig) -> Stamps {
    let stamp = |path: &Path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    [stamp(&config.cert), stamp(&config.key)]
}

/// The certificates of a PEM file given by the `flag` setting: at least one.
pub fn read_certificates(path: &Path, flag: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{flag} {}: no PEM certificate in it", path.display());
    }
    Ok(certs)
}

/// Reads a PEM certificate chain and private key and checks that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain = read_certificates(cert, "--tls-cert")?;
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("--tls-key {}: {e}", key.display()))?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(ring_provider()));
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| anyhow::anyhow!("--tls-key {}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        anyhow::anyhow!(
            "--tls-key {} does not match the certificate in --tls-cert {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(certified)
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(err) => {
            tracing::warn!(error = %err, "no SIGHUP handler: the certificate reloads on file changes only");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn recv_hangup(hangup: &mut Hangup) {
    match hangup {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn recv_hangup(_: &mut Hangup) {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.cert.pem()).unwrap();
        std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn a_matching_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "a");
        install_provider();
        let key = load_certified_key(&c, &k).unwrap();
        assert_eq!(key.cert.len(), 1);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = write_pair(dir.path(), "a");
        let (_, k) = write_pair(dir.path(), "b");
        install_provider();
        let err = format!("{:#}", load_certified_key(&c, &k).unwrap_err());
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn missing_or_garbage_files_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "a");
        let missing = dir.path().join("nope.pem");
        let err = format!("{:#}", load_certified_key(&missing, &k).unwrap_err());
        assert!(err.contains("--tls-cert"), "{err}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem file\n").unwrap();
        let err = format!("{:#}", load_certified_key(&c, &garbage).unwrap_err());
        assert!(err.contains("--tls-key"), "{err}");
        let err = format!("{:#}", load_certified_key(&garbage, &k).unwrap_err());
        assert!(err.contains("--tls-cert"), "{err}");
    }
}
