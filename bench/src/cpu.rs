//! Where the CPU went during a measurement, read from `/proc`: the load generator's threads, the
//! rest of this process (in-process servers, receiver, workers), RabbitMQ, Postgres and the whole
//! machine. It is what tells a CPU-bound stage from a waiting one, and shows that the load
//! generator is not the bottleneck.

use std::{fs, time::Instant};

use serde::Serialize;

/// Clock ticks per second of `utime`/`stime` in `/proc/*/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Prefix of the load generator's thread names.
pub const LOADGEN_THREAD: &str = "loadgen";

/// Cumulative CPU counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    at: Instant,
    machine_busy: u64,
    machine_total: u64,
    loadgen: u64,
    this_process: u64,
    rabbitmq: u64,
    postgres: u64,
}

/// CPU used between two snapshots, in CPU-seconds (1.0 = one core for one second).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Usage {
    /// Wall-clock seconds covered.
    pub wall_s: f64,
    /// Machine-wide busy share, 0–100 % of all cores (everything running, other users included).
    pub machine_busy_pct: f64,
    /// The load generator's threads.
    pub loadgen_s: f64,
    /// This process apart from the load generator: in-process servers, receivers, workers.
    pub bench_servers_s: f64,
    /// RabbitMQ (`beam.smp`).
    pub rabbitmq_s: f64,
    /// Every `postgres` process (backends of other users on this machine included).
    pub postgres_s: f64,
}

impl Usage {
    /// CPU microseconds per operation for each consumer, given `ops` operations.
    pub fn per_op_us(&self, ops: u64) -> PerOp {
        let per = |seconds: f64| {
            if ops == 0 {
                0.0
            } else {
                seconds * 1e6 / ops as f64
            }
        };
        PerOp {
            loadgen_us: per(self.loadgen_s),
            bench_servers_us: per(self.bench_servers_s),
            rabbitmq_us: per(self.rabbitmq_s),
            postgres_us: per(self.postgres_s),
        }
    }
}

/// CPU microseconds per operation.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PerOp {
    /// Load generator.
    pub loadgen_us: f64,
    /// In-process servers, receivers, workers.
    pub bench_servers_us: f64,
    /// RabbitMQ.
    pub rabbitmq_us: f64,
    /// Postgres.
    pub postgres_us: f64,
}

impl Snapshot {
    /// Reads the counters now (missing files count as zero: this is reporting, not control).
    pub fn take() -> Self {
        let (machine_busy, machine_total) = machine_ticks();
        let mut rabbitmq = 0;
        let mut postgres = 0;
        if let Ok(dir) = fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let name = entry.file_name();
                let Some(pid) = name
                    .to_str()
                    .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                match fs::read_to_string(format!("/proc/{pid}/comm")).as_deref() {
                    Ok("beam.smp\n") => rabbitmq += stat_ticks(&format!("/proc/{pid}/stat")),
                    Ok("postgres\n") => postgres += stat_ticks(&format!("/proc/{pid}/stat")),
                    _ => {}
                }
            }
        }
        let mut loadgen = 0;
        if let Ok(tasks) = fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let path = task.path();
                let comm = fs::read_to_string(path.join("comm")).unwrap_or_default();
                if comm.starts_with(LOADGEN_THREAD) {
                    loadgen += stat_ticks(&path.join("stat").to_string_lossy());
                }
            }
        }
        Self {
            at: Instant::now(),
            machine_busy,
            machine_total,
            loadgen,
            this_process: stat_ticks("/proc/self/stat"),
            rabbitmq,
            postgres,
        }
    }

    /// What was used from `self` to `later`.
    pub fn until(&self, later: &Snapshot) -> Usage {
        let seconds = |a: u64, b: u64| b.saturating_sub(a) as f64 / TICKS_PER_SECOND;
        let machine_total = later.machine_total.saturating_sub(self.machine_total);
        let machine_busy = later.machine_busy.saturating_sub(self.machine_busy);
        let loadgen = seconds(self.loadgen, later.loadgen);
        Usage {
            wall_s: later.at.duration_since(self.at).as_secs_f64(),
            machine_busy_pct: if machine_total == 0 {
                0.0
            } else {
                100.0 * machine_busy as f64 / machine_total as f64
            },
            loadgen_s: loadgen,
            bench_servers_s: (seconds(self.this_process, later.this_process) - loadgen).max(0.0),
            rabbitmq_s: seconds(self.rabbitmq, later.rabbitmq),
            postgres_s: seconds(self.postgres, later.postgres),
        }
    }
}

/// `utime + stime` of a `/proc/…/stat` file, in ticks.
fn stat_ticks(path: &str) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|text| parse_stat_ticks(&text))
        .unwrap_or(0)
}

/// Fields 14 and 15 (`utime`, `stime`) of a stat line; the command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its closing parenthesis.
fn parse_stat_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// (busy, total) jiffies of all cores from `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let text = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else {
        return (0, 0);
    };
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    // idle + iowait
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "42 (tokio (rt) 1) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 1 1 1";
        assert_eq!(parse_stat_ticks(line), Some(325));
    }

    #[test]
    fn usage_per_operation() {
        let usage = Usage {
            loadgen_s: 0.5,
            rabbitmq_s: 1.0,
            ..Usage::default()
        };
        let per = usage.per_op_us(10_000);
        assert_eq!(per.loadgen_us, 50.0);
        assert_eq!(per.rabbitmq_us, 100.0);
        assert_eq!(Usage::default().per_op_us(0).postgres_us, 0.0);
    }
}
