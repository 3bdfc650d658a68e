//! TLS for the native transports (`wss://`, and gRPC over `https://`): rustls
//! with the workspace's one crypto provider (ring), verifying the server against
//! the platform's trust store (rustls-platform-verifier: the system's bundle on
//! Linux, Security.framework on Apple, the Android trust manager), plus an
//! optional extra CA in PEM for private deployments. The extra CA is a second
//! verifier, tried when the platform does not know the issuer: that works on
//! every platform, including those whose verifier cannot take extra roots.
//! There is no switch that turns verification off.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// How a client trusts servers: the platform's store, and this extra CA (PEM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsTrust {
    pub extra_ca_pem: Option<String>,
}

/// The client configurations of one trust, built once when first needed.
#[derive(Debug, Default)]
pub struct TlsConfigs {
    trust: TlsTrust,
    websocket: OnceLock<Result<Arc<ClientConfig>, String>>,
    grpc: OnceLock<Result<Arc<ClientConfig>, String>>,
}

impl TlsConfigs {
    pub fn new(trust: TlsTrust) -> Self {
        Self {
            trust,
            ..Self::default()
        }
    }

    /// For `wss://` (ALPN `http/1.1`).
    pub fn websocket(&self) -> Result<Arc<ClientConfig>, String> {
        self.websocket
            .get_or_init(|| client_config(&self.trust, b"http/1.1"))
            .clone()
    }

    /// For gRPC over `https://` (ALPN `h2`).
    pub fn grpc(&self) -> Result<Arc<ClientConfig>, String> {
        self.grpc
            .get_or_init(|| client_config(&self.trust, b"h2"))
            .clone()
    }
}

/// The workspace's crypto provider: ring (see ARCHITECTURE.md). rustls 0.23.48
/// marks it deprecated because ring has no post-quantum key exchange; moving
/// to aws-lc-rs is this function and the workspace's features.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Opens TCP to `uri`'s host (its port, else `default_port`) with Nagle
/// off: how the gRPC and upload connections dial (tungstenite dials the
/// WebSocket itself). Returns the host too, for [`secure`].
pub(crate) async fn dial(
    uri: &http::Uri,
    default_port: u16,
) -> std::io::Result<(tokio::net::TcpStream, String)> {
    let host = uri
        .host()
        .ok_or_else(|| std::io::Error::other("the URL has no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(default_port);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    Ok((tcp, host))
}

/// TLS over `tcp` with `config`, verifying `host`.
pub(crate) async fn secure(
    config: Arc<ClientConfig>,
    host: String,
    tcp: tokio::net::TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let name = ServerName::try_from(host)
        .map_err(|e| std::io::Error::other(format!("not a host name: {e}")))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// Checks an extra CA without connecting: every PEM certificate in it parses,
/// and there is at least one.
pub fn parse_extra_ca(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the extra CA is not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("the extra CA holds no PEM certificate".into());
    }
    Ok(certs)
}

fn client_config(trust: &TlsTrust, alpn: &[u8]) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let platform = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| format!("the platform's certificate verifier: {e}"))?;
    let extra = match &trust.extra_ca_pem {
        None => None,
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in parse_extra_ca(pem)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("the extra CA is not a usable CA certificate: {e}"))?;
            }
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("the extra CA: {e}"))?;
            Some(verifier)
        }
    };
    let verifier = Arc::new(Trust {
        platform: Arc::new(platform),
        extra,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// The platform's verifier, then the extra CA's when the platform refused the
/// certificate for any reason but revocation ([`worth_the_extra_ca`]).
#[derive(Debug)]
struct Trust {
    platform: Arc<dyn ServerCertVerifier>,
    extra: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Trust {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let platform = self.platform.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match (platform, &self.extra) {
            (Ok(ok), _) => Ok(ok),
            (Err(e), Some(extra)) if worth_the_extra_ca(&e) => {
                extra.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            (Err(e), _) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.platform.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.platform.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.platform.supported_verify_schemes()
    }
}

/// Whether a plaintext URL leaves this machine (worth a warning: tokens and
/// messages would cross the network in the clear).
pub fn is_plaintext_beyond_loopback(url: &str) -> bool {
    let Some((scheme, rest)) = super::split_scheme(url) else {
        return false;
    };
    if scheme != "ws" && scheme != "http" {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

/// Whether a platform's refusal leaves the extra CA a say. A private CA's
/// certificate is refused differently per platform: `UnknownIssuer` on Linux
/// and Android, an `Other` error carrying the OS's code on Apple (an untrusted
/// root is not one the verifier names). The extra CA's verifier checks the
/// whole chain, the name and the validity period itself, so asking it after any
/// refusal trusts nothing the extra CA did not sign; only a revocation the
/// platform saw stands, as the extra CA's verifier has no revocation lists.
fn worth_the_extra_ca(platform: &rustls::Error) -> bool {
    !matches!(
        platform,
        rustls::Error::InvalidCertificate(CertificateError::Revoked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extra_ca_is_asked_after_any_refusal_but_a_revocation() {
        use rustls::{CertificateError, Error, OtherError};
        let apple_untrusted_root = Error::InvalidCertificate(CertificateError::Other(OtherError(
            std::sync::Arc::new(std::io::Error::other("certificate is not trusted: -67843")),
        )));
        for refusal in [
            Error::InvalidCertificate(CertificateError::UnknownIssuer),
            apple_untrusted_root,
            Error::InvalidCertificate(CertificateError::NotValidForName),
            Error::General("No system trust stores available".into()),
        ] {
            assert!(super::worth_the_extra_ca(&refusal), "{refusal:?}");
        }
        assert!(!super::worth_the_extra_ca(&Error::InvalidCertificate(
            CertificateError::Revoked
        )));
    }

    #[test]
    fn plaintext_is_worth_a_warning_only_beyond_loopback() {
        for local in [
            "ws://127.0.0.1:8080/v1/realtime",
            "http://localhost:8080",
            "http://[::1]:9000",
            "wss://chat.example.com",
            "https://chat.example.com",
        ] {
            assert!(!is_plaintext_beyond_loopback(local), "{local}");
        }
        for remote in [
            "ws://chat.example.com/v1/realtime",
            "http://10.0.0.5:8080",
            "HTTP://chat.example.com",
        ] {
            assert!(is_plaintext_beyond_loopback(remote), "{remote}");
        }
    }

    #[test]
    fn an_extra_ca_must_be_pem_certificates() {
        assert!(parse_extra_ca("").is_err());
        assert!(parse_extra_ca("not pem").is_err());
        let configs = TlsConfigs::new(TlsTrust {
            extra_ca_pem: Some(
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
            ),
        });
        assert!(configs.websocket().is_err(), "garbage DER is no CA");
    }
}
