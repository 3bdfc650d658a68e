//! `--tls`: the Mkondo server runs with a certificate for `localhost` signed by
//! a CA made here (rcgen), and every Mkondo connection speaks TLS, trusting
//! that CA only: what TLS costs beside plaintext, in the same run.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

pub struct BenchTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// ALPN `http/1.1` (WebSocket) and `h2` (gRPC).
    pub http1: Arc<ClientConfig>,
    pub h2: Arc<ClientConfig>,
}

static TLS: OnceLock<BenchTls> = OnceLock::new();

/// The TLS setting of this run, once [`enable`] was called.
pub fn get() -> Option<&'static BenchTls> {
    TLS.get()
}

/// A throw-away CA and a server certificate it signed, all PEM.
pub struct TestCert {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Makes a CA and a certificate for `name` (a host name or an IP address)
/// signed by it.
pub fn make_cert(name: &str) -> anyhow::Result<TestCert> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec![name.to_owned()])?.signed_by(&key, &issuer)?;
    Ok(TestCert {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Makes the CA and the server's certificate in `dir` and turns TLS on.
pub fn enable(dir: &Path) -> anyhow::Result<()> {
    let made = make_cert("localhost")?;
    std::fs::create_dir_all(dir)?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, &made.cert_pem)?;
    std::fs::write(&key_path, &made.key_pem)?;
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(made.ca_pem.as_bytes())?)?;
    let config = |alpn: &[u8]| -> anyhow::Result<Arc<ClientConfig>> {
        let mut c = ClientConfig::builder_with_provider(mkondo_sdk::transport::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        c.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(c))
    };
    let tls = BenchTls {
        cert: cert_path,
        key: key_path,
        http1: config(b"http/1.1")?,
        h2: config(b"h2")?,
    };
    TLS.set(tls)
        .map_err(|_| anyhow::anyhow!("TLS was enabled twice"))
}
