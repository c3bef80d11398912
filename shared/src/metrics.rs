//! Prometheus metrics: the recorder both binaries install, and every metric name in one place
//! (so dashboards, alerts, docs and tests agree). Exposed at `/metrics` on the receiver's admin
//! listener and on the worker's listener.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Webhook and admin requests, by `endpoint` (route template) and `outcome` (`accepted`,
/// `ignored`, or the HTTP status code of anything else).
pub const HTTP_REQUESTS: &str = "blitz_http_requests_total";
/// Request latency in seconds, by `endpoint`.
pub const HTTP_DURATION: &str = "blitz_http_request_duration_seconds";
/// Publishes by `result`: `confirmed`, `nacked`, `returned`, `timeout`, `not_connected`,
/// `blocked`, `error`.
pub const PUBLISHES: &str = "blitz_publish_total";
/// Time from publish to confirm, in seconds.
pub const PUBLISH_DURATION: &str = "blitz_publish_duration_seconds";
/// Contests in the receiver's cache.
pub const CONTEST_CACHE_SIZE: &str = "blitz_contest_cache_size";
/// Webhooks for a contest id the receiver's cache does not hold, by `result`: `found`,
/// `missing` and `error` asked Postgres; `remembered` was answered from the short memory of
/// missing ids; `skipped` was answered from the cache alone because the per-second budget of
/// such queries was spent (a flood of made-up ids).
pub const CONTEST_MISSES: &str = "blitz_contest_cache_misses_total";
/// Requests refused with 429 because their client address had too many in flight.
pub const ADDRESS_LIMIT_REFUSALS: &str = "blitz_address_limit_refusals_total";
/// Synchronous requests (`Prefer: wait`, `syncResponses`) waiting for their outcome right now,
/// on this receiver process: it goes up while requests wait and back to 0 when they are
/// answered, time out or are abandoned by their client.
pub const SYNC_WAITERS: &str = "blitz_sync_waiters";
/// Synchronous requests answered, by `result`: `outcome` (the worker's outcome came in time),
/// `timeout` (the usual `accepted` answer after the wait), `lost` (the broker connection was
/// lost during the wait: `accepted` at once).
pub const SYNC_ANSWERS: &str = "blitz_sync_answers_total";
/// Outcome replies received by the receiver that no request was waiting for any more, by
/// `reason`: `late` (the request had stopped waiting), `undecodable` (not an outcome this build
/// understands).
pub const SYNC_REPLIES_UNMATCHED: &str = "blitz_sync_replies_unmatched_total";
/// Outcome replies the worker published for synchronous requests, by `result`: `sent`, or
/// `failed` (the reply channel failed; the sender got `accepted`).
pub const SYNC_REPLIES: &str = "blitz_sync_replies_total";
/// Broker connections (re)established, by `process`.
pub const BROKER_CONNECTS: &str = "blitz_broker_connects_total";
/// Deliveries taken from the queue by the worker.
pub const DELIVERIES: &str = "blitz_deliveries_total";
/// Purchases recorded for the first time.
pub const PURCHASES_RECORDED: &str = "blitz_purchases_recorded_total";
/// Purchases found already recorded (redeliveries, duplicate webhooks).
pub const DUPLICATES: &str = "blitz_duplicates_total";
/// Points awarded (purchases and referral credits).
pub const POINTS_AWARDED: &str = "blitz_points_awarded_total";
/// Referral credits recorded.
pub const REFERRAL_CREDITS: &str = "blitz_referral_credits_total";
/// Signups applied.
pub const SIGNUPS: &str = "blitz_signups_total";
/// Reversal events (refunds, chargebacks, wins) settled by the worker, by `outcome`: `applied`,
/// `pending` (purchase not recorded yet), `duplicate`, `currency_mismatch`, `points_limit`.
pub const REVERSALS: &str = "blitz_reversals_total";
/// Pending reversals applied once their purchase was recorded, by `via`: `purchase` (in the
/// purchase's own transaction) or `sweep` (the periodic sweep, after a concurrent commit).
pub const PENDING_REVERSALS_APPLIED: &str = "blitz_pending_reversals_applied_total";
/// Points moved by reversals (buyers' and advocates' together), by `direction`: `taken` (refunds,
/// chargebacks) or `returned` (chargebacks won).
pub const POINTS_REVERSED: &str = "blitz_points_reversed_total";
/// Awards and reversals not applied because they would take an entry beyond ±9·10^15 points,
/// by `what`: `purchase`, `referral`, `reversal`.
pub const POINTS_LIMIT: &str = "blitz_points_limit_total";
/// Messages dead-lettered by the worker, by `reason`: `undecodable`, `unknown_contest`, `refused`.
pub const DEAD_LETTERED: &str = "blitz_dead_lettered_total";
/// Messages per committed batch.
pub const BATCH_SIZE: &str = "blitz_batch_size";
/// Batch transactions retried because the database was unavailable.
pub const DB_RETRIES: &str = "blitz_db_retries_total";
/// Acks that could not be delivered after a commit (the redelivery will be a harmless duplicate).
pub const ACKS_LOST: &str = "blitz_acks_lost_total";
/// Seconds from the receiver accepting an event to the worker committing it.
pub const END_TO_END_LAG: &str = "blitz_end_to_end_lag_seconds";
/// Ready messages in the events queue (passive declare, every few seconds).
pub const QUEUE_DEPTH: &str = "blitz_queue_depth";
/// Ready messages in the dead-letter queue.
pub const DEAD_LETTER_DEPTH: &str = "blitz_dead_letter_queue_depth";
/// Consumers on the events queue.
pub const QUEUE_CONSUMERS: &str = "blitz_queue_consumers";
/// Unix time of a worker's last successful look at both queues: the three gauges above are as
/// old as this (a worker that lost the broker keeps exporting its last readings).
pub const QUEUE_INSPECTED_AT: &str = "blitz_queue_inspected_timestamp_seconds";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global Prometheus recorder once per process and returns its handle. Later calls
/// (several in-process services in a test) share it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let lag = [
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ];
            let sizes = [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &latency)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(PUBLISH_DURATION.into()), &latency)
                })
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(END_TO_END_LAG.into()), &lag))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), &sizes))
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is already installed (only possible in unusual embeddings):
                // keep a private one so `/metrics` still renders.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}
