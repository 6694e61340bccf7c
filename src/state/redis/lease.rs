//! Quota leases for cluster-wide limits (`[routes.limits] scope = "cluster"`, and the shared
//! failed-authentication throttle): the Redis half. The request path never calls this; the
//! limiter's background task does, a few dozen times a second at most (see `limits::cluster`).
//!
//! One key per shared bucket, `<prefix>rl:<name>`, holding the bucket's GCRA theoretical arrival
//! time in microseconds on the *Redis server's* clock (`TIME`), so replicas with skewed clocks
//! still share one budget. A lease of `want` tokens takes `min(want, available)` and moves the
//! arrival time forward by that many intervals, atomically for every key in the call (one Lua
//! script: Redis runs it alone). The key expires once the bucket is full again, so idle buckets
//! cost nothing.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::redis_err;

/// `KEYS[i]`: a bucket; `ARGV[3i-2..3i]`: interval (µs, ≥ 1), burst (tokens), want (tokens, may
/// be 0 to only read). Returns per key `{granted, remaining, wait_us}`: tokens taken, tokens
/// left in the bucket after the lease, and microseconds until one more token is available (0 if
/// some remain). Integers stay below 2^53 (µs since the epoch ≈ 2^51), so Lua's doubles are exact.
const LEASE_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local want = tonumber(ARGV[3 * i])
  local tol = interval * burst
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local avail = math.floor((now + tol - tat) / interval)
  if avail < 0 then avail = 0 end
  local granted = want
  if granted > avail then granted = avail end
  tat = tat + granted * interval
  if granted > 0 then
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
  end
  local remaining = avail - granted
  local wait = 0
  if remaining == 0 then
    wait = tat + interval - now - tol
    if wait < 0 then wait = 0 end
  end
  out[#out + 1] = {granted, remaining, wait}
end
return out
";

/// One bucket's share of a lease call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseAsk {
    /// The bucket's name (under the prefix's `rl:`); the caller makes it unique per route,
    /// policy and key.
    pub bucket: String,
    /// Microseconds between two tokens at the sustained rate (at least 1).
    pub interval_us: u64,
    /// Tokens the bucket holds when full.
    pub burst: u64,
    /// Tokens wanted now (0: only read the bucket).
    pub want: u64,
}

/// What Redis granted for one [`LeaseAsk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseGrant {
    /// Tokens taken for this replica.
    pub granted: u64,
    /// Tokens still in the shared bucket after this lease.
    pub remaining: u64,
    /// Microseconds until the bucket has a token again (0 when `remaining > 0`).
    pub wait_us: u64,
}

/// Leases quota from the shared buckets. Cheap to clone (one multiplexed connection).
#[derive(Clone)]
pub struct RedisLeases {
    conn: ConnectionManager,
    prefix: String,
    script: redis::Script,
    timeout: Duration,
}

impl std::fmt::Debug for RedisLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeases")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLeases {
    pub(super) fn new(conn: ConnectionManager, prefix: &str, timeout: Duration) -> Self {
        RedisLeases {
            conn,
            prefix: format!("{prefix}rl:"),
            script: redis::Script::new(LEASE_LUA),
            timeout,
        }
    }

    /// Lease from every bucket in `asks` in one atomic script. Errors (Redis down, slow, or a
    /// reply of the wrong shape) say why without the URL.
    pub async fn lease(&self, asks: &[LeaseAsk]) -> Result<Vec<LeaseGrant>, String> {
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.script.prepare_invoke();
        for a in asks {
            inv.key(format!("{}{}", self.prefix, a.bucket))
                .arg(a.interval_us.max(1))
                .arg(a.burst.max(1))
                .arg(a.want);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<(u64, u64, u64)> =
            tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn))
                .await
                .map_err(|_| format!("no answer within {:?}", self.timeout))?
                .map_err(|e| redis_err(&e))?;
        if reply.len() != asks.len() {
            return Err("lease script answered for the wrong number of buckets".into());
        }
        Ok(reply
            .into_iter()
            .map(|(granted, remaining, wait_us)| LeaseGrant {
                granted,
                remaining,
                wait_us,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
