//! The report: every figure, the ratios against the ceilings and the naive handler, and each
//! target of the issue with its verdict; printed as Markdown tables and written as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    measure::WORKER_CONCURRENCY,
    results::{Figure, Memory, Sample, Stall, StallSide, Window},
    settings::Settings,
    stats::ratio,
};

/// Everything one run of the benchmark produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When, where and how it ran.
    pub meta: Meta,
    /// Sizes and durations used.
    pub settings: Settings,
    /// Every repeated measurement.
    pub figures: Vec<Figure>,
    /// The Postgres stall comparison.
    pub stall: Option<Stall>,
    /// Peak memory of the binaries.
    pub memory: Option<Memory>,
    /// Figures derived from the others (ratios, pipeline ceiling).
    pub derived: Vec<Derived>,
    /// The targets.
    pub targets: Vec<Target>,
    /// Measurements that failed, with the error.
    pub errors: Vec<String>,
    /// Correctness checks that failed (a baseline whose books do not balance): the run fails.
    pub integrity_failures: Vec<String>,
}

/// Context of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    /// Start, UTC.
    pub started_at: String,
    /// Wall-clock seconds of the whole run.
    pub duration_s: f64,
    /// `git describe --always --dirty` of the work tree.
    pub revision: String,
    /// Cores.
    pub cores: usize,
    /// `/proc/loadavg` at start and end (others' work on a shared machine shows here).
    pub load_average: (String, String),
    /// Free-form note (`--note`).
    pub note: Option<String>,
}

/// One derived figure.
#[derive(Debug, Clone, Serialize)]
pub struct Derived {
    /// Name.
    pub name: String,
    /// Value.
    pub value: f64,
    /// How it is computed.
    pub how: String,
}

/// One target of the issue and where we are.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The target as the issue states it.
    pub target: String,
    /// What was measured (the figures the value comes from).
    pub measured: String,
    /// The value compared with the threshold (a ratio, milliseconds or a count).
    pub value: Option<f64>,
    /// The threshold (`≥ 0.60`, `< 25`, …).
    pub threshold: String,
    /// Met or not; `None` when not measured in this run.
    pub met: Option<bool>,
}

impl Target {
    /// A ratio that must reach `floor`.
    fn at_least(target: String, measured: String, value: Option<f64>, floor: f64) -> Self {
        Self {
            target,
            measured,
            value,
            threshold: format!("≥ {floor:.2}"),
            met: value.map(|v| v >= floor),
        }
    }
}

impl Report {
    /// The median sample of figure `key`.
    pub fn get(&self, key: &str) -> Option<&Sample> {
        self.figures
            .iter()
            .find(|f| f.key == key)
            .map(|f| &f.median)
    }

    fn throughput(&self, key: &str) -> Option<f64> {
        self.get(key).map(|s| s.throughput)
    }

    fn p50(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(|s| s.latency).map(|l| l.p50_ms)
    }

    fn p99(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(|s| s.latency).map(|l| l.p99_ms)
    }

    /// The best batched database ceiling and its client count.
    fn best_db_batched(&self) -> Option<(usize, f64)> {
        let batch = self.settings.db_batch_size;
        self.settings
            .db_batch_clients
            .iter()
            .filter_map(|&c| Some((c, self.throughput(&format!("db.batch{batch}.c{c}"))?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The best figure among `worker.batch100.w{k}` or `e2e.w{k}`.
    fn best_of_workers(&self, prefix: &str) -> Option<(usize, f64)> {
        self.settings
            .worker_counts
            .iter()
            .filter_map(|&k| Some((k, self.throughput(&format!("{prefix}{k}"))?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// CPU microseconds per item of figure `key`, every process together (load generator,
    /// servers, RabbitMQ, Postgres).
    fn cpu_cost_us(&self, key: &str) -> Option<f64> {
        let per = self.get(key)?.cpu_per_item?;
        Some(per.loadgen_us + per.bench_servers_us + per.rabbitmq_us + per.postgres_us)
    }

    /// The end-to-end figures: one receiver with each worker count, then two receivers behind
    /// the balancer.
    fn e2e_keys(&self) -> Vec<String> {
        self.settings
            .worker_counts
            .iter()
            .map(|k| format!("e2e.w{k}"))
            .chain(std::iter::once("e2e.r2".to_owned()))
            .collect()
    }

    /// CPU µs per purchase of the two stages of this system, each measured in its own run: the
    /// receiver per request at the headline concurrency (with its load generator and the
    /// broker's share) and one batched worker per message draining a backlog (with the broker's
    /// and Postgres's shares).
    fn stage_cpu_us(&self) -> Option<f64> {
        let c = self.settings.headline_concurrency;
        let batch = self.settings.db_batch_size;
        Some(
            self.cpu_cost_us(&format!("receiver.c{c}"))?
                + self.cpu_cost_us(&format!("worker.batch{batch}.w1"))?,
        )
    }

    /// End-to-end CPU per purchase ÷ [`Self::stage_cpu_us`]: what running the stages together
    /// costs beyond running them apart (1.0 = nothing).
    fn cpu_over_stages(&self, key: &str) -> Option<f64> {
        ratio(self.cpu_cost_us(key), self.stage_cpu_us())
    }

    /// The stages of the pipeline and the figure that measures each alone.
    fn stage_keys(&self) -> Option<[String; 4]> {
        let c = self.settings.headline_concurrency;
        let batch = self.settings.db_batch_size;
        let (db_clients, _) = self.best_db_batched()?;
        Some([
            format!("http.c{c}"),
            format!("broker.c{c}"),
            "consume".into(),
            format!("db.batch{batch}.c{db_clients}"),
        ])
    }

    /// The whole-pipeline ceiling on shared cores, as the issue computes it: one purchase costs
    /// the sum of each stage's CPU time per item when measured alone (HTTP with its load
    /// generator, publish + confirm, consume with batched acks, the batched award), and the
    /// machine has `cores` CPU-seconds per second.
    pub fn pipeline_ceiling(&self) -> Option<f64> {
        let cost: f64 = self
            .stage_keys()?
            .iter()
            .map(|key| self.cpu_cost_us(key))
            .sum::<Option<f64>>()?;
        (cost > 0.0).then(|| self.meta.cores as f64 * 1e6 / cost)
    }

    /// A stricter reading: each stage's ceiling throughput is what the whole machine does of
    /// that stage alone, so together `1 / Σ (1 / ceiling)`. Lower than the CPU sum whenever a
    /// stage is bound by waiting (fsync, round trips) rather than by CPU.
    pub fn pipeline_ceiling_by_rate(&self) -> Option<f64> {
        let rates: Vec<f64> = self
            .stage_keys()?
            .iter()
            .map(|key| self.throughput(key))
            .collect::<Option<_>>()?;
        Some(1.0 / rates.iter().map(|t| 1.0 / t).sum::<f64>())
    }

    /// Computes the derived figures and the targets from the measurements.
    pub fn conclude(&mut self) {
        let c = self.settings.headline_concurrency;
        let batch = self.settings.db_batch_size;
        let receiver = self.throughput(&format!("receiver.c{c}"));
        let naive = self.throughput(&format!("naive.c{c}"));
        let mut derived = Vec::new();
        let mut push = |name: &str, value: Option<f64>, how: &str| {
            if let Some(value) = value {
                derived.push(Derived {
                    name: name.into(),
                    value,
                    how: how.into(),
                });
            }
        };
        let pipeline = self.pipeline_ceiling();
        push(
            "pipeline_ceiling_per_s",
            pipeline,
            "cores / Σ CPU per item of the HTTP (c=64), broker (c=64), consume and best batched DB ceilings",
        );
        push(
            "pipeline_ceiling_by_rate_per_s",
            self.pipeline_ceiling_by_rate(),
            "1 / Σ (1 / throughput) of the same four ceilings",
        );
        if let Some(keys) = self.stage_keys() {
            for key in keys {
                let value = self.cpu_cost_us(&key);
                push(
                    &format!("stage_cpu_us.{key}"),
                    value,
                    "CPU µs per item, all processes, in that ceiling's run",
                );
            }
        }
        let loadgen_us = self
            .get(&format!("http.c{c}"))
            .and_then(|s| s.cpu_per_item)
            .map(|p| p.loadgen_us);
        push(
            "loadgen_cpu_us_per_request",
            loadgen_us,
            "load generator CPU per request in the HTTP ceiling run at c=64",
        );
        push(
            "loadgen_cores_at_receiver_rate",
            loadgen_us.zip(receiver).map(|(us, r)| us * r / 1e6),
            "cores the load generator needs at the receiver's c=64 rate",
        );
        let async_path = self.throughput("e2e.w2");
        push(
            &format!("sync.c{c}_over_e2e.w2"),
            ratio(self.throughput(&format!("sync.c{c}")), async_path),
            "purchases/s with Prefer: wait=4 ÷ the asynchronous path with the same 2 workers",
        );
        push(
            "e2e.mixed_over_e2e.w2",
            ratio(self.throughput("e2e.mixed"), async_path),
            "webhooks/s with 10 % refunds ÷ the purchase-only path with the same 2 workers",
        );
        push(
            "stage_cpu_us",
            self.stage_cpu_us(),
            "CPU µs per item, all processes: receiver (c=64) + one batched worker draining, each in its own run",
        );
        for key in self.e2e_keys() {
            push(
                &format!("cpu_us_per_purchase.{key}"),
                self.cpu_cost_us(&key),
                "CPU µs per purchase, all processes (load generator, bench process, RabbitMQ, Postgres)",
            );
            push(
                &format!("e2e_cpu_over_stage_cpu.{key}"),
                self.cpu_over_stages(&key),
                "end-to-end CPU per purchase ÷ stage_cpu_us",
            );
        }
        self.derived = derived;

        let mut targets = Vec::new();
        // Receiver against the broker ceiling, at the headline concurrency and at 256.
        for (at, floor) in [(c, 0.60), (256, 0.50)] {
            let receiver = self.throughput(&format!("receiver.c{at}"));
            let broker = self.throughput(&format!("broker.c{at}"));
            let value = ratio(receiver, broker);
            targets.push(Target::at_least(
                format!("receiver ÷ broker ceiling at c={at}"),
                format!("{} vs {} msg/s", num(receiver), num(broker)),
                value,
                floor,
            ));
        }
        let p99 = self.p99("receiver.c256");
        targets.push(Target {
            target: "receiver p99 at c=256 < 25 ms".into(),
            measured: format!("{} ms", num1(p99)),
            value: p99,
            threshold: "< 25".into(),
            met: p99.map(|p| p < 25.0),
        });
        let receiver_failures: Option<u64> = self
            .settings
            .concurrencies
            .iter()
            .map(|c| self.get(&format!("receiver.c{c}")).map(|s| s.failures))
            .sum();
        targets.push(Target {
            target: "receiver: no errors".into(),
            measured: format!("failed requests at c = {:?}", self.settings.concurrencies),
            value: receiver_failures.map(|f| f as f64),
            threshold: "= 0".into(),
            met: receiver_failures.map(|f| f == 0),
        });
        // Batching against the fair one-per-message worker and against the database.
        let one = self.throughput(&format!("worker.batch{batch}.w1"));
        let unbatched = self.throughput("worker.batch1.w1");
        targets.push(Target::at_least(
            "1 worker ÷ fair one-transaction-per-message worker (same messages in flight)".into(),
            format!("{} vs {} msg/s", num(one), num(unbatched)),
            ratio(one, unbatched),
            5.0,
        ));
        let worker_best = self.best_of_workers(&format!("worker.batch{batch}.w"));
        let same_clients = worker_best.map(|(k, _)| k * WORKER_CONCURRENCY);
        let db_same = same_clients.and_then(|n| self.throughput(&format!("db.batch{batch}.c{n}")));
        targets.push(Target::at_least(
            "workers draining ÷ batched DB ceiling at the same number of clients".into(),
            format!(
                "best {} msg/s ({} worker(s)) vs {} ({} clients)",
                num(worker_best.map(|w| w.1)),
                worker_best.map_or(0, |w| w.0),
                num(db_same),
                same_clients.unwrap_or(0),
            ),
            ratio(worker_best.map(|w| w.1), db_same),
            0.70,
        ));
        // End to end against the lean naive handler and the pipeline ceiling.
        let e2e_best = self.best_of_workers("e2e.w");
        targets.push(Target::at_least(
            format!("end to end ÷ lean naive handler at c={c}"),
            format!(
                "best {} purchases/s ({} worker(s)) vs {} req/s",
                num(e2e_best.map(|e| e.1)),
                e2e_best.map_or(0, |e| e.0),
                num(naive),
            ),
            ratio(e2e_best.map(|e| e.1), naive),
            1.5,
        ));
        let e2e_ratio = ratio(e2e_best.map(|e| e.1), pipeline);
        let cpu_ratio = e2e_best.and_then(|(k, _)| self.cpu_over_stages(&format!("e2e.w{k}")));
        targets.push(Target {
            target: "end to end ÷ whole-pipeline ceiling ≥ 0.75, or e2e CPU per purchase ÷ Σ stage CPU ≤ 1.20"
                .into(),
            measured: format!(
                "best {} purchases/s vs ceiling {}/s = {}; CPU ratio {}",
                num(e2e_best.map(|e| e.1)),
                num(pipeline),
                num2(e2e_ratio),
                num2(cpu_ratio),
            ),
            value: e2e_ratio,
            threshold: "≥ 0.75 or CPU ratio ≤ 1.20".into(),
            met: match (e2e_ratio, cpu_ratio) {
                (None, None) => None,
                (r, cpu) => Some(r.is_some_and(|r| r >= 0.75) || cpu.is_some_and(|x| x <= 1.20)),
            },
        });
        if let Some(stall) = &self.stall {
            let r = &stall.receiver;
            let n = &stall.naive;
            let usual = r.before.latency.map(|l| l.p99_ms);
            let during = r.during.latency.map(|l| l.p99_ms);
            let receiver_ok = r.during.failures == 0
                && r.during.ok > 0
                && during
                    .zip(usual)
                    .is_some_and(|(d, u)| d <= (2.0 * u).max(25.0));
            targets.push(Target {
                target: "10 s Postgres stall: receiver keeps answering 200 at its usual latency"
                    .into(),
                measured: format!(
                    "during: {}/{} answered 200 in time, p99 {} ms (before: {} ms)",
                    r.during.ok,
                    r.during.sent,
                    num1(during),
                    num1(usual)
                ),
                value: during,
                threshold: "no failures, p99 ≤ max(2 × before, 25 ms)".into(),
                met: Some(receiver_ok),
            });
            targets.push(Target {
                target: "… while the naive handler fails or times out".into(),
                measured: format!(
                    "during: {}/{} answered 200 within {} s, {} timed out or late",
                    n.during.ok, n.during.sent, stall.timeout_s, n.during.timeouts
                ),
                value: Some(n.during.failures as f64),
                threshold: "> 0 failures".into(),
                met: Some(n.during.failures > 0),
            });
        }
        if let Some(memory) = &self.memory {
            targets.push(Target {
                target: "receiver RSS < 64 MiB under load".into(),
                measured: format!(
                    "{:.1} MiB peak at c={}",
                    memory.receiver_peak_mib, memory.receiver_load.0
                ),
                value: Some(memory.receiver_peak_mib),
                threshold: "< 64".into(),
                met: Some(memory.receiver_peak_mib < 64.0),
            });
            if let Some(idle) = &memory.receiver_idle {
                targets.push(Target {
                    target: "receiver RSS < 64 MiB with 10 000 idle keep-alive connections".into(),
                    measured: format!(
                        "{:.1} MiB with {} idle connections open",
                        idle.rss_idle_mib, idle.still_open
                    ),
                    value: Some(idle.rss_idle_mib),
                    threshold: "< 64".into(),
                    met: Some(idle.rss_idle_mib < 64.0),
                });
            }
            if let (Some(small), Some(large)) = (memory.worker.first(), memory.worker.last()) {
                targets.push(Target {
                    target: "worker RSS flat regardless of queue depth".into(),
                    measured: format!(
                        "{:.1} MiB after {} queued, {:.1} MiB after {} queued",
                        small.1, small.0, large.1, large.0
                    ),
                    value: Some(large.1),
                    threshold: format!("≤ {:.1} (1.25 × small + 2)", small.1 * 1.25 + 2.0),
                    met: Some(large.1 <= small.1 * 1.25 + 2.0),
                });
            }
        }
        self.targets = targets;
    }

    /// The whole report as Markdown tables.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "Run {} · {} · {} cores · load average {} → {} · {} run(s) per figure, medians{}\n",
            self.meta.started_at,
            self.meta.revision,
            self.meta.cores,
            self.meta.load_average.0.trim(),
            self.meta.load_average.1.trim(),
            s.runs,
            if s.quick { " · QUICK (smoke) run" } else { "" },
        );
        if let Some(note) = &self.meta.note {
            let _ = writeln!(out, "Note: {note}\n");
        }
        self.throughput_table(&mut out);
        self.latency_table(&mut out);
        self.database_table(&mut out);
        self.worker_table(&mut out);
        self.e2e_table(&mut out);
        self.variants_table(&mut out);
        if let Some(stall) = &self.stall {
            stall_table(&mut out, stall);
        }
        if let Some(memory) = &self.memory {
            memory_table(&mut out, memory);
        }
        self.cpu_table(&mut out);
        let _ = writeln!(
            out,
            "#### Targets\n\n| target | measured | value | target value | verdict |\n|---|---|---:|---:|---|"
        );
        for t in &self.targets {
            let verdict = match t.met {
                Some(true) => "PASS",
                Some(false) => "**FAIL**",
                None => "– (not measured)",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                t.target,
                t.measured,
                num2(t.value),
                t.threshold,
                verdict
            );
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "\n#### Measurements that failed\n");
            for error in &self.errors {
                let _ = writeln!(out, "- {error}");
            }
        }
        out
    }

    fn throughput_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "#### Throughput against concurrency (requests or messages per second)\n\n\
             | c | HTTP ceiling | broker ceiling | **receiver** | naive | receiver ÷ broker | receiver ÷ HTTP | receiver ÷ naive |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for c in &self.settings.concurrencies {
            let http = self.throughput(&format!("http.c{c}"));
            let broker = self.throughput(&format!("broker.c{c}"));
            let receiver = self.throughput(&format!("receiver.c{c}"));
            let naive = self.throughput(&format!("naive.c{c}"));
            let _ = writeln!(
                out,
                "| {c} | {} | {} | **{}** | {} | {} | {} | {} |",
                num(http),
                num(broker),
                num(receiver),
                num(naive),
                pct(ratio(receiver, broker)),
                pct(ratio(receiver, http)),
                times(ratio(receiver, naive)),
            );
        }
        if let Some(one) = self.throughput("broker.c1") {
            let _ = writeln!(
                out,
                "| 1 | | {} (one confirm outstanding) | | | | | |",
                num(Some(one))
            );
        }
        out.push('\n');
    }

    fn latency_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "#### Latency against concurrency, ms (p50 / p99 / max; broker: publish → confirm)\n\n\
             | c | HTTP ceiling | broker ceiling | **receiver** | naive | receiver failures | naive failures |\n\
             |---:|---:|---:|---:|---:|---:|---:|"
        );
        for c in &self.settings.concurrencies {
            let lat = |key: &str| latency(self.get(&format!("{key}.c{c}")));
            let failures = |key: &str| {
                self.get(&format!("{key}.c{c}"))
                    .map_or("–".into(), |s| s.failures.to_string())
            };
            let _ = writeln!(
                out,
                "| {c} | {} | {} | **{}** | {} | {} | {} |",
                lat("http"),
                lat("broker"),
                lat("receiver"),
                lat("naive"),
                failures("receiver"),
                failures("naive"),
            );
        }
        out.push('\n');
    }

    fn database_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "#### Database ceiling: the worker's award transaction on pre-built events\n\n\
             | messages per transaction | clients | messages/s | transaction p50 / p99 / max ms | Postgres CPU µs per message |\n\
             |---:|---:|---:|---:|---:|"
        );
        let s = &self.settings;
        let rows = s
            .db_single_clients
            .iter()
            .map(|&c| (1, c))
            .chain(s.db_batch_clients.iter().map(|&c| (s.db_batch_size, c)));
        for (batch, clients) in rows {
            let key = if batch == 1 {
                format!("db.single.c{clients}")
            } else {
                format!("db.batch{batch}.c{clients}")
            };
            let sample = self.get(&key);
            let _ = writeln!(
                out,
                "| {batch} | {clients} | {} | {} | {} |",
                num(sample.map(|s| s.throughput)),
                latency(sample),
                num(sample.and_then(|s| s.cpu_per_item).map(|p| p.postgres_us)),
            );
        }
        out.push('\n');
    }

    fn worker_table(&self, out: &mut String) {
        let batch = self.settings.db_batch_size;
        let _ = writeln!(
            out,
            "#### Workers draining a pre-published backlog (in-process, production defaults)\n\n\
             A worker settles {conc} batches at once, each on its own connection, so k workers are {conc}k database \
             clients and *batch cycle* (messages in flight ÷ throughput) is what one batch took from gathering to ack; \
             the DB ceiling's transaction p50 at the same number of clients is what the transaction alone takes.\n\n\
             | worker | backlog | messages/s | batch cycle ms | DB transaction p50 ms, same clients | ÷ batched DB ceiling, same clients | ÷ one-per-transaction worker |\n\
             |---|---:|---:|---:|---:|---:|---:|",
            conc = WORKER_CONCURRENCY,
        );
        if let Some(consume) = self.get("consume") {
            let _ = writeln!(
                out,
                "| consume ceiling (prefetch {}, `multiple` ack per {batch}, no work) | {} | {} | | | | |",
                batch * 2,
                consume.items,
                num(Some(consume.throughput))
            );
        }
        let unbatched = self.throughput("worker.batch1.w1");
        if let Some(sample) = self.get("worker.batch1.w1") {
            let knob = |name: &str| num(sample.extra.get(name).copied());
            let _ =
                writeln!(
                out,
                "| 1 worker, one transaction per message (`WORKER_BATCH_SIZE=1`), as many messages in flight as ours: \
                 concurrency {}, prefetch {}, {} connections | {} | {} | {} | {} | {} (vs 8 clients, 1 per tx) | 1× |",
                knob("worker_concurrency"),
                knob("worker_prefetch"),
                knob("worker_db_pool"),
                sample.items,
                num(Some(sample.throughput)),
                num2(cycle_ms(
                    sample.extra.get("worker_concurrency").map_or(1, |&c| c as usize),
                    1,
                    sample.throughput
                )),
                num2(self.p50("db.single.c8")),
                pct(ratio(Some(sample.throughput), self.throughput("db.single.c8"))),
            );
        }
        for k in &self.settings.worker_counts {
            let key = format!("worker.batch{batch}.w{k}");
            if let Some(sample) = self.get(&key) {
                let clients = k * WORKER_CONCURRENCY;
                let db = self.throughput(&format!("db.batch{batch}.c{clients}"));
                let _ = writeln!(
                    out,
                    "| {k} worker(s), batch {batch} | {} | {} | {} | {} | {} | {} |",
                    sample.items,
                    num(Some(sample.throughput)),
                    num2(cycle_ms(clients, batch, sample.throughput)),
                    num2(self.p50(&format!("db.batch{batch}.c{clients}"))),
                    pct(ratio(Some(sample.throughput), db)),
                    times(ratio(Some(sample.throughput), unbatched)),
                );
            }
        }
        out.push('\n');
    }

    fn e2e_table(&self, out: &mut String) {
        let c = self.settings.headline_concurrency;
        let pipeline = self.pipeline_ceiling();
        let naive = self.throughput(&format!("naive.c{c}"));
        let keys = self.stage_keys();
        let stage = |i: usize| num(keys.as_ref().and_then(|keys| self.cpu_cost_us(&keys[i])));
        let _ = writeln!(
            out,
            "#### End to end: sent → every point committed (receiver + workers in-process, c={c})\n\n\
             Whole-pipeline ceiling on these cores: **{}/s** = {} cores ÷ ({} µs of CPU per purchase: the sum of \
             each stage's CPU per item measured alone — HTTP with its load generator {} µs, publish + confirm {} µs, \
             consume with batched acks {} µs, batched award {} µs). Stricter reading, 1 / Σ 1/stage throughput: {}/s.\n\n\
             Σ stage CPU per purchase of this system, each stage in its own run (receiver at c={c} + one batched \
             worker draining): {} µs; *÷ Σ stage CPU* is what running them together costs beyond that.\n\n\
             | receivers | workers | purchases | purchases/s | receiver req/s meanwhile | request p50 / p99 / max ms | last commit after last 200 | ÷ pipeline ceiling | ÷ naive (c={c}) | CPU µs per purchase | ÷ Σ stage CPU | machine busy (which resource saturates: see *Where the CPU went*) |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            num(pipeline),
            self.meta.cores,
            num(pipeline.map(|p| self.meta.cores as f64 * 1e6 / p)),
            stage(0),
            stage(1),
            stage(2),
            stage(3),
            num(self.pipeline_ceiling_by_rate()),
            num(self.stage_cpu_us()),
        );
        for key in self.e2e_keys() {
            if let Some(sample) = self.get(&key) {
                let extra = |name: &str| sample.extra.get(name).copied();
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | **{}** | {} | {} | {} s | {} | {} | {} | {} | {} |",
                    num(extra("receivers")),
                    num(extra("workers")),
                    sample.items,
                    num(Some(sample.throughput)),
                    num(extra("receiver_req_per_s")),
                    latency(Some(sample)),
                    num2(extra("lag_after_last_send_s")),
                    pct(ratio(Some(sample.throughput), pipeline)),
                    times(ratio(Some(sample.throughput), naive)),
                    num(self.cpu_cost_us(&key)),
                    num2(self.cpu_over_stages(&key)),
                    sample
                        .cpu
                        .map_or("–".into(), |u| format!("{:.0} %", u.machine_busy_pct)),
                );
            }
        }
        out.push('\n');
    }

    fn variants_table(&self, out: &mut String) {
        let c = self.settings.headline_concurrency;
        let sync_key = format!("sync.c{c}");
        let keys = [sync_key.as_str(), "e2e.w2", "e2e.mixed"];
        if !keys.iter().any(|key| self.get(key).is_some()) {
            return;
        }
        let _ = writeln!(
            out,
            "#### Other paths: synchronous answers and refunds (receiver + 2 workers, c={c})\n\n\
             *sync*: every purchase sent with `Prefer: wait=4`; an answer is synchronous when it carries \
             `pointsAwarded`, else it fell back to `accepted`. *mixed*: every tenth request a partial refund \
             (20.00 of a purchase sent ~1 000 requests earlier); the totals are checked exactly \
             (points = awarded − reversed). Throughput counts webhooks until every one is committed. A closed loop of \
             c clients that each wait for the outcome sends at most c ÷ (answer latency) per second, so the sync \
             figure is bound by the batch wait and the transaction time, not by the machine.\n\n\
             | path | webhooks | webhooks/s | answers/s meanwhile | request p50 / p99 / max ms | synchronous / accepted answers | CPU µs per webhook | ÷ async purchases (`e2e.w2`) |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|"
        );
        let async_path = self.throughput("e2e.w2");
        for (key, label) in [
            (sync_key.as_str(), "sync (`Prefer: wait=4`)"),
            ("e2e.w2", "async purchases"),
            ("e2e.mixed", "mixed, 10 % refunds"),
        ] {
            let Some(sample) = self.get(key) else {
                continue;
            };
            let extra = |name: &str| sample.extra.get(name).copied();
            let answers = extra("answers_per_s").or(extra("receiver_req_per_s"));
            let split = match (extra("synchronous_answers"), extra("accepted_fallbacks")) {
                (Some(sync), Some(fallback)) => {
                    format!("{} / {}", num(Some(sync)), num(Some(fallback)))
                }
                _ => "–".into(),
            };
            let _ = writeln!(
                out,
                "| {label} | {} | **{}** | {} | {} | {split} | {} | {} |",
                sample.items,
                num(Some(sample.throughput)),
                num(answers),
                latency(Some(sample)),
                num(self.cpu_cost_us(key)),
                times(ratio(Some(sample.throughput), async_path)),
            );
        }
        out.push('\n');
    }

    fn cpu_table(&self, out: &mut String) {
        let c = self.settings.headline_concurrency;
        let batch = self.settings.db_batch_size;
        let _ = writeln!(
            out,
            "#### Where the CPU went (CPU µs per item; machine busy %)\n\n\
             | measurement | load generator | bench process (servers, receiver, workers) | RabbitMQ | Postgres | machine busy |\n\
             |---|---:|---:|---:|---:|---:|"
        );
        let mut rows = vec![
            (format!("http.c{c}"), format!("HTTP ceiling, c={c}")),
            (format!("broker.c{c}"), format!("broker ceiling, c={c}")),
            (format!("receiver.c{c}"), format!("receiver, c={c}")),
            (format!("naive.c{c}"), format!("naive, c={c}")),
            (
                "db.single.c8".into(),
                "DB, 1 per transaction, 8 clients".into(),
            ),
            (
                format!("db.batch{batch}.c8"),
                format!("DB, {batch} per transaction, 8 clients"),
            ),
            ("consume".into(), "consume ceiling".into()),
            (format!("worker.batch{batch}.w1"), "1 worker (drain)".into()),
        ];
        for k in &self.settings.worker_counts {
            rows.push((format!("e2e.w{k}"), format!("end to end, {k} worker(s)")));
        }
        rows.push((
            "e2e.r2".into(),
            "end to end, 2 receivers behind the balancer, 2 workers".into(),
        ));
        for (key, label) in rows {
            let Some(sample) = self.get(&key) else {
                continue;
            };
            let (Some(per), Some(cpu)) = (sample.cpu_per_item, sample.cpu) else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {label} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} % |",
                per.loadgen_us,
                per.bench_servers_us,
                per.rabbitmq_us,
                per.postgres_us,
                cpu.machine_busy_pct
            );
        }
        out.push('\n');
    }
}

fn stall_table(out: &mut String, stall: &Stall) {
    let _ = writeln!(
        out,
        "#### Postgres stalled (`LOCK TABLE entries IN ACCESS EXCLUSIVE MODE` held), {} req/s paced, c={}, client timeout {} s\n\n\
         Requests are counted in the window they were due in by the pace, and latency runs from that \
         moment, so a webhook that waited for a free client counts its wait, as its sender would.\n\n\
         | system | window | webhooks due | 200 within {} s | failed (timed out or late) | p50 / p99 / max ms of the 200s |\n\
         |---|---|---:|---:|---:|---:|",
        stall.rate_per_s, stall.concurrency, stall.timeout_s, stall.timeout_s
    );
    let rows = |out: &mut String, name: &str, side: &StallSide| {
        let windows: [(&str, &Window); 3] = [
            ("before", &side.before),
            ("during the stall", &side.during),
            ("after", &side.after),
        ];
        for (label, w) in windows {
            let _ = writeln!(
                out,
                "| {name} | {label} | {} | {} | {} ({}) | {} |",
                w.sent,
                w.ok,
                w.failures,
                w.timeouts,
                w.latency.map_or("–".into(), |l| format!(
                    "{:.1} / {:.1} / {:.1}",
                    l.p50_ms, l.p99_ms, l.max_ms
                )),
            );
        }
    };
    rows(out, "**receiver**", &stall.receiver);
    rows(out, "naive", &stall.naive);
    let _ = writeln!(
        out,
        "\nLock held {:.1} s. The receiver's worker committed every accepted purchase {} s after the lock was released.\n",
        stall.receiver.held_s,
        num2(stall.receiver.caught_up_after_s)
    );
}

fn memory_table(out: &mut String, memory: &Memory) {
    let _ = writeln!(
        out,
        "#### Peak memory of the release binaries (VmHWM, child processes, default settings)\n\n\
         | process | condition | peak RSS |\n|---|---|---:|"
    );
    let _ = writeln!(
        out,
        "| receiver | c={} closed loop, {} req/s (logging at info) | {:.1} MiB |",
        memory.receiver_load.0,
        num(Some(memory.receiver_load.1)),
        memory.receiver_peak_mib
    );
    for (backlog, mib, rate) in &memory.worker {
        let _ = writeln!(
            out,
            "| worker | drained a backlog of {backlog} messages at {} msg/s | {mib:.1} MiB |",
            num(Some(*rate))
        );
    }
    if let Some(idle) = &memory.receiver_idle {
        let _ = writeln!(
            out,
            "| receiver | {} idle keep-alive connections (of {} opened in {:.1} s, each served one purchase, then idle 1 s; \
             VmRSS, {:.1} MiB before: {:.1} KiB per connection) | {:.1} MiB |",
            idle.still_open,
            idle.opened,
            idle.opened_in_s,
            idle.rss_before_mib,
            idle.kib_per_connection,
            idle.rss_idle_mib
        );
    }
    out.push('\n');
}

/// Milliseconds one batch of `batch` took per worker, for `workers` workers at `throughput`.
fn cycle_ms(workers: usize, batch: usize, throughput: f64) -> Option<f64> {
    (throughput > 0.0).then(|| (workers * batch) as f64 / throughput * 1000.0)
}

/// `p50 / p99 / max` of a sample.
fn latency(sample: Option<&Sample>) -> String {
    sample.and_then(|s| s.latency).map_or("–".into(), |l| {
        format!("{:.1} / {:.1} / {:.1}", l.p50_ms, l.p99_ms, l.max_ms)
    })
}

/// A rate or count with thousands separators.
fn num(value: Option<f64>) -> String {
    let Some(value) = value else {
        return "–".into();
    };
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

fn num1(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:.1}"))
}

fn num2(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:.2}"))
}

fn pct(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{:.0} %", v * 100.0))
}

fn times(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{v:.1}×"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(num(Some(1234567.4)), "1 234 567");
        assert_eq!(num(Some(999.0)), "999");
        assert_eq!(num(None), "–");
        assert_eq!(pct(Some(0.614)), "61 %");
    }

    fn figure(key: &str, throughput: f64, cpu_us: f64) -> Figure {
        let sample = Sample {
            throughput,
            cpu_per_item: Some(crate::cpu::PerOp {
                postgres_us: cpu_us,
                ..Default::default()
            }),
            ..Sample::default()
        };
        Figure {
            key: key.into(),
            label: key.into(),
            concurrency: None,
            median: sample.clone(),
            runs: vec![sample],
        }
    }

    #[test]
    fn pipeline_ceiling_adds_up_the_stages_cpu_costs() {
        let mut report = Report {
            meta: Meta {
                started_at: String::new(),
                duration_s: 0.0,
                revision: String::new(),
                cores: 2,
                load_average: Default::default(),
                note: None,
            },
            settings: Settings::quick(),
            figures: vec![
                figure("http.c64", 40_000.0, 20.0),
                figure("broker.c64", 20_000.0, 50.0),
                figure("consume", 40_000.0, 30.0),
                figure("db.batch100.c4", 10_000.0, 1.0),
                figure("db.batch100.c8", 20_000.0, 100.0),
            ],
            stall: None,
            memory: None,
            derived: Vec::new(),
            targets: Vec::new(),
            errors: Vec::new(),
            integrity_failures: Vec::new(),
        };
        // The best batched DB ceiling is the 8-client one: 2 cores / 200 µs = 10 000/s.
        let ceiling = report.pipeline_ceiling().unwrap();
        assert!((ceiling - 10_000.0).abs() < 1e-6);
        // 1 / (1/40k + 1/20k + 1/40k + 1/20k) = 6 666.7
        let by_rate = report.pipeline_ceiling_by_rate().unwrap();
        assert!((by_rate - 20_000.0 / 3.0).abs() < 1e-6);
        report.conclude();
        assert!(report.markdown().contains("#### Targets"));
    }
}
