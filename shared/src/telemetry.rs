//! Logging set-up: `tracing` with a human or a JSON format, filtered by `RUST_LOG`.

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// The log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Coloured, multi-field lines for a terminal.
    Pretty,
    /// One JSON object per line for log shippers.
    Json,
}

/// Installs the global subscriber (idempotent: a second call is ignored, which tests rely on).
pub fn init(format: LogFormat) {
    init_with_default(format, "info,lapin=warn,sqlx=warn");
}

/// [`init`] with another filter when `RUST_LOG` is unset (command-line tools print their own
/// errors and keep the libraries quiet).
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true))
            .try_init(),
    };
}
