//! Test-only hooks, compiled in only with the cargo feature `failpoints` (the fault tests enable
//! it; `cargo build --release` does not, so the production binary contains none of this and
//! reads no test variable).
//!
//! - `BLITZ_FAILPOINT=exit_after_commit`: exit with status 3 right after the first batch
//!   commits, before its ack, so a test can kill a real worker at the moment that matters.
//! - `BLITZ_DELIVERY_LOG=<path>`: append one line per delivery taken, `<message id>
//!   <redelivered 0|1>`, so a test can check its premises: that duplicate copies reached
//!   different workers, and that a killed worker really held unacknowledged messages (the broker
//!   marks those `redelivered` when it hands them to the next worker).
//!
//! Without the feature every hook is an empty inline function.

#[cfg(feature = "failpoints")]
mod hooks {
    use std::{io::Write, sync::OnceLock};

    /// The fault to inject.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Failpoint {
        /// Exit with status 3 right after the first batch commits, before acking it.
        ExitAfterCommit,
    }

    fn failpoint() -> Option<Failpoint> {
        static FAILPOINT: OnceLock<Option<Failpoint>> = OnceLock::new();
        *FAILPOINT.get_or_init(|| match std::env::var("BLITZ_FAILPOINT").ok()?.as_str() {
            "exit_after_commit" => Some(Failpoint::ExitAfterCommit),
            other => {
                tracing::warn!(failpoint = other, "unknown failpoint ignored");
                None
            }
        })
    }

    fn delivery_log() -> Option<&'static std::sync::Mutex<std::fs::File>> {
        static LOG: OnceLock<Option<std::sync::Mutex<std::fs::File>>> = OnceLock::new();
        LOG.get_or_init(|| {
            let path = std::env::var_os("BLITZ_DELIVERY_LOG")?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()?;
            Some(std::sync::Mutex::new(file))
        })
        .as_ref()
    }

    pub fn start() {
        if failpoint().is_some() {
            tracing::warn!(failpoint = ?failpoint(), "test failpoint armed");
        }
    }

    pub fn after_commit() {
        if failpoint() == Some(Failpoint::ExitAfterCommit) {
            tracing::warn!("failpoint exit_after_commit: exiting before the ack");
            std::process::exit(3);
        }
    }

    pub fn delivered<'a>(deliveries: impl Iterator<Item = (&'a str, bool)>) {
        let Some(log) = delivery_log() else { return };
        let lines: String = deliveries
            .map(|(id, redelivered)| format!("{id} {}\n", u8::from(redelivered)))
            .collect();
        // One write per batch, unbuffered: what was taken before a SIGKILL is on disk.
        let mut file = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = file.write_all(lines.as_bytes());
    }
}

/// Logs whether a failpoint is armed (call once at start).
#[inline]
pub fn start() {
    #[cfg(feature = "failpoints")]
    hooks::start();
}

/// Fires `exit_after_commit` if armed.
#[inline]
pub fn after_commit() {
    #[cfg(feature = "failpoints")]
    hooks::after_commit();
}

/// Records deliveries taken (message id, redelivered flag) in the delivery log, if one is set.
#[inline]
pub fn delivered<'a>(deliveries: impl Iterator<Item = (&'a str, bool)>) {
    #[cfg(feature = "failpoints")]
    hooks::delivered(deliveries);
    #[cfg(not(feature = "failpoints"))]
    drop(deliveries);
}
