//! A plain round-robin TCP balancer, in-process: each accepted connection is paired with a new
//! connection to the next backend and the bytes are copied both ways until either side closes.
//! It stands in for the L4 load balancer in front of several receivers (`e2e.r2`); its CPU is
//! counted with the bench process's servers, as a real balancer's would be on the same machine.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::{JoinHandle, JoinSet},
};

/// A running balancer.
pub struct Balancer {
    /// Where clients connect.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Balancer {
    /// Listens on a fresh port and spreads connections over `backends` in turn.
    pub async fn start(backends: Vec<SocketAddr>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !backends.is_empty(),
            "a balancer needs at least one backend"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, Arc::new(backends), stopped));
        Ok(Self { addr, stop, task })
    }

    /// Stops accepting and closes every proxied connection.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn serve(
    listener: TcpListener,
    backends: Arc<Vec<SocketAddr>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let next = AtomicUsize::new(0);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let backend = backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()];
                connections.spawn(proxy(client, backend));
            }
            // Reap finished connections so the set does not grow with every reconnect.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// Copies bytes between `client` and a new connection to `backend` until either closes.
async fn proxy(mut client: TcpStream, backend: SocketAddr) {
    let Ok(mut upstream) = TcpStream::connect(backend).await else {
        return;
    };
    // Nagle off on both legs, as the client and the receiver have it.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A backend that answers every connection with its own tag, then closes.
    async fn tagged_backend(tag: u8) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut byte = [0u8; 1];
                if stream.read_exact(&mut byte).await.is_ok() {
                    let _ = stream.write_all(&[tag, byte[0]]).await;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn connections_alternate_between_backends_and_bytes_pass_both_ways() {
        let backends = vec![tagged_backend(1).await, tagged_backend(2).await];
        let balancer = Balancer::start(backends).await.unwrap();
        let mut seen = Vec::new();
        for i in 0..4u8 {
            let mut stream = TcpStream::connect(balancer.addr).await.unwrap();
            stream.write_all(&[i]).await.unwrap();
            let mut answer = [0u8; 2];
            stream.read_exact(&mut answer).await.unwrap();
            assert_eq!(answer[1], i);
            seen.push(answer[0]);
        }
        assert_eq!(seen, vec![1, 2, 1, 2]);
        balancer.stop().await;
    }
}
