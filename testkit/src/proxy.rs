//! A TCP proxy a test controls, placed between a service and Postgres or RabbitMQ so the test can
//! break the network and heal it while real processes run.
//!
//! Point the service at [`Proxy::addr`] instead of the real server. Then:
//! - [`Proxy::cut`] resets every open connection (the service sees `ECONNRESET` at once) and
//!   refuses new ones (accepted, then reset) until [`Proxy::restore`]: a crashed peer or a
//!   network that fails loudly;
//! - [`Proxy::blackhole`] freezes every open connection and every new one (bytes stop moving,
//!   nothing is closed): a silent partition, noticed only by timeouts and heartbeats. Frozen
//!   connections stay frozen after [`Proxy::restore`], as connections through a rebooted
//!   firewall do, so only a client that replaces its dead connection recovers;
//! - [`Proxy::restore`] forwards new connections again.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

/// What the proxy does with traffic right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward everything.
    Open,
    /// Reset new connections as soon as they are accepted.
    Refuse,
    /// Accept new connections and never forward a byte.
    Blackhole,
}

/// A controllable TCP proxy; stops (closing everything) when dropped.
pub struct Proxy {
    /// Where clients connect.
    addr: SocketAddr,
    /// State shared with the accept loop and the connection tasks.
    shared: Arc<Shared>,
    /// The accept loop.
    accept: JoinHandle<()>,
}

struct Shared {
    /// Where traffic goes.
    target: SocketAddr,
    state: Mutex<State>,
}

struct State {
    /// How new connections are treated.
    mode: Mode,
    /// Ends every connection forwarded since the last cut or blackhole.
    cut: CancellationToken,
    /// Freezes every connection forwarded since the last cut or blackhole.
    freeze: CancellationToken,
    /// Frozen connections, held open so their peers see silence rather than a close.
    frozen: Vec<TcpStream>,
    /// Connections accepted so far (tests check that a client really reconnected).
    accepted: u64,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            target,
            state: Mutex::new(State {
                mode: Mode::Open,
                cut: CancellationToken::new(),
                freeze: CancellationToken::new(),
                frozen: Vec::new(),
                accepted: 0,
            }),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Self {
            addr,
            shared,
            accept,
        }
    }

    /// A proxy in front of the address of `url` (`postgres://…@host:port/db`, `amqp://…`).
    pub async fn in_front_of(url: &str) -> Self {
        Self::start(host_port(url)).await
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its `host:port` replaced by this proxy's address.
    pub fn url_for(&self, url: &str) -> String {
        let target = host_port_text(url);
        url.replacen(&target, &self.addr.to_string(), 1)
    }

    /// Connections accepted so far, refused and frozen ones included.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.lock().accepted
    }

    /// Resets every open connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        let mut state = self.shared.lock();
        state.mode = Mode::Refuse;
        state.cut.cancel();
        state.cut = CancellationToken::new();
        state.freeze = CancellationToken::new();
    }

    /// Freezes every open connection and every new one: nothing moves, nothing closes.
    pub fn blackhole(&self) {
        let mut state = self.shared.lock();
        state.mode = Mode::Blackhole;
        state.freeze.cancel();
        state.freeze = CancellationToken::new();
        state.cut = CancellationToken::new();
    }

    /// Forwards new connections again (frozen ones stay frozen).
    pub fn restore(&self) {
        self.shared.lock().mode = Mode::Open;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        let mut state = self.shared.lock();
        state.cut.cancel();
        state.frozen.clear();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors or similar: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = client.set_nodelay(true);
        let (mode, cut, freeze) = {
            let mut state = shared.lock();
            state.accepted += 1;
            (state.mode, state.cut.clone(), state.freeze.clone())
        };
        match mode {
            Mode::Open => {
                tokio::spawn(forward(client, shared.clone(), cut, freeze));
            }
            Mode::Refuse => reset(client),
            Mode::Blackhole => shared.lock().frozen.push(client),
        }
    }
}

/// Copies bytes both ways until either side closes, the connection is cut (reset) or frozen
/// (both sockets parked, open and silent).
async fn forward(
    mut client: TcpStream,
    shared: Arc<Shared>,
    cut: CancellationToken,
    freeze: CancellationToken,
) {
    let connect = tokio::select! {
        () = cut.cancelled() => return reset(client),
        connect = TcpStream::connect(shared.target) => connect,
    };
    let Ok(mut server) = connect else {
        return reset(client);
    };
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        () = cut.cancelled() => {
            reset(client);
            reset(server);
        }
        () = freeze.cancelled() => {
            let mut state = shared.lock();
            state.frozen.push(client);
            state.frozen.push(server);
        }
    }
}

/// Closes with a TCP reset rather than a FIN, as a crashed peer or a broken path would.
fn reset(stream: TcpStream) {
    // A zero linger makes close() send RST and return at once; it never blocks the thread,
    // which is what the deprecation warns about for non-zero values.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// The `host:port` part of a URL, as written.
fn host_port_text(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split(['/', '?']).next().unwrap_or(rest).to_owned()
}

/// The socket address of a URL's host (`localhost` and IPs only: tests talk to this machine).
fn host_port(url: &str) -> SocketAddr {
    let text = host_port_text(url).replace("localhost", "127.0.0.1");
    text.parse()
        .unwrap_or_else(|_| panic!("{url}: expected an ip:port host"))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn echoes(stream: &mut TcpStream) -> bool {
        if stream.write_all(b"ping").await.is_err() {
            return false;
        }
        let mut buffer = [0u8; 4];
        matches!(
            tokio::time::timeout(Duration::from_millis(500), stream.read_exact(&mut buffer)).await,
            Ok(Ok(_))
        ) && &buffer == b"ping"
    }

    #[tokio::test]
    async fn cut_resets_connections_and_restore_lets_new_ones_through() {
        let proxy = Proxy::start(echo_server().await).await;
        let mut before = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(echoes(&mut before).await);

        proxy.cut();
        let mut buffer = [0u8; 1];
        assert!(matches!(before.read(&mut buffer).await, Err(_) | Ok(0)));
        let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(!echoes(&mut during).await);

        proxy.restore();
        let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(echoes(&mut after).await);
        assert_eq!(proxy.connections_accepted(), 3);
    }

    #[tokio::test]
    async fn blackhole_freezes_without_closing() {
        let proxy = Proxy::start(echo_server().await).await;
        let mut before = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(echoes(&mut before).await);
        proxy.blackhole();
        assert!(!echoes(&mut before).await, "frozen: no echo, no close");
        proxy.restore();
        assert!(!echoes(&mut before).await, "still frozen after restore");
        let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(echoes(&mut after).await);
    }

    #[test]
    fn urls_are_rewritten_to_the_proxy() {
        assert_eq!(
            host_port_text("postgres://postgres@127.0.0.1:5432/blitz_t_x"),
            "127.0.0.1:5432"
        );
        assert_eq!(
            host_port_text("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "127.0.0.1:5672"
        );
    }
}
