//! A rate-limit backend on PostgreSQL, for deployments without Redis, with
//! the database's clock: window limits keep a row per call still inside
//! its window (counted and added by one function call under a per-key
//! lock), or above `Limit::EXACT_WINDOW_CALLS` a row per slot of the
//! window (at most `Limit::WINDOW_SLOTS + 1` per key); GCRA limits keep a row per key with its arrival time, moved by
//! one atomic upsert.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use governor_core::{Admission, Limit, RateLimitBackend, RateLimitBackendError};

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

const WINDOW: &str = "SELECT rate_limit_window($1, $2, $3, $4)";

/// A window limit counted in slots (`Limit::counts_in_slots`).
const SLOTTED: &str = "SELECT rate_limit_slotted($1, $2, $3, $4, $5)";

/// Keys whose budget fully recovered hold nothing worth keeping.
const PRUNE: &str = "WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS us), \
    a AS (DELETE FROM rate_limits WHERE tat_micros < (SELECT us FROM now)), \
    b AS (DELETE FROM rate_limit_slots WHERE until_micros <= (SELECT us FROM now)) \
    DELETE FROM rate_limit_calls WHERE until_micros <= (SELECT us FROM now)";

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

    /// Runs a window limit: per call, or in slots above
    /// `Limit::EXACT_WINDOW_CALLS`.
    async fn window(
        &self,
        key: &str,
        limit: Limit,
        max_calls: u32,
        window: Duration,
        give_back: bool,
    ) -> Result<Vec<tokio_postgres::Row>, RateLimitBackendError> {
        let max = i32::try_from(max_calls).unwrap_or(i32::MAX);
        if limit.counts_in_slots() {
            let slots = i32::try_from(Limit::WINDOW_SLOTS).unwrap_or(i32::MAX);
            self.run(SLOTTED, &[&key, &max, &micros(window), &slots, &give_back])
                .await
        } else {
            self.run(WINDOW, &[&key, &max, &micros(window), &give_back])
                .await
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

    async fn acquire(&self, key: &str, limit: Limit) -> Result<Admission, RateLimitBackendError> {
        if self.acquires.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.run(PRUNE, &[]).await?;
        }
        let wait = match limit {
            Limit::Window { max_calls, window } => {
                let rows = self.window(key, limit, max_calls, window, false).await?;
                let row = rows.first().ok_or_else(|| failed("no reply"))?;
                row.try_get::<_, i64>(0).map_err(failed)?
            }
            Limit::Gcra {
                interval,
                tolerance,
            } => {
                let rows = self
                    .run(ACQUIRE, &[&key, &micros(interval), &micros(tolerance)])
                    .await?;
                let row = rows.first().ok_or_else(|| failed("no reply"))?;
                if row.try_get::<_, i64>(0).map_err(failed)? > 0 {
                    -1
                } else {
                    row.try_get::<_, i64>(1).map_err(failed)?.max(1)
                }
            }
        };
        Ok(match wait {
            -1 => Admission::Admitted,
            wait => Admission::Limited {
                retry_after: Duration::from_micros(u64::try_from(wait).unwrap_or(1)),
            },
        })
    }

    async fn release(&self, key: &str, limit: Limit) -> Result<(), RateLimitBackendError> {
        match limit {
            Limit::Window { max_calls, window } => self
                .window(key, limit, max_calls, window, true)
                .await
                .map(drop),
            Limit::Gcra { interval, .. } => self
                .run(RELEASE, &[&key, &micros(interval)])
                .await
                .map(drop),
        }
    }
}
