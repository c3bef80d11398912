//! Peak memory of the real binaries, `target/release/receiver` and `target/release/worker`, run
//! as child processes with the production defaults (logging included) and read from
//! `/proc/<pid>/status` (`VmHWM`, the resident-set high-water mark) before they are stopped;
//! and the receiver's resident memory (`VmRSS`) while [`IDLE_CONNECTIONS`] kept-alive
//! connections sit idle on it.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{client::conn::http1::SendRequest, Request};
use tokio::process::{Child, Command};

use crate::{
    fixtures::{self, Fixture},
    load::{self, HttpConnector, LoadGenerator, Plan},
    results::{IdleConnections, Memory},
    settings::Settings,
};

/// Idle keep-alive connections held against the receiver process.
pub const IDLE_CONNECTIONS: usize = 10_000;

/// How long the idle connections sit idle before the receiver's memory is read: a connection
/// that has just been answered is not yet idle in the sense a sender's pool leaves it idle.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

/// Connections opened at once while setting them up.
const IDLE_OPENING_CONCURRENCY: usize = 256;

/// Concurrency of the load on the receiver process (the highest measured).
const RECEIVER_CONCURRENCY: usize = 256;

/// Both binaries' peaks.
pub async fn measure(
    generator: &LoadGenerator,
    settings: &Settings,
    binaries: &Path,
) -> anyhow::Result<Memory> {
    let (receiver_peak_mib, rate) = receiver_peak(generator, settings, binaries).await?;
    let mut worker = Vec::new();
    for &backlog in &settings.memory_backlogs {
        let (mib, rate) = worker_peak(binaries, backlog).await?;
        worker.push((backlog, mib, rate));
    }
    let receiver_idle = match receiver_idle(generator, binaries).await {
        Ok(idle) => Some(idle),
        Err(error) => {
            eprintln!("warning: idle connections: {error:#}");
            None
        }
    };
    Ok(Memory {
        receiver_peak_mib,
        receiver_load: (RECEIVER_CONCURRENCY, rate),
        worker,
        receiver_idle,
    })
}

async fn receiver_peak(
    generator: &LoadGenerator,
    settings: &Settings,
    binaries: &Path,
) -> anyhow::Result<(f64, f64)> {
    let fixture = Fixture::new().await?;
    let result = async {
        let public = free_port()?;
        let admin = free_port()?;
        let mut child = spawn(
            &binaries.join("receiver"),
            &fixture,
            &[
                ("RECEIVER_ADDR", format!("127.0.0.1:{public}")),
                ("ADMIN_ADDR", format!("127.0.0.1:{admin}")),
            ],
        )?;
        wait_ready(&mut child, &format!("http://127.0.0.1:{admin}/readyz")).await?;
        let bodies =
            fixtures::purchase_bodies("run", settings.operations_for(settings.memory_load, 30_000));
        let operations = bodies.len();
        let run = generator
            .run(
                Arc::new(HttpConnector {
                    addr: ([127, 0, 0, 1], public).into(),
                    path: fixture.webhook_path(),
                    secret: fixture.secret().to_owned(),
                    bodies,
                    timeout: settings.client_timeout,
                }),
                Plan {
                    concurrency: RECEIVER_CONCURRENCY,
                    operations,
                    duration: Some(settings.memory_load),
                    rate_per_s: None,
                },
            )
            .await;
        let peak = peak_mib(&child)?;
        stop(&mut child).await;
        anyhow::ensure!(run.failures() == 0, "{} requests failed", run.failures());
        Ok((peak, run.throughput()))
    }
    .await;
    fixture.cleanup().await;
    result
}

async fn worker_peak(binaries: &Path, backlog: usize) -> anyhow::Result<(f64, f64)> {
    let fixture = Fixture::new().await?;
    let result = async {
        let messages = fixtures::messages(fixtures::purchase_events("run", backlog));
        fixtures::prepublish(&fixture.topology(), &messages).await?;
        drop(messages);
        let port = free_port()?;
        let started = Instant::now();
        let mut child = spawn(
            &binaries.join("worker"),
            &fixture,
            &[("WORKER_ADDR", format!("127.0.0.1:{port}"))],
        )?;
        let done = fixture
            .wait_recorded(backlog, Duration::from_secs(60 + backlog as u64 / 500))
            .await;
        let peak = peak_mib(&child);
        stop(&mut child).await;
        let done = done?;
        fixture.check_exactly_once(backlog).await?;
        Ok((
            peak?,
            backlog as f64 / done.duration_since(started).as_secs_f64(),
        ))
    }
    .await;
    fixture.cleanup().await;
    result
}

/// The receiver process with up to [`IDLE_CONNECTIONS`] kept-alive connections, each served one
/// purchase and then left idle; its `VmRSS` is read [`IDLE_SETTLE`] after the last one was
/// served (long past the receiver's 100 ms before it parks an idle connection, well within its
/// 10 s header-read timeout that closes one).
async fn receiver_idle(
    generator: &LoadGenerator,
    binaries: &Path,
) -> anyhow::Result<IdleConnections> {
    // Both this process and the receiver (which inherits the limit) hold one descriptor per
    // connection.
    let allowed = raise_open_files_limit()?;
    let count = IDLE_CONNECTIONS.min(allowed.saturating_sub(1024) as usize);
    anyhow::ensure!(count > 0, "RLIMIT_NOFILE is only {allowed}");
    let fixture = Fixture::new().await?;
    let result = async {
        let public = free_port()?;
        let admin = free_port()?;
        let mut child = spawn(
            &binaries.join("receiver"),
            &fixture,
            &[
                ("RECEIVER_ADDR", format!("127.0.0.1:{public}")),
                ("ADMIN_ADDR", format!("127.0.0.1:{admin}")),
            ],
        )?;
        wait_ready(&mut child, &format!("http://127.0.0.1:{admin}/readyz")).await?;
        let rss_before_mib = rss_mib(&child)?;
        let addr = ([127, 0, 0, 1], public).into();
        let path = fixture.webhook_path();
        let secret = fixture.secret().to_owned();
        let bodies = fixtures::purchase_bodies("idle", count);
        let started = Instant::now();
        // Opened and held by the load generator's runtime: it is the client.
        let opened = generator
            .spawn(async move { open_idle(addr, &path, &secret, bodies).await })
            .await;
        let opened_in_s = started.elapsed().as_secs_f64();
        tokio::time::sleep(IDLE_SETTLE).await;
        let rss = rss_mib(&child);
        let held = opened?;
        let still_open = held.iter().filter(|sender| !sender.is_closed()).count();
        drop(held);
        stop(&mut child).await;
        let rss_idle_mib = rss?;
        Ok(IdleConnections {
            opened: count,
            still_open,
            opened_in_s,
            rss_before_mib,
            rss_idle_mib,
            kib_per_connection: (rss_idle_mib - rss_before_mib) * 1024.0 / still_open.max(1) as f64,
        })
    }
    .await;
    fixture.cleanup().await;
    result
}

/// Opens one connection per body, sends it as a purchase, and keeps the connection.
async fn open_idle(
    addr: std::net::SocketAddr,
    path: &str,
    secret: &str,
    bodies: Arc<Vec<Bytes>>,
) -> anyhow::Result<Vec<SendRequest<Full<Bytes>>>> {
    let host = addr.to_string();
    stream::iter(0..bodies.len())
        .map(|i| {
            let request = Request::post(path)
                .header("host", host.as_str())
                .header("content-type", "application/json")
                .header("x-webhook-secret", secret)
                .body(Full::new(bodies[i].clone()));
            async move {
                let mut sender = load::open(addr).await?;
                sender.ready().await?;
                let response = sender.send_request(request?).await?;
                let status = response.status();
                response.into_body().collect().await?;
                anyhow::ensure!(status.is_success(), "answered {status}");
                Ok(sender)
            }
        })
        .buffer_unordered(IDLE_OPENING_CONCURRENCY)
        .try_collect()
        .await
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (children inherit it) and
/// returns the new soft limit.
fn raise_open_files_limit() -> anyhow::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` and `setrlimit` only read and write the struct passed by pointer,
    // which lives across both calls.
    unsafe {
        anyhow::ensure!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0,
            "getrlimit: {}",
            std::io::Error::last_os_error()
        );
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            anyhow::ensure!(
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0,
                "setrlimit: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(limit.rlim_cur)
}

/// `VmRSS` of a running child, in MiB.
fn rss_mib(child: &Child) -> anyhow::Result<f64> {
    let pid = child.id().context("the process has exited")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_kib(&status, "VmRSS:")
        .map(|kib| kib as f64 / 1024.0)
        .context("no VmRSS in /proc/<pid>/status")
}

/// Starts a binary configured for `fixture` (production defaults otherwise), output discarded.
fn spawn(binary: &Path, fixture: &Fixture, extra: &[(&str, String)]) -> anyhow::Result<Child> {
    Command::new(binary)
        .envs(fixture.env.process_env())
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} (built with --release?)", binary.display()))
}

/// Polls `url` until it answers 200, failing early if the process exits.
async fn wait_ready(child: &mut Child, url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the process exited during start-up: {status}");
        }
        if let Ok(response) = client.get(url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{url} not ready after 30 s")
}

/// `VmHWM` of a running child, in MiB.
fn peak_mib(child: &Child) -> anyhow::Result<f64> {
    let pid = child.id().context("the process has exited")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_kib(&status, "VmHWM:")
        .map(|kib| kib as f64 / 1024.0)
        .context("no VmHWM in /proc/<pid>/status")
}

/// The kB figure of line `field` (`VmHWM:`, `VmRSS:`) of `/proc/<pid>/status`.
fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// SIGTERM (graceful), then SIGKILL if it has not exited within 15 s.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// A port free right now (the child binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The directory of the release binaries: next to this executable (`target/release/`).
pub fn binaries_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("the executable has no directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_high_water_mark() {
        let status =
            "Name:\treceiver\nVmPeak:\t  900000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(20480));
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(10240));
        assert_eq!(parse_status_kib("Name:\tx\n", "VmHWM:"), None);
    }
}
