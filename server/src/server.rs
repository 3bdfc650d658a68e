//! Assembling and running a server: one port for REST, WebSocket and gRPC
//! (tonic routes merged into the axum router), health and metrics endpoints,
//! and a graceful shutdown that tells every client to reconnect before the
//! database is closed.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use mkondo_proto::{ErrorCode, Reason};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::engine::broker::{Broker, MemoryBroker};
use crate::engine::hub::Hub;
use crate::engine::presence::{MemoryPresence, PresenceManager};
use crate::engine::redis_broker::RedisBroker;
use crate::engine::redis_presence::RedisPresence;
use crate::error::Error;
use crate::files::blobs::Blobs;
use crate::node::{DemoApp, Node};
use crate::realtime::grpc::RealtimeService;
use crate::realtime::ws;
use crate::store::Store;

/// Builds the node with the broker and presence engine the configuration names:
/// in memory (one node) or Redis (several nodes).
pub async fn build_node(config: Config) -> anyhow::Result<Arc<Node>> {
    let store_options = crate::store::StoreOptions {
        max_connections: config.database_max_connections,
        sqlite_synchronous: config.sqlite_synchronous,
    };
    let store = Store::open_with(config.database.expose(), &store_options)
        .await
        .map_err(|e| e.context(format!("opening the database {}", config.database)))?;
    let outbound = crate::outbound::OutboundClient::new(config.outbound.clone())?;
    let secrets = crate::outbound::secrets::load(&config.secrets_key, config.database.expose())?;
    if secrets.is_none() {
        tracing::warn!(
            "no --secrets-key: webhooks and the before-send hook cannot be set until one is \
             (the same key on every node)"
        );
    }
    // A bucket that cannot be written stops the start here, not at the
    // first upload.
    Blobs::new(config.files.dir.clone(), config.files.s3.as_ref())?
        .check()
        .await?;
    let hub = Arc::new(Hub::default());
    let Some(url) = config.broker.redis_url.clone() else {
        let broker = Arc::new(MemoryBroker::new(hub.clone()));
        let presence = Arc::new(MemoryPresence::default());
        let node = Node::new(store, config, hub, broker, presence, outbound, secrets)?;
        tokio::spawn(node.clone().run_typing_sweep());
        tokio::spawn(node.clone().run_event_retention());
        tokio::spawn(node.clone().run_webhooks());
        tokio::spawn(node.clone().run_file_sweeper());
        node.start_push_worker();
        return Ok(node);
    };
    // Session ids are unique per process only: presence entries carry this too.
    let node_id: Arc<str> = Arc::from(ulid::Ulid::new().to_string().to_lowercase());
    let stop = tokio_util::sync::CancellationToken::new();
    let prefix = config.broker.prefix.clone();
    let redis =
        crate::engine::redis_broker::connection(url.expose(), config.broker.redis_ca.as_deref())?;
    let presence: Arc<dyn PresenceManager> = RedisPresence::new(
        redis.1.clone(),
        &prefix,
        node_id.clone(),
        config.broker.presence_ttl,
    );
    let broker: Arc<dyn Broker> =
        RedisBroker::start(redis, &prefix, node_id.clone(), hub.clone(), stop.clone()).await?;
    tracing::info!(node = %node_id, %prefix, "using the Redis broker and presence");
    let node = Node::new(store, config, hub, broker, presence, outbound, secrets)?;
    let shutdown = node.shutdown_signal();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stop.cancel();
    });
    tokio::spawn(node.clone().run_presence_upkeep());
    tokio::spawn(node.clone().run_typing_sweep());
    tokio::spawn(node.clone().run_event_retention());
    tokio::spawn(node.clone().run_webhooks());
    tokio::spawn(node.clone().run_file_sweeper());
    node.start_push_worker();
    Ok(node)
}

/// A node for a command-line tool (`mkondo webhook …`): the configured
/// database, in-memory engines, no listener and no background task.
pub async fn tool_node(config: Config) -> anyhow::Result<Arc<Node>> {
    let store_options = crate::store::StoreOptions {
        max_connections: 2,
        sqlite_synchronous: config.sqlite_synchronous,
    };
    let store = Store::open_with(config.database.expose(), &store_options)
        .await
        .map_err(|e| e.context(format!("opening the database {}", config.database)))?;
    let outbound = crate::outbound::OutboundClient::new(config.outbound.clone())?;
    let secrets = crate::outbound::secrets::load(&config.secrets_key, config.database.expose())?;
    let hub = Arc::new(Hub::default());
    let broker = Arc::new(MemoryBroker::new(hub.clone()));
    let presence = Arc::new(MemoryPresence::default());
    Node::new(store, config, hub, broker, presence, outbound, secrets)
}

fn metrics_handle() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0])
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Another recorder may be installed already (several servers in one process).
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The HTTP router: REST, the real-time WebSocket, gRPC, health and metrics.
pub fn router(node: Arc<Node>) -> Router {
    let metrics = metrics_handle();
    let grpc = tonic::service::Routes::new(RealtimeService::new(node.clone()))
        .add_service(crate::admin::service(node.clone()));
    // Reflection is a convenience (grpcurl); a server without it still serves.
    let grpc = match crate::admin::add_reflection(grpc.clone()) {
        Ok(with_reflection) => with_reflection,
        Err(err) => {
            tracing::warn!(%err, "gRPC reflection is off");
            grpc
        }
    };
    // tonic's fallback answers every unknown path as gRPC; ours decides by the
    // request's content type (below).
    let grpc = grpc.prepare().into_axum_router().reset_fallback();
    let http = Router::new()
        // GET: the HTTP/1.1 upgrade; CONNECT: a WebSocket over HTTP/2 (extended
        // CONNECT), what browsers use once ALPN chose h2 on a TLS port.
        .route("/v1/realtime", get(ws::upgrade).connect(ws::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(move || async move {
                crate::realtime::counters::publish();
                metrics.render()
            }),
        )
        .merge(crate::rest::router())
        .with_state(node);
    http.merge(grpc)
        .fallback(unknown_path)
        .method_not_allowed_fallback(wrong_method)
}

/// A path no route knows: a gRPC call (`content-type: application/grpc…`) gets
/// the gRPC status UNIMPLEMENTED, as tonic answers an unknown method of a known
/// service; anything else the JSON error of every REST answer, 404 `not_found`.
async fn unknown_path(method: http::Method, uri: http::Uri, headers: http::HeaderMap) -> Response {
    if is_grpc(&headers) {
        let status = tonic::Status::unimplemented(format!("no gRPC method {}", uri.path()));
        return status.into_http::<axum::body::Body>();
    }
    Error::new(
        ErrorCode::NotFound,
        format!("no route for {method} {}", uri.path()),
    )
    .into_response()
}

/// A known path with another method: 405 with the JSON error; axum adds `Allow`.
async fn wrong_method(method: http::Method, uri: http::Uri) -> Response {
    let mut response = Error::new(
        ErrorCode::InvalidArgument,
        format!("{method} is not allowed on {}", uri.path()),
    )
    .with_reason(Reason::MethodNotAllowed)
    .into_response();
    *response.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// Holds one of the node's slots for requests in progress
/// (`--max-concurrent-requests`) until the work is done; without one, 503
/// `unavailable` with `Retry-After` at once (the gRPC status for a gRPC call).
/// A request holding a slot has `--request-timeout-ms` to be answered: past it,
/// 503 `unavailable` (gRPC `UNAVAILABLE`). Its body must arrive within that
/// deadline and a tenth, so clients that stall cannot hold every slot. The handler runs in
/// a task of its own and is not cancelled at the deadline: work it has started
/// — a send committed and not yet published, a removal whose subscriptions are
/// still to end — is finished, only its answer is dropped (a retry with the same
/// `client_id` gets the original). Health checks, metrics and real-time
/// connections (long-lived, with limits of their own) take no slot and have no
/// deadline.
async fn request_slot(
    State(node): State<Arc<Node>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    // File transfers are long by nature: an upload's body has an idle limit
    // of its own (`node::files::IDLE_BODY`) and a cap on those in progress.
    let exempt = matches!(path, "/healthz" | "/readyz" | "/metrics" | "/v1/realtime")
        || path.starts_with("/mkondo.v1.Realtime/")
        || path.starts_with("/v1/uploads/")
        || path.starts_with("/v1/files/");
    if exempt {
        return next.run(request).await;
    }
    let grpc = is_grpc(request.headers());
    let answer = |err: Error| {
        if grpc {
            tonic::Status::from(err).into_http::<axum::body::Body>()
        } else {
            err.into_response()
        }
    };
    let slot = match node.request_slot() {
        Ok(slot) => slot,
        Err(err) => return answer(err),
    };
    let deadline = node.limits().request_timeout;
    // A little past the answer's deadline, so the 503 goes out first.
    let body_deadline = deadline + deadline / 10;
    let request = request.map(|body| axum::body::Body::new(DeadlineBody::new(body, body_deadline)));
    // In the request's span, so the handler's logs keep its fields.
    let work = async move {
        let _slot = slot;
        next.run(request).await
    };
    let mut work = tokio::spawn(tracing::Instrument::in_current_span(work));
    match tokio::time::timeout(deadline, &mut work).await {
        Ok(Ok(response)) => response,
        Ok(Err(failed)) => {
            tracing::error!(error = %failed, "a request handler failed");
            answer(Error::new(ErrorCode::Internal, "the request failed"))
        }
        Err(_) => {
            tracing::debug!(?deadline, "a request timed out; its work goes on");
            answer(Error::new(
                ErrorCode::Unavailable,
                "the request took longer than the server's request timeout",
            ))
        }
    }
}

/// A request body that must arrive whole before a deadline: past it, reading
/// fails (the handler answers, its task ends and the slot is free).
struct DeadlineBody {
    inner: axum::body::Body,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    fn new(inner: axum::body::Body, within: std::time::Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(within)),
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future as _;
        if self.inner.is_end_stream() {
            return std::task::Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Some(Err(axum::Error::new(
                "the request body took longer than the server's request timeout",
            ))));
        }
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

async fn ready(State(node): State<Arc<Node>>) -> impl IntoResponse {
    match node.readiness().await {
        Ok(()) => (http::StatusCode::OK, "ready"),
        Err(why) => (http::StatusCode::SERVICE_UNAVAILABLE, why.as_str()),
    }
}

/// Serves until SIGTERM / ctrl-c, then shuts down gracefully: stop accepting,
/// tell every client to reconnect, let sessions flush, close the database.
/// With `tls`, the listener speaks TLS only (see `tls::Tls::serve`).
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    extra: Option<Router>,
    tls: Option<crate::tls::Tls>,
) -> anyhow::Result<()> {
    let mut app = router(node.clone());
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    let app = app
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            request_slot,
        ))
        // Outside the request slots: a preflight takes none, and a browser can
        // read a 503's body and `Retry-After`.
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            crate::rest::cors::cors,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span));
    let shutdown_node = node.clone();
    let signal = async move {
        wait_for_signal().await;
        tracing::info!("shutting down: telling clients to reconnect");
        shutdown_node.begin_shutdown();
    };
    tokio::spawn(signal);
    match tls {
        Some(tls) => {
            tls.spawn_reloader(node.shutdown_signal());
            tls.serve(listener, app, node.shutdown_signal()).await;
        }
        // The same loop without TLS: hyper's connection settings (the read
        // buffer's bound among them) are ours on both.
        None => {
            crate::tls::serve_connections(listener, app, node.shutdown_signal(), None).await;
        }
    }
    // Sessions end once their disconnect is written (leaving the hub comes
    // before that); give stragglers a moment.
    node.finish_shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `mkondo dev`: make sure the `demo` app exists and say how to use it.
pub async fn dev_setup(node: &Node) -> anyhow::Result<()> {
    match node.ensure_demo_app("demo").await? {
        DemoApp::Created(creds) => {
            println!(
                "created the demo app: app_id=demo kid={}",
                creds.signing_key.kid
            );
            println!("demo API key (shown once): {}", creds.api_key);
            println!(
                "the demo app allows browser pages of any origin (development); \
                 restrict it with: mkondo app update --app demo --allowed-origin <origin>"
            );
        }
        DemoApp::Existing => {
            println!(
                "demo app ready (its API key was printed when it was created; \
                 make another with: mkondo app api-key create --app demo)"
            );
        }
    }
    // The setting as printed hides a password: put it back when copying this.
    println!(
        "mint a user token:  mkondo token --app demo --user alice --database {}",
        node.database_setting()
    );
    Ok(())
}

/// The span of an HTTP request: its method and path, never its query (a
/// signed upload or download link carries its grant there, and the REST
/// token lookups their filters).
fn request_span(request: &http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
}
