//! TLS for the end-to-end tests: a test certificate authority and server
//! certificates made with rcgen, written as the PEM files `--tls-cert`/`--tls-key`
//! read, and clients (raw TLS, gRPC) that trust only the roots they are given.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A certificate authority for one test.
pub struct TestCa {
    /// The CA's own certificate, what a client trusts.
    pub cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A server certificate with its chain and key as PEM.
#[derive(Clone)]
pub struct ServerCert {
    /// The server's certificate (DER), what a client sees as the peer's.
    pub der: CertificateDer<'static>,
    /// The full chain as `--tls-cert` takes it: the server's certificate, then the CA's.
    pub chain_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        install_provider();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses) with serial `serial`.
    pub fn server_cert(&self, names: &[&str], serial: u64) -> ServerCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params
            .distinguished_name
            .push(DnType::CommonName, "mkondo test server");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let ca_pem = pem_of(&self.cert);
        ServerCert {
            der: cert.der().clone(),
            chain_pem: format!("{}{}", cert.pem(), ca_pem),
            key_pem: key.serialize_pem(),
        }
    }

    /// The CA's certificate as PEM, what a client given a CA file reads.
    pub fn cert_pem(&self) -> String {
        pem_of(&self.cert)
    }

    /// A client configuration trusting this CA only.
    pub fn client_config(&self, alpn: &[&str]) -> Arc<ClientConfig> {
        client_config(std::slice::from_ref(&self.cert), alpn)
    }
}

impl ServerCert {
    /// Writes `server.crt` and `server.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
        std::fs::write(&cert, &self.chain_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Installs the workspace's one crypto provider (ring) in the test process.
pub fn install_provider() {
    mkondo_server::tls::install_provider();
}

/// A client configuration trusting `roots` only, offering `alpn`.
pub fn client_config(roots: &[CertificateDer<'static>], alpn: &[&str]) -> Arc<ClientConfig> {
    install_provider();
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let mut config = ClientConfig::builder()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `addr` checking the certificate against `name`.
pub async fn connect_tls(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    TlsConnector::from(config).connect(name, tcp).await
}

/// The certificate the server at `addr` shows a new connection now.
pub async fn peer_certificate(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> CertificateDer<'static> {
    let stream = connect_tls(addr, config, &addr.ip().to_string())
        .await
        .unwrap_or_else(|e| panic!("TLS handshake with {addr}: {e}"));
    let certs = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a peer certificate");
    certs[0].clone().into_owned()
}

/// A gRPC channel over TLS (ALPN `h2`) trusting the roots of `config`.
pub async fn grpc_channel(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let config = Arc::new(config);
    let connector = tower::service_fn(move |_: http::Uri| {
        let config = config.clone();
        async move {
            let tls = connect_tls(addr, config, &addr.ip().to_string()).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(connector)
        .await
}
