//! Which store and which shared rate-limit backend a command runs on:
//! SQLite by default, PostgreSQL when given a URL; Redis or PostgreSQL
//! for `shared: true` rate limits.

use std::path::PathBuf;
use std::sync::Arc;

use agent_governor::postgres::{PostgresOptions, PostgresStore};
use agent_governor::redis::RedisRateLimiter;
use agent_governor::sqlite::SqliteStore;
use agent_governor::{RateLimitBackend, Store};
use anyhow::{Context, bail};

/// Where to keep things, as the flags and config file say.
#[derive(Debug, Default)]
pub(crate) struct Choice {
    /// The SQLite file (when no PostgreSQL URL is given).
    pub(crate) db: Option<PathBuf>,
    pub(crate) postgres_url: Option<String>,
    pub(crate) postgres_schema: Option<String>,
    pub(crate) redis_url: Option<String>,
    /// `redis` or `postgres`: which backend `shared: true` rate limits use
    /// (default: Redis when a Redis URL is given, else PostgreSQL when the
    /// store is PostgreSQL).
    pub(crate) rate_limits: Option<String>,
}

/// The opened store and rate-limit backend.
pub(crate) struct Backends {
    pub(crate) store: Arc<dyn Store>,
    /// What the store is, for the start-up line (no credentials).
    pub(crate) describe: String,
    pub(crate) shared_rate_limits: Option<Arc<dyn RateLimitBackend>>,
}

/// `postgres://user:secret@host/db` without the password.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl Choice {
    pub(crate) async fn open(&self) -> anyhow::Result<Backends> {
        let (store, describe, postgres): (Arc<dyn Store>, String, Option<Arc<PostgresStore>>) =
            match &self.postgres_url {
                Some(url) => {
                    let schema = self.postgres_schema.as_deref().unwrap_or("governor");
                    let pg = Arc::new(
                        PostgresStore::connect_with(url, PostgresOptions::new().schema(schema))
                            .await
                            .with_context(|| {
                                format!("cannot open PostgreSQL {}", without_password(url))
                            })?,
                    );
                    let describe = format!("PostgreSQL {} schema {schema}", without_password(url));
                    (pg.clone(), describe, Some(pg))
                }
                None => {
                    let db = self
                        .db
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("governor.db"));
                    let store = SqliteStore::open(&db)
                        .await
                        .with_context(|| format!("cannot open {}", db.display()))?;
                    (Arc::new(store), format!("database {}", db.display()), None)
                }
            };
        let shared_rate_limits = self.rate_limiter(postgres.as_deref())?;
        Ok(Backends {
            store,
            describe,
            shared_rate_limits,
        })
    }

    fn rate_limiter(
        &self,
        postgres: Option<&PostgresStore>,
    ) -> anyhow::Result<Option<Arc<dyn RateLimitBackend>>> {
        let which = match (self.rate_limits.as_deref(), &self.redis_url, postgres) {
            (Some(w), _, _) => w,
            (None, Some(_), _) => "redis",
            (None, None, Some(_)) => "postgres",
            (None, None, None) => return Ok(None),
        };
        match (which, &self.redis_url, postgres) {
            ("redis", Some(url), _) => Ok(Some(Arc::new(
                RedisRateLimiter::open(url).context("redis_url")?,
            ))),
            ("redis", None, _) => bail!("rate_limits = \"redis\" needs redis_url"),
            ("postgres", _, Some(pg)) => Ok(Some(Arc::new(pg.rate_limiter()))),
            ("postgres", _, None) => bail!("rate_limits = \"postgres\" needs postgres_url"),
            (other, _, _) => bail!("rate_limits is \"redis\" or \"postgres\", not \"{other}\""),
        }
    }
}

/// `governor migrate`: applies pending PostgreSQL migrations.
#[derive(clap::Args)]
pub(crate) struct MigrateArgs {
    /// The PostgreSQL database.
    #[arg(long, env = "GOVERNOR_POSTGRES_URL")]
    postgres_url: String,
    /// The schema holding governor's tables (default `governor`).
    #[arg(long, env = "GOVERNOR_POSTGRES_SCHEMA", default_value = "governor")]
    postgres_schema: String,
}

pub(crate) async fn migrate(args: MigrateArgs) -> anyhow::Result<std::process::ExitCode> {
    let applied = PostgresStore::migrate(&args.postgres_url, &args.postgres_schema)
        .await
        .with_context(|| format!("cannot migrate {}", without_password(&args.postgres_url)))?;
    out!(
        "schema {} is at version {} ({applied} migrations applied)",
        args.postgres_schema,
        agent_governor::postgres::SCHEMA_VERSION
    );
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_left_out_of_what_is_printed() {
        assert_eq!(
            super::without_password("postgres://gov:s3cret@db:5432/g"),
            "postgres://gov@db:5432/g"
        );
        assert_eq!(
            super::without_password("postgres://db/g"),
            "postgres://db/g"
        );
    }
}
