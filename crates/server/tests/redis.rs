//! Shared state in Redis: what every feature does while Redis is unreachable, and that it all
//! comes back without a restart. A private `redis-server` is started for the test.
//!
//! The policy (docs/architecture.md): login and signup rate limiting fails *closed* (503: a
//! brute-force guard must not silently vanish); the per-person API limit fails *open* (reads
//! and uploads go on); credential lookups fail *open* to the database;
//! live-event publishing is best effort (the write still succeeds); readiness goes false.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{expect_problem, minutes_ago, TestServer, PASSWORD};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::json;

struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start_on(port: u16) -> Option<RedisServer> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server installed (scripts/services installs it)");
        let mut server = RedisServer { child, port };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = server.child.try_wait() {
                return None; // port taken
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server.stop();
        None
    }

    fn start() -> RedisServer {
        for _ in 0..20 {
            let port = rand::thread_rng().gen_range(21_000..29_000);
            if let Some(s) = Self::start_on(port) {
                return s;
            }
        }
        panic!("could not start redis-server");
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_logins_fail_closed_reads_and_writes_go_on_and_all_recovers() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let s = TestServer::start_with(|c| {
        c.redis_url = Some(glucosync_server::config::SecretUrl::new(format!(
            "redis://127.0.0.1:{port}"
        )));
    })
    .await;
    let token = s.user("ana@example.org").await;
    let ready = s
        .client
        .get(s.url("/health/ready"))
        .send()
        .await
        .expect("send");
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.json::<serde_json::Value>().await.expect("json")["redis"],
        "ok"
    );

    redis.stop();
    let r = s
        .client
        .get(s.url("/health/ready"))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
    assert_eq!(
        s.client
            .get(s.url("/health"))
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::OK,
        "liveness does not flap"
    );
    let r = s
        .client
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"email": "ana@example.org", "password": PASSWORD}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let r = s
        .req(Method::POST, "/api/v1/readings", &token)
        .json(&json!({"time": minutes_ago(5), "value": 111}))
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "writes do not depend on Redis"
    );
    let r = s
        .req(Method::GET, "/api/v1/readings/latest", &token)
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "credential lookups fall back to the database"
    );

    let _redis = RedisServer::start_on(port).expect("Redis back on its port");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = s
            .client
            .post(s.url("/api/v1/auth/login"))
            .json(&json!({"email": "ana@example.org", "password": PASSWORD}))
            .send()
            .await
            .expect("send");
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "login did not recover within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        s.client
            .get(s.url("/health/ready"))
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_fails_at_once_on_every_replica() {
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    // Two replicas sharing one database are what a cluster is; on SQLite they share the file.
    let a = TestServer::start_with(|c| {
        c.redis_url = Some(glucosync_server::config::SecretUrl::new(url.clone()))
    })
    .await;
    let session = a.user("ana@example.org").await;
    let (id, token) = a.api_token(&session, &["read"]).await;
    let b = TestServer::start_sharing(&a, |c| {
        c.redis_url = Some(glucosync_server::config::SecretUrl::new(url.clone()))
    })
    .await;
    // Both replicas have the credential cached now.
    for s in [&a, &b] {
        assert_eq!(
            s.req(Method::GET, "/api/v1/readings", &token)
                .send()
                .await
                .expect("send")
                .status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        a.req(Method::DELETE, &format!("/api/v1/tokens/{id}"), &session)
            .send()
            .await
            .expect("send")
            .status(),
        StatusCode::NO_CONTENT
    );
    for s in [&b, &a] {
        let r = s
            .req(Method::GET, "/api/v1/readings", &token)
            .send()
            .await
            .expect("send");
        expect_problem(r, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_written_through_one_replica_reaches_a_stream_on_another() {
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let a = TestServer::start_with(|c| {
        c.redis_url = Some(glucosync_server::config::SecretUrl::new(url.clone()))
    })
    .await;
    let token = a.user("ana@example.org").await;
    let b = TestServer::start_sharing(&a, |c| {
        c.redis_url = Some(glucosync_server::config::SecretUrl::new(url.clone()))
    })
    .await;
    let other = a.user("bob@example.org").await;
    let mut events = b
        .req(Method::GET, "/api/v1/events", &token)
        .send()
        .await
        .expect("subscribe");
    assert_eq!(events.status(), StatusCode::OK);
    let first = tokio::time::timeout(Duration::from_secs(5), events.chunk())
        .await
        .expect("ready in time")
        .expect("chunk")
        .expect("data");
    assert!(String::from_utf8_lossy(&first).contains("ready"));
    // Another person's reading must not arrive on this stream; this person's must.
    a.req(Method::POST, "/api/v1/readings", &other)
        .json(&json!({"time": minutes_ago(10), "value": 99}))
        .send()
        .await
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut received = String::new();
    let mut n = 0;
    while !received.contains("\"type\":\"reading\"") {
        n += 1;
        a.req(Method::POST, "/api/v1/readings", &token)
            .json(&json!({"time": minutes_ago(n), "value": 120}))
            .send()
            .await
            .expect("send");
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(300), events.chunk()).await
        {
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(
            Instant::now() < deadline,
            "no event reached the other replica: {received}"
        );
    }
    assert!(received.contains("\"inserted\":1"), "{received}");
    assert!(received.contains("\"value\":120"), "{received}");
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_rate_limit_is_one_count_across_replicas_and_per_person() {
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let limited = |c: &mut glucosync_server::config::Config| {
        c.redis_url = Some(glucosync_server::config::SecretUrl::new(url.clone()));
        c.api_rate_limit_per_minute = 6;
    };
    let a = TestServer::start_with(limited).await;
    let b = TestServer::start_sharing(&a, limited).await;
    let ana = a.user("ana@example.org").await;
    let ben = a.user("ben@example.org").await;
    // Six requests, alternating between the replicas, are within the limit; the seventh is
    // refused on either replica.
    for n in 0..6 {
        let s = if n % 2 == 0 { &a } else { &b };
        let r = s
            .req(Method::GET, "/api/v1/readings/latest", &ana)
            .send()
            .await
            .expect("send");
        assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS, "request {n}");
    }
    for s in [&a, &b] {
        let r = s
            .req(Method::GET, "/api/v1/readings/latest", &ana)
            .send()
            .await
            .expect("send");
        let retry_after: u64 = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Retry-After");
        assert!((1..=60).contains(&retry_after));
        expect_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    }
    // Another person has a count of their own.
    let r = b
        .req(Method::GET, "/api/v1/readings/latest", &ben)
        .send()
        .await
        .expect("send");
    assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_are_counted_across_replicas_per_account_and_per_address() {
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    // Behind a proxy on loopback: the client's address is the one it forwards.
    let shared = |c: &mut glucosync_server::config::Config| {
        c.redis_url = Some(glucosync_server::config::SecretUrl::new(url.clone()));
        c.trusted_proxies = vec!["127.0.0.1/32".parse().expect("range")];
    };
    let a = TestServer::start_with(shared).await;
    let b = TestServer::start_sharing(&a, shared).await;
    a.user("ana@example.org").await;
    let attempt = |n: usize, email: String, from: String| {
        let s = if n.is_multiple_of(2) { &a } else { &b };
        async move {
            s.client
                .post(s.url("/api/v1/auth/login"))
                .header("x-forwarded-for", from)
                .json(&json!({"email": email, "password": "a wrong guess, again"}))
                .send()
                .await
                .expect("send")
                .status()
        }
    };
    // Per account: ten wrong guesses from ten addresses over both replicas; the eleventh is
    // refused whichever replica and address it comes from, the right password included.
    for n in 0..10 {
        let status = attempt(n, "ana@example.org".into(), format!("203.0.113.{n}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {n}");
    }
    for n in 10..12 {
        let status = attempt(n, "ana@example.org".into(), format!("203.0.113.{n}")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "guess {n}");
    }
    let r = b
        .client
        .post(b.url("/api/v1/auth/login"))
        .header("x-forwarded-for", "203.0.113.99")
        .json(&json!({"email": "ana@example.org", "password": PASSWORD}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    // Per address: fifty guesses at fifty accounts from one IPv6 /64, each from another of its
    // addresses, over both replicas; then the /64 is refused, another /64 is not.
    for n in 0..50 {
        let status = attempt(
            n,
            format!("p{n}@example.org"),
            format!("2001:db8:5:6::{n:x}"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {n}");
    }
    for n in 50..52 {
        let status = attempt(
            n,
            format!("p{n}@example.org"),
            format!("2001:db8:5:6::{n:x}"),
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "guess {n}");
    }
    let status = attempt(0, "q@example.org".into(), "2001:db8:5:7::1".into()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "another subscriber");
    b.stop().await;
    a.stop().await;
}
