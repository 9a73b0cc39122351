//! In-process implementations: the embedded default, and what a single replica uses when no
//! Redis URL is configured.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use crate::{Cache, EventBus, RateLimiter, SharedStateError, WindowCount};

/// Entries kept before expired ones are swept; bounds memory under key churn.
const SWEEP_AT: usize = 100_000;

fn poisoned() -> SharedStateError {
    SharedStateError::Unavailable("in-process state lock poisoned".into())
}

#[derive(Default)]
pub struct MemoryRateLimiter {
    windows: Mutex<HashMap<String, (Instant, u64)>>,
}

impl MemoryRateLimiter {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn add(
        &self,
        key: &str,
        hits: u32,
        window: Duration,
    ) -> Result<WindowCount, SharedStateError> {
        let now = Instant::now();
        let mut windows = self.windows.lock().map_err(|_| poisoned())?;
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, (ends, _)| *ends > now);
        }
        let entry = windows.entry(key.to_owned()).or_insert((now + window, 0));
        if entry.0 <= now {
            *entry = (now + window, 0);
        }
        entry.1 += u64::from(hits);
        Ok(WindowCount {
            count: entry.1,
            resets_in: entry.0.saturating_duration_since(now),
        })
    }

    async fn reset(&self, key: &str) -> Result<(), SharedStateError> {
        self.windows.lock().map_err(|_| poisoned())?.remove(key);
        Ok(())
    }
}

/// When a ranked value expires, and its rank.
type RankEntry = (Instant, (i64, i64));

#[derive(Default)]
pub struct MemoryCache {
    entries: Mutex<HashMap<String, (Instant, String)>>,
    /// The ranks of values stored with `put_ranked`.
    ranks: Mutex<HashMap<String, RankEntry>>,
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<String>, SharedStateError> {
        let entries = self.entries.lock().map_err(|_| poisoned())?;
        Ok(entries
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, v)| v.clone()))
    }

    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), SharedStateError> {
        let now = Instant::now();
        let mut entries = self.entries.lock().map_err(|_| poisoned())?;
        if entries.len() >= SWEEP_AT {
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= SWEEP_AT {
                entries.clear();
            }
        }
        entries.insert(key.to_owned(), (now + ttl, value.to_owned()));
        Ok(())
    }

    async fn put_ranked(
        &self,
        key: &str,
        rank: (i64, i64),
        value: &str,
        ttl: Duration,
    ) -> Result<bool, SharedStateError> {
        let now = Instant::now();
        {
            let mut ranks = self.ranks.lock().map_err(|_| poisoned())?;
            if ranks.len() >= SWEEP_AT {
                ranks.retain(|_, (expires, _)| *expires > now);
            }
            if let Some((expires, stored)) = ranks.get(key) {
                if *expires > now && *stored > rank {
                    return Ok(false);
                }
            }
            ranks.insert(key.to_owned(), (now + ttl, rank));
        }
        self.put(key, value, ttl).await?;
        Ok(true)
    }

    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, SharedStateError> {
        let now = Instant::now();
        let mut entries = self.entries.lock().map_err(|_| poisoned())?;
        if entries.get(key).is_some_and(|(expires, _)| *expires > now) {
            return Ok(false);
        }
        entries.insert(key.to_owned(), (now + ttl, String::new()));
        Ok(true)
    }

    async fn remove(&self, keys: &[String]) -> Result<(), SharedStateError> {
        let mut entries = self.entries.lock().map_err(|_| poisoned())?;
        let mut ranks = self.ranks.lock().map_err(|_| poisoned())?;
        for k in keys {
            entries.remove(k);
            ranks.remove(k);
        }
        Ok(())
    }
}

/// One broadcast channel per topic, created on first subscription and dropped with its last
/// subscriber.
pub struct MemoryBus {
    topics: Mutex<HashMap<String, broadcast::Sender<String>>>,
    capacity: usize,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    pub fn new() -> Self {
        Self {
            topics: Mutex::new(HashMap::new()),
            capacity: 256,
        }
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, topic: &str, payload: &str) -> Result<(), SharedStateError> {
        let mut topics = self.topics.lock().map_err(|_| poisoned())?;
        if let Some(sender) = topics.get(topic) {
            if sender.send(payload.to_owned()).is_err() {
                topics.remove(topic);
            }
        }
        Ok(())
    }

    fn listened(&self, topic: &str) -> bool {
        self.topics.lock().map_or(true, |topics| {
            topics.get(topic).is_some_and(|s| s.receiver_count() > 0)
        })
    }

    async fn subscribe(&self, topic: &str) -> Result<BoxStream<'static, String>, SharedStateError> {
        let mut topics = self.topics.lock().map_err(|_| poisoned())?;
        let sender = topics
            .entry(topic.to_owned())
            .or_insert_with(|| broadcast::channel(self.capacity).0);
        let receiver = sender.subscribe();
        // A subscriber too slow to keep up skips what it missed (and replays from storage).
        Ok(BroadcastStream::new(receiver)
            .filter_map(|m| async move { m.ok() })
            .boxed())
    }
}
