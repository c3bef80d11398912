//! `receiver`: runs the webhook receiver, or `receiver migrate` to apply migrations and exit.
//! Operator subcommands: `receiver openapi` prints the OpenAPI document, `receiver contest …`
//! creates and inspects contests and rotates their secrets, `receiver entry …` reads an entry's
//! ledger, adjusts its points, disqualifies and reinstates it ([`cli`]).

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use receiver::config::ReceiverConfig;

/// mimalloc rather than the system allocator: the request and award paths allocate and free
/// many small objects across threads, where glibc's malloc showed up in the profile (see
/// `docs/performance.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The purchase-webhook receiver.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ReceiverConfig,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database if missing, apply pending migrations, and exit.
    Migrate,
    /// Exit 0 if the running receiver on this host reports ready (container health checks).
    Healthcheck,
    /// Print the OpenAPI document of both listeners (`receiver openapi > openapi.json`).
    Openapi,
    /// Create a contest, show one, or rotate its webhook secret, directly in the database.
    Contest {
        #[command(subcommand)]
        command: cli::ContestCommand,
    },
    /// Read an entry's points ledger, adjust its points, disqualify or reinstate it, directly in
    /// the database.
    Entry {
        #[command(subcommand)]
        command: cli::EntryCommand,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Operator commands print for a person or a file: no log lines mixed into their output.
    match cli.command {
        Some(Command::Openapi) => {
            print!("{}", receiver::openapi::spec_json());
            return ExitCode::SUCCESS;
        }
        Some(Command::Contest { command }) => {
            return print_outcome(crate::cli::run(command, &cli.config).await);
        }
        Some(Command::Entry { command }) => {
            return print_outcome(crate::cli::run_entry(command, &cli.config).await);
        }
        _ => {}
    }
    shared::telemetry::init(cli.config.common.log_format);
    let result = match cli.command {
        Some(Command::Openapi | Command::Contest { .. } | Command::Entry { .. }) => {
            unreachable!("handled above")
        }
        Some(Command::Migrate) => shared::db::migrate_now(&cli.config.common.database_url)
            .await
            .map_err(Into::into),
        Some(Command::Healthcheck) => shared::healthcheck::probe(cli.config.admin_addr, "/readyz")
            .await
            .map_err(anyhow::Error::msg),
        None => serve(cli.config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "receiver failed");
            ExitCode::FAILURE
        }
    }
}

/// Prints an operator command's output, or its error to stderr with exit code 1.
fn print_outcome(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: ReceiverConfig) -> anyhow::Result<()> {
    config.validate_with_environment()?;
    tracing::info!(?config, "starting receiver");
    let public = tokio::net::TcpListener::bind(config.receiver_addr).await?;
    let admin = tokio::net::TcpListener::bind(config.admin_addr).await?;
    receiver::run(config, public, admin, shared::shutdown::signal()).await
}
