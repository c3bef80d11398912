//! Test-only fault injection, so the fault tests can kill a real worker process at the exact
//! moment that matters (after its transaction committed, before the broker heard the ack).
//! Inert unless `BLITZ_FAILPOINT` is set.

/// The fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// Exit with status 3 right after the first batch commits, before acking it.
    ExitAfterCommit,
}

impl Failpoint {
    /// Parses `BLITZ_FAILPOINT`; unknown names are ignored with a warning.
    pub fn parse(raw: Option<&str>) -> Option<Self> {
        match raw? {
            "exit_after_commit" => Some(Failpoint::ExitAfterCommit),
            other => {
                tracing::warn!(failpoint = other, "unknown failpoint ignored");
                None
            }
        }
    }
}

/// Fires [`Failpoint::ExitAfterCommit`] if configured.
pub fn after_commit(failpoint: Option<Failpoint>) {
    if failpoint == Some(Failpoint::ExitAfterCommit) {
        tracing::warn!("failpoint exit_after_commit: exiting before the ack");
        std::process::exit(3);
    }
}
