//! `worker`: runs the award worker, or `worker migrate` to apply migrations and exit.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use worker::config::WorkerConfig;

/// The purchase-award worker.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: WorkerConfig,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database if missing, apply pending migrations, and exit.
    Migrate,
    /// Exit 0 if the running worker on this host reports ready (container health checks).
    Healthcheck,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    shared::telemetry::init(cli.config.common.log_format);
    let result = match cli.command {
        Some(Command::Migrate) => migrate(&cli.config).await,
        Some(Command::Healthcheck) => shared::healthcheck::probe(cli.config.worker_addr, "/readyz")
            .await
            .map_err(anyhow::Error::msg),
        None => serve(cli.config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "worker failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: WorkerConfig) -> anyhow::Result<()> {
    tracing::info!(?config, "starting worker");
    let listener = tokio::net::TcpListener::bind(config.worker_addr).await?;
    worker::run(config, listener, shared::shutdown::signal()).await
}

async fn migrate(config: &WorkerConfig) -> anyhow::Result<()> {
    let url = &config.common.database_url;
    shared::db::create_if_missing(url).await?;
    let pool = sqlx::PgPool::connect(url).await?;
    shared::db::prepare(url, &pool).await?;
    tracing::info!("migrations applied");
    Ok(())
}
