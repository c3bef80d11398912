//! The Postgres stall comparison: the same paced load (fixed rate, fixed concurrency) against the
//! receiver (with one worker) and against the naive handler, while another connection holds
//! `LOCK TABLE entries IN ACCESS EXCLUSIVE MODE` for the stall's length — every award waits
//! behind it, exactly as it would behind a stuck migration, a failover or a full disk.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::{Connection, PgConnection};
use testkit::app::{RunningReceiver, RunningWorker};

use crate::{
    fixtures::{self, Fixture, POINTS_EACH},
    load::{HttpConnector, LoadGenerator, Outcome, Plan, Record, RunResult},
    measure, naive,
    results::{Stall, StallSide, Window},
    servers::RunningServer,
    settings::Settings,
    stats::{self, Latency},
};

/// Clients of both runs (the headline concurrency).
const CONCURRENCY: usize = 64;

/// Width of a timeline bucket.
const BUCKET_US: u64 = 500_000;

/// Runs both sides.
pub async fn compare(generator: &LoadGenerator, settings: &Settings) -> anyhow::Result<Stall> {
    Ok(Stall {
        rate_per_s: settings.stall_rate_per_s,
        concurrency: CONCURRENCY,
        timeout_s: settings.client_timeout.as_secs_f64(),
        receiver: receiver_side(generator, settings).await?,
        naive: naive_side(generator, settings).await?,
    })
}

async fn receiver_side(
    generator: &LoadGenerator,
    settings: &Settings,
) -> anyhow::Result<StallSide> {
    let fixture = Fixture::new().await?;
    let result = async {
        let mut config = fixture.env.receiver_config();
        config.db_pool_size = 8;
        let receiver = RunningReceiver::start(config).await;
        let worker = RunningWorker::start(measure::worker_config(&fixture, 100)).await;
        let addr = measure::socket_addr(&receiver.public_url)?;
        let (run, lock, plan) = load_with_stall(generator, settings, &fixture, addr).await?;
        let accepted = run.ok_items() as usize;
        let done = fixture
            .wait_recorded(accepted, Duration::from_secs(120))
            .await?;
        worker.stop().await?;
        receiver.stop().await?;
        // Every purchase the receiver accepted was awarded exactly once (a publish that timed out
        // may still have been enqueued, so at least `accepted`).
        let (count, points) = fixture.totals().await?;
        anyhow::ensure!(
            count as usize >= accepted && points == count * POINTS_EACH,
            "after the stall: {count} purchases and {points} points for {accepted} accepted"
        );
        let mut side = summarise(&run, &lock, &plan, settings.client_timeout);
        side.caught_up_after_s = Some(done.saturating_duration_since(lock.released).as_secs_f64());
        Ok(side)
    }
    .await;
    fixture.cleanup().await;
    result
}

async fn naive_side(generator: &LoadGenerator, settings: &Settings) -> anyhow::Result<StallSide> {
    let fixture = Fixture::new().await?;
    let result = async {
        let router = naive::router(fixture.contest.clone(), &fixture.env.database_url())?;
        let server = RunningServer::start(router).await?;
        let (run, lock, plan) = load_with_stall(generator, settings, &fixture, server.addr).await?;
        server.stop().await;
        Ok(summarise(&run, &lock, &plan, settings.client_timeout))
    }
    .await;
    fixture.cleanup().await;
    result
}

/// When the lock was asked for, granted and released.
struct LockTimes {
    started: Instant,
    requested: Instant,
    acquired: Instant,
    released: Instant,
}

async fn load_with_stall(
    generator: &LoadGenerator,
    settings: &Settings,
    fixture: &Fixture,
    addr: std::net::SocketAddr,
) -> anyhow::Result<(RunResult, LockTimes, Plan)> {
    let (before, hold, after) = settings.stall_phases;
    let total = before + hold + after;
    let operations = (total.as_secs_f64() * settings.stall_rate_per_s) as usize;
    let connector = Arc::new(HttpConnector {
        addr,
        path: fixture.webhook_path(),
        secret: fixture.secret().to_owned(),
        bodies: fixtures::purchase_bodies("run", operations),
        timeout: settings.client_timeout,
    });
    // Every webhook due in the run is sent, however late (a client stuck behind the stall sends
    // the backlog once it is free, as retrying senders would); the deadline is only a safety net.
    let plan = Plan {
        concurrency: CONCURRENCY,
        operations,
        duration: Some(total + Duration::from_secs(30)),
        rate_per_s: Some(settings.stall_rate_per_s),
    };
    let url = fixture.env.database_url();
    let started = Instant::now();
    let stall = async {
        tokio::time::sleep(before).await;
        let mut connection = PgConnection::connect(&url).await?;
        let requested = Instant::now();
        let mut tx = connection.begin().await?;
        sqlx::query("LOCK TABLE entries IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let acquired = Instant::now();
        tokio::time::sleep(hold).await;
        tx.commit().await?;
        let released = Instant::now();
        let _ = connection.close().await;
        Ok::<_, anyhow::Error>(LockTimes {
            started,
            requested,
            acquired,
            released,
        })
    };
    let (run, lock) = tokio::join!(generator.run(connector, plan), stall);
    Ok((run, lock?, plan))
}

fn summarise(run: &RunResult, lock: &LockTimes, plan: &Plan, timeout: Duration) -> StallSide {
    let offset = |at: Instant| at.saturating_duration_since(lock.started).as_micros() as u64;
    let (from, to) = (offset(lock.requested), offset(lock.released));
    let timeout_us = timeout.as_micros() as u64;
    let schedule = due_times(plan);
    let window = |lo: u64, hi: u64| {
        let due = schedule.iter().filter(|&&t| t >= lo && t < hi).count() as u64;
        let records: Vec<&Record> = run
            .records
            .iter()
            .filter(|r| r.due_us >= lo && r.due_us < hi)
            .collect();
        let mut on_time: Vec<u32> = records
            .iter()
            .filter_map(|r| answered_in_time(r, timeout_us))
            .collect();
        let ok = on_time.len() as u64;
        // Another status or a transport error is a failure with an answer; everything else not
        // answered in time (timed out, too late, never sent) is a timeout from the sender's side.
        let answered_otherwise = records
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Status(_) | Outcome::Error))
            .count() as u64;
        Window {
            sent: due,
            ok,
            failures: due - ok,
            timeouts: due - ok - answered_otherwise,
            latency: Latency::from_micros(&mut on_time),
        }
    };
    StallSide {
        before: window(0, from),
        during: window(from, to),
        after: window(to, u64::MAX),
        lock_requested_at_s: from as f64 / 1e6,
        lock_wait_s: lock.acquired.duration_since(lock.requested).as_secs_f64(),
        held_s: lock.released.duration_since(lock.acquired).as_secs_f64(),
        caught_up_after_s: None,
        timeline: timeline(&run.records, &schedule, timeout_us),
    }
}

/// When each operation of a paced plan was due, in microseconds since the start.
fn due_times(plan: &Plan) -> Vec<u64> {
    let rate = plan.rate_per_s.unwrap_or(f64::INFINITY);
    (0..plan.operations)
        .map(|i| (i as f64 / rate * 1e6) as u64)
        .collect()
}

/// The latency a sender saw, counted from when the webhook was due (so time spent waiting for a
/// free client counts), if the answer was a 200 within the sender's timeout.
fn answered_in_time(record: &Record, timeout_us: u64) -> Option<u32> {
    let waited = record.start_us.saturating_sub(record.due_us) + u64::from(record.latency_us);
    (matches!(record.outcome, Outcome::Ok(_)) && waited <= timeout_us).then_some(waited as u32)
}

/// Per bucket of due time: (start s, 200s in time, the rest of the webhooks due, p99 ms of the
/// 200s in time).
fn timeline(records: &[Record], schedule: &[u64], timeout_us: u64) -> Vec<(f64, u64, u64, f64)> {
    let Some(last) = schedule.iter().map(|t| t / BUCKET_US).max() else {
        return Vec::new();
    };
    let mut due = vec![0u64; last as usize + 1];
    for t in schedule {
        due[(t / BUCKET_US) as usize] += 1;
    }
    let mut on_time: Vec<Vec<u32>> = vec![Vec::new(); due.len()];
    for record in records {
        if let Some(latency) = answered_in_time(record, timeout_us) {
            if let Some(bucket) = on_time.get_mut((record.due_us / BUCKET_US) as usize) {
                bucket.push(latency);
            }
        }
    }
    on_time
        .into_iter()
        .zip(due)
        .enumerate()
        .map(|(index, (mut ok, due))| {
            ok.sort_unstable();
            let p99 = if ok.is_empty() {
                0.0
            } else {
                f64::from(stats::percentile(&ok, 99.0)) / 1000.0
            };
            (
                index as f64 * BUCKET_US as f64 / 1e6,
                ok.len() as u64,
                due.saturating_sub(ok.len() as u64),
                p99,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_webhook_due_counts_in_its_due_bucket() {
        let record = |due_us, start_us, latency_us, outcome| Record {
            due_us,
            start_us,
            latency_us,
            outcome,
        };
        let records = [
            record(0, 100, 2_000, Outcome::Ok(1)),
            // Due at 0.2 s, answered after 5.1 s: too late.
            record(200_000, 200_000, 5_100_000, Outcome::Ok(1)),
            // Due at 0.3 s, sent 4 s late (no free client), answered 1.5 s later: too late.
            record(300_000, 4_300_000, 1_500_000, Outcome::Ok(1)),
            record(1_100_000, 1_100_000, 5_000_000, Outcome::Timeout),
        ];
        // Due every 100 ms: 0, 0.1, …, 1.1 s; only four were sent.
        let schedule: Vec<u64> = (0..12).map(|i| i * 100_000).collect();
        let buckets = timeline(&records, &schedule, 5_000_000);
        assert_eq!(buckets.len(), 3);
        assert_eq!(buckets[0], (0.0, 1, 4, 2.1));
        assert_eq!(buckets[1], (0.5, 0, 5, 0.0));
        assert_eq!(buckets[2], (1.0, 0, 2, 0.0));
    }
}
