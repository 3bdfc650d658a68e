//! Browser origins: which web pages may use an app's credentials. A browser
//! says where a request comes from (`Origin`); the app lists the origins its
//! frontends are served from (`allowed_origins`), and the node refuses the
//! others with `permission_denied`, reason `origin_not_allowed`, on REST and at
//! a WebSocket `connect` — after the credential names the app, before anything
//! is done with it. A request without `Origin` (a backend, curl, a native
//! client) is not a browser's and is not checked. The server's own origin (a
//! page it serves itself, as `mkondo dev` does) is always allowed.
//!
//! Invariants: an allow-list is validated, normalised and capped here before
//! it is stored (a refused list changes nothing); an entry is `*` or exactly
//! what a browser sends as `Origin` (lower-case scheme and host, punycode, no
//! default port), so a check is a string comparison. The per-request check
//! reads the app's list from the store, so a change made on any node (or by
//! the CLI) holds at once; only preflights, which carry no credential, are
//! answered from the union of every app's list, cached for [`UNION_TTL`].

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use mkondo_proto::Reason;

use super::requests::distinct;
use super::Node;
use crate::error::{Error, Result};

/// Most origins one app lists.
pub const MAX_ALLOWED_ORIGINS: usize = 100;
/// Longest origin accepted: `https://` + a 253-byte host name + `:65535`.
pub const MAX_ORIGIN_BYTES: usize = 270;
/// How long the union of every app's origins answers preflights before it is
/// read again: the delay before a change made on another node (or by the CLI)
/// reaches this node's preflights. A change made through this node applies at once.
pub const UNION_TTL: Duration = Duration::from_secs(5);
/// The entry that allows every origin (for development).
pub const ANY: &str = "*";

/// A browser's `Origin`, as an adapter found it on a request, with the
/// `Host` it was sent to (to recognise the server's own pages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserOrigin {
    /// Normalised as an allow-list entry is; `None` when it is not an origin
    /// a list can name (`null`, garbage): only `*` allows it.
    origin: Option<String>,
    /// As sent, for messages (truncated).
    sent: String,
    host: Option<String>,
    /// The scheme the page reached us over as a trusted proxy terminating TLS
    /// told it (`X-Forwarded-Proto`); `None`: the scheme this server serves.
    forwarded_scheme: Option<&'static str>,
}

impl BrowserOrigin {
    /// The request's `Origin`, if any, with its `Host` (or the URI's authority,
    /// for HTTP/2).
    pub fn from_headers(headers: &http::HeaderMap, uri: &http::Uri) -> Option<Self> {
        let sent = headers.get(http::header::ORIGIN)?;
        let sent = String::from_utf8_lossy(sent.as_bytes());
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| uri.authority().map(|a| a.as_str().to_owned()));
        Some(Self::new(&sent, host))
    }

    pub fn new(sent: &str, host: Option<String>) -> Self {
        let origin = (sent.len() <= MAX_ORIGIN_BYTES)
            .then(|| normalise(sent).ok())
            .flatten()
            .filter(|o| o != ANY);
        Self {
            origin,
            sent: sent.chars().take(MAX_ORIGIN_BYTES).collect(),
            host,
            forwarded_scheme: None,
        }
    }

    /// The scheme in the last `X-Forwarded-Proto` value (what the proxy nearest
    /// to us saw), when it is `http` or `https`.
    fn forwarded_proto(headers: &http::HeaderMap) -> Option<&'static str> {
        let last = headers
            .get_all("x-forwarded-proto")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .next_back()?;
        if last.eq_ignore_ascii_case("https") {
            Some("https")
        } else if last.eq_ignore_ascii_case("http") {
            Some("http")
        } else {
            None
        }
    }

    /// Whether this is the server's own origin: the page was served by the
    /// host it calls, over the scheme this server serves.
    fn is_own(&self, scheme: &str) -> bool {
        let (Some(origin), Some(host)) = (&self.origin, &self.host) else {
            return false;
        };
        normalise(&format!("{scheme}://{host}")).is_ok_and(|own| &own == origin)
    }

    fn refused(&self) -> Error {
        Error::denied(format!(
            "origin {:?} is not allowed for this app: add it to the app's allowed_origins",
            self.sent
        ))
        .with_reason(Reason::OriginNotAllowed)
    }
}

/// An allow-list as given (REST, CLI) → as stored: at most
/// [`MAX_ALLOWED_ORIGINS`] entries (duplicates counted), each valid, each
/// normalised, each once. Any bad entry refuses the whole list.
pub fn allow_list(input: Vec<String>) -> Result<Vec<String>> {
    let input = distinct(input, MAX_ALLOWED_ORIGINS, "allowed_origins")?;
    let mut seen = HashSet::with_capacity(input.len());
    let mut out = Vec::with_capacity(input.len());
    for raw in input {
        let origin = normalise(&raw)
            .map_err(|why| Error::invalid(format!("allowed_origins: {raw:?}: {why}")))?;
        if seen.insert(origin.clone()) {
            out.push(origin);
        }
    }
    Ok(out)
}

/// One allow-list entry, normalised: `*`, or `scheme://host[:port]` with
/// scheme `http` or `https`, lower case, the host in punycode, the scheme's
/// default port dropped — the form browsers send. No path (not even `/`),
/// query, fragment, user info or wildcard inside a host.
pub fn normalise(raw: &str) -> std::result::Result<String, &'static str> {
    if raw == ANY {
        return Ok(ANY.to_owned());
    }
    if raw.is_empty() {
        return Err("empty");
    }
    if raw.len() > MAX_ORIGIN_BYTES {
        return Err("too long");
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("no spaces or control characters");
    }
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err("not an origin: scheme://host[:port], e.g. https://chat.example");
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err("the scheme must be http or https");
    }
    if rest.contains(['/', '?', '#']) {
        return Err("an origin has no path (not even /), query or fragment");
    }
    if rest.contains('@') {
        return Err("an origin has no user info");
    }
    if rest.contains('*') {
        return Err("no wildcards in a host: list each origin, or * alone for any");
    }
    let url = url::Url::parse(&format!("{scheme}://{rest}")).map_err(|_| "not a valid host")?;
    match url.host() {
        Some(url::Host::Domain(domain)) => {
            let labels_ok = domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
            if !labels_ok {
                return Err("not a valid host name");
            }
        }
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => {}
        None => return Err("no host"),
    }
    Ok(url.origin().ascii_serialization())
}

/// The union of every app's allowed origins, as preflights read it.
#[derive(Debug, Default)]
struct Union {
    any: bool,
    origins: HashSet<String>,
}

/// The node's cache of [`Union`].
#[derive(Debug, Default)]
pub(super) struct UnionCache {
    current: RwLock<Option<(Instant, Arc<Union>)>>,
    /// One reload at a time; the others wait for it rather than query too.
    reloading: tokio::sync::Mutex<()>,
}

impl UnionCache {
    fn fresh(&self) -> Option<Arc<Union>> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current
            .as_ref()
            .filter(|(at, _)| at.elapsed() < UNION_TTL)
            .map(|(_, union)| union.clone())
    }

    fn invalidate(&self) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Node {
    /// A request's browser origin, if it has one (see
    /// [`BrowserOrigin::from_headers`]). From a trusted proxy (`peer` in
    /// `--trusted-proxies`), its `X-Forwarded-Proto` says which scheme the page
    /// reached the server over, so the server's own origin behind a proxy
    /// terminating TLS is `https://`; from anyone else the header is ignored.
    pub fn browser_origin(
        &self,
        headers: &http::HeaderMap,
        uri: &http::Uri,
        peer: Option<std::net::SocketAddr>,
    ) -> Option<BrowserOrigin> {
        let mut origin = BrowserOrigin::from_headers(headers, uri)?;
        if peer.is_some_and(|p| self.is_trusted_proxy(p.ip())) {
            origin.forwarded_scheme = BrowserOrigin::forwarded_proto(headers);
        }
        Some(origin)
    }

    /// The scheme this server's own pages are served over: its own (`https`
    /// with `--tls-cert`), unless a trusted proxy said otherwise.
    fn own_scheme(&self, origin: &BrowserOrigin) -> &'static str {
        if let Some(scheme) = origin.forwarded_scheme {
            scheme
        } else if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// A request (or WebSocket `connect`) made with `app`'s credentials from
    /// `origin`: refused with `origin_not_allowed` unless the origin is the
    /// server's own or in the app's list. No `Origin`: nothing to check.
    pub async fn check_origin(&self, app: &str, origin: Option<&BrowserOrigin>) -> Result<()> {
        let Some(origin) = origin else {
            return Ok(());
        };
        if origin.is_own(self.own_scheme(origin)) {
            return Ok(());
        }
        let list = self
            .store
            .allowed_origins(app)
            .await?
            .ok_or_else(|| Error::not_found("app"))?;
        let listed = list
            .iter()
            .any(|entry| entry == ANY || origin.origin.as_ref() == Some(entry));
        if listed {
            Ok(())
        } else {
            Err(origin.refused())
        }
    }

    /// Whether a preflight from `origin` is answered as allowed: the server's
    /// own origin, or one that some app lists (the real request is then
    /// checked against the caller's own app).
    pub async fn preflight_allows(&self, origin: &BrowserOrigin) -> Result<bool> {
        if origin.is_own(self.own_scheme(origin)) {
            return Ok(true);
        }
        let union = self.origin_union().await?;
        Ok(union.any
            || origin
                .origin
                .as_ref()
                .is_some_and(|o| union.origins.contains(o)))
    }

    /// Routes browsers may not call (the operator API, `/dev`): a foreign
    /// origin is refused whatever any app lists; the server's own passes.
    pub fn refuse_foreign_origin(&self, origin: &BrowserOrigin) -> Result<()> {
        if origin.is_own(self.own_scheme(origin)) {
            Ok(())
        } else {
            Err(origin.refused())
        }
    }

    async fn origin_union(&self) -> Result<Arc<Union>> {
        if let Some(union) = self.origin_union.fresh() {
            return Ok(union);
        }
        let _one = self.origin_union.reloading.lock().await;
        // Another task may have reloaded while this one waited.
        if let Some(union) = self.origin_union.fresh() {
            return Ok(union);
        }
        let mut union = Union::default();
        for origin in self.store.all_allowed_origins().await? {
            if origin == ANY {
                union.any = true;
            } else {
                union.origins.insert(origin);
            }
        }
        let union = Arc::new(union);
        *self
            .origin_union
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), union.clone()));
        Ok(union)
    }

    /// After an app's list changed through this node: the next preflight reads
    /// the lists again.
    pub(super) fn origins_changed(&self) {
        self.origin_union.invalidate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_normalised_as_browsers_send_them() {
        let cases = [
            ("https://chat.example", "https://chat.example"),
            ("HTTPS://Chat.Example", "https://chat.example"),
            ("https://chat.example:443", "https://chat.example"),
            ("http://chat.example:80", "http://chat.example"),
            ("http://localhost:5173", "http://localhost:5173"),
            ("https://chat.example:8443", "https://chat.example:8443"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://[::1]:3000", "http://[::1]:3000"),
            ("https://bücher.example", "https://xn--bcher-kva.example"),
            ("*", "*"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalise(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn anything_but_an_origin_is_refused() {
        let long = format!("https://{}.example", "a".repeat(MAX_ORIGIN_BYTES));
        for raw in [
            "",
            " ",
            "chat.example",
            "null",
            "ftp://chat.example",
            "ws://chat.example",
            "file:///etc/passwd",
            "https://",
            "https://chat.example/",
            "https://chat.example/app",
            "https://chat.example?x=1",
            "https://chat.example#top",
            "https://user@chat.example",
            "https://user:pw@chat.example",
            "https://*.chat.example",
            "https://chat.example:99999",
            "https://chat.example:port",
            "https://chat example",
            " https://chat.example",
            "https://chat.example\n",
            "https://chat..example",
            "https://chat_room.example",
            "https://-/",
            long.as_str(),
        ] {
            assert!(normalise(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn a_list_is_capped_first_then_normalised_and_deduplicated() {
        let list = allow_list(vec![
            "https://a.example:443".into(),
            "https://A.example".into(),
            "http://localhost:3000".into(),
            "https://a.example".into(),
        ])
        .unwrap();
        assert_eq!(list, ["https://a.example", "http://localhost:3000"]);

        let too_many = vec!["https://a.example".to_owned(); MAX_ALLOWED_ORIGINS + 1];
        let err = allow_list(too_many).unwrap_err();
        assert_eq!(err.code, mkondo_proto::ErrorCode::InvalidArgument);
        assert!(err.message.contains("at most 100"), "{}", err.message);

        let err = allow_list(vec!["https://ok.example".into(), "https://x/".into()]).unwrap_err();
        assert_eq!(err.code, mkondo_proto::ErrorCode::InvalidArgument);
        assert!(err.message.contains("https://x/"), "{}", err.message);
        assert_eq!(allow_list(vec![]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn the_own_origin_is_the_host_called_over_the_served_scheme() {
        let sent = |origin: &str, host: &str| BrowserOrigin::new(origin, Some(host.to_owned()));
        assert!(sent("http://127.0.0.1:8080", "127.0.0.1:8080").is_own("http"));
        assert!(sent("http://LOCALHOST:8080", "localhost:8080").is_own("http"));
        assert!(sent("https://chat.example", "chat.example").is_own("https"));
        assert!(sent("https://chat.example", "chat.example:443").is_own("https"));
        assert!(!sent("http://chat.example", "chat.example").is_own("https"));
        assert!(!sent("http://127.0.0.1:8081", "127.0.0.1:8080").is_own("http"));
        assert!(!sent("null", "127.0.0.1:8080").is_own("http"));
        assert!(!BrowserOrigin::new("http://127.0.0.1:8080", None).is_own("http"));
    }
}
