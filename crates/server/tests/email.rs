//! Email against a real SMTP server (aiosmtpd, started here): invites and alert emails over
//! STARTTLS and over SMTPS, with the server's certificate trusted through `smtp_ca_file`;
//! a mail server that is down delays nothing and its deliveries wait to be retried.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use glucosync_server::config::SecretUrl;
use glucosync_testing::smtp::{SmtpServer, SmtpTls};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The text of a quoted-printable body as read (soft line breaks joined, `=3D` as `=`): the
/// only escapes ASCII text with long lines gets.
fn quoted_printable_text(mail: &str) -> String {
    mail.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

fn at(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("valid")
        .to_rfc3339()
}

async fn server_for(smtp_url: String, ca: Option<std::path::PathBuf>) -> TestServer {
    TestServer::start_with(move |c| {
        c.smtp_url = Some(SecretUrl::new(smtp_url));
        c.smtp_ca_file = ca;
        c.smtp_from = "GlucoSync Alerts <alerts@gs.example>".into();
        c.public_url = "https://gs.example".into();
    })
    .await
}

async fn invite(s: &TestServer, owner: &str, email: &str) -> Value {
    let r = s
        .req(Method::POST, "/api/v1/shares", owner)
        .json(&json!({"email": email, "role": "caregiver"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.expect("json")
}

async fn urgent_low(s: &TestServer, token: &str) {
    let now = chrono::Utc::now().timestamp_millis();
    let r = s
        .req(Method::POST, "/api/v1/readings", token)
        .json(&json!([
            {"time": at(now - 600_000), "value": 80},
            {"time": at(now - 300_000), "value": 62},
            {"time": at(now - 20_000), "value": 50},
        ]))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_and_alerts_are_emailed_over_starttls() {
    let smtp = SmtpServer::start(SmtpTls::StartTls);
    let s = server_for(
        format!("smtp://127.0.0.1:{}", smtp.port),
        Some(smtp.ca.clone()),
    )
    .await;
    let ana = s.user("ana@example.org").await;
    let ben = s.user("ben@example.org").await;
    let invited = invite(&s, &ana, "ben@example.org").await;
    assert_eq!(invited["emailed"], true);
    let token = invited["invite_token"].as_str().expect("token").to_owned();
    let mail = quoted_printable_text(
        &smtp
            .wait_for(Duration::from_secs(15), |m| {
                m.contains("To: ben@example.org")
            })
            .await,
    );
    assert!(mail.contains("invites you to GlucoSync"), "{mail}");
    assert!(
        mail.contains(&format!("https://gs.example/app/invite#{token}")),
        "{mail}"
    );
    assert!(
        mail.contains("From: \"GlucoSync Alerts\" <alerts@gs.example>"),
        "{mail}"
    );
    let r = s
        .req(Method::POST, "/api/v1/shares/accept", &ben)
        .json(&json!({"invite_token": token}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let ana_id = r.json::<Value>().await.expect("json")["owner_id"]
        .as_i64()
        .expect("owner");

    // Email alerts: Ana turns them on for herself, Ben for Ana.
    let r = s
        .req(Method::PATCH, "/api/v1/me/settings", &ana)
        .json(&json!({"alerts": {"email": true}}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .req(Method::PATCH, &format!("/api/v1/following/{ana_id}"), &ben)
        .json(&json!({"push": true, "email": true}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    urgent_low(&s, &ana).await;
    let own = smtp
        .wait_for(Duration::from_secs(15), |m| {
            m.contains("To: ana@example.org") && m.contains("Subject: GlucoSync: Urgent low")
        })
        .await;
    assert!(own.contains("50 mg/dL"), "{own}");
    // Named by its delivery, so that a copy sent again is recognisably the same message.
    assert!(
        own.lines().any(
            |l| l.to_ascii_lowercase().starts_with("message-id: <alert-")
                && l.ends_with("@gs.example>")
        ),
        "{own}"
    );
    smtp.wait_for(Duration::from_secs(15), |m| {
        m.contains("To: ben@example.org") && m.contains("Subject: GlucoSync: ana: Urgent low")
    })
    .await;
    // Once each: a new alert, not its repeats.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let urgent = smtp
        .messages()
        .iter()
        .filter(|m| m.contains("Urgent low"))
        .count();
    assert_eq!(urgent, 2);
    let log: Value = s
        .req(Method::GET, "/api/v1/alerts/deliveries", &ana)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let sent_emails = log["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|d| d["channel"] == "email" && d["status"] == "sent")
        .count();
    assert_eq!(sent_emails, 2, "{log}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtps_works_and_untrusted_or_absent_servers_block_nothing() {
    // SMTPS (TLS from the first byte).
    let smtps = SmtpServer::start(SmtpTls::Implicit);
    let s = server_for(
        format!("smtps://127.0.0.1:{}", smtps.port),
        Some(smtps.ca.clone()),
    )
    .await;
    let ana = s.user("ana@example.org").await;
    invite(&s, &ana, "cy@example.org").await;
    smtps
        .wait_for(Duration::from_secs(15), |m| {
            m.contains("To: cy@example.org")
        })
        .await;
    s.stop().await;

    // A certificate the server does not trust: nothing is sent in the clear or to it.
    let starttls = SmtpServer::start(SmtpTls::StartTls);
    let s = server_for(format!("smtp://127.0.0.1:{}", starttls.port), None).await;
    let ana = s.user("ana@example.org").await;
    invite(&s, &ana, "dan@example.org").await;

    // No mail server at all: the invite and the upload answer at once; the alert email
    // waits in the outbox with its error, to be retried.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let down = server_for(format!("smtp://127.0.0.1:{dead_port}"), None).await;
    let eve = down.user("eve@example.org").await;
    let started = Instant::now();
    let invited = invite(&down, &eve, "fay@example.org").await;
    assert_eq!(invited["emailed"], true);
    down.req(Method::PATCH, "/api/v1/me/settings", &eve)
        .json(&json!({"alerts": {"email": true}}))
        .send()
        .await
        .expect("send");
    urgent_low(&down, &eve).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log: Value = down
            .req(Method::GET, "/api/v1/alerts/deliveries", &eve)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let waiting = log["items"].as_array().expect("items").iter().any(|d| {
            d["channel"] == "email" && d["status"] == "pending" && !d["last_error"].is_null()
        });
        if waiting {
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        starttls.messages().is_empty(),
        "mail went to an untrusted server"
    );
    down.stop().await;
    s.stop().await;
}
