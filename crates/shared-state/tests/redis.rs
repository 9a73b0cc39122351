//! The shared-state conformance checks on a real Redis (`GS_TEST_REDIS_URL`, default the local
//! server; `scripts/test` makes sure it runs). Keys are prefixed per run so runs do not meet.

use glucosync_shared_state::conformance::*;
use glucosync_shared_state::{RedisBus, RedisCache, RedisConnection, RedisRateLimiter};

fn url() -> String {
    std::env::var("GS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn prefix() -> String {
    format!(
        "test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

#[tokio::test]
async fn redis_rate_limiter() {
    let limiter = RedisRateLimiter::new(RedisConnection::open(&url()).expect("url"));
    let p = prefix();
    rate_limiter_counts_per_key(&limiter, &p).await;
    rate_limiter_adds_several_hits_at_once(&limiter, &p).await;
    rate_limiter_windows_expire(&limiter, &p).await;
}

#[tokio::test]
async fn redis_rate_limits_are_shared_by_replicas() {
    // Two replicas, each with its own connection: the limit counts hits on both.
    let a = RedisRateLimiter::new(RedisConnection::open(&url()).expect("url"));
    let b = RedisRateLimiter::new(RedisConnection::open(&url()).expect("url"));
    let key = format!("{}:shared", prefix());
    let window = std::time::Duration::from_secs(60);
    use glucosync_shared_state::{RateDecision, RateLimiter};
    assert!(matches!(
        a.hit(&key, 2, window).await.expect("hit"),
        RateDecision::Allowed { .. }
    ));
    assert!(matches!(
        b.hit(&key, 2, window).await.expect("hit"),
        RateDecision::Allowed { .. }
    ));
    assert!(matches!(
        a.hit(&key, 2, window).await.expect("hit"),
        RateDecision::Limited { .. }
    ));
}

#[tokio::test]
async fn redis_cache() {
    let cache = RedisCache::new(RedisConnection::open(&url()).expect("url"));
    cache_stores_expires_and_removes(&cache, &prefix()).await;
    cache_keeps_the_highest_ranked_value(&cache, &prefix()).await;
    cache_leases_go_to_one_claimant_until_they_expire(&cache, &prefix()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bus_carries_events_between_replicas() {
    let publisher = RedisBus::new(RedisConnection::open(&url()).expect("url"));
    let subscriber = RedisBus::new(RedisConnection::open(&url()).expect("url"));
    bus_delivers_to_subscribers_of_the_topic(&publisher, &subscriber, &prefix()).await;
}

#[tokio::test]
async fn unreachable_redis_is_reported_not_hung() {
    let limiter = RedisRateLimiter::new(RedisConnection::open("redis://127.0.0.1:1").expect("url"));
    use glucosync_shared_state::RateLimiter;
    let started = std::time::Instant::now();
    assert!(limiter
        .hit("k", 1, std::time::Duration::from_secs(1))
        .await
        .is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// Replicas subscribed to this channel in Redis (PUBSUB NUMSUB).
async fn subscribers_in_redis(channel: &str) -> i64 {
    let client = redis::Client::open(url()).expect("url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut c)
        .await
        .expect("numsub");
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_subscribes_in_redis_only_while_someone_follows_the_topic() {
    use futures::StreamExt;
    use glucosync_shared_state::EventBus;
    let bus = RedisBus::new(RedisConnection::open(&url()).expect("url"));
    let topic = format!("{}:user:7", prefix());
    let channel = format!("glucosync:bus:{topic}");
    assert_eq!(subscribers_in_redis(&channel).await, 0);
    let mut first = bus.subscribe(&topic).await.expect("subscribe");
    let second = bus.subscribe(&topic).await.expect("subscribe");
    // One subscription per replica, however many follow the topic there.
    assert_eq!(subscribers_in_redis(&channel).await, 1);
    drop(second);
    let publisher = RedisBus::new(RedisConnection::open(&url()).expect("url"));
    publisher
        .publish(&topic, "still here")
        .await
        .expect("publish");
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), first.next())
        .await
        .expect("delivered in time");
    assert_eq!(got.as_deref(), Some("still here"));
    drop(first);
    // The last one gone, the replica leaves the channel (soon: the task does it).
    let mut left = false;
    for _ in 0..50 {
        if subscribers_in_redis(&channel).await == 0 {
            left = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(left, "still subscribed after the last subscriber left");
    // And joins again for a new one.
    let mut again = bus.subscribe(&topic).await.expect("subscribe");
    assert_eq!(subscribers_in_redis(&channel).await, 1);
    publisher.publish(&topic, "back").await.expect("publish");
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), again.next())
        .await
        .expect("delivered in time");
    assert_eq!(got.as_deref(), Some("back"));
}

/// A Sentinel with a password of its own (`requirepass`), watching the test Redis: started
/// from `redis-server --sentinel` (the same binary), killed on drop.
struct PasswordedSentinel {
    child: std::process::Child,
    port: u16,
    master: String,
    _dir: tempfile::TempDir,
}

impl PasswordedSentinel {
    fn start(password: &str) -> PasswordedSentinel {
        let redis = url();
        let address = redis.trim_start_matches("redis://").trim_end_matches('/');
        let (host, port) = address
            .rsplit_once(':')
            .expect("GS_TEST_REDIS_URL host:port");
        let dir = tempfile::tempdir().expect("temp dir");
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        let sentinel_port = free.local_addr().expect("addr").port();
        drop(free);
        let master = format!("gs-test-{}", std::process::id());
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sentinel_port}\nbind 127.0.0.1\ndir {}\nrequirepass {password}\n\
                 sentinel monitor {master} {host} {port} 1\n",
                dir.path().display()
            ),
        )
        .expect("write sentinel.conf");
        let child = std::process::Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server --sentinel");
        let sentinel = PasswordedSentinel {
            child,
            port: sentinel_port,
            master,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", sentinel_port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "Sentinel did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        sentinel
    }
}

impl Drop for PasswordedSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_sentinel_with_its_own_password_is_asked_with_sentinel_password() {
    let sentinel = PasswordedSentinel::start("sentinel-secret");
    let base = format!(
        "redis+sentinel://127.0.0.1:{}/{}",
        sentinel.port, sentinel.master
    );
    use glucosync_shared_state::Cache;
    let key = format!("{}:sentinel", prefix());
    let ttl = std::time::Duration::from_secs(60);

    let with = RedisCache::new(
        RedisConnection::open(&format!("{base}?sentinel_password=sentinel-secret")).expect("url"),
    );
    with.put(&key, "found through Sentinel", ttl)
        .await
        .expect("the master, found with the Sentinel's password");
    assert_eq!(
        with.get(&key).await.expect("get").as_deref(),
        Some("found through Sentinel")
    );

    // Without its password the Sentinel refuses to say who the master is.
    let without = RedisCache::new(RedisConnection::open(&base).expect("url"));
    assert!(without.get(&key).await.is_err(), "NOAUTH from Sentinel");
    let wrong = RedisCache::new(
        RedisConnection::open(&format!("{base}?sentinel_password=guess")).expect("url"),
    );
    assert!(wrong.get(&key).await.is_err(), "wrong Sentinel password");

    // A parameter the engine does not know is a configuration mistake, said at startup.
    let err = RedisConnection::open(&format!("{base}?sentinel_pasword=x"))
        .err()
        .expect("unknown parameter")
        .to_string();
    assert!(err.contains("sentinel_password"), "{err}");
    with.remove(&[key]).await.expect("clean up");
}
