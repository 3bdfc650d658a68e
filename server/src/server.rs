//! Assembling and running a server: one port for REST, WebSocket and gRPC
//! (tonic routes merged into the axum router), health and metrics endpoints,
//! and a graceful shutdown that tells every client to reconnect before the
//! database is closed.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use mkondo_proto::DisconnectCode;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::node::Node;
use crate::realtime::broker::MemoryBroker;
use crate::realtime::grpc::RealtimeService;
use crate::realtime::hub::Hub;
use crate::realtime::presence::MemoryPresence;
use crate::realtime::ws;
use crate::store::Store;

/// Builds the node with the single-process broker and presence.
pub async fn build_node(config: Config) -> anyhow::Result<Arc<Node>> {
    let store = Store::open(&config.database).await?;
    let hub = Arc::new(Hub::default());
    let broker = Arc::new(MemoryBroker::new(hub.clone()));
    Ok(Node::new(
        store,
        config,
        hub,
        broker,
        Arc::new(MemoryPresence::default()),
    ))
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
    let mut grpc = tonic::service::Routes::new(RealtimeService::new(node.clone()))
        .add_service(crate::admin::service(node.clone()));
    // Reflection is a convenience (grpcurl); a server without it still serves.
    match crate::admin::reflection() {
        Ok(reflection) => grpc = grpc.add_service(reflection),
        Err(err) => tracing::warn!(%err, "gRPC reflection is off"),
    }
    let grpc = grpc.prepare().into_axum_router();
    let http = Router::new()
        .route("/v1/realtime", get(ws::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(move || async move { metrics.render() }))
        .merge(crate::rest::router())
        .with_state(node);
    http.merge(grpc)
}

async fn ready(State(node): State<Arc<Node>>) -> impl IntoResponse {
    if node.shutdown.is_cancelled() {
        return (http::StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    match node.store.ping().await {
        Ok(()) => (http::StatusCode::OK, "ready"),
        Err(_) => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable",
        ),
    }
}

/// Serves until SIGTERM / ctrl-c, then shuts down gracefully: stop accepting,
/// tell every client to reconnect, let sessions flush, close the database.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    extra: Option<Router>,
) -> anyhow::Result<()> {
    let mut app = router(node.clone());
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    let app = app.layer(tower_http::trace::TraceLayer::new_for_http());
    let shutdown_node = node.clone();
    let signal = async move {
        wait_for_signal().await;
        tracing::info!("shutting down: telling clients to reconnect");
        shutdown_node.shutdown.cancel();
        shutdown_node.hub.close_all(DisconnectCode::Shutdown);
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await?;
    // Sessions end once their disconnect is written; give stragglers a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while node.hub.session_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.store.close().await;
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
    let store = &node.store;
    if store.get_app("demo").await?.is_none() {
        let creds = store.create_app("demo", Some("demo")).await?;
        println!(
            "created the demo app: app_id=demo kid={}",
            creds.signing_key.kid
        );
        println!("demo API key (shown once): {}", creds.api_key);
    } else {
        let key = store.create_api_key("demo").await?;
        println!("demo app ready; a fresh API key for this run: {key}");
    }
    println!(
        "mint a user token:  mkondo token --app demo --user alice --database {}",
        node.config.database
    );
    Ok(())
}
