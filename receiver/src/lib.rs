//! The receiver: the HTTP front door of the purchase-webhook service.
//!
//! It authenticates each webhook, validates and normalises it into one event, publishes it to
//! RabbitMQ with publisher confirms, and answers `200` only once the broker holds the event.
//! Postgres is never on the webhook path: contests come from an in-memory cache.
//!
//! # Layout
//!
//! - [`config`]: the environment variables the receiver reads.
//! - [`state`]: what every handler shares.
//! - [`error`]: the HTTP error enum and the one place errors become responses.
//! - [`api`]: the typed API: the envelope, request field types, shared schemas.
//! - [`address_limit`]: requests in flight per client address.
//! - [`connection`]: one client connection, parked between requests.
//! - [`body`]: raw body reading (1 MiB cap, media type, read deadline) and field-by-field JSON
//!   validation.
//! - [`auth`]: shared secret, Standard Webhooks and HMAC verification.
//! - [`providers`]: Shopify, Stripe and Coinflow: signature checks and event normalisation.
//! - [`contest_cache`]: contest settings in memory, kept fresh by LISTEN/NOTIFY and reloads.
//! - [`publish`]: the self-healing, confirm-mode RabbitMQ publisher.
//! - [`webhooks`]: the public endpoints.
//! - [`sync`]: synchronous answers (`Prefer: wait`): waiting for the worker's outcome.
//! - [`admin`]: the admin API (contests, entries, leaderboard).
//! - [`health`]: `/healthz` and `/readyz`.
//! - [`openapi`]: the OpenAPI document of both listeners, served at `/openapi.json` (admin).
//! - [`metrics`]: request metrics middleware and `/metrics`.
//! - [`request_id`]: ids for requests that come without `X-Request-Id`.

pub mod address_limit;
pub mod admin;
pub mod api;
pub mod auth;
pub mod body;
pub mod config;
pub mod connection;
pub mod contest_cache;
pub mod error;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod providers;
pub mod publish;
pub mod request_id;
pub mod state;
pub mod sync;
pub mod webhooks;

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{
    error_handling::HandleErrorLayer, extract::DefaultBodyLimit, response::IntoResponse, BoxError,
    Router,
};
use shared::{
    amqp::Topology,
    db::{self, PoolSettings},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::{limit::GlobalConcurrencyLimitLayer, util::MapResponseLayer, ServiceBuilder};
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::{
    address_limit::AddressLimits, config::ReceiverConfig, contest_cache::ContestCache,
    error::ApiError, publish::Publisher, state::AppState,
};

/// Longest a request may take end to end; senders time out at 5 s, so we answer first.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(4500);

/// How long in-flight requests may finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long start-up waits for Postgres before giving up (an orchestrator then restarts us).
const STARTUP_DB_WAIT: Duration = Duration::from_secs(60);

/// Runs the receiver on the given listeners until `shutdown` completes, then stops accepting,
/// lets in-flight requests finish (bounded), and closes the broker connection.
pub async fn run(
    config: ReceiverConfig,
    public: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let config = Arc::new(config);
    shared::metrics::install();
    let pool = db::lazy_pool(
        &config.common.database_url,
        PoolSettings {
            max_connections: config.db_pool_size,
            acquire_timeout: Duration::from_secs(1),
        },
    )?;
    db::prepare_when_available(&config.common.database_url, &pool, STARTUP_DB_WAIT).await?;

    let cache = ContestCache::new(pool.clone());
    cache.reload().await.context("loading contests")?;
    let background = CancellationToken::new();
    let refresher = cache.spawn_refresher(
        Duration::from_secs(config.contest_refresh_secs.max(1)),
        background.clone(),
    );
    let (publisher, publisher_task) = Publisher::start(
        config.common.amqp_url.clone(),
        Topology::for_config(&config.common),
        config.publish_timeout(),
        background.clone(),
    );
    let state = AppState {
        cache,
        publisher,
        db: pool.clone(),
        config: config.clone(),
    };

    let stop_http = CancellationToken::new();
    tokio::spawn({
        let stop_http = stop_http.clone();
        async move {
            shutdown.await;
            stop_http.cancel();
        }
    });
    tracing::info!(
        public = %public.local_addr()?,
        admin = %admin.local_addr()?,
        "receiver listening"
    );
    let address_limits = AddressLimits::new(config.max_in_flight_per_address);
    let public_server = serve(
        public,
        public_router(state.clone()),
        address_limits,
        stop_http.clone(),
    );
    // The admin listener is private (operators, the orchestrator, Prometheus): no per-address
    // limit, which would only get in the way of a busy scraper.
    let admin_server = serve(admin, admin_router(state), None, stop_http.clone());
    let servers = async { tokio::try_join!(public_server, admin_server) };
    tokio::select! {
        result = servers => { result?; }
        () = async { stop_http.cancelled().await; tokio::time::sleep(DRAIN_TIMEOUT).await } => {
            tracing::warn!("in-flight requests did not finish in time; stopping anyway");
        }
    }

    background.cancel();
    let _ = publisher_task.await;
    let _ = refresher.await;
    pool.close().await;
    tracing::info!("receiver stopped");
    Ok(())
}

/// How long a client may take to send a request's head (request line and headers), on a new
/// connection or between requests on a kept-alive one, before the connection is closed.
/// `axum::serve` sets no such limit (hyper enforces one only when given a timer), and
/// [`REQUEST_TIMEOUT`] starts only once the head is in, so a client trickling headers would
/// otherwise hold a connection forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long after its last answer a kept-alive connection gives back its HTTP buffers
/// ([`connection`]): a sender sending more than ten webhooks a second on one connection never
/// pays for it to be taken up again.
const PARK_AFTER: Duration = Duration::from_millis(100);

/// Connections with HTTP buffers (about 20 KiB each) a listener keeps before it parks idle ones
/// at once: 256 is 5 MiB, as many as the most concurrent senders the benchmark drives. Each
/// connection that held buffers at once leaves memory behind in the allocator after it gives
/// them back, so the budget also bounds what an opening burst leaves (measured: 10 000 idle
/// connections took 61–77 MiB with 512, 56–58 MiB with 256, at the same throughput).
const HOLD_AT_MOST: usize = 256;

/// Serves `router` over HTTP/1.1 on `listener` until `stop` is cancelled, then stops accepting
/// and waits for the requests in flight (idle kept-alive connections close at once).
/// Like `axum::serve`, plus [`HEADER_READ_TIMEOUT`], connections parked between requests
/// ([`connection`]: an idle kept-alive connection holds no HTTP buffers) and, when `limits` is
/// set, a cap on the requests in flight per client address: a request over it is answered 429
/// at once, before routing and before its body is read.
async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Option<Arc<AddressLimits>>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::TokioTimer;
    use tower::ServiceExt;

    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new());
    let connections = tokio_util::task::TaskTracker::new();
    let idleness = connection::Idleness::new(HEADER_READ_TIMEOUT, PARK_AFTER, HOLD_AT_MOST);
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or similar: back off rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let counter = limits
            .as_ref()
            .map(|limits| Arc::new(limits.connection(peer.ip())));
        let router = router.clone();
        let service = move |request: axum::http::Request<hyper::body::Incoming>| {
            let admitted = counter.as_ref().map(|counter| counter.admit());
            let router = router.clone();
            Box::pin(async move {
                let _in_flight = match admitted {
                    Some(None) => return Ok(too_many_requests(&peer)),
                    Some(Some(in_flight)) => Some(in_flight),
                    None => None,
                };
                router.oneshot(request).await
            }) as connection::Answer
        };
        connections.spawn(connection::serve(
            stream,
            http.clone(),
            idleness.clone(),
            service,
            stop.clone(),
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// The answer to a request over its address's limit: counted, logged at debug level only (a
/// flood of them must not become a flood of log lines), 429 with `Retry-After`.
fn too_many_requests(peer: &std::net::SocketAddr) -> axum::response::Response {
    ::metrics::counter!(shared::metrics::ADDRESS_LIMIT_REFUSALS).increment(1);
    tracing::debug!(address = %peer.ip(), "too many requests in flight from one address");
    ApiError::TooManyRequests.into_response()
}

/// The public listener's routes ([`webhooks::routes`]) and middleware.
pub fn public_router(state: AppState) -> Router {
    let max_concurrency = state.config.max_concurrency;
    let (routes, _) = webhooks::routes().split_for_parts();
    let routes = routes.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        webhooks::gate::gate,
    ));
    protect(routes.fallback(not_found), max_concurrency).with_state(state)
}

/// The admin listener's routes: the admin API behind its token ([`admin::routes`]), and health,
/// metrics and the OpenAPI document without one ([`openapi::service_routes`]).
pub fn admin_router(state: AppState) -> Router {
    let max_concurrency = state.config.max_concurrency;
    let (api, _) = admin::routes().split_for_parts();
    let api = api.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        admin::require_admin,
    ));
    let (service, _) = openapi::service_routes().split_for_parts();
    let routes = api.merge(service).fallback(not_found);
    protect(routes, max_concurrency).with_state(state)
}

/// Overload protection and answers for whatever goes wrong: at most `max_concurrency` requests
/// at once on the listener, all routes together (more get 503 immediately, so overload never
/// turns into unbounded memory), no request outlives [`REQUEST_TIMEOUT`], no body over 1 MiB is
/// read, a panicking handler is answered `500` (and logged) instead of dropping the connection,
/// and every error answer, including those of axum's routing and extractors, is the JSON
/// envelope.
fn protect<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    max_concurrency: usize,
) -> Router<S> {
    router
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(DefaultBodyLimit::max(body::MAX_BODY_BYTES))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|error: BoxError| async move {
                    if error.is::<tower::timeout::error::Elapsed>() {
                        tracing::warn!("request timed out");
                    }
                    ApiError::Overloaded.into_response()
                }))
                .load_shed()
                // Global: `Router::layer` wraps each route separately, and a plain
                // `concurrency_limit` would give every route its own cap.
                .layer(GlobalConcurrencyLimitLayer::new(max_concurrency.max(1)))
                .timeout(REQUEST_TIMEOUT),
        )
        .layer(MapResponseLayer::new(error::envelope_foreign))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::x_request_id(
            request_id::MakeRandomRequestId,
        ))
}

/// The span of one request: method, route and the request id (the caller's `X-Request-Id` when
/// it sent one, else a fresh UUID), so every log line of a request can be found together.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", method = %request.method(), uri = %request.uri().path(), request_id)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

#[cfg(test)]
mod tests {
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Serves `router` behind [`protect`] on a real socket; returns its address and the stop.
    async fn serve_protected(router: Router) -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, protect(router, 8), None, stop.clone()));
        (address, stop)
    }

    /// Sends a raw request, returns the status and the body text.
    async fn raw(address: std::net::SocketAddr, request: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let status = answer[9..12].parse().unwrap();
        let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_envelope_and_the_server_carries_on() {
        async fn boom() -> &'static str {
            panic!("boom in a handler")
        }
        let router = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }));
        let (address, stop) = serve_protected(router).await;
        let (status, body) = raw(
            address,
            "GET /boom HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status, 500);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "internal");
        // The panic's text stays in the logs.
        assert!(!body.to_string().contains("boom in a handler"));
        let (status, body) = raw(
            address,
            "GET /fine HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!((status, body.as_str()), (200, "fine"));
        stop.cancel();
    }

    #[tokio::test]
    async fn a_request_past_the_deadline_is_a_503_envelope() {
        async fn slow() -> &'static str {
            tokio::time::sleep(REQUEST_TIMEOUT + Duration::from_secs(5)).await;
            "too late"
        }
        let (address, stop) = serve_protected(Router::new().route("/slow", post(slow))).await;
        let started = std::time::Instant::now();
        let (status, body) = raw(
            address,
            "POST /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert_eq!(status, 503);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], "overloaded");
        assert!(started.elapsed() < REQUEST_TIMEOUT + Duration::from_secs(1));
        stop.cancel();
    }
}
