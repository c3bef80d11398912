//! `worker`: runs the award worker, or `worker migrate` to apply migrations and exit, or
//! `worker dlq count|list|replay` to inspect and replay dead letters.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use worker::config::WorkerConfig;

/// mimalloc rather than the system allocator: the request and award paths allocate and free
/// many small objects across threads, where glibc's malloc showed up in the profile (see
/// `docs/performance.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Inspect and replay the dead-letter queue (`AMQP_URL`, `AMQP_PREFIX`).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Print how many dead letters are waiting.
    Count,
    /// Print dead letters without removing them: id, type, why it died, body (cut).
    List {
        /// Most dead letters to print, oldest first.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Move dead letters back to the events exchange; each leaves the dead-letter queue only
    /// after the broker confirmed its republished copy.
    Replay {
        /// Most dead letters to replay (default: all waiting when the replay starts).
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let operator_command = matches!(cli.command, Some(Command::Dlq { .. }));
    if operator_command {
        // An operator's command: its own answer on stdout/stderr, not lapin's log of the
        // passive look at a missing queue.
        shared::telemetry::init_with_default(cli.config.common.log_format, "warn,lapin=off");
    } else {
        shared::telemetry::init(cli.config.common.log_format);
    }
    let result = match cli.command {
        Some(Command::Migrate) => shared::db::migrate_now(&cli.config.common.database_url)
            .await
            .map_err(Into::into),
        Some(Command::Healthcheck) => shared::healthcheck::probe(cli.config.worker_addr, "/readyz")
            .await
            .map_err(anyhow::Error::msg),
        Some(Command::Dlq { command }) => dlq(&cli.config, command).await,
        None => serve(cli.config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Operator commands already said why on stderr; stdout stays the command's answer.
            if !operator_command {
                tracing::error!(error = format!("{error:#}"), "worker failed");
            }
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: WorkerConfig) -> anyhow::Result<()> {
    tracing::info!(?config, "starting worker");
    let listener = tokio::net::TcpListener::bind(config.worker_addr).await?;
    worker::run(config, listener, shared::shutdown::signal()).await
}

async fn dlq(config: &WorkerConfig, command: DlqCommand) -> anyhow::Result<()> {
    let nodes = shared::amqp::Nodes::parse(&config.common.amqp_url)?;
    let mut connector =
        shared::amqp::Connector::new(nodes, "worker-dlq", std::time::Duration::from_secs(5));
    let connection = connector.connect().await?.connection;
    let topology = shared::amqp::Topology::new(&config.common.amqp_prefix);
    let result = match command {
        DlqCommand::Count => worker::dlq::count(&connection, &topology)
            .await
            .map(|count| println!("{count}"))
            .map_err(anyhow::Error::from),
        DlqCommand::List { limit } => worker::dlq::list(&connection, &topology, limit)
            .await
            .map(|letters| letters.iter().for_each(|letter| println!("{letter}")))
            .map_err(anyhow::Error::from),
        DlqCommand::Replay { limit } => {
            worker::dlq::replay(&connection, &topology, limit.unwrap_or(usize::MAX))
                .await
                .map(|replayed| println!("replayed {replayed}"))
                .map_err(anyhow::Error::from)
        }
    };
    shared::amqp::close_quietly(&[], &connection, std::time::Duration::from_secs(2)).await;
    if let Err(error) = &result {
        // For the operator at the terminal, whatever the log format.
        eprintln!("worker dlq: {error:#}");
    }
    result
}
