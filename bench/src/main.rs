//! `bench`: measures the receiver, the workers and the whole pipeline against the HTTP, broker
//! and database ceilings and a naive write-in-the-request handler, in one run on one machine with
//! one load generator, and writes `results/latest.{json,md,png}`.
//!
//! ```text
//! cargo run --release -p bench -- --quick   # smoke run, about two minutes
//! cargo run --release -p bench              # full run: 3 repetitions, medians, ~16 minutes
//! ```
//!
//! Needs the local Postgres and RabbitMQ of `scripts/ensure-services.sh`; every measurement
//! creates its own database and AMQP prefix and drops them afterwards.
//!
//! # Layout
//!
//! - [`settings`]: sizes and durations of the full and quick runs.
//! - [`load`]: the load generator (fixed concurrency, keep-alive, pre-built requests).
//! - [`fixtures`]: per-measurement database and queues, bodies, events, pre-published backlogs.
//! - [`servers`]: the HTTP-ceiling handler (and the checks it shares with the naive baseline).
//! - [`naive`]: the lean naive baseline: one prepared CTE per request, and its books check.
//! - [`measure`]: one repetition of each ceiling and of each measurement of this system.
//! - [`balancer`]: a round-robin TCP balancer in front of several receivers (`e2e.r2`).
//! - [`variants`]: synchronous answers (`sync.c64`) and purchases mixed with refunds
//!   (`e2e.mixed`).
//! - [`stall`]: the Postgres stall comparison.
//! - [`memory`]: peak RSS of the release binaries as child processes, and the receiver's RSS
//!   with 10 000 idle keep-alive connections.
//! - [`cpu`]: CPU accounting from `/proc`.
//! - [`stats`], [`results`]: percentiles, medians, what is recorded.
//! - [`report`], [`chart`]: tables, targets, JSON and the PNG.

mod balancer;
mod chart;
mod cpu;
mod fixtures;
mod load;
mod measure;
mod memory;
mod naive;
mod report;
mod results;
mod servers;
mod settings;
mod stall;
mod stats;
mod variants;

use std::{future::Future, path::PathBuf, process::ExitCode, time::Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};

use crate::{
    load::LoadGenerator,
    report::{Meta, Report},
    results::{Figure, Sample},
    settings::Settings,
};

/// The binaries' allocator (mimalloc), so the in-process receiver and workers run as shipped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmark of the purchase-webhook pipeline against its ceilings.
#[derive(Parser)]
#[command(about)]
struct Cli {
    /// One short run of everything (a smoke test of the harness, not figures to quote).
    #[arg(long)]
    quick: bool,
    /// Repetitions of each measurement (default: 3, or 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Only these groups (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Group>,
    /// Only these concurrencies in the HTTP, broker, receiver and naive groups (comma-separated;
    /// e.g. `256` while profiling one level).
    #[arg(long, value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Where to write latest.json, latest.md and latest.png.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out_dir: PathBuf,
    /// Do not (re)build the receiver and worker binaries for the memory measurements.
    #[arg(long)]
    no_build: bool,
    /// A note stored with the results (e.g. "machine shared with test runs").
    #[arg(long)]
    note: Option<String>,
}

/// Groups of measurements, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Group {
    Http,
    Broker,
    Receiver,
    Naive,
    Db,
    Consume,
    Worker,
    E2e,
    Sync,
    Mixed,
    Stall,
    Memory,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The servers (in-process receiver, workers, comparison servers) get the machine's two
    // cores as a runtime of their own, like the real binaries; the load generator has its own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = if cli.quick {
        Settings::quick()
    } else {
        Settings::full()
    };
    if let Some(runs) = cli.runs {
        settings.runs = runs.max(1);
    }
    if !cli.concurrency.is_empty() {
        settings.concurrencies = cli.concurrency.clone();
    }
    let groups: Vec<Group> = if cli.only.is_empty() {
        Group::value_variants().to_vec()
    } else {
        cli.only.clone()
    };
    let binaries = memory::binaries_dir()?;
    let mut build_error = None;
    if groups.contains(&Group::Memory) && !cli.no_build {
        if let Err(error) = build_binaries(&binaries) {
            eprintln!("warning: {error:#}; the memory figures will use the binaries already built");
            build_error = Some(format!(
                "building the binaries failed ({error:#}): the memory figures are of the binaries built before"
            ));
        }
    }
    if !binaries.ends_with("release") {
        eprintln!("warning: not a release build; figures are meaningless (use --release)");
    }

    let started = Instant::now();
    let generator = LoadGenerator::new()?;
    let mut report = Report {
        meta: Meta {
            started_at: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            duration_s: 0.0,
            revision: git_revision(),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            load_average: (load_average(), String::new()),
            note: cli.note.clone(),
        },
        settings: settings.clone(),
        figures: Vec::new(),
        stall: None,
        memory: None,
        derived: Vec::new(),
        targets: Vec::new(),
        errors: build_error.into_iter().collect(),
        integrity_failures: Vec::new(),
    };
    let s = &settings;
    let g = &generator;
    let runs = s.runs;

    for group in groups {
        match group {
            Group::Http => {
                for &c in &s.concurrencies {
                    let label = format!("HTTP ceiling, c={c}");
                    repeat(
                        &mut report,
                        format!("http.c{c}"),
                        label,
                        Some(c),
                        runs,
                        || measure::http_ceiling(g, s, c),
                    )
                    .await;
                }
            }
            Group::Broker => {
                for &c in std::iter::once(&1).chain(&s.concurrencies) {
                    let label = format!("broker ceiling, c={c}");
                    repeat(
                        &mut report,
                        format!("broker.c{c}"),
                        label,
                        Some(c),
                        runs,
                        || measure::broker_ceiling(g, s, c),
                    )
                    .await;
                }
            }
            Group::Receiver => {
                for &c in &s.concurrencies {
                    let label = format!("receiver, c={c}");
                    repeat(
                        &mut report,
                        format!("receiver.c{c}"),
                        label,
                        Some(c),
                        runs,
                        || measure::receiver(g, s, c),
                    )
                    .await;
                }
            }
            Group::Naive => {
                for &c in &s.concurrencies {
                    let label = format!("naive handler, c={c}");
                    repeat(
                        &mut report,
                        format!("naive.c{c}"),
                        label,
                        Some(c),
                        runs,
                        || measure::naive(g, s, c),
                    )
                    .await;
                }
            }
            Group::Db => {
                for &c in &s.db_single_clients {
                    let label = format!("DB ceiling, 1 per transaction, {c} clients");
                    repeat(
                        &mut report,
                        format!("db.single.c{c}"),
                        label,
                        Some(c),
                        runs,
                        || measure::database_ceiling(g, s, c, 1),
                    )
                    .await;
                }
                let batch = s.db_batch_size;
                for &c in &s.db_batch_clients {
                    let label = format!("DB ceiling, {batch} per transaction, {c} clients");
                    let key = format!("db.batch{batch}.c{c}");
                    repeat(&mut report, key, label, Some(c), runs, || {
                        measure::database_ceiling(g, s, c, batch)
                    })
                    .await;
                }
            }
            Group::Consume => {
                repeat(
                    &mut report,
                    "consume".into(),
                    "consume ceiling".into(),
                    None,
                    runs,
                    || measure::consume_ceiling(g, s),
                )
                .await;
            }
            Group::Worker => {
                let label =
                    "1 worker, one transaction per message, as many in flight as ours".to_owned();
                repeat(
                    &mut report,
                    "worker.batch1.w1".into(),
                    label,
                    Some(1),
                    runs,
                    || measure::worker_drain(s, 1, 1, s.drain_messages_unbatched),
                )
                .await;
                let batch = s.db_batch_size;
                for &k in &s.worker_counts {
                    let label = format!("{k} worker(s), batch {batch}");
                    let key = format!("worker.batch{batch}.w{k}");
                    repeat(&mut report, key, label, Some(k), runs, || {
                        measure::worker_drain(s, k, batch, s.drain_messages)
                    })
                    .await;
                }
            }
            Group::E2e => {
                for &k in &s.worker_counts {
                    let label = format!("end to end, {k} worker(s)");
                    repeat(
                        &mut report,
                        format!("e2e.w{k}"),
                        label,
                        Some(k),
                        runs,
                        || measure::end_to_end(g, s, k),
                    )
                    .await;
                }
                repeat(
                    &mut report,
                    "e2e.r2".into(),
                    "end to end, 2 receivers behind a TCP balancer, 2 workers".into(),
                    Some(2),
                    runs,
                    || measure::pipeline(g, s, 2, 2),
                )
                .await;
            }
            Group::Sync => {
                let c = s.headline_concurrency;
                let label = format!(
                    "synchronous answers (Prefer: wait=4), c={c}, {} workers",
                    variants::WORKERS
                );
                repeat(
                    &mut report,
                    format!("sync.c{c}"),
                    label,
                    Some(c),
                    runs,
                    || variants::sync(g, s),
                )
                .await;
            }
            Group::Mixed => {
                let label = format!(
                    "end to end, 10 % partial refunds, {} workers",
                    variants::WORKERS
                );
                repeat(
                    &mut report,
                    "e2e.mixed".into(),
                    label,
                    Some(variants::WORKERS),
                    runs,
                    || variants::mixed(g, s),
                )
                .await;
            }
            Group::Stall => {
                eprintln!("▶ Postgres stall comparison");
                match stall::compare(g, s).await {
                    Ok(stall) => report.stall = Some(stall),
                    Err(error) => report.errors.push(format!("stall: {error:#}")),
                }
            }
            Group::Memory => {
                eprintln!("▶ peak memory of the release binaries");
                match memory::measure(g, s, &binaries).await {
                    Ok(memory) => report.memory = Some(memory),
                    Err(error) => report.errors.push(format!("memory: {error:#}")),
                }
            }
        }
    }

    report.meta.duration_s = started.elapsed().as_secs_f64();
    report.meta.load_average.1 = load_average();
    report.conclude();
    let markdown = report.markdown();
    println!("\n{markdown}");

    std::fs::create_dir_all(&cli.out_dir)
        .with_context(|| format!("creating {}", cli.out_dir.display()))?;
    let json = cli.out_dir.join("latest.json");
    std::fs::write(&json, serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(cli.out_dir.join("latest.md"), &markdown)?;
    let png = cli.out_dir.join("latest.png");
    chart::draw(&report, &png)?;
    eprintln!(
        "wrote {}, latest.md and {} in {:.0} s",
        json.display(),
        png.display(),
        report.meta.duration_s
    );
    anyhow::ensure!(
        report.integrity_failures.is_empty(),
        "correctness checks failed: {}",
        report.integrity_failures.join("; ")
    );
    Ok(())
}

/// Runs one measurement `runs` times, records every sample and their median, and prints a line.
/// A failed repetition is reported and skipped; it does not stop the benchmark.
async fn repeat<F, Fut>(
    report: &mut Report,
    key: String,
    label: String,
    concurrency: Option<usize>,
    runs: usize,
    mut measure: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Sample>>,
{
    let mut samples = Vec::new();
    for run in 1..=runs {
        match measure().await {
            Ok(sample) => {
                eprintln!(
                    "▶ {label} [{run}/{runs}]: {:.0}/s{}{}",
                    sample.throughput,
                    sample
                        .latency
                        .map_or(String::new(), |l| format!(", p99 {:.1} ms", l.p99_ms)),
                    if sample.failures > 0 {
                        format!(", {} failed", sample.failures)
                    } else {
                        String::new()
                    }
                );
                samples.push(sample);
            }
            Err(error) => {
                eprintln!("▶ {label} [{run}/{runs}]: FAILED: {error:#}");
                if error.is::<naive::Unbalanced>() {
                    report
                        .integrity_failures
                        .push(format!("{label}: {error:#}"));
                }
                report.errors.push(format!("{label}: {error:#}"));
            }
        }
    }
    if !samples.is_empty() {
        report.figures.push(Figure {
            key,
            label,
            concurrency,
            median: Sample::median_of(&samples),
            runs: samples,
        });
    }
}

/// Builds the receiver and worker binaries of the same profile as this one, so the memory
/// figures are of the current code.
fn build_binaries(binaries: &std::path::Path) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["build", "-p", "receiver", "-p", "worker", "--bins"]);
    if binaries.ends_with("release") {
        command.arg("--release");
    }
    eprintln!("▶ building the receiver and worker binaries");
    let status = command.status().context("running cargo build")?;
    anyhow::ensure!(status.success(), "cargo build failed: {status}");
    Ok(())
}

fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}
