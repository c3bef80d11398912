//! The built binaries as real child processes, for tests that kill them.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
};

use crate::env::TestEnv;

/// A running `worker` or `receiver` process; killed when dropped.
pub struct ChildProcess {
    /// The child.
    pub child: Child,
    /// Everything it wrote to stdout and stderr, when spawned with [`ChildProcess::spawn_captured`].
    output: Option<Arc<Mutex<String>>>,
}

impl ChildProcess {
    /// Starts `binary` configured for `env`, plus `extra` variables; its output goes to the
    /// test's.
    pub fn spawn(binary: &Path, env: &TestEnv, extra: &[(&str, &str)]) -> Self {
        let mut command = Self::command(binary, env, extra);
        command.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        Self {
            child: command.spawn().expect("spawn binary"),
            output: None,
        }
    }

    /// Like [`ChildProcess::spawn`], but keeps everything the process writes (stdout and
    /// stderr, JSON logs) for the test to read: listener addresses, and proof of what it logged.
    pub fn spawn_captured(binary: &Path, env: &TestEnv, extra: &[(&str, &str)]) -> Self {
        let mut command = Self::command(binary, env, extra);
        command
            .env("LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn binary");
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(collect(stdout, output.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(collect(stderr, output.clone()));
        }
        Self {
            child,
            output: Some(output),
        }
    }

    fn command(binary: &Path, env: &TestEnv, extra: &[(&str, &str)]) -> Command {
        let mut command = Command::new(binary);
        command
            .envs(env.process_env())
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// What a captured process wrote so far.
    pub fn output(&self) -> String {
        self.output
            .as_ref()
            .map(|output| {
                output
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone()
            })
            .unwrap_or_default()
    }

    /// Waits until a captured process has logged a JSON line whose message is `message`, and
    /// returns that line (its fields beside `message`).
    pub async fn logged(&self, message: &str, timeout: Duration) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let output = self.output();
            let found = output.lines().find_map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).ok()?;
                // The JSON log format puts an event's fields beside `message`.
                (value["message"] == message || value["fields"]["message"] == message)
                    .then_some(value)
            });
            if let Some(fields) = found {
                return fields;
            }
            if tokio::time::Instant::now() >= deadline {
                let tail: Vec<&str> = output.lines().rev().take(30).collect();
                panic!(
                    "timed out after {timeout:?} waiting for the process to log {message:?}; \
                     its last lines:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many JSON lines whose message is `message` a captured process has logged so far
    /// (e.g. `consuming` once per subscription: 2 means it subscribed again after a loss).
    pub fn logged_count(&self, message: &str) -> usize {
        self.output()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|value| value["message"] == message || value["fields"]["message"] == message)
            .count()
    }

    /// The OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        if let Some(pid) = self.child.id() {
            // SAFETY-free: `kill` is an external command; avoids a libc dependency.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }

    /// SIGKILL: the process dies with whatever it held.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Waits for the exit code.
    pub async fn wait(&mut self) -> Option<i32> {
        self.child
            .wait()
            .await
            .ok()
            .and_then(|status| status.code())
    }
}

impl Drop for ChildProcess {
    /// A failing test shows what its captured process said last (it is killed right after).
    fn drop(&mut self) {
        if std::thread::panicking() && self.output.is_some() {
            let output = self.output();
            let tail: Vec<&str> = output.lines().rev().take(40).collect();
            eprintln!(
                "--- last lines of child process {:?} ---\n{}",
                self.child.id(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

async fn collect(stream: impl AsyncRead + Unpin, output: Arc<Mutex<String>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut output = output
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        output.push_str(&line);
        output.push('\n');
    }
}

/// Path of a workspace binary next to the running test executable (`target/<profile>/<name>`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    dir.join(name)
}
