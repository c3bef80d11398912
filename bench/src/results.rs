//! What a benchmark run records: one [`Sample`] per repetition of a measurement, grouped with
//! their medians in a [`Figure`], plus the stall comparison and the memory figures, all
//! serialised to `latest.json`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    cpu,
    load::RunResult,
    stats::{self, Latency},
};

/// One repetition of one measurement.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    /// Successful items per second (requests, messages or purchases).
    pub throughput: f64,
    /// Successful items.
    pub items: u64,
    /// Seconds measured.
    pub seconds: f64,
    /// Failed operations (non-200, errors, refused publishes, failed transactions).
    pub failures: u64,
    /// Operations without an answer in time (a subset of `failures`).
    pub timeouts: u64,
    /// Latency of the successful operations (per request, publish+confirm, or transaction).
    pub latency: Option<Latency>,
    /// CPU used while measuring.
    pub cpu: Option<cpu::Usage>,
    /// The same, per successful item.
    pub cpu_per_item: Option<cpu::PerOp>,
    /// Other figures of this measurement (named in the table).
    pub extra: BTreeMap<String, f64>,
}

impl Sample {
    /// A sample from a load-generator run.
    pub fn from_run(run: &RunResult) -> Self {
        let items = run.ok_items();
        Self {
            throughput: run.throughput(),
            items,
            seconds: run.elapsed.as_secs_f64(),
            failures: run.failures() + run.connect_errors as u64,
            timeouts: run.timeouts(),
            latency: run.latency(),
            cpu: Some(run.cpu),
            cpu_per_item: Some(run.cpu.per_op_us(items)),
            extra: BTreeMap::new(),
        }
    }

    /// A sample of `items` done in `seconds`, with the CPU used meanwhile.
    pub fn counted(items: u64, seconds: f64, cpu: cpu::Usage) -> Self {
        Self {
            throughput: items as f64 / seconds.max(1e-9),
            items,
            seconds,
            cpu: Some(cpu),
            cpu_per_item: Some(cpu.per_op_us(items)),
            ..Self::default()
        }
    }

    /// Adds a named extra figure.
    pub fn with(mut self, name: &str, value: f64) -> Self {
        self.extra.insert(name.into(), value);
        self
    }

    /// The field-by-field median of `samples` (each figure's own median, so the result need not
    /// be one of the runs).
    pub fn median_of(samples: &[Sample]) -> Sample {
        let med = |f: &dyn Fn(&Sample) -> f64| stats::median(samples.iter().map(f)).unwrap_or(0.0);
        let latencies: Vec<Latency> = samples.iter().filter_map(|s| s.latency).collect();
        let latency = (!latencies.is_empty()).then(|| Latency {
            p50_ms: stats::median(latencies.iter().map(|l| l.p50_ms)).unwrap_or(0.0),
            p99_ms: stats::median(latencies.iter().map(|l| l.p99_ms)).unwrap_or(0.0),
            max_ms: stats::median(latencies.iter().map(|l| l.max_ms)).unwrap_or(0.0),
        });
        let usages: Vec<cpu::Usage> = samples.iter().filter_map(|s| s.cpu).collect();
        let cpu = (!usages.is_empty()).then(|| {
            let m =
                |f: &dyn Fn(&cpu::Usage) -> f64| stats::median(usages.iter().map(f)).unwrap_or(0.0);
            cpu::Usage {
                wall_s: m(&|u| u.wall_s),
                machine_busy_pct: m(&|u| u.machine_busy_pct),
                loadgen_s: m(&|u| u.loadgen_s),
                bench_servers_s: m(&|u| u.bench_servers_s),
                rabbitmq_s: m(&|u| u.rabbitmq_s),
                postgres_s: m(&|u| u.postgres_s),
            }
        });
        let per: Vec<cpu::PerOp> = samples.iter().filter_map(|s| s.cpu_per_item).collect();
        let cpu_per_item = (!per.is_empty()).then(|| {
            let m =
                |f: &dyn Fn(&cpu::PerOp) -> f64| stats::median(per.iter().map(f)).unwrap_or(0.0);
            cpu::PerOp {
                loadgen_us: m(&|p| p.loadgen_us),
                bench_servers_us: m(&|p| p.bench_servers_us),
                rabbitmq_us: m(&|p| p.rabbitmq_us),
                postgres_us: m(&|p| p.postgres_us),
            }
        });
        let mut extra = BTreeMap::new();
        for name in samples.iter().flat_map(|s| s.extra.keys()) {
            if !extra.contains_key(name) {
                let value =
                    stats::median(samples.iter().filter_map(|s| s.extra.get(name).copied()));
                extra.insert(name.clone(), value.unwrap_or(0.0));
            }
        }
        Sample {
            throughput: med(&|s| s.throughput),
            items: med(&|s| s.items as f64) as u64,
            seconds: med(&|s| s.seconds),
            failures: samples.iter().map(|s| s.failures).sum(),
            timeouts: samples.iter().map(|s| s.timeouts).sum(),
            latency,
            cpu,
            cpu_per_item,
            extra,
        }
    }
}

/// A measurement repeated, with its median (`failures` and `timeouts` are summed, not medians).
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Stable key (`receiver.c64`, `db.batch100.c4`, …).
    pub key: String,
    /// Human label.
    pub label: String,
    /// Concurrency (clients, publishers, workers) where it applies.
    pub concurrency: Option<usize>,
    /// Field-by-field medians of `runs`.
    pub median: Sample,
    /// Every repetition.
    pub runs: Vec<Sample>,
}

/// One time window of the stall comparison, from the senders' side: the webhooks due in the
/// window (by the pace), and what each sender saw counted from when it was due.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Window {
    /// Requests due in the window.
    pub sent: u64,
    /// Answered 200 within the client timeout of being due.
    pub ok: u64,
    /// Everything else: another status, an error, a timeout, or a 200 too late.
    pub failures: u64,
    /// No answer within the client timeout of being due (a subset of `failures`).
    pub timeouts: u64,
    /// Latency of the timely 200s, from when they were due.
    pub latency: Option<Latency>,
}

/// One system's behaviour across a Postgres stall.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StallSide {
    /// Before the lock.
    pub before: Window,
    /// While the lock was held (requests started in it).
    pub during: Window,
    /// After the lock was released.
    pub after: Window,
    /// When the lock was requested, in seconds since the load started.
    pub lock_requested_at_s: f64,
    /// Seconds from the lock request until it was granted.
    pub lock_wait_s: f64,
    /// Seconds the lock was held.
    pub held_s: f64,
    /// Receiver only: seconds after the release until every accepted purchase was awarded.
    pub caught_up_after_s: Option<f64>,
    /// Per 0.5 s bucket of due time: (bucket start in s, timely 200s, others, p99 ms of the 200s).
    pub timeline: Vec<(f64, u64, u64, f64)>,
}

/// Both sides of the stall comparison.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stall {
    /// Request rate of both runs.
    pub rate_per_s: f64,
    /// Concurrent clients of both runs.
    pub concurrency: usize,
    /// Client timeout in seconds.
    pub timeout_s: f64,
    /// The receiver (with one worker).
    pub receiver: StallSide,
    /// The naive handler.
    pub naive: StallSide,
}

/// Peak memory of the real binaries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    /// Receiver `VmHWM` in MiB after load.
    pub receiver_peak_mib: f64,
    /// The load the receiver was under: concurrency and requests per second.
    pub receiver_load: (usize, f64),
    /// Worker `VmHWM` in MiB after draining each backlog: (messages queued, MiB, messages/s).
    pub worker: Vec<(usize, f64, f64)>,
    /// The receiver holding many idle keep-alive connections (`None` when that failed).
    pub receiver_idle: Option<IdleConnections>,
}

/// The receiver process's resident memory while many kept-alive connections sit idle.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IdleConnections {
    /// Connections opened (each served one purchase, then left idle).
    pub opened: usize,
    /// Of them, still open when the memory was read (the receiver closes a connection that
    /// sends no request head within its 10 s header-read timeout).
    pub still_open: usize,
    /// Seconds to open them all and have each served once.
    pub opened_in_s: f64,
    /// `VmRSS` in MiB once ready, before the connections.
    pub rss_before_mib: f64,
    /// `VmRSS` in MiB with the connections idle.
    pub rss_idle_mib: f64,
    /// (rss_idle − rss_before) ÷ still open, in KiB.
    pub kib_per_connection: f64,
}
