//! The OpenAI-compatible chat completions client behind AI summaries and questions: timeouts,
//! retries with backoff on 429 and 5xx (honouring `Retry-After`), a circuit breaker that stops
//! calling a failing service for a minute, token usage and outcomes in the metrics. What is
//! sent is built in `api::insights` from aggregates only.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::config::Config;
use crate::telemetry::Metrics;

const TIMEOUT: Duration = Duration::from_secs(30);
const ATTEMPTS: u32 = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Consecutive failed requests (after their retries) that open the breaker, and for how long.
const BREAKER_FAILURES: u32 = 3;
const BREAKER_OPEN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AiError {
    #[error("the AI service failed recently; calls pause for a minute")]
    CircuitOpen,
    #[error("the AI service is rate limiting")]
    RateLimited,
    #[error("the AI service did not answer in time")]
    Timeout,
    #[error("the AI service failed: {0}")]
    Upstream(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

pub struct AiClient {
    base_url: String,
    api_key: String,
    pub model: String,
    http: reqwest::Client,
    breaker: Mutex<Breaker>,
}

enum Attempt {
    Done(Completion),
    /// Worth another try after the wait (the server's `Retry-After` when it gave one).
    Retry(AiError, Option<Duration>),
    Fail(AiError),
}

impl AiClient {
    pub fn from_config(config: &Config) -> Option<AiClient> {
        let key = config.openai_api_key.as_ref()?;
        Some(AiClient {
            base_url: config.openai_base_url.clone(),
            api_key: key.expose().to_owned(),
            model: config.openai_model.clone(),
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .unwrap_or_default(),
            breaker: Mutex::new(Breaker::default()),
        })
    }

    /// One chat completion (system + user message), retried on 429/5xx/timeouts.
    pub async fn complete(
        &self,
        system: &str,
        user: &str,
        metrics: &Metrics,
    ) -> Result<Completion, AiError> {
        {
            let breaker = self.breaker.lock().expect("lock");
            if breaker.open_until.is_some_and(|t| Instant::now() < t) {
                metrics
                    .openai_api_calls_total
                    .with_label_values(&["circuit_open"])
                    .inc();
                return Err(AiError::CircuitOpen);
            }
        }
        let body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "temperature": 0.3,
            "max_tokens": 700,
        });
        let mut last = AiError::Upstream("no attempt".into());
        for attempt in 0..ATTEMPTS {
            match self.attempt(&body, metrics).await {
                Attempt::Done(c) => {
                    *self.breaker.lock().expect("lock") = Breaker::default();
                    metrics
                        .openai_tokens_total
                        .with_label_values(&["prompt"])
                        .inc_by(c.prompt_tokens);
                    metrics
                        .openai_tokens_total
                        .with_label_values(&["completion"])
                        .inc_by(c.completion_tokens);
                    return Ok(c);
                }
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(e, wait) => {
                    last = e;
                    if attempt + 1 < ATTEMPTS {
                        let backoff = Duration::from_millis(500 * 2u64.pow(attempt));
                        tokio::time::sleep(wait.unwrap_or(backoff).min(MAX_BACKOFF)).await;
                    }
                }
            }
        }
        let mut breaker = self.breaker.lock().expect("lock");
        breaker.failures += 1;
        if breaker.failures >= BREAKER_FAILURES {
            breaker.open_until = Some(Instant::now() + BREAKER_OPEN);
            breaker.failures = 0;
            tracing::warn!("the AI service keeps failing: calls pause for a minute");
        }
        Err(last)
    }

    async fn attempt(&self, body: &Value, metrics: &Metrics) -> Attempt {
        let count = |outcome: &str| {
            metrics
                .openai_api_calls_total
                .with_label_values(&[outcome])
                .inc()
        };
        let sent = self
            .http
            .post(format!("{}/chat/completions", self.base_url))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                count("timeout");
                return Attempt::Retry(AiError::Timeout, None);
            }
            Err(e) => {
                count("network_error");
                return Attempt::Retry(AiError::Upstream(e.without_url().to_string()), None);
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) if e.is_timeout() => {
                count("timeout");
                return Attempt::Retry(AiError::Timeout, None);
            }
            Err(e) => {
                count("network_error");
                return Attempt::Retry(AiError::Upstream(e.without_url().to_string()), None);
            }
        };
        // The error body's message, as OpenAI words it ({"error": {"message", "type", "code"}}).
        let message = || {
            serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| status.to_string())
        };
        if status.as_u16() == 429 {
            count("rate_limited");
            tracing::warn!(error = %message(), "the AI service is rate limiting");
            return Attempt::Retry(AiError::RateLimited, retry_after);
        }
        if status.is_server_error() {
            count("server_error");
            return Attempt::Retry(AiError::Upstream(message()), retry_after);
        }
        if !status.is_success() {
            count("client_error");
            tracing::warn!(status = %status, error = %message(), "the AI service refused the request");
            return Attempt::Fail(AiError::Upstream(message()));
        }
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            count("server_error");
            return Attempt::Retry(AiError::Upstream("an unreadable answer".into()), None);
        };
        let Some(content) = v["choices"][0]["message"]["content"].as_str() else {
            count("server_error");
            return Attempt::Retry(AiError::Upstream("an answer without content".into()), None);
        };
        count("ok");
        Attempt::Done(Completion {
            text: content.trim().to_owned(),
            model: v["model"].as_str().unwrap_or(&self.model).to_owned(),
            prompt_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            completion_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        })
    }
}
