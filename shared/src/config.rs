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

    /// RabbitMQ connection string.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// Prefix of every exchange and queue name, so tests and tenants can be isolated.
    #[arg(long, env = "AMQP_PREFIX", default_value = "blitz")]
    pub amqp_prefix: String,

    /// Log output: `pretty` for people, `json` for log shippers.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty")]
    pub log_format: crate::telemetry::LogFormat,
}

impl fmt::Debug for CommonConfig {
    /// Never prints credentials embedded in the URLs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommonConfig")
            .field("database_url", &redact_url(&self.database_url))
            .field("amqp_url", &redact_url(&self.amqp_url))
            .field("amqp_prefix", &self.amqp_prefix)
            .field("log_format", &self.log_format)
            .finish()
    }
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
    }
}
