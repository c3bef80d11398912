//! Settings both binaries read from the environment (see the README's configuration table).

use std::fmt;

/// Connection settings shared by the receiver and the worker.
#[derive(Clone, clap::Args)]
pub struct CommonConfig {
    /// Postgres connection string; the database is created if missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/blitz"
    )]
    pub database_url: String,

    /// RabbitMQ connection string; several comma-separated URLs are the nodes of one cluster
    /// (tried in order; after losing a node, the next one is tried first).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        value_parser = parse_amqp_url
    )]
    pub amqp_url: String,

    /// Prefix of every exchange and queue name, so tests and tenants can be isolated.
    #[arg(long, env = "AMQP_PREFIX", default_value = "blitz")]
    pub amqp_prefix: String,

    /// Replicas of each quorum queue when this process creates it (`x-quorum-initial-group-size`).
    /// Unset or 0: one per node listed in `AMQP_URL`, at most 3. Existing queues keep theirs.
    #[arg(long, env = "AMQP_QUORUM_GROUP_SIZE")]
    pub amqp_quorum_group_size: Option<u32>,

    /// Log output: `pretty` for people, `json` for log shippers.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty")]
    pub log_format: crate::telemetry::LogFormat,
}

impl fmt::Debug for CommonConfig {
    /// Never prints credentials embedded in the URLs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommonConfig")
            .field("database_url", &redact_url(&self.database_url))
            .field("amqp_url", &redact_urls(&self.amqp_url))
            .field("amqp_prefix", &self.amqp_prefix)
            .field("amqp_quorum_group_size", &self.amqp_quorum_group_size)
            .field("log_format", &self.log_format)
            .finish()
    }
}

/// Checks `AMQP_URL` at start-up (one or more `amqp://` / `amqps://` URLs, comma-separated), so a
/// typo stops the process with a message naming the variable instead of a reconnect loop.
fn parse_amqp_url(raw: &str) -> Result<String, String> {
    crate::amqp::Nodes::parse(raw)
        .map(|_| raw.to_owned())
        .map_err(|error| error.to_string())
}

/// [`redact_url`] applied to each URL of a comma-separated list.
pub fn redact_urls(list: &str) -> String {
    list.split(',')
        .map(|url| redact_url(url.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Replaces the password of `scheme://user:password@host/…` with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/blitz"),
            "postgres://postgres@127.0.0.1/blitz"
        );
        assert_eq!(
            redact_urls("amqp://u:p1@a:5672/v, amqp://u:p2@b:5672/v"),
            "amqp://u:***@a:5672/v,amqp://u:***@b:5672/v"
        );
    }

    #[test]
    fn amqp_url_lists_are_checked_at_start() {
        assert!(parse_amqp_url("amqp://a:5672,amqp://b:5672").is_ok());
        assert!(parse_amqp_url("").is_err());
        assert!(parse_amqp_url("localhost:5672").is_err());
    }
}
