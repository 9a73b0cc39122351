//! A rate limiter that counts on the replica and settles with the shared count in batches.
//!
//! The API limit is checked on every authenticated request. Asking Redis each time costs a
//! round trip per request on every replica; this limiter asks it when a person's first request
//! of a window arrives, after every `limit / BATCH_SHARE` local hits, and in the background at
//! most every `SYNC_EVERY` while requests keep coming. A replica decides from the shared count
//! it last saw plus its own unsettled hits, so the cluster as a whole may allow a little more
//! than the limit: at most about two batches per replica per window (one counted locally, one
//! settling). A limit small enough for a batch of one is exact.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{RateDecision, RateLimiter, SharedStateError, WindowCount};

/// A replica settles with the shared count after this share of the limit in local hits.
const BATCH_SHARE: u32 = 20;
/// While hits keep coming, a replica settles at least this often (in the background).
const SYNC_EVERY: Duration = Duration::from_millis(100);
/// Keys kept before those of ended windows are swept.
const SWEEP_AT: usize = 100_000;

pub struct BatchingRateLimiter {
    shared: Arc<dyn RateLimiter>,
    keys: Arc<Mutex<HashMap<String, Local>>>,
}

/// What this replica knows of a key's window.
struct Local {
    /// The shared count at the last settlement (every replica's hits).
    shared_count: u64,
    window_ends: Instant,
    /// Hits allowed here and not yet added to the shared count.
    pending: u32,
    settled_at: Instant,
    settling_in_background: bool,
}

enum Next {
    Decided(RateDecision),
    /// Add this many hits to the shared count now, then decide.
    Settle(u32),
}

impl BatchingRateLimiter {
    pub fn new(shared: Arc<dyn RateLimiter>) -> Self {
        BatchingRateLimiter {
            shared,
            keys: Arc::default(),
        }
    }

    fn poisoned() -> SharedStateError {
        SharedStateError::Unavailable("rate limiter lock poisoned".into())
    }

    /// Records what a settlement learned.
    fn learned(&self, key: &str, w: WindowCount, at: Instant) -> Result<(), SharedStateError> {
        let mut keys = self.keys.lock().map_err(|_| Self::poisoned())?;
        if keys.len() >= SWEEP_AT {
            keys.retain(|_, l| l.window_ends > at);
        }
        let local = keys.entry(key.to_owned()).or_insert(Local {
            shared_count: 0,
            window_ends: at,
            pending: 0,
            settled_at: at,
            settling_in_background: false,
        });
        let window_ends = at + w.resets_in;
        // A settlement that reports a new window (or a higher count) is newer news; one that
        // finished after a later one may report less and is ignored.
        if window_ends > local.window_ends + Duration::from_millis(5)
            || w.count > local.shared_count
        {
            local.shared_count = w.count;
            local.window_ends = window_ends;
        }
        local.settled_at = at;
        Ok(())
    }

    fn settle_in_background(&self, key: String, hits: u32, window: Duration) {
        let (shared, keys) = (self.shared.clone(), self.keys.clone());
        let me = BatchingRateLimiter { shared, keys };
        tokio::spawn(async move {
            let result = me.shared.add(&key, hits, window).await;
            if let Ok(w) = result {
                let _ = me.learned(&key, w, Instant::now());
            }
            if let Ok(mut keys) = me.keys.lock() {
                if let Some(l) = keys.get_mut(&key) {
                    l.settling_in_background = false;
                }
            }
        });
    }
}

#[async_trait]
impl RateLimiter for BatchingRateLimiter {
    async fn add(
        &self,
        key: &str,
        hits: u32,
        window: Duration,
    ) -> Result<WindowCount, SharedStateError> {
        self.shared.add(key, hits, window).await
    }

    async fn hit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, SharedStateError> {
        let now = Instant::now();
        let batch = (limit / BATCH_SHARE).max(1);
        let mut background = None;
        let next = {
            let mut keys = self.keys.lock().map_err(|_| Self::poisoned())?;
            match keys.get_mut(key) {
                Some(l) if l.window_ends > now => {
                    let seen = l.shared_count + u64::from(l.pending);
                    if seen >= u64::from(limit) {
                        Next::Decided(RateDecision::Limited {
                            retry_after: l.window_ends - now,
                        })
                    } else if l.pending + 1 >= batch {
                        let hits = l.pending + 1;
                        l.pending = 0;
                        Next::Settle(hits)
                    } else {
                        l.pending += 1;
                        if !l.settling_in_background && now - l.settled_at >= SYNC_EVERY {
                            l.settling_in_background = true;
                            background = Some(std::mem::take(&mut l.pending));
                        }
                        Next::Decided(RateDecision::Allowed {
                            remaining: limit - (seen + 1) as u32,
                        })
                    }
                }
                // The first hit of a window here: learn the shared count before deciding.
                _ => Next::Settle(1),
            }
        };
        if let Some(hits) = background {
            self.settle_in_background(key.to_owned(), hits, window);
        }
        match next {
            Next::Decided(d) => Ok(d),
            Next::Settle(hits) => {
                let w = self.shared.add(key, hits, window).await?;
                self.learned(key, w, Instant::now())?;
                Ok(RateDecision::for_count(w.count, limit, w.resets_in))
            }
        }
    }

    async fn reset(&self, key: &str) -> Result<(), SharedStateError> {
        self.keys.lock().map_err(|_| Self::poisoned())?.remove(key);
        self.shared.reset(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryRateLimiter;

    fn replicas(n: usize) -> Vec<BatchingRateLimiter> {
        let shared: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new());
        (0..n)
            .map(|_| BatchingRateLimiter::new(shared.clone()))
            .collect()
    }

    #[tokio::test]
    async fn a_small_limit_is_exact_across_replicas() {
        let rs = replicas(2);
        let window = Duration::from_secs(60);
        for n in 0..6 {
            let d = rs[n % 2].hit("k", 6, window).await.expect("hit");
            assert!(matches!(d, RateDecision::Allowed { .. }), "hit {n}: {d:?}");
        }
        for r in &rs {
            assert!(matches!(
                r.hit("k", 6, window).await.expect("hit"),
                RateDecision::Limited { .. }
            ));
        }
    }

    #[tokio::test]
    async fn a_large_limit_overshoots_by_at_most_two_batches_per_replica() {
        let rs = Arc::new(replicas(3));
        let (limit, window) = (1000u32, Duration::from_secs(60));
        let batch = u64::from(limit / BATCH_SHARE);
        // Many concurrent clients, spread over the replicas, for more than the limit.
        let mut tasks = Vec::new();
        for client in 0..12 {
            let rs = rs.clone();
            tasks.push(tokio::spawn(async move {
                let mut allowed = 0u64;
                for i in 0..400 {
                    let d = rs[(client + i) % 3].hit("k", limit, window).await;
                    if matches!(d, Ok(RateDecision::Allowed { .. })) {
                        allowed += 1;
                    }
                    if i % 50 == 0 {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                }
                allowed
            }));
        }
        let mut allowed = 0;
        for t in tasks {
            allowed += t.await.expect("task");
        }
        assert!(allowed >= u64::from(limit), "allowed {allowed}");
        assert!(
            allowed <= u64::from(limit) + 2 * 3 * batch,
            "allowed {allowed} of a limit of {limit}"
        );
        // Once the shared count is past the limit, every replica refuses.
        tokio::time::sleep(SYNC_EVERY * 2).await;
        for r in rs.iter() {
            assert!(matches!(
                r.hit("k", limit, window).await.expect("hit"),
                RateDecision::Limited { .. }
            ));
        }
    }

    #[tokio::test]
    async fn a_new_window_starts_from_zero() {
        let rs = replicas(2);
        let window = Duration::from_millis(300);
        assert!(matches!(
            rs[0].hit("k", 1, window).await.expect("hit"),
            RateDecision::Allowed { .. }
        ));
        assert!(matches!(
            rs[1].hit("k", 1, window).await.expect("hit"),
            RateDecision::Limited { .. }
        ));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(matches!(
            rs[1].hit("k", 1, window).await.expect("hit"),
            RateDecision::Allowed { .. }
        ));
    }
}
