//! Operator subcommands of the `receiver` binary: `receiver contest create | list | show |
//! rotate-secret` and `receiver entry list | ledger | adjust | disqualify | reinstate | erase`.
//!
//! They work on the database directly (`DATABASE_URL`; created and migrated if needed), so no
//! receiver has to be running and no admin token is involved. Running receivers pick a change
//! up through the contests table's LISTEN/NOTIFY trigger, like any admin API write. Every
//! command calls the admin API's own functions with the body the API would get, read by the
//! same strict parser ([`receiver::body::strict`]): both paths accept, default and refuse
//! exactly the same way, and `--json` prints the API's own answer types.

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;
use receiver::{
    admin::{
        contests::{
            create_contest, list_contests, rotate_contest_secret, ContestCreate, ContestView,
            RotateSecret,
        },
        entries::{erase_entry, list_entries, EntryView},
        ledger::{self, Disqualification, Ledger, PointsAdjustment},
        paging::PageQuery,
    },
    body,
    config::ReceiverConfig,
    error::ApiError,
};
use serde::Serialize;
use serde_json::{json, Map, Value};
use shared::{
    contest::Contest,
    db,
    email::Email,
    ids::{ContestId, EntryId},
};
use sqlx::PgPool;

/// `receiver contest …`.
#[derive(Debug, Subcommand)]
pub enum ContestCommand {
    /// Create a contest (same validation and defaults as `POST /api/contests`) and print its
    /// webhook URLs and secret.
    Create {
        /// Display name (1–200 characters).
        #[arg(long)]
        name: String,
        /// Contest id, `[A-Za-z0-9_-]{1,64}`; generated when absent.
        #[arg(long)]
        id: Option<String>,
        /// ISO 4217 code points are counted in [default: USD].
        #[arg(long)]
        currency: Option<String>,
        /// Points per one unit of the contest currency, an exact decimal [default: 1].
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        points_per_unit: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// List contests in id order, a page at a time (as `GET /api/contests`).
    List {
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        output: Output,
    },
    /// Print a contest's settings, webhook URLs and secret.
    Show {
        /// Contest id.
        id: String,
        #[command(flatten)]
        output: Output,
    },
    /// Replace a contest's webhook secret (as `POST /api/contests/{id}/webhook-secret/rotate`);
    /// the old one keeps working for 24 hours unless `--grace-period-seconds` says otherwise.
    /// Prints the new secret.
    RotateSecret {
        /// Contest id.
        id: String,
        /// How long the old secret keeps working, 0 to 604800 seconds (a week); 0 revokes it at
        /// once, e.g. after a leak [default: 86400].
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        grace_period_seconds: Option<i64>,
        #[command(flatten)]
        output: Output,
    },
}

/// `receiver entry …`: a contest's entries, an entry's ledger and operators' actions on it.
/// `ENTRY` is an entry id (`ent_…`) or the entry's email address.
#[derive(Debug, Subcommand)]
pub enum EntryCommand {
    /// List a contest's entries in id order, a page at a time (as
    /// `GET /api/contests/{id}/entries`).
    List {
        /// Contest id.
        contest: String,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        output: Output,
    },
    /// Print the entry's points and every change of them, oldest first.
    Ledger {
        /// Contest id.
        contest: String,
        /// Entry id or email address.
        entry: String,
        #[command(flatten)]
        output: Output,
    },
    /// Add (or, negative, remove) points by hand, with a reason, as
    /// `POST /api/contests/{id}/entries/{entryId}/points` does.
    Adjust {
        /// Contest id.
        contest: String,
        /// Entry id or email address.
        entry: String,
        /// The change: a non-zero whole number, may be negative.
        #[arg(long, allow_negative_numbers = true)]
        points: i64,
        /// Why (1–500 characters), written to the ledger.
        #[arg(long)]
        reason: String,
        /// Applies once per entry however often the command is repeated with it.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Take the entry off the leaderboard (it keeps its points and keeps earning).
    Disqualify {
        /// Contest id.
        contest: String,
        /// Entry id or email address.
        entry: String,
        /// Why (1–500 characters).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Put a disqualified entry back on the leaderboard.
    Reinstate {
        /// Contest id.
        contest: String,
        /// Entry id or email address.
        entry: String,
        #[command(flatten)]
        output: Output,
    },
    /// Erase the entry at the person's request (as `DELETE /api/contests/{id}/entries/{entryId}`):
    /// email, name and phone are gone; points totals stay.
    Erase {
        /// Contest id.
        contest: String,
        /// Entry id or email address.
        entry: String,
        #[command(flatten)]
        output: Output,
    },
}

/// Which page of a list.
#[derive(Debug, clap::Args)]
pub struct PageArgs {
    /// Rows per page, 1–100 [default: 25].
    #[arg(long)]
    limit: Option<String>,
    /// The `next` printed by the previous page.
    #[arg(long)]
    after: Option<String>,
}

impl PageArgs {
    fn query(self) -> PageQuery {
        PageQuery {
            limit: self.limit,
            after: self.after,
        }
    }
}

/// Runs an `entry` subcommand and returns what to print.
pub async fn run_entry(command: EntryCommand, config: &ReceiverConfig) -> anyhow::Result<String> {
    let pool = connect(&config.common.database_url).await?;
    let result = execute_entry(command, &pool).await;
    pool.close().await;
    result
}

async fn execute_entry(command: EntryCommand, pool: &PgPool) -> anyhow::Result<String> {
    match command {
        EntryCommand::List {
            contest,
            page,
            output,
        } => {
            let contest = load(pool, &contest).await?;
            let page = list_entries(pool, &contest, &page.query()).await?;
            let entries: Vec<EntryView> = page.items.iter().map(EntryView::from).collect();
            if output.json {
                return Ok(pretty(&json!({ "entries": entries, "next": page.next })));
            }
            let mut out = String::new();
            for entry in &entries {
                out.push_str(&render_entry(entry, &output));
            }
            out.push_str(&next_line(page.next.as_deref(), entries.is_empty()));
            Ok(out)
        }
        EntryCommand::Ledger {
            contest,
            entry,
            output,
        } => {
            let contest = load(pool, &contest).await?;
            let data = ledger::ledger(pool, &contest, &entry_id(&contest, &entry)?).await?;
            Ok(if output.json {
                pretty(&data)
            } else {
                render_ledger(&data)
            })
        }
        EntryCommand::Adjust {
            contest,
            entry,
            points,
            reason,
            idempotency_key,
            output,
        } => {
            let contest = load(pool, &contest).await?;
            let request: PointsAdjustment = parse(json!({ "points": points, "reason": reason }))?;
            let data = ledger::adjust(
                pool,
                &contest,
                &entry_id(&contest, &entry)?,
                request,
                idempotency_key.as_deref(),
            )
            .await?;
            Ok(render_entry(&data, &output))
        }
        EntryCommand::Disqualify {
            contest,
            entry,
            reason,
            output,
        } => {
            let contest = load(pool, &contest).await?;
            let mut body = Map::new();
            if let Some(reason) = reason {
                body.insert("reason".into(), reason.into());
            }
            let request: Disqualification = parse(Value::Object(body))?;
            let data =
                ledger::disqualify(pool, &contest, &entry_id(&contest, &entry)?, Some(request))
                    .await?;
            Ok(render_entry(&data, &output))
        }
        EntryCommand::Reinstate {
            contest,
            entry,
            output,
        } => {
            let contest = load(pool, &contest).await?;
            let data =
                ledger::disqualify(pool, &contest, &entry_id(&contest, &entry)?, None).await?;
            Ok(render_entry(&data, &output))
        }
        EntryCommand::Erase {
            contest,
            entry,
            output,
        } => {
            let contest = load(pool, &contest).await?;
            let erased = erase_entry(pool, &contest, &entry_id(&contest, &entry)?).await?;
            Ok(if output.json {
                pretty(&erased)
            } else {
                format!(
                    "Entry {} erased: email, name and phone removed; its points stay in the \
                     contest's totals\n",
                    erased.entry_id
                )
            })
        }
    }
}

/// Reads a body the command built through the admin API's strict parser.
fn parse<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    body::strict(body.to_string().as_bytes())
}

/// An entry id as given, or derived from an email address.
fn entry_id(contest: &Contest, raw: &str) -> anyhow::Result<String> {
    if raw.contains('@') {
        let email = Email::parse(raw).map_err(|error| anyhow::anyhow!("entry: {error}"))?;
        return Ok(EntryId::derive(&contest.id, &email).as_str().to_owned());
    }
    Ok(raw.to_owned())
}

fn pretty(data: &impl Serialize) -> String {
    let mut text = serde_json::to_string_pretty(data).expect("answers serialise");
    text.push('\n');
    text
}

/// The line after a page: how to get the next one.
fn next_line(next: Option<&str>, empty: bool) -> String {
    match next {
        Some(next) => format!("more: --after {next}\n"),
        None if empty => "(none)\n".to_owned(),
        None => "(last page)\n".to_owned(),
    }
}

/// An entry, as one line (or the admin API's JSON with `--json`).
fn render_entry(data: &EntryView, output: &Output) -> String {
    if output.json {
        return pretty(data);
    }
    let mut out = format!(
        "Entry {} ({}): {} points",
        data.entry_id, data.email, data.points,
    );
    if data.disqualified {
        out.push_str(", disqualified");
        if let Some(reason) = &data.disqualification_reason {
            out.push_str(&format!(" ({reason})"));
        }
    }
    out.push('\n');
    out
}

/// A ledger as a table for a person.
fn render_ledger(data: &Ledger) -> String {
    let mut out = format!("Entry {}: {} points\n", data.entry_id, data.points);
    for change in &data.changes {
        out.push_str(&format!(
            "  {}  {:<10} {:>+8}  {}  {}\n",
            change.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            change.kind.as_str(),
            change.points,
            change.purchase_id.as_deref().unwrap_or("-"),
            change.reason.as_deref().unwrap_or(""),
        ));
    }
    out
}

/// How a result is printed.
#[derive(Debug, clap::Args)]
pub struct Output {
    /// Print the admin API's JSON (`data` of its answer) instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs a `contest` subcommand and returns what to print.
pub async fn run(command: ContestCommand, config: &ReceiverConfig) -> anyhow::Result<String> {
    let pool = connect(&config.common.database_url).await?;
    let result = execute(command, &pool, config.base_url()).await;
    pool.close().await;
    result
}

async fn execute(command: ContestCommand, pool: &PgPool, base_url: &str) -> anyhow::Result<String> {
    match command {
        ContestCommand::Create {
            name,
            id,
            currency,
            points_per_unit,
            output,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), Value::String(name));
            let optional = [
                ("id", id),
                ("currency", currency),
                // A string, so the decimal is parsed exactly, as the admin API parses it.
                ("pointsPerUnit", points_per_unit),
            ];
            for (key, value) in optional {
                if let Some(value) = value {
                    body.insert(key.into(), Value::String(value));
                }
            }
            let request: ContestCreate = parse(Value::Object(body))?;
            let contest = create_contest(pool, request).await?;
            Ok(render(&contest, base_url, &output, "created"))
        }
        ContestCommand::List { page, output } => {
            let page = list_contests(pool, &page.query()).await?;
            let contests: Vec<ContestView> = page
                .items
                .iter()
                .map(|contest| ContestView::of(contest, base_url))
                .collect();
            if output.json {
                return Ok(pretty(&json!({ "contests": contests, "next": page.next })));
            }
            let mut out = String::new();
            for contest in &contests {
                out.push_str(&format!(
                    "{}  {}  ({} per {}, tracking {})\n",
                    contest.id,
                    contest.name,
                    contest.points_per_unit,
                    contest.currency,
                    if contest.purchase_tracking {
                        "on"
                    } else {
                        "off"
                    },
                ));
            }
            out.push_str(&next_line(page.next.as_deref(), contests.is_empty()));
            Ok(out)
        }
        ContestCommand::Show { id, output } => {
            let contest = load(pool, &id).await?;
            Ok(render(&contest, base_url, &output, "found"))
        }
        ContestCommand::RotateSecret {
            id,
            grace_period_seconds,
            output,
        } => {
            // Validated as the endpoint validates its body, so both refuse the same values.
            let mut body = Map::new();
            if let Some(seconds) = grace_period_seconds {
                body.insert("gracePeriodSeconds".into(), Value::from(seconds));
            }
            let grace = parse::<RotateSecret>(Value::Object(body))?.grace();
            let contest =
                rotate_contest_secret(pool, &id, grace)
                    .await
                    .map_err(|error| match error {
                        ApiError::ContestNotFound => anyhow::anyhow!("no contest with id {id:?}"),
                        other => other.into(),
                    })?;
            let what = if grace.is_zero() {
                "secret rotated, old secret revoked"
            } else {
                "secret rotated"
            };
            Ok(render(&contest, base_url, &output, what))
        }
    }
}

/// Opens a small pool on `url`, creating the database and applying migrations if needed (so a
/// fresh installation can create its first contest before any service has started).
async fn connect(url: &str) -> anyhow::Result<PgPool> {
    db::connect_prepared(url)
        .await
        .with_context(|| format!("preparing {}", shared::config::redact_url(url)))
}

/// The contest with this id, or an error naming it.
async fn load(pool: &PgPool, raw_id: &str) -> anyhow::Result<Contest> {
    let not_found = || anyhow::anyhow!("no contest with id {raw_id:?}");
    let id = ContestId::parse(raw_id).map_err(|_| not_found())?;
    db::contests::find(pool, &id).await?.ok_or_else(not_found)
}

/// The contest as text for a person (or as the admin API's JSON with `--json`).
fn render(contest: &Contest, base_url: &str, output: &Output, what: &str) -> String {
    let view = ContestView::of(contest, base_url);
    if output.json {
        return pretty(&view);
    }
    let mut out = format!("Contest {} ({what}): {}\n", contest.id, contest.name);
    out.push_str(&format!(
        "  points          {} per {} (rounding {}), purchase tracking {}\n",
        view.points_per_unit,
        contest.currency,
        contest.rounding.as_str(),
        if contest.purchase_tracking {
            "on"
        } else {
            "off"
        },
    ));
    if contest.sync_responses {
        out.push_str(
            "  answers         synchronous: generic webhooks wait up to 3 s for the points \
             (a sender's Prefer: wait=N overrides)\n",
        );
    }
    out.push_str(&format!("  webhook secret  {}\n", contest.webhook_secret));
    if let Some((_, expires_at)) = &contest.previous_webhook_secret {
        if *expires_at > Utc::now() {
            out.push_str(&format!(
                "  previous secret accepted until {}\n",
                expires_at.to_rfc3339()
            ));
        }
    }
    out.push_str(
        "Webhook URLs (send the secret in X-Webhook-Secret, or sign with Standard Webhooks):\n",
    );
    for (key, url) in view.webhook_urls.named() {
        out.push_str(&format!("  {key:<9} {url}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use testkit::TestEnv;

    use super::*;

    /// The `contest` part of the command line, parsed as `main` parses it.
    #[derive(Parser)]
    struct Args {
        #[command(subcommand)]
        command: ContestCommand,
    }

    fn parse(args: &[&str]) -> ContestCommand {
        Args::try_parse_from(std::iter::once("contest").chain(args.iter().copied()))
            .expect("valid arguments")
            .command
    }

    /// The `entry` part of the command line.
    #[derive(Parser)]
    struct EntryArgs {
        #[command(subcommand)]
        command: EntryCommand,
    }

    fn parse_entry(args: &[&str]) -> EntryCommand {
        EntryArgs::try_parse_from(std::iter::once("entry").chain(args.iter().copied()))
            .expect("valid arguments")
            .command
    }

    #[tokio::test]
    async fn entry_commands_adjust_disqualify_and_print_the_ledger() {
        let env = TestEnv::new();
        let config = env.receiver_config();
        run(
            parse(&["create", "--name", "C", "--id", "cli-ledger"]),
            &config,
        )
        .await
        .expect("created");
        let pool = env.pool().await;
        let contest = load(&pool, "cli-ledger").await.expect("stored");
        let mut tx = pool.begin().await.unwrap();
        let email = Email::parse("jane@example.com").unwrap();
        db::entries::sign_up(
            &mut tx,
            &contest,
            db::entries::Signup {
                email: &email,
                name: None,
                phone: None,
                referral_code: None,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let adjust = [
            "adjust",
            "cli-ledger",
            "Jane@Example.com",
            "--points",
            "-25",
            "--reason",
            "goodwill reversed",
            "--idempotency-key",
            "k-1",
        ];
        let printed = run_entry(parse_entry(&adjust), &config)
            .await
            .expect("adjusted");
        assert!(printed.contains(": -25 points"), "{printed}");
        // The same key again: applied once, same answer.
        let again = run_entry(parse_entry(&adjust), &config)
            .await
            .expect("replayed");
        assert_eq!(again, printed);
        let error = run_entry(
            parse_entry(&[
                "adjust",
                "cli-ledger",
                "jane@example.com",
                "--points",
                "0",
                "--reason",
                "x",
            ]),
            &config,
        )
        .await
        .unwrap_err();
        assert!(error.to_string().starts_with("points: "), "{error}");

        let printed = run_entry(
            parse_entry(&[
                "disqualify",
                "cli-ledger",
                "jane@example.com",
                "--reason",
                "fraud",
            ]),
            &config,
        )
        .await
        .expect("disqualified");
        assert!(printed.contains("disqualified (fraud)"), "{printed}");
        let json = run_entry(
            parse_entry(&["reinstate", "cli-ledger", "jane@example.com", "--json"]),
            &config,
        )
        .await
        .expect("reinstated");
        let json: Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(json["disqualified"], false);

        let printed = run_entry(
            parse_entry(&["ledger", "cli-ledger", "jane@example.com"]),
            &config,
        )
        .await
        .expect("ledger");
        assert!(printed.contains(": -25 points"), "{printed}");
        assert_eq!(printed.matches("adjustment").count(), 1, "{printed}");
        assert!(printed.contains("goodwill reversed"), "{printed}");
        let error = run_entry(
            parse_entry(&["ledger", "cli-ledger", "ent_missing"]),
            &config,
        )
        .await
        .unwrap_err();
        assert_eq!(error.to_string(), "entry not found");
        pool.close().await;
        env.cleanup().await;
    }

    #[tokio::test]
    async fn list_pages_contests_and_entries_and_erase_forgets_the_person() {
        let env = TestEnv::new();
        let config = env.receiver_config();
        for id in ["list-a", "list-b", "list-c"] {
            run(parse(&["create", "--name", id, "--id", id]), &config)
                .await
                .expect("created");
        }
        let printed = run(parse(&["list", "--limit", "2"]), &config)
            .await
            .expect("listed");
        assert!(
            printed.contains("list-a") && printed.contains("list-b"),
            "{printed}"
        );
        assert!(!printed.contains("list-c"), "{printed}");
        assert!(printed.ends_with("more: --after list-b\n"), "{printed}");
        let printed = run(parse(&["list", "--after", "list-b"]), &config)
            .await
            .expect("listed");
        assert!(printed.starts_with("list-c "), "{printed}");
        assert!(printed.ends_with("(last page)\n"), "{printed}");
        let json = run(parse(&["list", "--limit", "1", "--json"]), &config)
            .await
            .expect("listed");
        let json: Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(json["next"], "list-a");
        assert_eq!(
            json["contests"][0]["webhookUrls"]["refund"],
            "http://localhost:8080/api/webhooks/refund/list-a"
        );
        let error = run(parse(&["list", "--limit", "101"]), &config)
            .await
            .unwrap_err();
        assert!(error.to_string().starts_with("limit: "), "{error}");

        let pool = env.pool().await;
        let contest = load(&pool, "list-a").await.expect("stored");
        for email in ["jane@example.com", "sam@example.com"] {
            let mut tx = pool.begin().await.unwrap();
            let email = Email::parse(email).unwrap();
            db::entries::sign_up(
                &mut tx,
                &contest,
                db::entries::Signup {
                    email: &email,
                    name: Some("A Name"),
                    phone: None,
                    referral_code: None,
                },
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        let printed = run_entry(parse_entry(&["list", "list-a"]), &config)
            .await
            .expect("listed");
        assert_eq!(printed.matches("Entry ent_").count(), 2, "{printed}");
        let printed = run_entry(
            parse_entry(&["erase", "list-a", "Jane@Example.com"]),
            &config,
        )
        .await
        .expect("erased");
        assert!(printed.contains("erased"), "{printed}");
        let printed = run_entry(parse_entry(&["list", "list-a", "--json"]), &config)
            .await
            .expect("listed");
        let json: Value = serde_json::from_str(&printed).expect("JSON");
        assert_eq!(json["entries"].as_array().unwrap().len(), 1);
        assert_eq!(json["entries"][0]["email"], "sam@example.com");
        let error = run_entry(
            parse_entry(&["erase", "list-a", "jane@example.com"]),
            &config,
        )
        .await
        .unwrap_err();
        assert_eq!(error.to_string(), "entry not found");
        let stored: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM entries WHERE email = 'jane@example.com'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(stored, 0);
        pool.close().await;
        env.cleanup().await;
    }

    #[tokio::test]
    async fn create_show_and_rotate_work_on_the_database() {
        let env = TestEnv::new();
        let config = env.receiver_config();

        let printed = run(
            parse(&[
                "create",
                "--name",
                "Summer Blitz",
                "--id",
                "summer",
                "--currency",
                "eur",
                "--points-per-unit",
                "2.5",
            ]),
            &config,
        )
        .await
        .expect("created");
        assert!(printed.contains("http://localhost:8080/api/webhooks/purchase/summer"));
        assert!(printed.contains("2.5 per EUR"), "{printed}");
        let pool = env.pool().await;
        let stored = load(&pool, "summer").await.expect("stored");
        assert_eq!(stored.name, "Summer Blitz");
        assert!(printed.contains(&stored.webhook_secret));

        let json = run(parse(&["show", "summer", "--json"]), &config)
            .await
            .expect("shown");
        let json: Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(json["webhookSecret"], stored.webhook_secret.as_str());
        assert_eq!(json["pointsPerUnit"].to_string(), "2.5");
        assert_eq!(json["syncResponses"], false);
        assert!(!printed.contains("synchronous"), "{printed}");
        let mut waiting = stored.clone();
        waiting.sync_responses = true;
        assert!(db::contests::update(&pool, &waiting).await.expect("update"));
        let shown = run(parse(&["show", "summer"]), &config)
            .await
            .expect("shown");
        assert!(shown.contains("answers         synchronous"), "{shown}");

        run(parse(&["rotate-secret", "summer"]), &config)
            .await
            .expect("rotated");
        let rotated = load(&pool, "summer").await.expect("stored");
        assert_ne!(rotated.webhook_secret, stored.webhook_secret);
        assert_eq!(
            rotated.accepted_webhook_secrets(Utc::now()).nth(1),
            Some(stored.webhook_secret.as_str()),
            "the old secret keeps working"
        );
        pool.close().await;
        env.cleanup().await;
    }

    #[tokio::test]
    async fn create_validates_like_the_admin_api() {
        let env = TestEnv::new();
        let config = env.receiver_config();
        let error = run(
            parse(&["create", "--name", "X", "--id", "no spaces"]),
            &config,
        )
        .await
        .unwrap_err();
        assert!(error.to_string().starts_with("id: "), "{error}");
        let error = run(
            parse(&["create", "--name", "X", "--points-per-unit", "-1"]),
            &config,
        )
        .await
        .unwrap_err();
        assert!(error.to_string().starts_with("pointsPerUnit: "), "{error}");
        run(parse(&["create", "--name", "X", "--id", "taken"]), &config)
            .await
            .expect("created");
        let error = run(parse(&["create", "--name", "Y", "--id", "taken"]), &config)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "a contest with this id already exists");
        let error = run(parse(&["show", "missing"]), &config).await.unwrap_err();
        assert_eq!(error.to_string(), "no contest with id \"missing\"");
        env.cleanup().await;
    }

    #[tokio::test]
    async fn rotate_secret_takes_a_grace_period_and_zero_revokes() {
        let env = TestEnv::new();
        let config = env.receiver_config();
        run(parse(&["create", "--name", "X", "--id", "leaky"]), &config)
            .await
            .expect("created");
        let pool = env.pool().await;
        let original = load(&pool, "leaky").await.expect("stored");

        run(
            parse(&["rotate-secret", "leaky", "--grace-period-seconds", "60"]),
            &config,
        )
        .await
        .expect("rotated");
        let overlapping = load(&pool, "leaky").await.expect("stored");
        let (previous, expires_at) = overlapping.previous_webhook_secret.clone().unwrap();
        assert_eq!(previous, original.webhook_secret);
        let grace = expires_at - overlapping.updated_at;
        assert_eq!(grace.num_seconds(), 60);

        let printed = run(
            parse(&["rotate-secret", "leaky", "--grace-period-seconds", "0"]),
            &config,
        )
        .await
        .expect("revoked");
        assert!(printed.contains("old secret revoked"), "{printed}");
        let revoked = load(&pool, "leaky").await.expect("stored");
        assert_eq!(revoked.previous_webhook_secret, None);
        let accepted: Vec<_> = revoked.accepted_webhook_secrets(Utc::now()).collect();
        assert_eq!(accepted, [revoked.webhook_secret.as_str()]);

        for bad in ["-1", "604801"] {
            let error = run(
                parse(&["rotate-secret", "leaky", "--grace-period-seconds", bad]),
                &config,
            )
            .await
            .unwrap_err();
            assert!(
                error.to_string().starts_with("gracePeriodSeconds: "),
                "{error}"
            );
        }
        assert_eq!(
            load(&pool, "leaky").await.expect("stored").webhook_secret,
            revoked.webhook_secret,
            "a refused rotation changes nothing"
        );
        pool.close().await;
        env.cleanup().await;
    }
}
