//! Reading the worker's delivery log (`BLITZ_DELIVERY_LOG`, a test hook of the `failpoints`
//! feature): which messages each worker process took, and whether the broker marked them
//! redelivered. Tests use it to check their premises, not their results.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use crate::env::random_suffix;

/// One worker's delivery log file, removed when dropped.
pub struct DeliveryLog {
    path: PathBuf,
}

/// One delivery taken by a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The message id (the purchase id).
    pub message_id: String,
    /// The broker had delivered it before (to a consumer that did not ack it).
    pub redelivered: bool,
}

impl DeliveryLog {
    /// A fresh, empty log path in the temporary directory.
    pub fn new() -> Self {
        Self {
            path: std::env::temp_dir().join(format!("blitz-deliveries-{}.log", random_suffix(10))),
        }
    }

    /// The `BLITZ_DELIVERY_LOG` value for the worker.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `(name, value)` pair to pass to [`crate::process::ChildProcess::spawn`].
    pub fn env(&self) -> (&'static str, String) {
        ("BLITZ_DELIVERY_LOG", self.path.display().to_string())
    }

    /// Every delivery logged so far, in order.
    pub fn read(&self) -> Vec<Taken> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (id, flag) = line.rsplit_once(' ')?;
                Some(Taken {
                    message_id: id.to_owned(),
                    redelivered: flag == "1",
                })
            })
            .collect()
    }

    /// Distinct message ids taken.
    pub fn ids(&self) -> HashSet<String> {
        self.read().into_iter().map(|t| t.message_id).collect()
    }

    /// Message ids taken with the redelivered flag.
    pub fn redelivered(&self) -> HashSet<String> {
        self.read()
            .into_iter()
            .filter(|t| t.redelivered)
            .map(|t| t.message_id)
            .collect()
    }
}

impl Default for DeliveryLog {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for DeliveryLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How many message ids were taken by at least two different workers.
pub fn spread_over_workers(logs: &[&DeliveryLog]) -> usize {
    let mut takers: HashMap<String, HashSet<usize>> = HashMap::new();
    for (worker, log) in logs.iter().enumerate() {
        for id in log.ids() {
            takers.entry(id).or_default().insert(worker);
        }
    }
    takers.values().filter(|workers| workers.len() >= 2).count()
}
