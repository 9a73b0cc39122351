//! Alerts and live events across the replicas of a real cluster (scripts/cluster): an event
//! written through one replica reaches sockets on the others; an urgent low uploaded to the
//! replica that runs the alert timers, killed right after answering 201, still raises exactly
//! one alert, from durable state, on a caregiver's socket elsewhere, once the timers' leases
//! have moved; an urgent low committed by a replica that died before evaluating anything is
//! raised by the replica the timers move to; a revocation closes the follower's socket on
//! another replica.

use std::time::{Duration, Instant};

use glucosync_cluster_tests::{session, Cluster};
use glucosync_store::Store;
use glucosync_testing::live::{self, CloseCode};
use glucosync_testing::push::{start_push_service, Device};
use glucosync_testing::smtp::{SmtpServer, SmtpTls};
use serde_json::{json, Value};

const MIN: i64 = 60_000;
const SHARDS: i64 = 16;

fn at(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("valid")
        .to_rfc3339()
}

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// `glucosync_alert_shards_held` of an engine (0 if it does not answer).
async fn shards_held(client: &reqwest::Client, engine_url: &str) -> i64 {
    let Ok(r) = client.get(format!("{engine_url}/metrics")).send().await else {
        return 0;
    };
    r.text()
        .await
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("glucosync_alert_shards_held "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until `engines` hold all the shards between them; returns how long it took and
/// the engine holding the most.
async fn wait_all_shards_held(
    client: &reqwest::Client,
    cluster: &Cluster,
    engines: &[usize],
    within: Duration,
) -> (Duration, usize) {
    let start = Instant::now();
    loop {
        let mut held = Vec::new();
        for &n in engines {
            held.push((shards_held(client, &cluster.engine_url(n)).await, n));
        }
        if held.iter().map(|h| h.0).sum::<i64>() == SHARDS {
            let most = held.iter().max().map(|h| h.1).expect("engines");
            return (start.elapsed(), most);
        }
        assert!(start.elapsed() < within, "shards held: {held:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `owner` invites `email` (session `follower`) as a caregiver, who accepts; the owner's id.
async fn share(
    client: &reqwest::Client,
    base: &str,
    owner: &str,
    follower: &str,
    email: &str,
) -> i64 {
    let invite: Value = client
        .post(format!("{base}/api/v1/shares"))
        .bearer_auth(owner)
        .json(&json!({"email": email, "role": "caregiver"}))
        .send()
        .await
        .expect("invite")
        .json()
        .await
        .expect("json");
    let share: Value = client
        .post(format!("{base}/api/v1/shares/accept"))
        .bearer_auth(follower)
        .json(&json!({"invite_token": invite["invite_token"]}))
        .send()
        .await
        .expect("accept")
        .json()
        .await
        .expect("json");
    share["owner_id"].as_i64().expect("owner")
}

/// The next `raised` urgent low of `person` on the socket, within `within`.
async fn urgent_low_raised(socket: &mut live::Socket, person: i64, within: Duration) {
    let start = Instant::now();
    loop {
        let left = within.saturating_sub(start.elapsed());
        let event = live::next_of(socket, &["alert"], left).await;
        if event["alert"]["kind"] == "urgent_low"
            && event["reason"] == "raised"
            && event["alert"]["person"] == person
        {
            assert_eq!(event["audible"], true);
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the cluster tooling; run by scripts/test"]
async fn alerts_and_live_events_cross_replicas_and_outlive_the_replica_that_took_the_reading() {
    // The three channels: WebSocket, Web Push (a local push service that decrypts), email
    // (a local SMTP server).
    let (push_base, push_service) = start_push_service().await;
    let smtp = SmtpServer::start(SmtpTls::None);
    let smtp_url = format!("smtp://127.0.0.1:{}?tls=none", smtp.port);
    let cluster = Cluster::up_with(
        "live",
        &[
            ("GLUCOSYNC_PUSH_ALLOW_LOOPBACK", "true"),
            ("GLUCOSYNC_SMTP_URL", &smtp_url),
        ],
    );
    let client = reqwest::Client::new();
    let base = cluster.url();
    let ana = session(&client, &base, "ana@example.org").await;
    let ben = session(&client, &base, "ben@example.org").await;
    let ana_id = share(&client, &base, &ana, &ben, "ben@example.org").await;
    let bens_phone = Device::new("ben-phone");
    let r = client
        .post(format!("{base}/api/v1/push/subscriptions"))
        .bearer_auth(&ben)
        .json(&bens_phone.subscription(&push_base))
        .send()
        .await
        .expect("subscribe");
    assert_eq!(r.status().as_u16(), 201);
    let r = client
        .patch(format!("{base}/api/v1/following/{ana_id}"))
        .bearer_auth(&ben)
        .json(&json!({"push": true, "email": true}))
        .send()
        .await
        .expect("channels");
    assert_eq!(r.status().as_u16(), 200);

    // The engine running the alert timers (all shards start on whichever renewed first).
    let (_, holder) =
        wait_all_shards_held(&client, &cluster, &[1, 2, 3], Duration::from_secs(30)).await;
    let others: Vec<usize> = (1..=3).filter(|&n| n != holder).collect();
    let within = Duration::from_secs(10);
    let mut follower = live::open(&addr(&cluster.engine_url(others[0])), &ben, "", None).await;
    live::next_of(&mut follower, &["hello"], within).await;
    live::send(
        &mut follower,
        json!({"type": "subscribe", "person": ana_id}),
    )
    .await;
    assert_eq!(
        live::next_of(&mut follower, &["subscribed", "error"], within).await["type"],
        "subscribed"
    );
    let mut own = live::open(&addr(&cluster.engine_url(others[1])), &ana, "", None).await;
    live::next_of(&mut own, &["hello"], within).await;

    // An upload through the third replica reaches both sockets.
    let now = chrono::Utc::now().timestamp_millis();
    let hour: Vec<Value> = (0..13)
        .map(|i| json!({"time": at(now - 5 * MIN - (12 - i) * 5 * MIN), "value": 110}))
        .collect();
    let r = client
        .post(format!("{}/api/v1/readings", cluster.engine_url(holder)))
        .bearer_auth(&ana)
        .json(&hour)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status().as_u16(), 201);
    for socket in [&mut follower, &mut own] {
        let reading = live::next_of(socket, &["reading"], within).await;
        assert_eq!(reading["inserted"], 13);
    }

    // An urgent low to the timers' replica, killed as soon as it has answered.
    let r = client
        .post(format!("{}/api/v1/readings", cluster.engine_url(holder)))
        .bearer_auth(&ana)
        .json(&json!({"time": at(now - 20_000), "value": 50}))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status().as_u16(), 201);
    let killed_at = Instant::now();
    let killed_wall_ms = chrono::Utc::now().timestamp_millis();
    cluster.run(&["kill-engine", &holder.to_string()]);
    urgent_low_raised(&mut follower, ana_id, Duration::from_secs(90)).await;
    let raised_after = killed_at.elapsed();
    let (handover, _) =
        wait_all_shards_held(&client, &cluster, &others, Duration::from_secs(60)).await;
    let handover = handover + raised_after;
    // Exactly one: no second raise on the caregiver's socket, one on Ana's own, one urgent
    // low in the book.
    async fn urgent_raises(socket: &mut live::Socket) -> usize {
        live::all_of(socket, &["alert"], Duration::from_secs(3))
            .await
            .iter()
            .filter(|e| e["alert"]["kind"] == "urgent_low" && e["reason"] == "raised")
            .count()
    }
    assert_eq!(urgent_raises(&mut follower).await, 0);
    assert_eq!(urgent_raises(&mut own).await, 1);
    // On the caregiver's phone by Web Push, and by email: once each.
    let pushed = || {
        bens_phone
            .messages(&push_service)
            .iter()
            .filter(|(_, m)| m["kind"] == "urgent_low" && m["reason"] == "raised")
            .count()
    };
    let emailed = || {
        smtp.messages()
            .iter()
            .filter(|m| m.contains("To: ben@example.org") && m.contains("ana: Urgent low"))
            .count()
    };
    let channels_deadline = killed_at + Duration::from_secs(90);
    while pushed() == 0 || emailed() == 0 {
        assert!(
            Instant::now() < channels_deadline,
            "pushed {}, emailed {}",
            pushed(),
            emailed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // When the last of them went out, by the delivery log (the same machine's clock).
    let log: Value = client
        .get(format!("{base}/api/v1/alerts/deliveries"))
        .bearer_auth(&ana)
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("json");
    let last_done_ms = log["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|d| d["message"]["kind"] == "urgent_low" && d["recipient_id"] != ana_id)
        .filter_map(|d| chrono::DateTime::parse_from_rfc3339(d["done_at"].as_str()?).ok())
        .map(|t| t.timestamp_millis())
        .max()
        .expect("delivered");
    let all_channels_after =
        Duration::from_millis(u64::try_from(last_done_ms - killed_wall_ms).unwrap_or(0));
    assert!(all_channels_after < Duration::from_secs(60));
    // One alert. Its notifications are sent at least once: a replica killed between sending
    // and recording its sends leaves them to be sent again after the claim's hold (15 s) —
    // a second copy rather than none. Push copies carry the same tag, so a phone replaces
    // the notification instead of showing it twice.
    let tags: std::collections::BTreeSet<String> = bens_phone
        .messages(&push_service)
        .iter()
        .filter(|(_, m)| m["kind"] == "urgent_low" && m["reason"] == "raised")
        .filter_map(|(_, m)| m["tag"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(tags.len(), 1, "{tags:?}");
    let (push_copies, email_copies) = (pushed(), emailed());
    assert!((1..=2).contains(&push_copies) && (1..=2).contains(&email_copies));
    let message_ids: std::collections::BTreeSet<String> = smtp
        .messages()
        .iter()
        .filter(|m| m.contains("To: ben@example.org") && m.contains("ana: Urgent low"))
        .filter_map(|m| {
            m.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(message_ids.len(), 1, "{message_ids:?}");
    let list: Value = client
        .get(format!("{base}/api/v1/alerts"))
        .bearer_auth(&ana)
        .send()
        .await
        .expect("alerts")
        .json()
        .await
        .expect("json");
    let urgent: Vec<&Value> = list["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["kind"] == "urgent_low")
        .collect();
    assert_eq!(urgent.len(), 1, "{list}");

    // The same from durable state alone: Cy's urgent low is committed as by a replica that
    // died before evaluating it (the store call every replica makes before answering 201),
    // and the replica now running the timers is killed too. The restarted first victim,
    // holding no shards, carries the caregiver's socket; whoever takes the shards raises it.
    cluster.run(&["start-engine", &holder.to_string()]);
    cluster
        .wait_haproxy(&format!("engine-{holder}"), "UP", Duration::from_secs(30))
        .await;
    let cy = session(&client, &base, "cy@example.org").await;
    let cy_id = share(&client, &base, &cy, &ben, "ben@example.org").await;
    let (_, second_holder) =
        wait_all_shards_held(&client, &cluster, &[1, 2, 3], Duration::from_secs(30)).await;
    assert_ne!(second_holder, holder);
    let mut watcher = live::open(&addr(&cluster.engine_url(holder)), &ben, "", None).await;
    live::next_of(&mut watcher, &["hello"], within).await;
    live::send(&mut watcher, json!({"type": "subscribe", "person": cy_id})).await;
    live::next_of(&mut watcher, &["subscribed"], within).await;
    let store = glucosync_store_postgres::PostgresStore::open(
        &glucosync_store_postgres::PostgresOptions::new(&cluster.env["GS_CLUSTER_PG_BOTH"]),
    )
    .expect("store");
    let now = chrono::Utc::now().timestamp_millis();
    let low = [60.0, 54.0, 50.0]
        .iter()
        .enumerate()
        .map(|(i, v)| glucosync_domain::readings::NewReading {
            time: glucosync_domain::Timestamp::from_utc_ms(now - (2 - i as i64) * 5 * MIN),
            value: glucosync_domain::GlucoseMgdl::from_stored(*v),
            kind: glucosync_domain::readings::ReadingKind::Cgm,
            trend: None,
            device: String::new(),
            extra: None,
        })
        .collect();
    store
        .insert_readings(cy_id, low, now)
        .await
        .expect("insert");
    let killed_at = Instant::now();
    cluster.run(&["kill-engine", &second_holder.to_string()]);
    urgent_low_raised(&mut watcher, cy_id, Duration::from_secs(90)).await;
    let durable_after = killed_at.elapsed();
    assert!(durable_after < Duration::from_secs(60));
    assert_eq!(urgent_raises(&mut watcher).await, 0);
    store.close().await;

    // Revoked through HAProxy: the follower's socket on another replica closes.
    let shares: Value = client
        .get(format!("{base}/api/v1/shares"))
        .bearer_auth(&cy)
        .send()
        .await
        .expect("shares")
        .json()
        .await
        .expect("json");
    let share_id = shares[0]["id"].as_i64().expect("id");
    let revoked_at = Instant::now();
    let r = client
        .delete(format!("{base}/api/v1/shares/{share_id}"))
        .bearer_auth(&cy)
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status().as_u16(), 204);
    live::next_of(&mut watcher, &["share_revoked"], within).await;
    assert_eq!(
        live::closed_with(&mut watcher, within).await,
        Some(CloseCode::from(4403))
    );
    println!(
        "alerts across replicas: the urgent low reached a caregiver's socket on another replica {:.1} s \
         after its replica was killed, their phone (Web Push, {} cop(ies)) and inbox (email, {}) {:.1} s after \
         (timers handed over within {:.1} s; bound 60 s); an urgent low \
         nobody evaluated was raised {:.1} s after the timers' replica was killed (bound 60 s); \
         the revoked follower's socket closed {:.2} s after the revocation",
        raised_after.as_secs_f64(),
        push_copies,
        email_copies,
        all_channels_after.as_secs_f64(),
        handover.as_secs_f64(),
        durable_after.as_secs_f64(),
        revoked_at.elapsed().as_secs_f64()
    );
    assert!(raised_after < Duration::from_secs(60));
}
