//! Fault tests on a real cluster (scripts/cluster): each puts a bounded write load through
//! HAProxy, breaks something, and checks afterwards that every acknowledged reading is in the
//! database exactly once. Run by `scripts/test` (`cargo test -p glucosync-cluster-tests --
//! --ignored --test-threads=1`); each prints what it measured.

use std::time::{Duration, Instant};

use glucosync_cluster_tests::{
    assert_acked_stored_once, failures, session, Cluster, Load, PASSWORD,
};
use serde_json::json;

const CLIENTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the cluster tooling; run by scripts/test"]
async fn killing_a_replica_costs_under_one_percent_of_requests_and_it_rejoins() {
    let cluster = Cluster::up("replica");
    let client = reqwest::Client::new();
    let token = session(&client, &cluster.url(), "replica@example.org").await;
    let load = Load::start(&cluster.url(), &token, CLIENTS, "replica");
    tokio::time::sleep(Duration::from_secs(3)).await;

    let killed_at = Instant::now();
    cluster.run(&["kill-engine", "1"]);
    cluster
        .wait_haproxy("engine-1", "DOWN", Duration::from_secs(15))
        .await;
    let down_after = killed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.run(&["start-engine", "1"]);
    cluster
        .wait_haproxy("engine-1", "UP", Duration::from_secs(20))
        .await;
    let rejoined_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (outcomes, acked) = load.stop().await;

    let failed = failures(&outcomes);
    let served_after_rejoin = reqwest::get(format!("{}/metrics", cluster.engine_url(1)))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
        .lines()
        .filter(|l| l.starts_with("glucosync_api_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/readings\",status=\"201\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum::<u64>();
    println!(
        "kill -9 replica: HAProxy marked it DOWN {:.2} s after the kill; {} of {} requests failed ({:.3} %); \
         the restarted replica served {} uploads in its first 3 s back",
        down_after.as_secs_f64(),
        failed.len(),
        outcomes.len(),
        100.0 * failed.len() as f64 / outcomes.len() as f64,
        served_after_rejoin
    );
    assert!(
        down_after < Duration::from_secs(5),
        "the seed's bound is 5 s"
    );
    assert!(
        failed.len() * 100 < outcomes.len(),
        "failed requests must stay under 1 %"
    );
    for f in &failed {
        assert!(
            f.at + Duration::from_millis(500) >= killed_at
                && f.at <= killed_at + down_after + Duration::from_secs(1),
            "a request failed outside the failover window: {f:?}"
        );
    }
    assert!(
        served_after_rejoin > 0,
        "the restarted replica rejoined the rotation"
    );
    assert!(rejoined_at > killed_at);
    assert_acked_stored_once(&cluster.primary().await, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the cluster tooling; run by scripts/test"]
async fn losing_the_redis_master_recovers_without_a_restart_within_15_s() {
    let cluster = Cluster::up("redis");
    let client = reqwest::Client::new();
    let token = session(&client, &cluster.url(), "redis@example.org").await;
    let load = Load::start(&cluster.url(), &token, CLIENTS, "redis");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let old_master = cluster.run(&["kill-redis-master"]);
    let killed_at = Instant::now();
    // Rate limits (login) work again: they fail closed while Redis has no master.
    let login_back = loop {
        let r = client
            .post(format!("{}/api/v1/auth/login", cluster.url()))
            .json(&json!({"email": "redis@example.org", "password": PASSWORD}))
            .send()
            .await
            .expect("send");
        if r.status().is_success() {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "login never recovered: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Pub/sub works again: an event written through replica 3 reaches a stream on replica 2.
    let mut stream = client
        .get(format!("{}/api/v1/events", cluster.engine_url(2)))
        .bearer_auth(&token)
        .send()
        .await
        .expect("stream");
    let mut seen = String::new();
    let mut n = 0;
    let bus_back = loop {
        n += 1;
        let time = chrono::Utc::now() - chrono::Duration::seconds(n);
        client
            .post(format!("{}/api/v1/readings", cluster.engine_url(3)))
            .bearer_auth(&token)
            .json(&json!({"time": time.to_rfc3339(), "value": 140, "device": "bus-probe"}))
            .send()
            .await
            .expect("send");
        if let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(250), stream.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        if seen.contains("\"type\":\"reading\"") {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "pub/sub never recovered: {seen}"
        );
    };
    let new_master = cluster.run(&["redis-master"]);
    let (outcomes, acked) = load.stop().await;
    let failed = failures(&outcomes);
    println!(
        "kill -9 Redis master {}: Sentinel promoted {}; login (rate limits) back after {:.2} s, pub/sub across replicas after {:.2} s; \
         {} of {} uploads failed meanwhile",
        old_master.trim(),
        new_master.lines().next().unwrap_or("?"),
        login_back.as_secs_f64(),
        bus_back.as_secs_f64(),
        failed.len(),
        outcomes.len()
    );
    assert_ne!(
        old_master.trim(),
        new_master.lines().nth(1).unwrap_or("").trim(),
        "a replica was promoted"
    );
    assert!(
        login_back < Duration::from_secs(15) && bus_back < Duration::from_secs(15),
        "the seed's bound is 15 s"
    );
    assert!(
        failed.len() * 100 < outcomes.len(),
        "uploads do not depend on Redis: {:?}",
        failed.first()
    );
    assert_acked_stored_once(&cluster.primary().await, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the cluster tooling; run by scripts/test"]
async fn a_postgres_outage_gives_clean_503s_and_the_app_follows_a_promoted_standby() {
    let cluster = Cluster::up("postgres");
    let client = reqwest::Client::new();
    let token = session(&client, &cluster.url(), "pg@example.org").await;
    let load = Load::start(&cluster.url(), &token, CLIENTS, "pg");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1. The primary stops and comes back.
    cluster.run(&["pg-stop"]);
    let stopped_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in 1..=3 {
        let ready = client
            .get(format!("{}/health/ready", cluster.engine_url(n)))
            .send()
            .await
            .expect("send");
        assert_eq!(
            ready.status().as_u16(),
            503,
            "replica {n} must not be ready without its database"
        );
        let live = client
            .get(format!("{}/health", cluster.engine_url(n)))
            .send()
            .await
            .expect("send");
        assert_eq!(
            live.status().as_u16(),
            200,
            "liveness does not depend on the database"
        );
    }
    cluster.run(&["pg-start"]);
    let restarted_at = Instant::now();
    let recovered = wait_for_success(&load, restarted_at).await;

    // 2. The primary is lost for good: promote the standby. The multi-host URL
    //    (target_session_attrs=read-write) finds the new primary by itself.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.run(&["pg-stop"]);
    let lost_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.run(&["pg-promote"]);
    let promoted_at = Instant::now();
    let followed = wait_for_success(&load, promoted_at).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (outcomes, acked) = load.stop().await;

    let failed = failures(&outcomes);
    let worst = outcomes.iter().map(|o| o.latency).max().unwrap_or_default();
    println!(
        "PostgreSQL primary stopped for {:.1} s: uploads worked again {:.2} s after it restarted; \
         primary lost, standby promoted {:.1} s later: uploads worked again {:.2} s after the promotion \
         ({:.2} s after the loss); {} of {} requests failed, all with 503; slowest answer {:.2} s",
        (restarted_at - stopped_at).as_secs_f64(),
        recovered.as_secs_f64(),
        (promoted_at - lost_at).as_secs_f64(),
        followed.as_secs_f64(),
        (promoted_at - lost_at + followed).as_secs_f64(),
        failed.len(),
        outcomes.len(),
        worst.as_secs_f64()
    );
    for f in &failed {
        assert_eq!(
            f.status,
            Some(503),
            "failures must be clean 503s, never 500s or hangs: {f:?}"
        );
        assert!(
            f.body.contains("urn:glucosync:problem:unavailable"),
            "problem+json from the app or HAProxy: {}",
            f.body
        );
    }
    assert!(
        worst < Duration::from_secs(8),
        "no request may hang: slowest {worst:?}"
    );
    assert!(
        followed < Duration::from_secs(30),
        "the seed's bound is 30 s"
    );
    let (new_primary, conn) =
        tokio_postgres::connect(&cluster.env["GS_CLUSTER_PG_STANDBY"], tokio_postgres::NoTls)
            .await
            .expect("promoted standby");
    tokio::spawn(conn);
    assert_acked_stored_once(&new_primary, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the cluster tooling; run by scripts/test"]
async fn patroni_promotes_the_standby_after_the_primary_crashes_within_30_s_losing_nothing() {
    let cluster = Cluster::up_with("patroni", &[("GS_CLUSTER_PG", "patroni")]);
    let client = reqwest::Client::new();
    let token = session(&client, &cluster.url(), "patroni@example.org").await;
    let load = Load::start(&cluster.url(), &token, CLIENTS, "patroni");
    tokio::time::sleep(Duration::from_secs(3)).await;

    let old_leader = cluster.run(&["pg-kill-leader"]);
    let killed_at = Instant::now();
    let back = wait_for_success(&load, killed_at).await;
    let new_leader = cluster.run(&["pg-leader"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (outcomes, acked) = load.stop().await;
    let failed = failures(&outcomes);
    let worst = outcomes.iter().map(|o| o.latency).max().unwrap_or_default();
    println!(
        "Patroni: primary pg{} killed (PostgreSQL and Patroni, kill -9); pg{} promoted; uploads worked again {:.2} s \
         after the crash; {} of {} requests failed, all with 503; slowest answer {:.2} s",
        old_leader.trim(),
        new_leader.trim(),
        back.as_secs_f64(),
        failed.len(),
        outcomes.len(),
        worst.as_secs_f64()
    );
    assert_ne!(
        old_leader.trim(),
        new_leader.trim(),
        "the standby took over"
    );
    assert!(back < Duration::from_secs(30), "the seed's bound is 30 s");
    for f in &failed {
        assert_eq!(f.status, Some(503), "failures must be clean 503s: {f:?}");
    }
    // Synchronous replication: nothing acknowledged was lost with the crashed primary.
    assert_acked_stored_once(&cluster.primary().await, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the cluster tooling; run by scripts/test"]
async fn a_rolling_restart_of_every_replica_fails_no_request() {
    let cluster = Cluster::up("rolling");
    let client = reqwest::Client::new();
    let token = session(&client, &cluster.url(), "rolling@example.org").await;
    let load = Load::start(&cluster.url(), &token, CLIENTS, "rolling");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    for n in 1..=3 {
        // maxSurge 1 / maxUnavailable 0 in spirit: one replica at a time, back in rotation
        // before the next goes. SIGTERM drains first (readiness fails, requests still served).
        cluster.run(&["stop-engine", &n.to_string()]);
        cluster.run(&["start-engine", &n.to_string()]);
        cluster
            .wait_haproxy(&format!("engine-{n}"), "UP", Duration::from_secs(20))
            .await;
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (outcomes, acked) = load.stop().await;
    let failed = failures(&outcomes);
    println!(
        "rolling restart of 3 replicas in {:.1} s under load: {} of {} requests failed",
        took.as_secs_f64(),
        failed.len(),
        outcomes.len()
    );
    assert!(
        failed.is_empty(),
        "a rolling restart must fail no request: {:?}",
        failed.first()
    );
    assert_acked_stored_once(&cluster.primary().await, &acked).await;
}

/// Time from `since` until the load's first successful upload sent after `since`.
async fn wait_for_success(load: &Load, since: Instant) -> Duration {
    loop {
        let ok = load
            .outcomes
            .lock()
            .expect("lock")
            .iter()
            .filter(|o| o.at >= since && o.status.is_some_and(|s| (200..300).contains(&s)))
            .map(|o| o.at + o.latency)
            .min();
        if let Some(t) = ok {
            return t - since;
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "uploads never recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
