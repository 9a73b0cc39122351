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
    /// After the pause, one request tries the service while the others still wait for it.
    trial_running: bool,
}

impl Breaker {
    /// Whether a request may call the service now (and if it is the trial, marks it).
    fn admit(&mut self) -> bool {
        match self.open_until {
            None => true,
            Some(t) if Instant::now() < t => false,
            Some(_) if self.trial_running => false,
            Some(_) => {
                self.trial_running = true;
                true
            }
        }
    }

    fn record(&mut self, service_failed: bool) {
        self.trial_running = false;
        if !service_failed {
            *self = Breaker::default();
            return;
        }
        self.failures += 1;
        if self.open_until.is_some() || self.failures >= BREAKER_FAILURES {
            // Opened, or the trial after a pause failed: pause again.
            self.open_until = Some(Instant::now() + BREAKER_OPEN);
            self.failures = 0;
            tracing::warn!("the AI service keeps failing: calls pause for a minute");
        }
    }
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
    /// Not retried. `service_failed` says whether it counts towards the circuit breaker (a
    /// wrong key or a timed-out request does; an answer the model declined does not).
    Fail {
        error: AiError,
        service_failed: bool,
    },
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
                .expect("an HTTP client (the TLS backend initialises)"),
            breaker: Mutex::new(Breaker::default()),
        })
    }

    /// One chat completion (system + user message), retried on 429 and 5xx. A timed-out
    /// request is not sent again: it may have been processed (and billed).
    pub async fn complete(
        &self,
        system: &str,
        user: &str,
        metrics: &Metrics,
    ) -> Result<Completion, AiError> {
        if !self.breaker.lock().expect("lock").admit() {
            metrics
                .openai_api_calls_total
                .with_label_values(&["circuit_open"])
                .inc();
            return Err(AiError::CircuitOpen);
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
        let mut outcome = Err((AiError::Upstream("no attempt".into()), true));
        for attempt in 0..ATTEMPTS {
            match self.attempt(&body, metrics).await {
                Attempt::Done(c) => {
                    outcome = Ok(c);
                    break;
                }
                Attempt::Fail {
                    error,
                    service_failed,
                } => {
                    outcome = Err((error, service_failed));
                    break;
                }
                Attempt::Retry(error, wait) => {
                    outcome = Err((error.clone(), true));
                    if attempt + 1 == ATTEMPTS {
                        break;
                    }
                    let backoff = Duration::from_millis(500 * 2u64.pow(attempt));
                    let wait = wait.unwrap_or(backoff);
                    if wait > MAX_BACKOFF {
                        // Asked to wait longer than a person waits for an answer.
                        break;
                    }
                    tokio::time::sleep(wait + jitter()).await;
                }
            }
        }
        let service_failed = matches!(&outcome, Err((_, true)));
        self.breaker.lock().expect("lock").record(service_failed);
        match outcome {
            Ok(c) => {
                metrics
                    .openai_tokens_total
                    .with_label_values(&["prompt"])
                    .inc_by(c.prompt_tokens);
                metrics
                    .openai_tokens_total
                    .with_label_values(&["completion"])
                    .inc_by(c.completion_tokens);
                Ok(c)
            }
            Err((e, _)) => Err(e),
        }
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
                return Attempt::Fail {
                    error: AiError::Timeout,
                    service_failed: true,
                };
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
                return Attempt::Fail {
                    error: AiError::Timeout,
                    service_failed: true,
                };
            }
            Err(e) => {
                count("network_error");
                return Attempt::Retry(AiError::Upstream(e.without_url().to_string()), None);
            }
        };
        if status.as_u16() == 429 {
            count("rate_limited");
            tracing::warn!("the AI service is rate limiting");
            return Attempt::Retry(AiError::RateLimited, retry_after);
        }
        if status.is_server_error() {
            count("server_error");
            // Not the body's message: some servers echo the prompt in it, and this is logged.
            return Attempt::Retry(
                AiError::Upstream(format!("server error ({status})")),
                retry_after,
            );
        }
        if !status.is_success() {
            count("client_error");
            tracing::warn!(status = %status, "the AI service refused the request");
            // A wrong key or a model it does not know: every request would fail the same way.
            return Attempt::Fail {
                error: AiError::Upstream(format!("refused ({status})")),
                service_failed: matches!(status.as_u16(), 401 | 403 | 404),
            };
        }
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            count("server_error");
            return Attempt::Retry(AiError::Upstream("an unreadable answer".into()), None);
        };
        let Some(content) = v["choices"][0]["message"]["content"].as_str() else {
            // The model declined (a refusal or a content filter): final, and no fault of the
            // service's.
            count("ok");
            return Attempt::Fail {
                error: AiError::Upstream("the model gave no answer".into()),
                service_failed: false,
            };
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

/// Up to a quarter second, so that clients waiting out the same failure do not retry at once.
fn jitter() -> Duration {
    use rand::Rng;
    Duration::from_millis(rand::thread_rng().gen_range(0..250))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_lets_one_trial_through_and_closes_on_success() {
        let mut b = Breaker::default();
        for _ in 0..BREAKER_FAILURES - 1 {
            b.record(true);
            assert!(b.admit(), "still closed");
        }
        b.record(true);
        assert!(!b.admit(), "open");
        // The pause is over: one trial at a time.
        b.open_until = Some(Instant::now() - Duration::from_secs(1));
        assert!(b.admit());
        assert!(!b.admit(), "a second request waits for the trial");
        b.record(true);
        assert!(!b.admit(), "a failed trial pauses again");
        b.open_until = Some(Instant::now() - Duration::from_secs(1));
        assert!(b.admit());
        b.record(false);
        assert!(b.admit() && b.admit(), "closed after a successful trial");
        // Failures that are not the service's (a declined answer) do not count.
        for _ in 0..10 {
            b.record(false);
        }
        assert!(b.admit());
    }
}
