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
            .field("amqp_url", &redact_url(&self.amqp_url))
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

/// Query parameters and key/value settings whose values are secrets (compared without case).
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "sslpassword",
    "secret",
    "token",
];

/// A connection string safe to log: the password of every `scheme://user:password@host/…` (a
/// comma-separated list of URLs, as `AMQP_URL` may be, is redacted URL by URL) and the value of
/// every secret-looking `key=value` (`?password=…`, `&sslpassword=…`, and the same in a
/// `host=… password=…` key/value string) become `***`. Errs on the side of hiding: when the
/// text cannot be read as a URL, an `@` still hides what precedes it.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|part| redact_secret_values(&redact_userinfo(part)))
        .collect::<Vec<_>>()
        .join(",")
}

/// `scheme://user:password@host…` → `scheme://user:***@host…`.
fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The userinfo ends at the last `@` before the query: a password may itself contain `@`.
    let query = rest.find(['?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..query].rfind('@') else {
        return url.to_owned();
    };
    let (userinfo, host) = (&rest[..at], &rest[at..]);
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{host}"),
        None => url.to_owned(),
    }
}

/// Replaces the value of every `key=value` whose key is in [`SECRET_KEYS`], up to the next
/// `&`, `;`, `#` or whitespace.
fn redact_secret_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(equals) = rest.find('=') {
        let key_start = rest[..equals]
            .rfind(['?', '&', ';', ' ', '\t', '\n'])
            .map_or(0, |i| i + 1);
        let key = rest[key_start..equals].trim();
        let value_end = rest[equals + 1..]
            .find(|c: char| matches!(c, '&' | ';' | '#') || c.is_whitespace())
            .map_or(rest.len(), |i| equals + 1 + i);
        out.push_str(&rest[..=equals]);
        if SECRET_KEYS
            .iter()
            .any(|secret| key.eq_ignore_ascii_case(secret))
        {
            out.push_str("***");
        } else {
            out.push_str(&rest[equals + 1..value_end]);
        }
        rest = &rest[value_end..];
    }
    out.push_str(rest);
    out
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
            redact_url("postgres://app:s3cr@t:x@db.internal:5432/blitz?sslmode=require"),
            "postgres://app:***@db.internal:5432/blitz?sslmode=require"
        );
    }

    #[test]
    fn password_query_parameters_are_redacted() {
        assert_eq!(
            redact_url("postgres://db:5432/blitz?user=app&password=hunter2&sslmode=require"),
            "postgres://db:5432/blitz?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/blitz?PASSWORD=hunter2"),
            "postgres://db/blitz?PASSWORD=***"
        );
        assert_eq!(
            redact_url("postgres://u:pw@db/blitz?sslpassword=k3y&application_name=x@y"),
            "postgres://u:***@db/blitz?sslpassword=***&application_name=x@y"
        );
        assert_eq!(
            redact_url("host=db user=app password=hunter2 dbname=blitz"),
            "host=db user=app password=*** dbname=blitz"
        );
    }

    #[test]
    fn every_url_of_a_list_is_redacted() {
        assert_eq!(
            redact_url("amqp://a:pw1@n1:5672/%2f,amqps://b:pw2@n2:5671/%2f?heartbeat=10"),
            "amqp://a:***@n1:5672/%2f,amqps://b:***@n2:5671/%2f?heartbeat=10"
        );
    }

    #[test]
    fn no_secret_survives_redaction() {
        for url in [
            "postgres://u:hunter2@h/d",
            "postgres://u:hunter2@h/d?password=hunter2",
            "postgres://h/d?a=1&password=hunter2#frag",
            "amqp://u:hunter2@h1,amqp://u:hunter2@h2",
            "amqp://u:hunter2@h/%2f?token=hunter2",
            "password=hunter2",
            "postgres://u:hunter2@h/d@x",
        ] {
            let redacted = redact_url(url);
            assert!(!redacted.contains("hunter2"), "{url} → {redacted}");
        }
    }

    #[test]
    fn amqp_url_lists_are_checked_at_start() {
        assert!(parse_amqp_url("amqp://a:5672,amqp://b:5672").is_ok());
        assert!(parse_amqp_url("").is_err());
        assert!(parse_amqp_url("localhost:5672").is_err());
    }
}
