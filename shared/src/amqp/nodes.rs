//! The RabbitMQ nodes a process may use (`AMQP_URL`, one URL or several comma-separated ones, the
//! nodes of one cluster) and connecting to one of them that answers.
//!
//! Nodes are tried in the order listed. After a process loses its node, its next attempt starts
//! with the node *after* the lost one, so a dead node is tried last rather than first, and a
//! process moves on within one connect timeout of noticing the loss. List the nodes in a
//! different order on different hosts (or put a load balancer in front) to spread connections.

use std::{fmt, time::Duration};

use lapin::Connection;

/// Why an `AMQP_URL` value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodesError {
    /// Nothing but commas and spaces.
    #[error("no RabbitMQ URL given")]
    Empty,
    /// One entry is not an `amqp://` or `amqps://` URL.
    #[error("not an amqp:// or amqps:// URL: {0}")]
    NotAmqp(String),
}

/// The nodes of one RabbitMQ cluster (or the single node), in the order listed.
#[derive(Clone, PartialEq, Eq)]
pub struct Nodes {
    urls: Vec<String>,
}

impl Nodes {
    /// Parses `AMQP_URL`: one or more URLs separated by commas (spaces around them ignored).
    pub fn parse(list: &str) -> Result<Self, NodesError> {
        let urls: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            return Err(NodesError::Empty);
        }
        if let Some(bad) = urls
            .iter()
            .find(|url| !(url.starts_with("amqp://") || url.starts_with("amqps://")))
        {
            return Err(NodesError::NotAmqp(crate::config::redact_url(bad)));
        }
        Ok(Self { urls })
    }

    /// How many nodes are listed.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Always false: a parsed list has at least one node.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The URL of node `index` (credentials included: never log it, log [`Nodes::address`]).
    pub fn url(&self, index: usize) -> &str {
        &self.urls[index % self.urls.len()]
    }

    /// `host:port` of node `index`, for logs and metrics.
    pub fn address(&self, index: usize) -> String {
        address_of(self.url(index))
    }

    /// The quorum queue group size used when none is configured: one replica per listed node,
    /// at most three (three tolerate one lost node; more only slow every write down).
    pub fn default_quorum_group_size(&self) -> u32 {
        u32::try_from(self.urls.len().min(3)).unwrap_or(3)
    }
}

impl fmt::Debug for Nodes {
    /// The nodes' addresses, never their credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.urls.iter().map(|url| crate::config::redact_url(url)))
            .finish()
    }
}

/// `host:port` of an AMQP URL (`amqp://user:pass@host:port/vhost` → `host:port`).
pub fn address_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split(['/', '?']).next().unwrap_or(rest).to_owned()
}

/// Connects to one node after another, remembering where to start next time.
#[derive(Debug, Clone)]
pub struct Connector {
    nodes: Nodes,
    /// Connection name shown in the management UI (`receiver`, `worker`).
    name: String,
    /// Longest wait for one node (TCP connect and AMQP handshake). lapin has no handshake
    /// timeout, so without it one blackholed node would stall the whole rotation.
    per_node_timeout: Duration,
    /// Index of the node the next attempt starts with.
    next: usize,
}

/// A connection and which node it is to.
pub struct Connected {
    /// The open connection.
    pub connection: Connection,
    /// Index of the node in the list.
    pub node: usize,
    /// `host:port` of the node.
    pub address: String,
}

impl Connector {
    /// A connector over `nodes`, naming its connections `name`.
    pub fn new(nodes: Nodes, name: &str, per_node_timeout: Duration) -> Self {
        Self {
            nodes,
            name: name.to_owned(),
            per_node_timeout,
            next: 0,
        }
    }

    /// The nodes.
    pub fn nodes(&self) -> &Nodes {
        &self.nodes
    }

    /// Tries every node once, starting with the one after the node last connected to, and
    /// returns the first connection that opens. The error is the last node's.
    pub async fn connect(&mut self) -> lapin::Result<Connected> {
        let mut last_error = None;
        for node in self.attempt_order() {
            let url = self.nodes.url(node);
            let attempt =
                tokio::time::timeout(self.per_node_timeout, super::connect(url, &self.name));
            match attempt.await {
                Ok(Ok(connection)) => {
                    self.connected_to(node);
                    return Ok(Connected {
                        connection,
                        node,
                        address: self.nodes.address(node),
                    });
                }
                Ok(Err(error)) => {
                    tracing::debug!(node = %self.nodes.address(node), %error, "RabbitMQ node unavailable");
                    last_error = Some(error);
                }
                Err(_) => {
                    tracing::debug!(node = %self.nodes.address(node), "RabbitMQ node did not answer in time");
                    last_error = Some(std::io::Error::from(std::io::ErrorKind::TimedOut).into());
                }
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("no RabbitMQ node").into()))
    }

    /// The order the next [`Connector::connect`] tries the nodes in.
    fn attempt_order(&self) -> Vec<usize> {
        let count = self.nodes.len();
        (0..count)
            .map(|offset| (self.next + offset) % count)
            .collect()
    }

    /// Remembers a connection to `node`: once it is lost, the following node is tried first and
    /// the lost one last.
    fn connected_to(&mut self, node: usize) {
        self.next = (node + 1) % self.nodes.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_split_trimmed_and_checked() {
        let nodes = Nodes::parse(
            " amqp://u:p@10.0.0.1:5672/v , amqp://u:p@10.0.0.2:5672/v,,amqps://u:p@h3:5671/v ",
        )
        .unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes.url(1), "amqp://u:p@10.0.0.2:5672/v");
        assert_eq!(nodes.address(2), "h3:5671");
        assert_eq!(nodes.address(3), "10.0.0.1:5672", "indexes wrap around");
        assert_eq!(nodes.default_quorum_group_size(), 3);
        assert_eq!(Nodes::parse(" , ").unwrap_err(), NodesError::Empty);
        assert_eq!(
            Nodes::parse("amqp://a:5672,http://u:secret@b/").unwrap_err(),
            NodesError::NotAmqp("http://u:***@b/".into())
        );
    }

    #[test]
    fn group_size_follows_the_node_count_up_to_three() {
        let one = Nodes::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(one.default_quorum_group_size(), 1);
        let list = (1..=5)
            .map(|i| format!("amqp://h{i}:5672"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(Nodes::parse(&list).unwrap().default_quorum_group_size(), 3);
    }

    #[test]
    fn debug_output_hides_passwords() {
        let nodes =
            Nodes::parse("amqp://blitz:s3cret@a:5672/%2f,amqp://blitz:s3cret@b:5672/%2f").unwrap();
        let shown = format!("{nodes:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("b:5672"), "{shown}");
    }

    #[test]
    fn after_a_loss_the_next_node_is_tried_first_and_the_lost_one_last() {
        let nodes = Nodes::parse("amqp://a:1,amqp://b:2,amqp://c:3").unwrap();
        let mut connector = Connector::new(nodes, "test", Duration::from_secs(1));
        assert_eq!(
            connector.attempt_order(),
            [0, 1, 2],
            "listed order at first"
        );
        connector.connected_to(0);
        assert_eq!(connector.attempt_order(), [1, 2, 0]);
        connector.connected_to(2);
        assert_eq!(connector.attempt_order(), [0, 1, 2]);
    }

    #[tokio::test]
    async fn unreachable_nodes_fail_fast_with_the_last_error() {
        let closed = || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let (a, b) = (closed(), closed());
        let nodes = Nodes::parse(&format!(
            "amqp://127.0.0.1:{a}/%2f,amqp://127.0.0.1:{b}/%2f"
        ))
        .unwrap();
        let mut connector = Connector::new(nodes, "test", Duration::from_secs(2));
        let started = std::time::Instant::now();
        assert!(connector.connect().await.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "refused, not timed out"
        );
        assert_eq!(
            connector.attempt_order(),
            [0, 1],
            "nothing connected: same order"
        );
    }
}
