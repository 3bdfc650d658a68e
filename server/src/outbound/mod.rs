//! Outbound HTTP: the one client the server uses to call its customers'
//! backends (webhooks, the before-send hook). Those URLs are chosen by whoever
//! holds an app's API key or the operator secret, so the client must not be a
//! way into the server's own network (SSRF):
//!
//! - a URL is `https` to a public address; `http`, loopback and private
//!   addresses only with the operator's `--outbound-allow-private`;
//! - names are resolved by our resolver, which drops every refused address
//!   (an error when none is left), and the connection goes to an address it
//!   kept: a name that resolves to a public address when the URL is checked
//!   and to a private one later (DNS rebinding) is refused at the call too;
//!   IP-literal hosts, which reqwest connects to without resolving, are
//!   checked before the request;
//! - redirects are never followed (a public host could redirect inward);
//! - proxies from the environment are ignored (a proxy would resolve the
//!   name itself, past our check);
//! - a response is read up to [`MAX_RESPONSE_BYTES`], then refused.
//!
//! TLS is rustls with ring, the workspace's one provider, verifying against
//! the platform's trust store (rustls-platform-verifier: the system's bundle),
//! plus the operator's `--outbound-ca` certificates when given.
//! This module knows nothing of the node: it is engine-level, like `engine/`.

pub mod secrets;
pub mod sign;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::error::{Error, Result};

/// The largest response body read from a customer's endpoint.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The longest URL accepted for a webhook or hook.
pub const MAX_URL_LEN: usize = 2048;

/// What the operator allows outbound calls to reach.
#[derive(Clone, Debug, Default)]
pub struct OutboundPolicy {
    /// `--outbound-allow-private`: `http`, and loopback and private addresses,
    /// for tests and deployments whose receivers are on a private network.
    pub allow_private: bool,
    /// `--outbound-ca`: a PEM file of CA certificates trusted besides the
    /// system's (a private CA's receivers, a test's).
    pub extra_ca: Option<std::path::PathBuf>,
}

/// Why an outbound call did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The URL or every address its host resolves to is not allowed.
    #[error("refused: {0}")]
    Refused(String),
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("the response is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Other(String),
}

/// The answer of an endpoint: any status (the caller decides what a non-2xx
/// means) and a body of at most [`MAX_RESPONSE_BYTES`].
#[derive(Debug, Clone)]
pub struct OutboundResponse {
    pub status: u16,
    pub body: Bytes,
}

/// The server's outbound HTTP client (cheap to clone: one connection pool).
#[derive(Clone)]
pub struct OutboundClient {
    client: reqwest::Client,
    /// The same TLS settings, kept to build the push client (ALPN `h2`).
    tls: rustls::ClientConfig,
    policy: OutboundPolicy,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundClient")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl OutboundClient {
    pub fn new(policy: OutboundPolicy) -> anyhow::Result<Self> {
        use rustls_platform_verifier::BuilderVerifierExt;
        let provider = Arc::new(crate::tls::ring_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let tls = match &policy.extra_ca {
            None => builder.with_platform_verifier()?.with_no_client_auth(),
            Some(path) => {
                let roots = crate::tls::read_certificates(path, "--outbound-ca")?;
                let verifier =
                    rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider)?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth()
            }
        };
        let client = guarded_builder(&policy, tls.clone()).build()?;
        Ok(Self {
            client,
            tls,
            policy,
        })
    }

    /// A client for the push providers, with the same guards and trust: it
    /// offers HTTP/2 by ALPN (APNs speaks nothing else; FCM and push services
    /// take either), and every call ends within `timeout`. Web Push endpoints
    /// come from users: they were checked when registered (`check_url`), the
    /// resolver checks names again at each call, and the worker checks an
    /// IP-literal host with [`OutboundClient::check_parsed`] before each send.
    ///
    /// `http2_only` (APNs): HTTP/2 from the start, so concurrent first pushes
    /// wait for one connection and share it, instead of each opening its own
    /// before ALPN tells the pool the connection multiplexes (Apple asks
    /// providers to keep few connections and reuse them).
    pub fn push_client(
        &self,
        timeout: Duration,
        http2_only: bool,
    ) -> anyhow::Result<reqwest::Client> {
        let mut tls = self.tls.clone();
        tls.alpn_protocols = if http2_only {
            vec![b"h2".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        let mut builder = guarded_builder(&self.policy, tls)
            .timeout(timeout)
            // Providers answer many pushes on one connection: keep it.
            .pool_idle_timeout(Duration::from_secs(300))
            .http2_keep_alive_interval(Duration::from_secs(60));
        if http2_only {
            builder = builder.http2_prior_knowledge();
        }
        Ok(builder.build()?)
    }

    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    /// Parses and checks a webhook or hook URL now: its length and scheme, no
    /// credentials in it, and a host that is, or resolves to, an allowed
    /// address. `invalid_argument` with the reason otherwise.
    pub async fn check_url(&self, url: &str) -> Result<url::Url> {
        let parsed = self.check_static(url).map_err(invalid_url)?;
        match parsed.host() {
            Some(url::Host::Domain(host)) => {
                let port = parsed.port_or_known_default().unwrap_or(443);
                resolve_allowed(host, port, self.policy.allow_private)
                    .await
                    .map_err(invalid_url)?;
            }
            // IP literals were checked by `check_static`.
            Some(_) => {}
            None => return Err(invalid_url(refused("the URL has no host"))),
        }
        Ok(parsed)
    }

    /// What can be told of a URL without resolving it.
    fn check_static(&self, url: &str) -> Result<url::Url, OutboundError> {
        if url.len() > MAX_URL_LEN {
            return Err(refused(format!(
                "the URL is longer than {MAX_URL_LEN} bytes"
            )));
        }
        let parsed =
            url::Url::parse(url).map_err(|e| refused(format!("not an absolute URL: {e}")))?;
        self.check_parsed(&parsed)?;
        Ok(parsed)
    }

    pub(crate) fn check_parsed(&self, url: &url::Url) -> Result<(), OutboundError> {
        match url.scheme() {
            "https" => {}
            "http" if self.policy.allow_private => {}
            "http" => {
                return Err(refused(
                    "the URL must be https (http needs the server's --outbound-allow-private)",
                ))
            }
            other => return Err(refused(format!("the scheme {other:?} is not http(s)"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused(
                "the URL must not hold credentials (the signature authenticates the call)",
            ));
        }
        let ip = match url.host() {
            None => return Err(refused("the URL has no host")),
            Some(url::Host::Domain(_)) => return Ok(()),
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        };
        if !self.policy.allow_private && is_refused(ip) {
            return Err(refused(format!(
                "{ip} is not a public address (loopback and private addresses need the \
                 server's --outbound-allow-private)"
            )));
        }
        Ok(())
    }

    /// POSTs `body` (JSON) with extra headers, within `timeout` (connecting,
    /// sending and reading the whole answer). The URL is checked again (an
    /// IP-literal host never reaches the resolver); a name is resolved anew.
    pub async fn post_json(
        &self,
        url: &url::Url,
        headers: &[(&'static str, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<OutboundResponse, OutboundError> {
        self.check_parsed(url)?;
        let mut request = self
            .client
            .post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let call = async {
            let mut response = request.send().await.map_err(from_reqwest)?;
            let status = response.status().as_u16();
            if response
                .content_length()
                .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
            {
                return Err(OutboundError::TooLarge);
            }
            let mut read = BytesMut::new();
            while let Some(chunk) = response.chunk().await.map_err(from_reqwest)? {
                if read.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(OutboundError::TooLarge);
                }
                read.extend_from_slice(&chunk);
            }
            Ok(OutboundResponse {
                status,
                body: read.freeze(),
            })
        };
        // reqwest's own timeout covers the body too; this one also bounds
        // a resolver that hangs.
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or(Err(OutboundError::Timeout))
    }
}

/// The wait before trying again a call that failed `failures + 1` times in a
/// row (webhooks, pushes): backon's jittered exponential from `min`, doubling,
/// capped at `max`.
pub fn retry_delay(min: Duration, max: Duration, failures: i64) -> Duration {
    use backon::BackoffBuilder as _;
    let mut backoff = backon::ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build();
    let n = usize::try_from(failures).unwrap_or(0).min(64);
    backoff.nth(n).unwrap_or(max).min(max)
}

/// reqwest with the guards every outbound call has: our TLS settings, no
/// redirects, no proxies, our resolver.
fn guarded_builder(policy: &OutboundPolicy, tls: rustls::ClientConfig) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: policy.allow_private,
        }))
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("Mkondo/", env!("CARGO_PKG_VERSION")))
}

fn refused(why: impl Into<String>) -> OutboundError {
    OutboundError::Refused(why.into())
}

fn invalid_url(err: OutboundError) -> Error {
    match err {
        OutboundError::Refused(why) => Error::invalid(format!("url: {why}")),
        other => Error::invalid(format!("url: {other}")),
    }
}

/// reqwest's error, told apart by what the caller can do about it; our
/// resolver's refusal is found in the error's sources. The URL is left out of
/// the text (it is logged, and a customer's URL may carry a token).
fn from_reqwest(err: reqwest::Error) -> OutboundError {
    let err = err.without_url();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(OutboundError::Refused(why)) = e.downcast_ref::<OutboundError>() {
            return OutboundError::Refused(why.clone());
        }
        source = e.source();
    }
    if err.is_timeout() {
        OutboundError::Timeout
    } else if err.is_connect() {
        OutboundError::Connect(error_chain(&err))
    } else {
        OutboundError::Other(error_chain(&err))
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// reqwest's resolver: the system's (through tokio), minus refused addresses.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port in.
            let addrs = resolve_allowed(&host, 0, allow_private).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

async fn resolve_allowed(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, OutboundError> {
    let found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| OutboundError::Connect(format!("resolving {host}: {e}")))?;
    let allowed: Vec<SocketAddr> = found
        .filter(|addr| allow_private || !is_refused(addr.ip()))
        .collect();
    if allowed.is_empty() {
        return Err(refused(format!(
            "{host} resolves to no public address (loopback and private addresses need \
             the server's --outbound-allow-private)"
        )));
    }
    Ok(allowed)
}

/// Whether an address is one outbound calls must not reach without
/// `--outbound-allow-private`: anything but a global unicast address.
pub fn is_refused(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_refused_v4(v4),
        IpAddr::V6(v6) => is_refused_v6(v6),
    }
}

fn is_refused_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0                                   // 0.0.0.0/8, "this network"
        || a == 10                           // private
        || a == 127                          // loopback
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 169 && b == 254)            // link-local
        || (a == 172 && (16..32).contains(&b)) // private 172.16/12
        || (a == 192 && b == 168)            // private
        || (a == 192 && b == 0 && c == 0)    // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)    // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)  // 6to4 relay anycast (deprecated)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)  // TEST-NET-3
        || a >= 224 // multicast 224/4, reserved 240/4, broadcast
}

fn is_refused_v6(ip: Ipv6Addr) -> bool {
    // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::/96) and
    // 6to4 (2002::/16) reach the IPv4 address they carry.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_refused_v4(v4);
    }
    let s = ip.segments();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_refused_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        return is_refused_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || s[0..6] == [0, 0, 0, 0, 0, 0]     // IPv4-compatible ::/96 (deprecated)
        || (s[0] & 0xffc0) == 0xfe80         // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0         // site-local fec0::/10 (deprecated)
        || (s[0] & 0xfe00) == 0xfc00         // unique-local fc00::/7
        || (s[0] & 0xff00) == 0xff00         // multicast ff00::/8
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
        || (s[0] == 0x2001 && s[1] == 0)     // Teredo 2001::/32 (tunnels to any IPv4)
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 64:ff9b:1::/48
        || (s[0..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0) // IPv4-translated ::ffff:0:0:0/96
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
}

#[cfg(test)]
mod tests;
