//! A rate-limit backend on PostgreSQL, for deployments without Redis: one
//! row per key holding its GCRA arrival time, updated by one atomic
//! upsert with the database's clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use governor_core::{Admission, Gcra, RateLimitBackend, RateLimitBackendError};

use crate::conn::Pool;

/// Takes a cell: admitted when the key's arrival time is at most the
/// tolerance ($3) ahead of now, moving it one interval ($2) on. Returns
/// whether it was taken and, when not, how many microseconds until it
/// would be.
const ACQUIRE: &str = "WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS us), \
    taken AS (INSERT INTO rate_limits AS r (key, tat_micros) SELECT $1, us + $2 FROM now \
      ON CONFLICT (key) DO UPDATE SET tat_micros = GREATEST(r.tat_micros, (SELECT us FROM now)) + $2 \
      WHERE GREATEST(r.tat_micros, (SELECT us FROM now)) - (SELECT us FROM now) <= $3 RETURNING 1) \
    SELECT (SELECT count(*) FROM taken), \
      COALESCE((SELECT tat_micros FROM rate_limits WHERE key = $1), 0) - (SELECT us FROM now) - $3";

const RELEASE: &str = "UPDATE rate_limits SET tat_micros = tat_micros - $2 WHERE key = $1";

/// Keys whose budget fully recovered hold nothing worth keeping.
const PRUNE: &str = "DELETE FROM rate_limits \
    WHERE tat_micros < (extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

/// Acquires between prunes of recovered keys.
const PRUNE_EVERY: u64 = 10_000;

/// Shared rate-limit counters in the store's schema (table
/// `rate_limits`). Made by [`PostgresStore::rate_limiter`](crate::PostgresStore::rate_limiter).
#[derive(Clone)]
pub struct PostgresRateLimiter {
    pool: Arc<Pool>,
    acquires: Arc<AtomicU64>,
}

impl std::fmt::Debug for PostgresRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresRateLimiter")
            .finish_non_exhaustive()
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn failed(e: impl std::fmt::Display) -> RateLimitBackendError {
    RateLimitBackendError {
        backend: "postgres",
        message: e.to_string(),
    }
}

impl PostgresRateLimiter {
    pub(crate) fn new(pool: Arc<Pool>) -> Self {
        Self {
            pool,
            acquires: Arc::new(AtomicU64::new(0)),
        }
    }

    async fn run(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, RateLimitBackendError> {
        let conn = self.pool.get().await.map_err(failed)?;
        let stmt = conn.statement("rate_limit", sql).await.map_err(failed)?;
        conn.client().query(&stmt, params).await.map_err(failed)
    }
}

#[async_trait]
impl RateLimitBackend for PostgresRateLimiter {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn acquire(&self, key: &str, limit: Gcra) -> Result<Admission, RateLimitBackendError> {
        if self.acquires.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.run(PRUNE, &[]).await?;
        }
        let rows = self
            .run(
                ACQUIRE,
                &[&key, &micros(limit.interval), &micros(limit.tolerance)],
            )
            .await?;
        let row = rows.first().ok_or_else(|| failed("no reply"))?;
        let taken: i64 = row.try_get(0).map_err(failed)?;
        if taken > 0 {
            return Ok(Admission::Admitted);
        }
        let wait: i64 = row.try_get(1).map_err(failed)?;
        Ok(Admission::Limited {
            retry_after: Duration::from_micros(u64::try_from(wait).unwrap_or(0).max(1)),
        })
    }

    async fn release(&self, key: &str, limit: Gcra) -> Result<(), RateLimitBackendError> {
        self.run(RELEASE, &[&key, &micros(limit.interval)])
            .await
            .map(drop)
    }
}
