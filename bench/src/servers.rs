//! In-process comparison servers on port 0, like the receiver: [`RunningServer`] and the
//! **HTTP ceiling**, a minimal axum handler on the same route that checks the secret header,
//! parses and checks the same body, and answers the same envelope — what axum, hyper and the
//! load generator cost with nothing behind them. The checks and the answer are shared with the
//! naive baseline ([`crate::naive`]).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::{
    contest::Contest,
    email::Email,
    event::PurchaseEvent,
    ids::{OrderId, PurchaseId, Source},
    money::{parse_decimal, Currency, Money},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// A server running on the bench's main runtime until stopped.
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// Serves `router` on a fresh port.
    pub async fn start(router: Router) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self { addr, stop, task })
    }

    /// Stops accepting and waits (briefly) for open connections to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// The generic purchase body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PurchaseBody {
    email: String,
    order_id: Value,
    amount: Value,
    currency: Option<String>,
}

/// What the ceiling needs to authenticate a request.
#[derive(Clone)]
struct Shared {
    contest: Arc<Contest>,
}

/// The HTTP ceiling's router.
pub fn http_ceiling(contest: Contest) -> Router {
    Router::new()
        .route("/api/webhooks/purchase/{contest_id}", post(ceiling_handler))
        .with_state(Shared {
            contest: Arc::new(contest),
        })
}

async fn ceiling_handler(
    State(shared): State<Shared>,
    Path(contest_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match verify_and_parse(&shared.contest, &contest_id, &headers, &body) {
        Ok(event) => accepted(&event),
        Err(status) => status.into_response(),
    }
}

/// The checks the ceiling and the naive handler make: contest, secret header (constant time),
/// body fields.
pub fn verify_and_parse(
    contest: &Contest,
    contest_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PurchaseEvent, StatusCode> {
    if contest_id != contest.id.as_str() {
        return Err(StatusCode::NOT_FOUND);
    }
    let given = headers
        .get("x-webhook-secret")
        .map(|value| value.as_bytes())
        .ok_or(StatusCode::UNAUTHORIZED)?;
    if !receiver::auth::hmac::constant_time_eq(given, contest.webhook_secret.as_bytes()) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let body: PurchaseBody = serde_json::from_slice(body).map_err(|_| StatusCode::BAD_REQUEST)?;
    let text = |value: &Value| match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    let order_id = OrderId::parse(&text(&body.order_id).ok_or(StatusCode::BAD_REQUEST)?)
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let amount = parse_decimal(&text(&body.amount).ok_or(StatusCode::BAD_REQUEST)?)
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let currency = match body.currency.as_deref() {
        Some(code) => Currency::parse(code).map_err(|_| StatusCode::BAD_REQUEST)?,
        None => Currency::USD,
    };
    Ok(PurchaseEvent {
        purchase_id: PurchaseId::derive(&contest.id, Source::Api, &order_id),
        contest_id: contest.id.clone(),
        source: Source::Api,
        order_id,
        email: Email::parse(&body.email).map_err(|_| StatusCode::BAD_REQUEST)?,
        money: Money::new(amount, currency).map_err(|_| StatusCode::BAD_REQUEST)?,
        received_at: Utc::now(),
        referral_codes: Vec::new(),
        payment_intent: None,
    })
}

/// The receiver's `accepted` envelope for `event`.
pub fn accepted(event: &PurchaseEvent) -> Response {
    Json(json!({
        "success": true,
        "data": {
            "purchaseId": event.purchase_id,
            "orderId": event.order_id.as_str(),
            "status": "accepted",
        }
    }))
    .into_response()
}
