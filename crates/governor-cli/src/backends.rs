//! Which store and which shared rate-limit backend a command runs on:
//! SQLite by default, PostgreSQL or MongoDB when given a URL; Redis or
//! PostgreSQL for `shared: true` rate limits.

use std::path::PathBuf;
use std::sync::Arc;

use agent_governor::postgres::{PostgresOptions, PostgresStore};
use agent_governor::redis::RedisRateLimiter;
use agent_governor::sqlite::SqliteStore;
use agent_governor::{RateLimitBackend, Store};
use anyhow::{Context, bail};
use governor_mongodb::{MongoOptions, MongoStore};

/// Where to keep things, as the flags and config file say.
#[derive(Debug, Default)]
pub(crate) struct Choice {
    /// The SQLite file (when no PostgreSQL or MongoDB URL is given).
    pub(crate) db: Option<PathBuf>,
    pub(crate) postgres_url: Option<String>,
    pub(crate) postgres_schema: Option<String>,
    /// Extra TLS roots (PEM) for PostgreSQL.
    pub(crate) postgres_ca_file: Option<PathBuf>,
    pub(crate) mongodb_url: Option<String>,
    pub(crate) mongodb_database: Option<String>,
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
    /// The SQLite file, when the store is one.
    pub(crate) sqlite_file: Option<PathBuf>,
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
            match (&self.postgres_url, &self.mongodb_url) {
                (Some(_), Some(_)) => bail!("give postgres_url or mongodb_url, not both"),
                (Some(url), None) => {
                    let pg = Arc::new(self.open_postgres(url).await?);
                    let describe = format!(
                        "PostgreSQL {} schema {}",
                        without_password(url),
                        pg.schema()
                    );
                    (pg.clone(), describe, Some(pg))
                }
                (None, Some(url)) => {
                    let mut options = MongoOptions::new();
                    if let Some(db) = &self.mongodb_database {
                        options = options.database(db);
                    }
                    let store =
                        MongoStore::connect_with(url, options)
                            .await
                            .with_context(|| {
                                format!("cannot open MongoDB {}", without_password(url))
                            })?;
                    let describe = format!(
                        "MongoDB {} database {}",
                        without_password(url),
                        store.database()
                    );
                    (Arc::new(store), describe, None)
                }
                (None, None) => {
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
        let sqlite_file = (self.postgres_url.is_none() && self.mongodb_url.is_none()).then(|| {
            self.db
                .clone()
                .unwrap_or_else(|| PathBuf::from("governor.db"))
        });
        Ok(Backends {
            store,
            describe,
            sqlite_file,
            shared_rate_limits,
        })
    }

    async fn open_postgres(&self, url: &str) -> anyhow::Result<PostgresStore> {
        let schema = self.postgres_schema.as_deref().unwrap_or("governor");
        let mut options = PostgresOptions::new().schema(schema);
        if let Some(path) = &self.postgres_ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("postgres_ca_file {}", path.display()))?;
            options = options.tls_root_certificates(pem);
        }
        PostgresStore::connect_with(url, options)
            .await
            .with_context(|| format!("cannot open PostgreSQL {}", without_password(url)))
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

/// `governor migrate`: brings a PostgreSQL schema or a MongoDB database
/// up to this build's version.
#[derive(clap::Args)]
pub(crate) struct MigrateArgs {
    /// The PostgreSQL database.
    #[arg(
        long,
        env = "GOVERNOR_POSTGRES_URL",
        required_unless_present = "mongodb_url"
    )]
    postgres_url: Option<String>,
    /// The schema holding governor's tables (default `governor`).
    #[arg(long, env = "GOVERNOR_POSTGRES_SCHEMA", default_value = "governor")]
    postgres_schema: String,
    /// The MongoDB server (instead of PostgreSQL).
    #[arg(long, env = "GOVERNOR_MONGODB_URL", conflicts_with = "postgres_url")]
    mongodb_url: Option<String>,
    /// The MongoDB database (default `governor`).
    #[arg(long, env = "GOVERNOR_MONGODB_DATABASE", default_value = "governor")]
    mongodb_database: String,
}

pub(crate) async fn migrate(args: MigrateArgs) -> anyhow::Result<std::process::ExitCode> {
    if let Some(url) = &args.mongodb_url {
        let moved = MongoStore::migrate(url, &args.mongodb_database)
            .await
            .with_context(|| format!("cannot migrate MongoDB {}", without_password(url)))?;
        out!(
            "database {} is at version {} ({moved} versions applied)",
            args.mongodb_database,
            governor_mongodb::SCHEMA_VERSION
        );
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let url = args.postgres_url.as_deref().unwrap_or_default();
    let applied = PostgresStore::migrate(url, &args.postgres_schema)
        .await
        .with_context(|| format!("cannot migrate {}", without_password(url)))?;
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
