//! AI summaries and questions against a local server speaking OpenAI's wire format: opt-in,
//! only aggregates sent, the dose check, retries, the daily limit and the circuit breaker.

mod common;

use common::{expect_problem, TestServer};
use glucosync_domain::Timestamp;
use glucosync_testing::openai::{FakeOpenAi, Reply};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SUMMARY: &str = "Your time in range rose this week; the early-morning lows are worth a chat with your care team.";

async fn setup(limit: u32) -> (FakeOpenAi, TestServer, String) {
    let fake = FakeOpenAi::start(SUMMARY).await;
    let base = fake.base_url.clone();
    let s = TestServer::start_with(move |c| {
        c.openai_api_key = Some(glucosync_server::config::Secret::new("sk-test-key"));
        c.openai_base_url = base;
        c.openai_model = "gpt-test".into();
        c.openai_daily_limit = limit;
    })
    .await;
    let ana = s.user("ana.private@example.org").await;
    // A name, readings with lows, a meal, and a note that must never leave.
    let r = s
        .req(Method::PATCH, "/api/v1/me", &ana)
        .json(&json!({"display_name": "Ana Hidalgo-Private"}))
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success());
    let now = glucosync_server::state::now_ms();
    let readings: Vec<Value> = (1..10 * 288)
        .map(|i| {
            let t = now - i * 300_000;
            let value = if i % 288 < 8 { 60 } else { 130 };
            json!({"time": Timestamp::from_utc_ms(t).to_rfc3339_utc(), "value": value})
        })
        .collect();
    let r = s
        .req(Method::POST, "/api/v1/readings", &ana)
        .json(&readings)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .req(Method::POST, "/api/v1/treatments", &ana)
        .json(&json!([
            {"time": Timestamp::from_utc_ms(now - 3_600_000).to_rfc3339_utc(), "kind": "carbs", "grams": 45},
            {"time": Timestamp::from_utc_ms(now - 3_000_000).to_rfc3339_utc(), "kind": "note", "text": "dinner at Carla Mendes' place"},
        ]))
        .send()
        .await
        .expect("send");
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    (fake, s, ana)
}

async fn opt_in(s: &TestServer, token: &str) {
    let r = s
        .req(Method::PATCH, "/api/v1/me/settings", token)
        .json(&json!({"ai_insights": true}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
}

async fn summary(s: &TestServer, token: &str) -> reqwest::Response {
    s.req(Method::POST, "/api/v1/insights/summary", token)
        .send()
        .await
        .expect("send")
}

async fn metrics(s: &TestServer) -> String {
    s.client
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn summaries_need_the_persons_consent_and_send_only_aggregates() {
    let (fake, s, ana) = setup(20).await;
    let status: Value = s
        .req(Method::GET, "/api/v1/insights/ai", &ana)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        status,
        json!({"available": true, "opted_in": false, "daily_limit": 20})
    );
    expect_problem(
        summary(&s, &ana).await,
        StatusCode::FORBIDDEN,
        "ai_not_opted_in",
    )
    .await;
    assert!(fake.requests().is_empty(), "nothing sent without consent");

    opt_in(&s, &ana).await;
    let r = summary(&s, &ana).await;
    assert_eq!(r.status(), StatusCode::OK);
    let answer: Value = r.json().await.expect("json");
    assert_eq!(answer["text"], SUMMARY);
    assert_eq!(answer["model"], "gpt-test");
    assert_eq!(answer["withheld"], false);
    assert!(answer["prompt_tokens"].as_u64().expect("tokens") > 0);

    let sent = fake.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].authorization, "Bearer sk-test-key");
    assert_eq!(sent[0].body["model"], "gpt-test");
    assert_eq!(sent[0].body["messages"][0]["role"], "system");
    let text = sent[0].text();
    assert!(text.contains("Never give dosing advice"), "{text}");
    assert!(text.contains("time in range"), "{text}");
    assert!(text.contains("Patterns found:\n- Lows between"), "{text}");
    for secret in [
        "ana.private",
        "example.org",
        "Hidalgo",
        "Carla",
        "Mendes",
        "dinner at",
    ] {
        assert!(!text.contains(secret), "{secret} was sent: {text}");
    }
    let me: Value = s
        .req(Method::GET, "/api/v1/me", &ana)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(!text.contains(&format!("\"id\":{}", me["id"])));
    let m = metrics(&s).await;
    assert!(
        m.contains("glucosync_openai_api_calls_total{outcome=\"ok\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("glucosync_openai_tokens_total{kind=\"prompt\"}"),
        "{m}"
    );

    // Questions: identifiers typed into them are removed before sending; length is bounded.
    let r = s
        .req(Method::POST, "/api/v1/insights/ask", &ana)
        .json(&json!({"question": "Why am I, Hidalgo-Private, low at night? Write to me at ana.private@example.org or 0171 234 567"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let asked = fake.requests()[1].text();
    assert!(
        asked.contains("Why am I, [removed] low at night?"),
        "{asked}"
    );
    for gone in ["ana.private", "0171", "234 567", "Hidalgo"] {
        assert!(!asked.contains(gone), "{gone} in {asked}");
    }
    let r = s
        .req(Method::POST, "/api/v1/insights/ask", &ana)
        .json(&json!({"question": "x".repeat(501)}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn a_reply_that_names_a_dose_is_withheld() {
    let (fake, s, ana) = setup(20).await;
    opt_in(&s, &ana).await;
    fake.script([Reply::Text(
        "Take 2 units of insulin before breakfast.".into(),
    )]);
    let answer: Value = s
        .req(Method::POST, "/api/v1/insights/ask", &ana)
        .json(&json!({"question": "How much insulin should I take for breakfast?"}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["withheld"], true);
    let text = answer["text"].as_str().expect("text");
    assert!(
        text.contains("never gives dosing advice") && !text.contains("2 units"),
        "{text}"
    );
    assert!(metrics(&s)
        .await
        .contains("glucosync_ai_replies_withheld_total 1"));
}

#[tokio::test]
async fn rate_limits_are_retried_and_the_daily_limit_holds() {
    let (fake, s, ana) = setup(2).await;
    opt_in(&s, &ana).await;
    // A 429 (Retry-After: 1) then an answer: one summary, two requests.
    fake.script([Reply::RateLimited]);
    assert_eq!(summary(&s, &ana).await.status(), StatusCode::OK);
    assert_eq!(fake.requests().len(), 2);
    let m = metrics(&s).await;
    assert!(
        m.contains("glucosync_openai_api_calls_total{outcome=\"rate_limited\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("glucosync_openai_api_calls_total{outcome=\"ok\"} 1"),
        "{m}"
    );
    // Two a day here: the third is refused before anything is sent.
    assert_eq!(summary(&s, &ana).await.status(), StatusCode::OK);
    let r = summary(&s, &ana).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn a_failing_service_opens_the_circuit_breaker() {
    let (fake, s, ana) = setup(20).await;
    opt_in(&s, &ana).await;
    // Three requests fail after their three attempts each (500s): the breaker opens.
    fake.script(std::iter::repeat_n(Reply::ServerError, 9));
    for _ in 0..3 {
        let r = summary(&s, &ana).await;
        expect_problem(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    }
    assert_eq!(fake.requests().len(), 9);
    // Open: refused at once, nothing sent.
    let r = summary(&s, &ana).await;
    expect_problem(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert_eq!(fake.requests().len(), 9);
    let m = metrics(&s).await;
    assert!(
        m.contains("glucosync_openai_api_calls_total{outcome=\"server_error\"} 9"),
        "{m}"
    );
    assert!(
        m.contains("glucosync_openai_api_calls_total{outcome=\"circuit_open\"} 1"),
        "{m}"
    );
    // A wrong key is not retried.
    let (fake, s, ana) = setup(20).await;
    opt_in(&s, &ana).await;
    fake.script([Reply::Unauthorized]);
    expect_problem(
        summary(&s, &ana).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn without_a_configured_service_there_are_patterns_only() {
    let s = TestServer::start().await;
    let ana = s.user("ana@example.org").await;
    let status: Value = s
        .req(Method::GET, "/api/v1/insights/ai", &ana)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(status["available"], false);
    opt_in(&s, &ana).await;
    expect_problem(summary(&s, &ana).await, StatusCode::NOT_FOUND, "not_found").await;
}

/// The server-sent events of a streamed reply: (event, data) pairs.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str(v.trim()).ok();
                }
            }
            Some((name?, data?))
        })
        .collect()
}

#[tokio::test]
async fn streamed_replies_come_in_sentences_and_a_dose_never_reaches_the_app() {
    let (fake, s, ana) = setup(20).await;
    opt_in(&s, &ana).await;
    let r = s
        .req(Method::POST, "/api/v1/insights/summary?stream=true", &ana)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .expect("type")
        .starts_with("text/event-stream"));
    let got = events(&r.text().await.expect("body"));
    let text: String = got
        .iter()
        .filter(|(n, _)| n == "delta")
        .map(|(_, d)| d["text"].as_str().expect("text"))
        .collect();
    assert_eq!(text, SUMMARY);
    let (last, done) = got.last().expect("events");
    assert_eq!(last, "done");
    assert_eq!(done["withheld"], false);
    assert!(
        done["completion_tokens"].as_u64().expect("tokens") > 0,
        "{done}"
    );
    assert_eq!(fake.requests()[0].body["stream"], true);

    // A dose in the middle: the sentences before it arrive, the dose and the rest never do.
    fake.script([Reply::Text(
        "Your week went well. Take 4 units before dinner. See your team.".into(),
    )]);
    let r = s
        .req(Method::POST, "/api/v1/insights/ask?stream=true", &ana)
        .json(&json!({"question": "How much insulin at dinner?"}))
        .send()
        .await
        .expect("send");
    let body = r.text().await.expect("body");
    assert!(
        !body.contains("4 units") && !body.contains("See your team"),
        "{body}"
    );
    let got = events(&body);
    assert_eq!(got[0].0, "delta");
    assert_eq!(got[0].1["text"], "Your week went well.");
    let (last, withheld) = got.last().expect("events");
    assert_eq!(last, "withheld");
    assert!(withheld["text"]
        .as_str()
        .expect("text")
        .contains("never gives dosing advice"));
    assert!(metrics(&s)
        .await
        .contains("glucosync_ai_replies_withheld_total 1"));
}
