//! A [`RateLimitBackend`] on Redis: one GCRA limit held across every
//! governor instance that points at the same Redis.
//!
//! Each check is one Lua script run atomically inside Redis with Redis's
//! own clock (`TIME`), so instances need not agree on the time and no
//! two calls can take the same cell. A window limit keeps a sorted set of
//! the calls still inside the window; a GCRA limit (`burst` set) keeps one
//! arrival time. Keys expire once their budget has fully recovered, so
//! Redis memory follows the active keys, not every key ever seen.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use governor_core::{OnBackendError, RateLimitPolicy};
//! use governor_redis::RedisRateLimiter;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let redis = RedisRateLimiter::open("redis://127.0.0.1:6379")?;
//! let limit = RateLimitPolicy::new(100, Duration::from_secs(60))
//!     .named("payments")
//!     .shared(Arc::new(redis))
//!     .on_backend_error(OnBackendError::Deny);
//! # let _ = limit;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use async_trait::async_trait;
use governor_core::{Admission, Limit, RateLimitBackend, RateLimitBackendError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A sliding window in microseconds. ARGV: max calls, window, and 1 to
/// give the newest call back. Returns -1 when admitted (or given back),
/// otherwise the microseconds until the oldest call leaves the window.
const WINDOW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if ARGV[3] == '1' then
  redis.call('ZPOPMAX', KEYS[1])
  return -1
end
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now), string.format('%.0f', now) .. '-' .. count)
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1)
return -1
";

/// A window limit above `Limit::EXACT_WINDOW_CALLS`, counted in slots: a
/// hash of slot index to calls, holding at most `WINDOW_SLOTS + 1` slots
/// (see `Limit::WINDOW_SLOTS`). ARGV: max calls, window, 1 to give the
/// newest call back, slots per window. Returns as [`WINDOW`] does.
const SLOTTED: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
local slots = tonumber(ARGV[4])
local width = math.max(1, math.ceil(window / slots))
local head = math.floor(now / width)
local all = redis.call('HGETALL', KEYS[1])
local total, oldest, newest = 0, nil, nil
for i = 1, #all, 2 do
  local slot, calls = tonumber(all[i]), tonumber(all[i + 1])
  if slot < head - slots or calls <= 0 then
    redis.call('HDEL', KEYS[1], all[i])
  else
    total = total + calls
    if not oldest or slot < oldest then oldest = slot end
    if not newest or slot > newest then newest = slot end
  end
end
if ARGV[3] == '1' then
  if newest then redis.call('HINCRBY', KEYS[1], string.format('%.0f', newest), -1) end
  return -1
end
if total >= tonumber(ARGV[1]) then
  return math.max(1, (oldest + slots + 1) * width - now)
end
redis.call('HINCRBY', KEYS[1], string.format('%.0f', head), 1)
redis.call('PEXPIRE', KEYS[1], math.ceil((slots + 1) * width / 1000) + 1)
return -1
";

/// GCRA in microseconds. ARGV: interval, tolerance, and 1 to give a cell
/// back instead of taking one. Returns -1 when admitted (or given back),
/// otherwise the microseconds until a cell frees up.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if ARGV[3] == '1' then
  if tat and tat - interval > now then
    redis.call('SET', KEYS[1], string.format('%.0f', tat - interval), 'PX', math.ceil((tat - interval - now) / 1000))
  elseif tat then
    redis.call('DEL', KEYS[1])
  end
  return -1
end
if not tat or tat < now then tat = now end
if tat - now > tolerance then
  return math.max(1, tat - now - tolerance)
end
local new = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1)
return -1
";

/// Settings for [`RedisRateLimiter::open_with`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisOptions {
    prefix: String,
    timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "governor:rate:".into(),
            timeout: Duration::from_millis(250),
        }
    }
}

impl RedisOptions {
    /// Defaults: keys prefixed `governor:rate:`, 250 ms timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Prefix of every key this limiter writes (to share one Redis between
    /// deployments).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a check may take before it counts as the backend being
    /// down (and the policy's `on_backend_error` decides).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Rate-limit counters in Redis, shared by every instance using them.
/// Cheap to clone; connects lazily and reconnects on its own.
#[derive(Clone)]
pub struct RedisRateLimiter {
    connection: ConnectionManager,
    window: redis::Script,
    slotted: redis::Script,
    gcra: redis::Script,
    options: RedisOptions,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.options.prefix)
            .finish_non_exhaustive()
    }
}

fn failed(e: impl std::fmt::Display) -> RateLimitBackendError {
    RateLimitBackendError {
        backend: "redis",
        message: e.to_string(),
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl RedisRateLimiter {
    /// A limiter on the Redis at `url` (`redis://host:port/db`), with
    /// default options. Fails only if the URL is invalid: the connection
    /// is made on first use, so a Redis that is down at start is handled
    /// like one that goes down later.
    pub fn open(url: &str) -> Result<Self, RateLimitBackendError> {
        Self::open_with(url, RedisOptions::default())
    }

    /// [`open`](Self::open) with `options`.
    pub fn open_with(url: &str, options: RedisOptions) -> Result<Self, RateLimitBackendError> {
        let client = redis::Client::open(url).map_err(failed)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(failed)?;
        Ok(Self {
            connection,
            window: redis::Script::new(WINDOW),
            slotted: redis::Script::new(SLOTTED),
            gcra: redis::Script::new(GCRA),
            options,
        })
    }

    async fn run(
        &self,
        key: &str,
        limit: Limit,
        release: bool,
    ) -> Result<i64, RateLimitBackendError> {
        let mut connection = self.connection.clone();
        let slotted = limit.counts_in_slots();
        let (script, a, b) = match limit {
            Limit::Window { max_calls, window } if slotted => {
                (&self.slotted, i64::from(max_calls), micros(window))
            }
            Limit::Window { max_calls, window } => {
                (&self.window, i64::from(max_calls), micros(window))
            }
            Limit::Gcra {
                interval,
                tolerance,
            } => (&self.gcra, micros(interval), micros(tolerance)),
        };
        // Slot counters live in a hash, under their own key.
        let suffix = if slotted { ":slots" } else { "" };
        let mut invocation = script.key(format!("{}{key}{suffix}", self.options.prefix));
        invocation
            .arg(a)
            .arg(b)
            .arg(if release { "1" } else { "0" });
        if slotted {
            invocation.arg(Limit::WINDOW_SLOTS);
        }
        let call = invocation.invoke_async::<i64>(&mut connection);
        match tokio::time::timeout(self.options.timeout, call).await {
            Ok(result) => result.map_err(failed),
            Err(_) => Err(failed(format!(
                "no answer within {} ms",
                self.options.timeout.as_millis()
            ))),
        }
    }
}

#[async_trait]
impl RateLimitBackend for RedisRateLimiter {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn acquire(&self, key: &str, limit: Limit) -> Result<Admission, RateLimitBackendError> {
        match self.run(key, limit, false).await? {
            -1 => Ok(Admission::Admitted),
            wait => Ok(Admission::Limited {
                retry_after: Duration::from_micros(u64::try_from(wait).unwrap_or(1)),
            }),
        }
    }

    async fn release(&self, key: &str, limit: Limit) -> Result<(), RateLimitBackendError> {
        self.run(key, limit, true).await.map(drop)
    }
}

/// The crate README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
