//! The built binaries as real child processes, for tests that kill them.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use tokio::process::{Child, Command};

use crate::env::TestEnv;

/// A running `worker` or `receiver` process; killed when dropped.
pub struct ChildProcess {
    /// The child.
    pub child: Child,
}

impl ChildProcess {
    /// Starts `binary` configured for `env`, plus `extra` variables.
    pub fn spawn(binary: &Path, env: &TestEnv, extra: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary);
        command
            .envs(env.process_env())
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        Self {
            child: command.spawn().expect("spawn binary"),
        }
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

/// Path of a workspace binary next to the running test executable (`target/<profile>/<name>`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    dir.join(name)
}
