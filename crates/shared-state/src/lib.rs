//! State that GlucoEngine replicas share: rate limits, a cache of credential lookups, and the
//! bus that carries live events (a new reading, an alert) to every replica's subscribers.
//!
//! Each part is a trait with an in-process implementation, the embedded default. The cluster
//! implementations (Redis) live beside them behind the same traits and must pass the same
//! conformance checks in [`conformance`]. Nothing here may hold health data longer than an
//! event's delivery, and nothing here is the source of truth: losing it all loses no data.

mod batching;
pub mod conformance;
mod memory;
mod redis_backend;

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use batching::BatchingRateLimiter;
pub use memory::{MemoryBus, MemoryCache, MemoryRateLimiter};
pub use redis_backend::{RedisBus, RedisCache, RedisConnection, RedisRateLimiter};

#[derive(Debug, Clone, thiserror::Error)]
pub enum SharedStateError {
    #[error("shared state unavailable: {0}")]
    Unavailable(String),
}

/// What a rate limiter decided about one more hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed { remaining: u32 },
    Limited { retry_after: Duration },
}

impl RateDecision {
    /// The decision for a window that has counted `count` hits, this one included.
    pub fn for_count(count: u64, limit: u32, resets_in: Duration) -> RateDecision {
        if count > u64::from(limit) {
            RateDecision::Limited {
                retry_after: resets_in,
            }
        } else {
            RateDecision::Allowed {
                remaining: limit - count as u32,
            }
        }
    }
}

/// A key's count in its current fixed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    pub count: u64,
    pub resets_in: Duration,
}

/// Counts hits per key in fixed windows. Keys name what is limited, e.g. `login:ip:127.0.0.1`.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Adds `hits` to `key`'s count, starting a window of `window` if none is running.
    async fn add(
        &self,
        key: &str,
        hits: u32,
        window: Duration,
    ) -> Result<WindowCount, SharedStateError>;

    /// Records one hit against `key` and says whether it is within `limit` per `window`.
    async fn hit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, SharedStateError> {
        let w = self.add(key, 1, window).await?;
        Ok(RateDecision::for_count(w.count, limit, w.resets_in))
    }
    /// Forgets the hits of `key` (e.g. an account's failed logins after a successful one).
    async fn reset(&self, key: &str) -> Result<(), SharedStateError>;
}

/// A short-lived cache of values by key, shared by replicas. Used for credential lookups: a
/// revoked credential is removed from it at once, on every replica.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<String>, SharedStateError>;
    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), SharedStateError>;
    /// Stores `value` unless the value stored under `key` came with a greater `rank` (ranks
    /// compare in order of their parts; an equal rank replaces), in one atomic step: e.g. the
    /// latest forecast, which a forecast of an older, backfilled reading must not replace.
    /// Says whether it stored.
    async fn put_ranked(
        &self,
        key: &str,
        rank: (i64, i64),
        value: &str,
        ttl: Duration,
    ) -> Result<bool, SharedStateError>;
    async fn remove(&self, keys: &[String]) -> Result<(), SharedStateError>;
    /// Takes `key` for `ttl` unless someone holds it: a lease, e.g. so that one replica, not
    /// all of them, fits a person's model. Says whether this caller got it.
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, SharedStateError>;
}

/// Publish/subscribe of live events by topic (e.g. `user:42`). Delivery is best effort and
/// at most once: a subscriber that connects later replays from storage, not from the bus.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    async fn publish(&self, topic: &str, payload: &str) -> Result<(), SharedStateError>;
    /// Whether a message published on `topic` now could reach anyone: false only where the
    /// bus knows that nobody listens (in process, without a subscriber), so that publishers
    /// skip building the message. A subscriber that arrives just after is no worse off than
    /// one arriving just after the publish: it replays from storage.
    fn listened(&self, _topic: &str) -> bool {
        true
    }
    /// Messages published on `topic` after this call returns.
    async fn subscribe(&self, topic: &str) -> Result<BoxStream<'static, String>, SharedStateError>;
}
