//! The load generator: a fixed number of concurrent clients, each with its own keep-alive
//! connection, sending pre-built requests back to back (closed loop) until the bodies run out or
//! the deadline passes, optionally paced to a fixed total rate.
//!
//! It runs on its own Tokio runtime whose threads are named [`cpu::LOADGEN_THREAD`], so its CPU
//! time can be told apart from the servers' (they share the machine's cores, as they would on a
//! one-box deployment). The same driver sends HTTP requests (hyper, HTTP/1.1 keep-alive, one
//! connection per client: no pool, no locks on the hot path), AMQP publishes and database
//! transactions, so every ceiling is measured with the same loop and the same clocks.
//!
//! [`cpu::LOADGEN_THREAD`]: crate::cpu::LOADGEN_THREAD

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{client::conn::http1::SendRequest, Request};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, runtime::Runtime};

use crate::{cpu, stats::Latency};

/// What one call ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Success, covering this many items (1, or a batch's size).
    Ok(u32),
    /// An unexpected HTTP status.
    Status(u16),
    /// No answer within the client's timeout.
    Timeout,
    /// A transport or protocol error.
    Error,
}

/// One client: a connection and whatever state it needs; `call` performs operation `index`.
pub trait Session: Send + 'static {
    /// Performs operation `index` (an index into pre-built work).
    fn call(&mut self, index: usize) -> impl Future<Output = Outcome> + Send;
}

/// Opens sessions.
pub trait Connector: Send + Sync + 'static {
    /// The session type.
    type Session: Session;
    /// Opens one session (one connection).
    fn connect(&self) -> impl Future<Output = anyhow::Result<Self::Session>> + Send;
}

/// How much load to apply.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Concurrent clients.
    pub concurrency: usize,
    /// Operations available (indexes `0..operations`).
    pub operations: usize,
    /// Stop starting operations after this long (`None`: until the operations run out).
    pub duration: Option<Duration>,
    /// Total rate to pace to (operation `i` starts no earlier than `i / rate` seconds); `None`
    /// sends back to back.
    pub rate_per_s: Option<f64>,
}

/// One operation as it happened.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// When the pace wanted it to start (= `start_us` unpaced), in microseconds since the run
    /// began: a sender's webhook is due then, whether or not a client is free to send it.
    pub due_us: u64,
    /// Start, in microseconds since the run began.
    pub start_us: u64,
    /// Duration in microseconds.
    pub latency_us: u32,
    /// Outcome.
    pub outcome: Outcome,
}

/// Everything a run produced.
#[derive(Debug, Default)]
pub struct RunResult {
    /// Every operation, in no particular order.
    pub records: Vec<Record>,
    /// From the start of the run until the last operation finished.
    pub elapsed: Duration,
    /// Clients that could not connect.
    pub connect_errors: usize,
    /// CPU used during the run.
    pub cpu: cpu::Usage,
}

impl RunResult {
    /// Items that succeeded (a batch counts its size).
    pub fn ok_items(&self) -> u64 {
        self.records
            .iter()
            .map(|r| match r.outcome {
                Outcome::Ok(items) => u64::from(items),
                _ => 0,
            })
            .sum()
    }

    /// Operations that did not succeed.
    pub fn failures(&self) -> u64 {
        self.records
            .iter()
            .filter(|r| !matches!(r.outcome, Outcome::Ok(_)))
            .count() as u64
    }

    /// Operations that timed out.
    pub fn timeouts(&self) -> u64 {
        self.records
            .iter()
            .filter(|r| r.outcome == Outcome::Timeout)
            .count() as u64
    }

    /// Successful items per second over the whole run.
    pub fn throughput(&self) -> f64 {
        self.ok_items() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency of the successful operations.
    pub fn latency(&self) -> Option<Latency> {
        self.latency_between(0, u64::MAX)
    }

    /// Latency of the successful operations that started in `[from_us, to_us)`.
    pub fn latency_between(&self, from_us: u64, to_us: u64) -> Option<Latency> {
        let mut samples: Vec<u32> = self
            .records
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Ok(_)))
            .filter(|r| r.start_us >= from_us && r.start_us < to_us)
            .map(|r| r.latency_us)
            .collect();
        Latency::from_micros(&mut samples)
    }
}

/// The load generator's own runtime (two threads: as many as the machine has cores, so it can
/// never be starved by its own thread count).
pub struct LoadGenerator {
    /// Always `Some` until dropped.
    runtime: Option<Runtime>,
}

impl Drop for LoadGenerator {
    /// A runtime cannot be dropped (it would block) inside another runtime's task: let its
    /// threads go in the background instead.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl LoadGenerator {
    /// Builds the runtime.
    pub fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(cpu::LOADGEN_THREAD)
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Runs `future` on the load generator's threads (e.g. a client connection that should be
    /// driven by them) and waits for it from any runtime.
    pub async fn spawn<F>(&self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .as_ref()
            .expect("running until dropped")
            .spawn(future)
            .await
            .expect("load generator task panicked")
    }

    /// Applies `plan` with sessions from `connector` and returns every operation's record.
    pub async fn run<C: Connector>(&self, connector: Arc<C>, plan: Plan) -> RunResult {
        self.spawn(drive(connector, plan)).await
    }
}

/// The closed loop itself.
async fn drive<C: Connector>(connector: Arc<C>, plan: Plan) -> RunResult {
    let next = Arc::new(AtomicUsize::new(0));
    let before = cpu::Snapshot::take();
    let started = Instant::now();
    let deadline = plan.duration.map(|d| started + d);
    let mut clients = Vec::with_capacity(plan.concurrency);
    for _ in 0..plan.concurrency.max(1) {
        let connector = connector.clone();
        let next = next.clone();
        clients.push(tokio::spawn(async move {
            let mut session = match connector.connect().await {
                Ok(session) => session,
                Err(_) => return Err(()),
            };
            let mut records = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= plan.operations {
                    break;
                }
                let due = plan
                    .rate_per_s
                    .map(|rate| started + Duration::from_secs_f64(index as f64 / rate));
                if let Some(due) = due {
                    tokio::time::sleep_until(due.into()).await;
                }
                let begin = Instant::now();
                let due = due.unwrap_or(begin);
                if deadline.is_some_and(|deadline| begin >= deadline) {
                    break;
                }
                let outcome = session.call(index).await;
                records.push(Record {
                    due_us: due.duration_since(started).as_micros() as u64,
                    start_us: begin.duration_since(started).as_micros() as u64,
                    latency_us: begin.elapsed().as_micros().min(u128::from(u32::MAX)) as u32,
                    outcome,
                });
            }
            Ok(records)
        }));
    }
    let mut result = RunResult::default();
    for client in clients {
        match client.await {
            Ok(Ok(records)) => result.records.extend(records),
            _ => result.connect_errors += 1,
        }
    }
    result.elapsed = started.elapsed();
    result.cpu = before.until(&cpu::Snapshot::take());
    result
}

/// Pre-built webhook requests to one URL path, sent over plain HTTP/1.1 keep-alive connections.
pub struct HttpConnector {
    /// Server address.
    pub addr: SocketAddr,
    /// Request path.
    pub path: String,
    /// `X-Webhook-Secret` value.
    pub secret: String,
    /// One body per operation (unique order ids).
    pub bodies: Arc<Vec<Bytes>>,
    /// Longest wait for an answer; a sender gives up after 5 s.
    pub timeout: Duration,
}

impl Connector for HttpConnector {
    type Session = HttpSession;

    async fn connect(&self) -> anyhow::Result<HttpSession> {
        let sender = open(self.addr).await?;
        Ok(HttpSession {
            sender: Some(sender),
            addr: self.addr,
            path: self.path.clone(),
            host: self.addr.to_string(),
            secret: self.secret.clone(),
            bodies: self.bodies.clone(),
            timeout: self.timeout,
        })
    }
}

/// One HTTP client connection.
pub struct HttpSession {
    /// `None` after a failure until the next call reconnects.
    sender: Option<SendRequest<Full<Bytes>>>,
    addr: SocketAddr,
    path: String,
    host: String,
    secret: String,
    bodies: Arc<Vec<Bytes>>,
    timeout: Duration,
}

impl Session for HttpSession {
    async fn call(&mut self, index: usize) -> Outcome {
        let request = Request::post(self.path.as_str())
            .header("host", self.host.as_str())
            .header("content-type", "application/json")
            .header("x-webhook-secret", self.secret.as_str())
            .body(Full::new(self.bodies[index].clone()))
            .expect("valid request");
        let exchange = async {
            if self.sender.is_none() {
                self.sender = Some(open(self.addr).await.map_err(|_| Outcome::Error)?);
            }
            let sender = self.sender.as_mut().expect("just connected");
            sender.ready().await.map_err(|_| Outcome::Error)?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|_| Outcome::Error)?;
            let status = response.status().as_u16();
            response
                .into_body()
                .collect()
                .await
                .map_err(|_| Outcome::Error)?;
            Ok::<u16, Outcome>(status)
        };
        let outcome = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(200)) => return Outcome::Ok(1),
            Ok(Ok(status)) => Outcome::Status(status),
            Ok(Err(outcome)) => outcome,
            Err(_) => Outcome::Timeout,
        };
        // After a timeout or error the connection's state is unknown: start a fresh one, as a
        // sender retrying would.
        if !matches!(outcome, Outcome::Status(_)) {
            self.sender = None;
        }
        outcome
    }
}

/// Opens one HTTP/1.1 connection (Nagle off, as every HTTP client does).
pub async fn open(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting;

    impl Session for Counting {
        async fn call(&mut self, index: usize) -> Outcome {
            if index % 10 == 0 {
                Outcome::Status(503)
            } else {
                Outcome::Ok(2)
            }
        }
    }

    impl Connector for Counting {
        type Session = Counting;
        async fn connect(&self) -> anyhow::Result<Counting> {
            Ok(Counting)
        }
    }

    #[test]
    fn every_operation_runs_once_and_is_counted() {
        let generator = LoadGenerator::new().unwrap();
        let runtime = generator.runtime.as_ref().unwrap();
        let result = runtime.block_on(drive(
            Arc::new(Counting),
            Plan {
                concurrency: 4,
                operations: 100,
                duration: None,
                rate_per_s: None,
            },
        ));
        assert_eq!(result.records.len(), 100);
        assert_eq!(result.failures(), 10);
        assert_eq!(result.ok_items(), 180);
        assert_eq!(result.timeouts(), 0);
    }
}
