//! Exact limits across many servers: GCRA in one atomic Redis script (the redis-cell algorithm, in Lua
//! so it runs on any Redis ≥ 5 without a module).
//!
//! The script reads the key's TAT, decides, and writes the new TAT in one step that no other client can
//! interleave with, so however many servers and tasks check one key at once, never more than the quota is
//! admitted. Time is Redis's own `TIME`, so servers with skewed clocks still agree. Resolution is one
//! microsecond. A stored value that is not a number is treated as absent (a full quota) and overwritten.

use std::time::Duration;

use edge_core::{Error, ErrorKind};
use edge_kv::redis::redis_error;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Decision, OnStoreError, Quota, WindowHit, WindowStore, storage_key};

/// KEYS[1]: the key. ARGV: emission interval (µs), capacity = burst × interval (µs), cost.
/// Returns {admitted (0/1), µs until the quota is full again, µs until a retry could pass}.
const GCRA_LUA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  local n = tonumber(stored)
  if n and n > now then tat = n end
end
local ahead = tat - now
local new_ahead = ahead + interval * cost
if new_ahead > capacity then
  return {0, ahead, new_ahead - capacity}
end
redis.call('SET', KEYS[1], string.format('%.0f', now + new_ahead), 'PX', math.ceil(new_ahead / 1000) + 1)
return {1, new_ahead, 0}
";

/// A GCRA limiter whose state lives in Redis. Cheap to clone (the connection is shared).
///
/// ```no_run
/// use edge_auth::ratelimit::{Quota, RedisLimiter};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let quota = Quota::per_minute(std::num::NonZeroU32::new(600).unwrap()).with_burst(50)?;
/// let limiter = RedisLimiter::connect("redis://127.0.0.1/", quota).await?;
/// let decision = limiter.check("account:42").await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisLimiter {
    connection: ConnectionManager,
    quota: Quota,
    prefix: String,
    on_store_error: OnStoreError,
    script: Script,
}

impl RedisLimiter {
    /// Connects to the Redis at `url`, with a 2 s connection and response timeout and background
    /// reconnection.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a malformed URL, [`ErrorKind::Unavailable`] if Redis cannot be
    /// reached now.
    pub async fn connect(url: &str, quota: Quota) -> Result<Self, Error> {
        Ok(Self::with_connection(connect(url).await?, quota))
    }

    /// A limiter over an existing connection manager.
    #[must_use]
    pub fn with_connection(connection: ConnectionManager, quota: Quota) -> Self {
        Self {
            connection,
            quota,
            prefix: "edge-rl:".to_owned(),
            on_store_error: OnStoreError::default(),
            script: Script::new(GCRA_LUA),
        }
    }

    /// The prefix of every Redis key (default `"edge-rl:"`).
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// What [`RedisLimiter::check`] does when Redis cannot be reached (default [`OnStoreError::Allow`]:
    /// a limiter outage should not become a site outage; choose `Deny` for limits that protect money).
    #[must_use]
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        self.on_store_error = policy;
        self
    }

    /// The quota.
    #[must_use]
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// The Lua source of the check, so services in other languages can share limits with this one:
    /// `EVALSHA <sha> 1 <key> <interval µs> <burst × interval µs> <cost>` returns
    /// `{admitted 0|1, µs until full, µs until retry}`.
    #[must_use]
    pub fn script_source() -> &'static str {
        GCRA_LUA
    }

    /// Decides one request for `key`, applying the [`OnStoreError`] policy if Redis fails.
    pub async fn check(&self, key: &str) -> Decision {
        match self.try_check_n(key, 1).await {
            Ok(decision) => decision,
            Err(_) => self.on_store_error.decision(self.quota),
        }
    }

    /// Decides a request costing `cost` units for `key`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] or [`ErrorKind::Timeout`] when Redis cannot be reached,
    /// [`ErrorKind::Backend`] for any other Redis error. Nothing is admitted in that case.
    pub async fn try_check_n(&self, key: &str, cost: u32) -> Result<Decision, Error> {
        let interval = (self.quota.interval_nanos() / 1000).max(1);
        let capacity = interval.saturating_mul(u64::from(self.quota.burst()));
        let mut connection = self.connection.clone();
        let (admitted, ahead, retry): (i64, i64, i64) = self
            .script
            .key(storage_key(&self.prefix, key, 256))
            .arg(interval)
            .arg(capacity)
            .arg(cost)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let micros = |n: i64| u64::try_from(n).unwrap_or(0).saturating_mul(1000);
        Ok(Decision::scheduled(
            admitted == 1,
            self.quota,
            micros(ahead),
            micros(retry),
        ))
    }
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("quota", &self.quota)
            .field("prefix", &self.prefix)
            .field("on_store_error", &self.on_store_error)
            .finish_non_exhaustive()
    }
}

/// A connection manager with short timeouts (a limiter must not hold a request for long) and background
/// reconnection.
async fn connect(url: &str) -> Result<ConnectionManager, Error> {
    let client = redis::Client::open(url)
        .map_err(|e| Error::with_source(ErrorKind::InvalidInput, "bad redis url", e))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(redis_error)
}

/// KEYS[1]: the key. ARGV: window (µs), limit. Returns {admitted 0|1, hits in window, µs until the oldest
/// leaves}. Hits are a sorted set scored by time; a key of any other type is garbage and is replaced.
const WINDOW_LUA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local key = KEYS[1]
local kind = redis.call('TYPE', key)['ok']
if kind ~= 'zset' and kind ~= 'none' then redis.call('DEL', key) end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local admitted = 0
if count < limit then
  redis.call('ZADD', key, now, string.format('%.0f', now) .. '-' .. count)
  count = count + 1
  admitted = 1
end
redis.call('PEXPIRE', key, math.ceil(window / 1000) + 1)
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local expires = 0
if oldest[2] then expires = tonumber(oldest[2]) + window - now end
return {admitted, count, expires}
";

/// Exact sliding windows in Redis: each key's hits in a sorted set, trimmed and counted by one atomic
/// script on Redis's clock. The [`WindowStore`] for
/// [`SlidingWindowLimiter`](super::SlidingWindowLimiter) and [`ShardedLimiter`](super::ShardedLimiter)
/// across many servers.
#[derive(Clone)]
pub struct RedisWindowStore {
    connection: ConnectionManager,
    prefix: String,
    script: Script,
}

impl RedisWindowStore {
    /// A store over an existing connection manager (share the one a [`RedisLimiter`] uses, say).
    #[must_use]
    pub fn with_connection(connection: ConnectionManager) -> Self {
        Self {
            connection,
            prefix: "edge-rlw:".to_owned(),
            script: Script::new(WINDOW_LUA),
        }
    }

    /// Connects to the Redis at `url`.
    ///
    /// # Errors
    ///
    /// As [`RedisLimiter::connect`].
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Ok(Self::with_connection(connect(url).await?))
    }

    /// The prefix of every Redis key (default `"edge-rlw:"`).
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

impl WindowStore for RedisWindowStore {
    async fn hit(&self, key: &str, window: Duration, limit: u32) -> Result<WindowHit, Error> {
        let window_micros = u64::try_from(window.as_micros()).unwrap_or(u64::MAX).max(1);
        let mut connection = self.connection.clone();
        let (admitted, count, expires): (i64, i64, i64) = self
            .script
            .key(storage_key(&self.prefix, key, 256))
            .arg(window_micros)
            .arg(limit)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(WindowHit {
            admitted: admitted == 1,
            count: u32::try_from(count).unwrap_or(u32::MAX),
            oldest_expires_in: Duration::from_micros(u64::try_from(expires).unwrap_or(0)),
        })
    }
}

impl std::fmt::Debug for RedisWindowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWindowStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}
