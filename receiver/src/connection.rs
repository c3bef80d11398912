//! One client connection, served by hyper while a request is in progress and *parked* between
//! requests.
//!
//! hyper keeps an 8 KiB read buffer, an 8 KiB write buffer and its dispatcher state for as long
//! as a connection lives, so every kept-alive connection that waits for its sender's next webhook
//! costs about 20 KiB of memory: 10 000 of them, which a few busy senders' connection pools
//! reach, were 200 MiB. Like nginx, which frees a kept-alive connection's request buffers while
//! it waits, we give the connection to hyper only while there is something to read or answer:
//! once an answer is written out and the socket has nothing more, hyper is told the client is
//! done ([`ParkingIo`] reports end of input), hands the socket back untouched
//! ([`http1::Connection::into_parts`]), and the connection waits as a bare socket until its
//! next request arrives, at which point a fresh hyper connection takes it again.
//!
//! Hyper is only ever told "end of input" when no request is in progress, its last answer has
//! been flushed to the socket and nothing has been read since; a client that *pipelines* (sends
//! its next request before the previous answer) and has only part of the next request head in
//! flight at that moment sees its connection closed, and retries, as for any closed kept-alive
//! connection. The HTTP clients that send webhooks do not pipeline.

use std::{
    convert::Infallible,
    future::{poll_fn, Future},
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::body::{Body, Bytes};
use hyper::{
    body::{Frame, Incoming, SizeHint},
    rt::{Read, ReadBufCursor, Write},
    server::conn::http1,
    service::Service,
    Request, Response,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A boxed answer future, as the per-connection service returns it.
pub type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// When an idle connection is parked, and when it is closed. Clones share the count of
/// connections hyper holds.
#[derive(Debug, Clone)]
pub struct Idleness {
    /// How long a connection may wait for its next request head, counted from the end of the
    /// previous answer (or from the accept) to the end of the head; then it is closed.
    pub timeout: Duration,
    /// How long after its last answer a connection is parked. A sender that keeps the
    /// connection busy never pays for taking it up again (a fresh hyper connection per
    /// request cost about 7 µs of CPU per request in the bench); one that goes quiet stops
    /// holding buffers soon after.
    pub park_after: Duration,
    /// How many connections hyper may hold (with their buffers) before an idle one is parked
    /// at once rather than after `park_after`: a burst of new connections, each sending one
    /// webhook, would otherwise leave `park_after` × their rate of them holding buffers, and
    /// the memory they touched stays with the process after they are freed.
    pub hold_at_most: usize,
    held: Arc<AtomicUsize>,
}

impl Idleness {
    /// The settings, with no connection held yet.
    pub fn new(timeout: Duration, park_after: Duration, hold_at_most: usize) -> Self {
        Self {
            timeout,
            park_after,
            hold_at_most,
            held: Arc::default(),
        }
    }
}

/// One connection held by hyper, counted in [`Idleness`] while it lives.
struct Held(Arc<AtomicUsize>);

impl Held {
    fn new(held: &Arc<AtomicUsize>) -> Self {
        held.fetch_add(1, Ordering::Relaxed);
        Self(held.clone())
    }

    fn over(&self, limit: usize) -> bool {
        self.0.load(Ordering::Relaxed) > limit
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves HTTP/1.1 on `stream` until the client closes it, an error ends it, it stays idle
/// past `idleness.timeout`, or `stop` is cancelled: then a parked connection closes at once
/// and a busy one finishes its request first (with `Connection: close`). Returns how many times
/// hyper took the connection up and answered something, for tests.
pub async fn serve<S>(
    stream: TcpStream,
    http: http1::Builder,
    idleness: Idleness,
    service: S,
    stop: CancellationToken,
) -> u32
where
    S: Fn(Request<Incoming>) -> Answer + Clone + Send + Sync + Unpin + 'static,
{
    let mut sessions = 0;
    let exchanges = Arc::new(Exchanges::default());
    let mut stream = stream;
    let mut unread = Bytes::new();
    let mut idle_since = Instant::now();
    loop {
        if unread.is_empty() {
            let deadline = tokio::time::Instant::from_std(idle_since + idleness.timeout);
            tokio::select! {
                () = stop.cancelled() => return sessions,
                readable = tokio::time::timeout_at(deadline, stream.readable()) => {
                    if !matches!(readable, Ok(Ok(()))) {
                        return sessions;
                    }
                }
            }
        }
        // What is left of the idle budget bounds the request head, as one timeout would.
        let head_budget = idleness
            .timeout
            .saturating_sub(idle_since.elapsed())
            .max(Duration::from_millis(1));
        let answered = exchanges.finished.load(Ordering::Relaxed);
        let io = ParkingIo::new(stream, unread, exchanges.clone(), idle_since, &idleness);
        let tracked = Tracked {
            service: service.clone(),
            exchanges: exchanges.clone(),
        };
        let mut connection = Box::new(
            http.clone()
                .header_read_timeout(head_budget)
                .serve_connection(io, tracked),
        );
        let ended = tokio::select! {
            ended = poll_fn(|cx| connection.poll_without_shutdown(cx)) => ended,
            () = stop.cancelled() => {
                Pin::new(&mut *connection).graceful_shutdown();
                poll_fn(|cx| connection.poll_without_shutdown(cx)).await
            }
        };
        if exchanges.finished.load(Ordering::Relaxed) > answered {
            sessions += 1;
        }
        if let Err(error) = ended {
            tracing::debug!(%error, "connection ended with an error");
            return sessions;
        }
        let parts = connection.into_parts();
        if !parts.io.parked || stop.is_cancelled() {
            // hyper ended it: the client closed, asked for `Connection: close`, or we stop.
            return sessions;
        }
        idle_since = parts.io.idle_since;
        stream = parts.io.into_inner();
        // Even empty, hyper's read buffer would keep its whole allocation alive.
        unread = if parts.read_buf.is_empty() {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(&parts.read_buf)
        };
    }
}

/// Requests handed to the service and answers finished on one connection. Both are touched only
/// by the connection's own task (hyper polls the service, the answer body and the socket from
/// it), so relaxed ordering is enough; they are atomics only because the service must be `Send`.
#[derive(Default)]
struct Exchanges {
    started: AtomicU64,
    finished: AtomicU64,
}

impl Exchanges {
    fn in_progress(&self) -> bool {
        self.started.load(Ordering::Relaxed) != self.finished.load(Ordering::Relaxed)
    }
}

/// The service hyper calls: counts each request in, and each answer out when hyper drops its
/// body (written in full, or abandoned with the connection).
#[derive(Clone)]
struct Tracked<S> {
    service: S,
    exchanges: Arc<Exchanges>,
}

impl<S> Service<Request<Incoming>> for Tracked<S>
where
    S: Fn(Request<Incoming>) -> Answer,
{
    type Response = Response<CountedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<CountedBody>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.exchanges.started.fetch_add(1, Ordering::Relaxed);
        let answer = (self.service)(request);
        let exchanges = self.exchanges.clone();
        Box::pin(async move {
            let Ok(response) = answer.await;
            Ok(response.map(|body| CountedBody { body, exchanges }))
        })
    }
}

/// An answer body that counts its answer finished when hyper drops it.
struct CountedBody {
    body: Body,
    exchanges: Arc<Exchanges>,
}

impl Drop for CountedBody {
    fn drop(&mut self) {
        self.exchanges.finished.fetch_add(1, Ordering::Relaxed);
    }
}

impl hyper::body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket as hyper sees it, plus the bytes hyper had read but not used when it last let go
/// of the connection. A read that would wait reports end of input instead ("parks") once the
/// last answer is out and nothing is in progress.
struct ParkingIo {
    socket: TokioIo<TcpStream>,
    unread: Bytes,
    exchanges: Arc<Exchanges>,
    /// Answers finished as of the last flush that found nothing in progress.
    flushed_answers: u64,
    /// An answer was flushed with nothing in progress (or this hyper connection is new), and
    /// nothing has been read since.
    idle: bool,
    /// When the connection last became idle (carried over from the previous hyper connection).
    idle_since: Instant,
    /// Anything was read on this hyper connection.
    has_read: bool,
    /// How long to stay idle before parking ([`Idleness::park_after`]).
    park_after: Duration,
    /// [`Idleness::hold_at_most`].
    hold_at_most: usize,
    /// This connection, counted among those hyper holds.
    held: Held,
    /// Wakes the connection to park it once it has been idle `park_after`; made on first use.
    park_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// End of input was reported to hyper because the connection is idle, not because the
    /// client closed it.
    parked: bool,
}

impl ParkingIo {
    fn new(
        stream: TcpStream,
        unread: Bytes,
        exchanges: Arc<Exchanges>,
        idle_since: Instant,
        idleness: &Idleness,
    ) -> Self {
        let flushed_answers = exchanges.finished.load(Ordering::Relaxed);
        Self {
            socket: TokioIo::new(stream),
            unread,
            exchanges,
            flushed_answers,
            // Until something is read (see `park_due`).
            idle: true,
            idle_since,
            has_read: false,
            park_after: idleness.park_after,
            hold_at_most: idleness.hold_at_most,
            held: Held::new(&idleness.held),
            park_timer: None,
            parked: false,
        }
    }

    fn into_inner(self) -> TcpStream {
        self.socket.into_inner()
    }

    /// Whether an idle connection has waited `park_after`; if not, arranges to be woken then.
    fn park_due(&mut self, cx: &mut Context<'_>) -> bool {
        // Taken up and found nothing to read: readiness was reported falsely (tokio does for
        // a fresh socket), and there is no point in holding it.
        if !self.has_read || self.held.over(self.hold_at_most) {
            return true;
        }
        let due = tokio::time::Instant::from_std(self.idle_since + self.park_after);
        let timer = self
            .park_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        // The timer is moved only when it fires early (the connection was busy again since it
        // was set), not after every answer: a busy connection touches the timer wheel about
        // once per `park_after`, not once per request.
        while timer.as_mut().poll(cx).is_ready() {
            if timer.deadline() >= due {
                return true;
            }
            timer.as_mut().reset(due);
        }
        false
    }
}

impl Read for ParkingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread.split_to(n));
            this.idle = false;
            this.has_read = true;
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.socket).poll_read(cx, buf) {
            Poll::Pending if this.idle && !this.exchanges.in_progress() && this.park_due(cx) => {
                this.parked = true;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
            ready => {
                this.idle = false;
                this.has_read = true;
                ready
            }
        }
    }
}

impl Write for ParkingIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let flushed = Pin::new(&mut this.socket).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            // hyper flushes the socket only once its write buffer is empty, and drops an
            // answer's body before the flush that sends its end: a flush after a newly finished
            // answer, with no request in progress, means that answer is on the wire.
            let finished = this.exchanges.finished.load(Ordering::Relaxed);
            if finished > this.flushed_answers && !this.exchanges.in_progress() {
                this.flushed_answers = finished;
                this.idle = true;
                this.idle_since = Instant::now();
            }
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use axum::{routing::post, Router};
    use hyper_util::rt::TokioTimer;
    use tokio::{
        io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
        net::TcpListener,
        task::JoinHandle,
    };
    use tower::ServiceExt;

    use super::*;

    /// Accepts one connection and serves it with `idle_timeout`, parking it 10 ms after an
    /// answer: `/echo` answers the body's length, `/slow` the same after 300 ms. Returns the
    /// client side and the server task.
    async fn one_connection(
        idle_timeout: Duration,
        stop: CancellationToken,
    ) -> (BufReader<TcpStream>, JoinHandle<u32>) {
        let idleness = Idleness::new(idle_timeout, Duration::from_millis(10), usize::MAX);
        connection_with(idleness, stop).await
    }

    async fn connection_with(
        idleness: Idleness,
        stop: CancellationToken,
    ) -> (BufReader<TcpStream>, JoinHandle<u32>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let router = Router::new()
            .route(
                "/echo",
                post(|body: Bytes| async move { body.len().to_string() }),
            )
            .route(
                "/slow",
                post(|body: Bytes| async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    body.len().to_string()
                }),
            );
        let service = move |request: Request<Incoming>| {
            let router = router.clone();
            Box::pin(async move { router.oneshot(request).await }) as Answer
        };
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new());
        let server = tokio::spawn(serve(accepted.unwrap().0, http, idleness, service, stop));
        (BufReader::new(client.unwrap()), server)
    }

    fn request(path: &str, body: &str) -> String {
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// Sends one request with `body` to `path`.
    async fn send(client: &mut BufReader<TcpStream>, path: &str, body: &str) {
        client
            .get_mut()
            .write_all(request(path, body).as_bytes())
            .await
            .unwrap();
    }

    /// Reads one answer; returns its status, its `Connection` header and its body.
    async fn answer(client: &mut BufReader<TcpStream>) -> (u16, String, String) {
        let (mut status, mut connection, mut length) = (0, String::new(), 0);
        loop {
            let mut line = String::new();
            client.read_line(&mut line).await.unwrap();
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if let Some(code) = line.strip_prefix("http/1.1 ") {
                status = code[..3].parse().unwrap();
            } else if let Some(value) = line.strip_prefix("content-length: ") {
                length = value.parse().unwrap();
            } else if let Some(value) = line.strip_prefix("connection: ") {
                connection = value.to_owned();
            }
        }
        let mut body = vec![0; length];
        client.read_exact(&mut body).await.unwrap();
        (status, connection, String::from_utf8(body).unwrap())
    }

    /// Waits for the server to close the connection; returns how long that took.
    async fn closed(client: &mut BufReader<TcpStream>) -> Duration {
        let started = Instant::now();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest));
        assert_eq!(
            read.await.unwrap().unwrap(),
            0,
            "bytes after the last answer"
        );
        started.elapsed()
    }

    #[tokio::test]
    async fn a_kept_alive_connection_is_parked_between_requests_and_taken_up_again() {
        let stop = CancellationToken::new();
        let (mut client, server) = one_connection(Duration::from_secs(10), stop).await;
        let pause = Duration::from_millis(50);

        send(&mut client, "/echo", "abc").await;
        assert_eq!(answer(&mut client).await, (200, String::new(), "3".into()));

        // A head split across two segments, the first arriving on a parked connection.
        tokio::time::sleep(pause).await;
        let split = request("/echo", "abcdef");
        let (first, second) = split.split_at(20);
        client.get_mut().write_all(first.as_bytes()).await.unwrap();
        tokio::time::sleep(pause).await;
        client.get_mut().write_all(second.as_bytes()).await.unwrap();
        assert_eq!(answer(&mut client).await, (200, String::new(), "6".into()));

        // Two whole requests in one segment (pipelined), the first one slow.
        tokio::time::sleep(pause).await;
        let pipelined = request("/slow", "ab") + &request("/echo", "abcd");
        client
            .get_mut()
            .write_all(pipelined.as_bytes())
            .await
            .unwrap();
        assert_eq!(answer(&mut client).await, (200, String::new(), "2".into()));
        assert_eq!(answer(&mut client).await, (200, String::new(), "4".into()));

        tokio::time::sleep(pause).await;
        client.get_mut().shutdown().await.unwrap();
        closed(&mut client).await;
        // Three bursts, each served by a fresh hyper connection.
        assert_eq!(server.await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_busy_connection_is_not_parked() {
        let (mut client, server) = four_requests(usize::MAX).await;
        client.get_mut().shutdown().await.unwrap();
        closed(&mut client).await;
        assert_eq!(
            server.await.unwrap(),
            1,
            "one hyper connection served all four"
        );
    }

    #[tokio::test]
    async fn past_the_budget_of_held_connections_an_idle_one_is_parked_at_once() {
        let (mut client, server) = four_requests(0).await;
        client.get_mut().shutdown().await.unwrap();
        closed(&mut client).await;
        assert_eq!(
            server.await.unwrap(),
            4,
            "a fresh hyper connection for each"
        );
    }

    /// Four requests 50 ms apart on one connection that parks after 1 s or beyond
    /// `hold_at_most` held connections.
    async fn four_requests(hold_at_most: usize) -> (BufReader<TcpStream>, JoinHandle<u32>) {
        let idleness = Idleness::new(
            Duration::from_secs(10),
            Duration::from_secs(1),
            hold_at_most,
        );
        let (mut client, server) = connection_with(idleness, CancellationToken::new()).await;
        for body in ["a", "ab", "abc", "abcd"] {
            send(&mut client, "/echo", body).await;
            assert_eq!(answer(&mut client).await.2, body.len().to_string());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (client, server)
    }

    #[tokio::test]
    async fn the_idle_budget_covers_the_wait_and_the_next_head_together() {
        let idle = Duration::from_millis(400);
        // Nothing sent at all.
        let (mut client, server) = one_connection(idle, CancellationToken::new()).await;
        let waited = closed(&mut client).await;
        assert!(waited >= idle - Duration::from_millis(50), "{waited:?}");
        assert_eq!(server.await.unwrap(), 0);

        // After an answer, half a head arrives late and the rest never does: the connection
        // closes when the budget counted from the answer runs out, not a budget later.
        let (mut client, server) = one_connection(idle, CancellationToken::new()).await;
        send(&mut client, "/echo", "a").await;
        assert_eq!(answer(&mut client).await.0, 200);
        let answered = Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.get_mut().write_all(b"POST /echo HT").await.unwrap();
        closed(&mut client).await;
        let after = answered.elapsed();
        assert!(after < idle + Duration::from_millis(250), "{after:?}");
        assert_eq!(server.await.unwrap(), 1);
    }

    #[tokio::test]
    async fn stopping_closes_a_parked_connection_at_once_and_lets_a_busy_one_finish() {
        let stop = CancellationToken::new();
        let (mut parked, parked_server) =
            one_connection(Duration::from_secs(10), stop.clone()).await;
        let (mut busy, busy_server) = one_connection(Duration::from_secs(10), stop.clone()).await;
        send(&mut parked, "/echo", "a").await;
        assert_eq!(answer(&mut parked).await.0, 200);
        send(&mut busy, "/slow", "ab").await;
        tokio::time::sleep(Duration::from_millis(100)).await;

        stop.cancel();
        assert!(closed(&mut parked).await < Duration::from_millis(100));
        assert_eq!(parked_server.await.unwrap(), 1);
        // The request in flight is answered, told the connection closes, and then it does.
        assert_eq!(answer(&mut busy).await, (200, "close".into(), "2".into()));
        closed(&mut busy).await;
        assert_eq!(busy_server.await.unwrap(), 1);
    }
}
