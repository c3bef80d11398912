//! RabbitMQ nodes of a test's own: a 3-node cluster for the cluster fault cases, or one node to
//! restart, started with `scripts/rabbitmq-cluster.sh` (so the tests exercise the script
//! operators use) in a temporary directory on free ports, and destroyed when dropped.
//!
//! Nothing here touches the machine's shared node: every CLI call goes through the script,
//! which names its own nodes and uses its own Erlang cookie.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Output,
    sync::Mutex,
    time::Duration,
};

use rand::Rng;
use serde_json::Value;

use crate::env::random_suffix;

/// The vhost the script creates (and every URL of a cluster names).
pub const VHOST: &str = "blitz";

/// A RabbitMQ cluster (or single node) of this test's own.
pub struct RabbitCluster {
    /// Data, logs, cookie and pids.
    dir: PathBuf,
    /// Node count.
    nodes: usize,
    /// AMQP port of node 1.
    base_port: u16,
    /// Node name prefix.
    name: String,
    /// Nodes killed or stopped by the test (CLI calls go to a live one).
    down: Mutex<HashSet<usize>>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/rabbitmq-cluster.sh")
}

impl RabbitCluster {
    /// Starts `nodes` clustered nodes and waits until all run (a minute or so on a busy machine).
    pub async fn start(nodes: usize) -> Self {
        let suffix = random_suffix(6);
        let cluster = Self {
            dir: std::env::temp_dir().join(format!("blitz-rmq-{suffix}")),
            nodes,
            base_port: free_port_block(nodes),
            name: format!("blitzt-{suffix}"),
            down: Mutex::new(HashSet::new()),
        };
        let output = cluster.run(&["start"]).await;
        assert!(
            output.status.success(),
            "starting a {nodes}-node cluster failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        cluster
    }

    /// Node count.
    pub fn len(&self) -> usize {
        self.nodes
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        self.nodes == 0
    }

    /// AMQP port of node `node` (1-based).
    pub fn port(&self, node: usize) -> u16 {
        self.base_port + node as u16 - 1
    }

    /// The URL of node `node` (1-based).
    pub fn url(&self, node: usize) -> String {
        format!("amqp://blitz:blitz@127.0.0.1:{}/{VHOST}", self.port(node))
    }

    /// `AMQP_URL` listing every node, in order.
    pub fn amqp_url(&self) -> String {
        (1..=self.nodes)
            .map(|node| self.url(node))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node whose AMQP port is `port`.
    pub fn node_of_port(&self, port: u16) -> Option<usize> {
        (1..=self.nodes).find(|node| self.port(*node) == port)
    }

    /// The node called `name` (`blitzt-xxxxxx-2@localhost` → 2).
    pub fn node_of_name(&self, name: &str) -> Option<usize> {
        let rest = name.strip_prefix(&format!("{}-", self.name))?;
        rest.split('@').next()?.parse().ok()
    }

    /// SIGKILLs node `node`: it dies with whatever it held, as in a power cut.
    pub async fn kill(&self, node: usize) {
        self.mark_down(node);
        let output = self.run(&["kill-node", &node.to_string()]).await;
        assert!(output.status.success(), "kill node {node}: {output:?}");
    }

    /// Stops node `node` gracefully (`rabbitmqctl stop`).
    pub async fn stop_node(&self, node: usize) {
        self.mark_down(node);
        let output = self.run(&["stop-node", &node.to_string()]).await;
        assert!(output.status.success(), "stop node {node}: {output:?}");
    }

    /// Starts node `node` again (it rejoins the cluster with its data).
    pub async fn start_node(&self, node: usize) {
        let output = self.run(&["start-node", &node.to_string()]).await;
        assert!(
            output.status.success(),
            "start node {node}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.down
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&node);
    }

    /// `rabbitmqctl -q <args> --formatter json` on a live node, parsed; `None` if it failed.
    pub async fn ctl_json(&self, args: &[&str]) -> Option<Value> {
        let node = self.live_node()?.to_string();
        let mut full = vec!["ctl", node.as_str(), "-q"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--formatter", "json"]);
        let output = self.run(&full).await;
        if !output.status.success() {
            return None;
        }
        serde_json::from_slice(&output.stdout).ok()
    }

    /// `(ready, unacknowledged)` messages of `queue`, as the broker counts them.
    pub async fn queue_counts(&self, queue: &str) -> Option<(u64, u64)> {
        let rows = self
            .ctl_json(&[
                "list_queues",
                "-p",
                VHOST,
                "name",
                "messages_ready",
                "messages_unacknowledged",
            ])
            .await?;
        queue_counts_in(&rows, queue)
    }

    /// The node holding `queue`'s quorum leader.
    pub async fn leader(&self, queue: &str) -> Option<usize> {
        let rows = self
            .ctl_json(&["list_queues", "-p", VHOST, "name", "leader"])
            .await?;
        let row = rows.as_array()?.iter().find(|row| row["name"] == queue)?;
        self.node_of_name(row["leader"].as_str()?)
    }

    /// The nodes `queue` has replicas on.
    pub async fn members(&self, queue: &str) -> Option<Vec<usize>> {
        let rows = self
            .ctl_json(&["list_queues", "-p", VHOST, "name", "members"])
            .await?;
        let row = rows.as_array()?.iter().find(|row| row["name"] == queue)?;
        let mut members: Vec<usize> = row["members"]
            .as_array()?
            .iter()
            .filter_map(|member| self.node_of_name(member.as_str()?))
            .collect();
        members.sort_unstable();
        Some(members)
    }

    /// The node each client connection named `connection_name` (`receiver`, `worker`) is
    /// connected to, as the cluster sees it.
    pub async fn connections_of(&self, connection_name: &str) -> Option<Vec<usize>> {
        let rows = self
            .ctl_json(&["list_connections", "port", "client_properties"])
            .await?;
        let quoted = format!("\"{connection_name}\"");
        Some(
            rows.as_array()?
                .iter()
                .filter(|row| row["client_properties"].to_string().contains(&quoted))
                .filter_map(|row| self.node_of_port(u16::try_from(row["port"].as_u64()?).ok()?))
                .collect(),
        )
    }

    fn mark_down(&self, node: usize) {
        self.down
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(node);
    }

    fn live_node(&self) -> Option<usize> {
        let down = self
            .down
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (1..=self.nodes).find(|node| !down.contains(node))
    }

    fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new("bash");
        command
            .arg(script())
            .env("BLITZ_CLUSTER_DIR", &self.dir)
            .env("BLITZ_CLUSTER_NODES", self.nodes.to_string())
            .env("BLITZ_CLUSTER_PORT", self.base_port.to_string())
            .env("BLITZ_CLUSTER_NAME", &self.name)
            .stdin(std::process::Stdio::null());
        command
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut command = tokio::process::Command::from(self.command());
        command.args(args);
        tokio::time::timeout(Duration::from_secs(300), command.output())
            .await
            .expect("the cluster script finishes within 5 minutes")
            .expect("run scripts/rabbitmq-cluster.sh")
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        // Blocking on purpose: the nodes must be gone before the next test starts its own.
        let _ = self.command().arg("destroy").output();
    }
}

/// `(ready, unacknowledged)` of `queue` in `rabbitmqctl list_queues --formatter json` rows.
pub fn queue_counts_in(rows: &Value, queue: &str) -> Option<(u64, u64)> {
    let row = rows.as_array()?.iter().find(|row| row["name"] == queue)?;
    Some((
        row["messages_ready"].as_u64()?,
        row["messages_unacknowledged"].as_u64()?,
    ))
}

/// A base port such that every port the script derives from it (AMQP `base..base+n`, Erlang
/// distribution `base+10..`, CLI `base+10010..`) is free right now.
fn free_port_block(nodes: usize) -> u16 {
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    for _ in 0..200 {
        let base: u16 = rand::rng().random_range(600..1400) * 20;
        let mut ports = Vec::new();
        for offset in 0..nodes as u16 {
            ports.extend([base + offset, base + 10 + offset]);
        }
        ports.extend((0..=10).map(|offset| base + 10_010 + offset));
        if ports.into_iter().all(free) {
            return base;
        }
    }
    panic!("no free block of ports for a RabbitMQ cluster");
}
