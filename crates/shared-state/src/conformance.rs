//! Checks every shared-state implementation must pass; the Redis ones run the same functions.

use std::time::Duration;

use futures::StreamExt;

use crate::{Cache, EventBus, RateDecision, RateLimiter};

pub async fn rate_limiter_counts_per_key(limiter: &dyn RateLimiter, prefix: &str) {
    let key = format!("{prefix}:a");
    let other = format!("{prefix}:b");
    let window = Duration::from_secs(60);
    for expected_remaining in [2, 1, 0] {
        assert_eq!(
            limiter.hit(&key, 3, window).await.expect("hit"),
            RateDecision::Allowed {
                remaining: expected_remaining
            }
        );
    }
    match limiter.hit(&key, 3, window).await.expect("hit") {
        RateDecision::Limited { retry_after } => assert!(retry_after <= window),
        other => panic!("fourth hit allowed: {other:?}"),
    }
    assert!(matches!(
        limiter.hit(&other, 3, window).await.expect("hit"),
        RateDecision::Allowed { .. }
    ));
    limiter.reset(&key).await.expect("reset");
    assert!(matches!(
        limiter.hit(&key, 3, window).await.expect("hit"),
        RateDecision::Allowed { remaining: 2 }
    ));
}

pub async fn rate_limiter_adds_several_hits_at_once(limiter: &dyn RateLimiter, prefix: &str) {
    let key = format!("{prefix}:batch");
    let window = Duration::from_secs(60);
    let first = limiter.add(&key, 5, window).await.expect("add");
    assert_eq!(first.count, 5);
    assert!(first.resets_in <= window && first.resets_in > window / 2);
    assert_eq!(limiter.add(&key, 2, window).await.expect("add").count, 7);
    assert!(matches!(
        limiter.hit(&key, 7, window).await.expect("hit"),
        RateDecision::Limited { .. }
    ));
}

pub async fn rate_limiter_windows_expire(limiter: &dyn RateLimiter, prefix: &str) {
    let key = format!("{prefix}:short");
    let window = Duration::from_millis(300);
    assert!(matches!(
        limiter.hit(&key, 1, window).await.expect("hit"),
        RateDecision::Allowed { .. }
    ));
    assert!(matches!(
        limiter.hit(&key, 1, window).await.expect("hit"),
        RateDecision::Limited { .. }
    ));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(matches!(
        limiter.hit(&key, 1, window).await.expect("hit"),
        RateDecision::Allowed { .. }
    ));
}

pub async fn cache_stores_expires_and_removes(cache: &dyn Cache, prefix: &str) {
    let k1 = format!("{prefix}:k1");
    let k2 = format!("{prefix}:k2");
    assert_eq!(cache.get(&k1).await.expect("get"), None);
    cache
        .put(&k1, "v1", Duration::from_secs(60))
        .await
        .expect("put");
    cache
        .put(&k2, "v2", Duration::from_millis(200))
        .await
        .expect("put");
    assert_eq!(cache.get(&k1).await.expect("get").as_deref(), Some("v1"));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(cache.get(&k2).await.expect("get"), None, "expired");
    cache
        .remove(std::slice::from_ref(&k1))
        .await
        .expect("remove");
    assert_eq!(cache.get(&k1).await.expect("get"), None, "removed");
}

pub async fn cache_keeps_the_highest_ranked_value(cache: &dyn Cache, prefix: &str) {
    let key = format!("{prefix}:ranked");
    let ttl = Duration::from_secs(60);
    assert!(cache
        .put_ranked(&key, (10, 1), "ten", ttl)
        .await
        .expect("put"));
    assert!(!cache
        .put_ranked(&key, (9, 5), "nine", ttl)
        .await
        .expect("put"));
    assert!(!cache
        .put_ranked(&key, (10, 0), "ten, older", ttl)
        .await
        .expect("put"));
    assert_eq!(cache.get(&key).await.expect("get").as_deref(), Some("ten"));
    assert!(cache
        .put_ranked(&key, (10, 1), "ten, again", ttl)
        .await
        .expect("put"));
    assert!(cache.put_ranked(&key, (-1, 0), "x", ttl).await.is_ok());
    assert!(cache
        .put_ranked(&key, (11, -3), "eleven", ttl)
        .await
        .expect("put"));
    assert_eq!(
        cache.get(&key).await.expect("get").as_deref(),
        Some("eleven")
    );
    // Removing the value forgets its rank too.
    cache
        .remove(std::slice::from_ref(&key))
        .await
        .expect("remove");
    assert!(cache
        .put_ranked(&key, (1, 0), "one", ttl)
        .await
        .expect("put"));
    assert_eq!(cache.get(&key).await.expect("get").as_deref(), Some("one"));
}

pub async fn cache_leases_go_to_one_claimant_until_they_expire(cache: &dyn Cache, prefix: &str) {
    let key = format!("{prefix}:lease");
    let ttl = Duration::from_millis(300);
    assert!(cache.claim(&key, ttl).await.expect("claim"));
    assert!(!cache.claim(&key, ttl).await.expect("claim"), "held");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(cache.claim(&key, ttl).await.expect("claim"), "expired");
}

pub async fn bus_delivers_to_subscribers_of_the_topic(
    publisher: &dyn EventBus,
    subscriber: &dyn EventBus,
    prefix: &str,
) {
    let topic = format!("{prefix}:user:1");
    let mut mine = subscriber.subscribe(&topic).await.expect("subscribe");
    let mut other = subscriber
        .subscribe(&format!("{prefix}:user:2"))
        .await
        .expect("subscribe");
    // Publishers skip building messages nobody could receive; a subscriber on another
    // process must never be taken for nobody.
    assert!(
        publisher.listened(&topic),
        "a topic with a subscriber was said to have none"
    );
    publisher.publish(&topic, "hello").await.expect("publish");
    let got = tokio::time::timeout(Duration::from_secs(5), mine.next())
        .await
        .expect("delivered in time");
    assert_eq!(got.as_deref(), Some("hello"));
    let leaked = tokio::time::timeout(Duration::from_millis(200), other.next()).await;
    assert!(
        leaked.is_err(),
        "another topic's subscriber received the event"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryBus, MemoryCache, MemoryRateLimiter};

    #[tokio::test]
    async fn memory_rate_limiter() {
        let l = MemoryRateLimiter::new();
        rate_limiter_counts_per_key(&l, "t").await;
        rate_limiter_adds_several_hits_at_once(&l, "t").await;
        rate_limiter_windows_expire(&l, "t").await;
    }

    #[tokio::test]
    async fn memory_cache() {
        cache_stores_expires_and_removes(&MemoryCache::new(), "t").await;
        cache_keeps_the_highest_ranked_value(&MemoryCache::new(), "t").await;
        cache_leases_go_to_one_claimant_until_they_expire(&MemoryCache::new(), "t").await;
    }

    #[tokio::test]
    async fn memory_bus() {
        let bus = MemoryBus::new();
        bus_delivers_to_subscribers_of_the_topic(&bus, &bus, "t").await;
    }

    #[tokio::test]
    async fn the_memory_bus_knows_when_nobody_listens() {
        let bus = MemoryBus::new();
        assert!(!bus.listened("user:1"));
        let subscription = bus.subscribe("user:1").await.expect("subscribe");
        assert!(bus.listened("user:1"));
        assert!(!bus.listened("user:2"));
        drop(subscription);
        assert!(!bus.listened("user:1"));
    }
}
