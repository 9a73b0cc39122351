//! The OpenAI-compatible chat completions client behind AI summaries and questions: timeouts,
//! retries with backoff on 429 and 5xx (honouring `Retry-After`), a circuit breaker that stops
//! calling a failing service for a minute, token usage and outcomes in the metrics, and
//! streamed replies (server-sent events, read as they come). What is sent is built in
//! `api::insights` from aggregates only.

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

enum Attempt<T> {
    Done(T),
    /// Worth another try after the wait (the server's `Retry-After` when it gave one).
    Retry(AiError, Option<Duration>),
    /// Not retried. `service_failed` says whether it counts towards the circuit breaker (a
    /// wrong key or a timed-out request does; an answer the model declined does not).
    Fail {
        error: AiError,
        service_failed: bool,
    },
}

impl<T> Attempt<T> {
    /// The same failure for another kind of result.
    fn failure<U>(self) -> Option<Attempt<U>> {
        match self {
            Attempt::Done(_) => None,
            Attempt::Retry(e, w) => Some(Attempt::Retry(e, w)),
            Attempt::Fail {
                error,
                service_failed,
            } => Some(Attempt::Fail {
                error,
                service_failed,
            }),
        }
    }
}

/// A streamed reply, piece by piece.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Text(String),
    /// The reply is complete (usage when the service reported it).
    Done {
        model: String,
        prompt_tokens: u64,
        completion_tokens: u64,
    },
    /// The stream broke off.
    Broken(AiError),
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

    fn body(&self, system: &str, user: &str, stream: bool) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "temperature": 0.3,
            "max_tokens": 700,
        });
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }

    /// Runs `once` under the circuit breaker, retrying on 429, 5xx and network errors.
    async fn with_retries<T, F, Fut>(&self, metrics: &Metrics, mut once: F) -> Result<T, AiError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        if !self.breaker.lock().expect("lock").admit() {
            count_call(metrics, "circuit_open");
            return Err(AiError::CircuitOpen);
        }
        let mut outcome = Err((AiError::Upstream("no attempt".into()), true));
        for attempt in 0..ATTEMPTS {
            match once().await {
                Attempt::Done(v) => {
                    outcome = Ok(v);
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
                    outcome = Err((error, true));
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
        outcome.map_err(|(e, _)| e)
    }

    /// One chat completion (system + user message), retried on 429 and 5xx. A timed-out
    /// request is not sent again: it may have been processed (and billed).
    pub async fn complete(
        &self,
        system: &str,
        user: &str,
        metrics: &Metrics,
    ) -> Result<Completion, AiError> {
        let body = self.body(system, user, false);
        let c = self
            .with_retries(metrics, || async {
                match self.send(&body, metrics).await {
                    Attempt::Done(response) => self.read_completion(response, metrics).await,
                    failed => failed.failure().expect("not done"),
                }
            })
            .await?;
        count_tokens(metrics, c.prompt_tokens, c.completion_tokens);
        Ok(c)
    }

    /// A streamed completion: the reply's pieces as the service sends them. Failures before
    /// the reply starts are retried like `complete`'s; a stream that breaks off ends with
    /// `Broken`.
    pub async fn stream(
        &self,
        system: &str,
        user: &str,
        metrics: &std::sync::Arc<Metrics>,
    ) -> Result<tokio::sync::mpsc::Receiver<StreamEvent>, AiError> {
        let body = self.body(system, user, true);
        let response = self
            .with_retries(metrics, || self.send(&body, metrics))
            .await?;
        count_call(metrics, "ok");
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (model, metrics) = (self.model.clone(), metrics.clone());
        tokio::spawn(async move { read_stream(response, model, &metrics, tx).await });
        Ok(rx)
    }

    /// Sends the request; a 2xx response is returned unread.
    #[tracing::instrument(level = "debug", name = "openai chat.completions", skip_all, fields(otel.kind = "client"))]
    async fn send(&self, body: &Value, metrics: &Metrics) -> Attempt<reqwest::Response> {
        let count = |outcome: &str| count_call(metrics, outcome);
        let sent = self
            .http
            .post(format!("{}/chat/completions", self.base_url))
            .headers(crate::traces::outgoing_headers())
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return timed_out(metrics),
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
        Attempt::Done(response)
    }

    async fn read_completion(
        &self,
        response: reqwest::Response,
        metrics: &Metrics,
    ) -> Attempt<Completion> {
        let count = |outcome: &str| count_call(metrics, outcome);
        let v = match response.json::<Value>().await {
            Ok(v) => v,
            Err(e) if e.is_timeout() => return timed_out(metrics),
            Err(_) => {
                count("server_error");
                return Attempt::Retry(AiError::Upstream("an unreadable answer".into()), None);
            }
        };
        count("ok");
        let Some(content) = v["choices"][0]["message"]["content"].as_str() else {
            // The model declined (a refusal or a content filter): final, and no fault of the
            // service's.
            return Attempt::Fail {
                error: AiError::Upstream("the model gave no answer".into()),
                service_failed: false,
            };
        };
        Attempt::Done(Completion {
            text: content.trim().to_owned(),
            model: v["model"].as_str().unwrap_or(&self.model).to_owned(),
            prompt_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            completion_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        })
    }
}

/// A request or its answer outran the timeout: counted, final (not retried: the caller has
/// already waited that long), and a failure of the service's.
fn timed_out<T>(metrics: &Metrics) -> Attempt<T> {
    count_call(metrics, "timeout");
    Attempt::Fail {
        error: AiError::Timeout,
        service_failed: true,
    }
}

fn count_call(metrics: &Metrics, outcome: &str) {
    metrics
        .openai_api_calls_total
        .with_label_values(&[outcome])
        .inc();
}

fn count_tokens(metrics: &Metrics, prompt: u64, completion: u64) {
    let [prompt_kind, completion_kind] = crate::telemetry::TOKEN_KINDS;
    for (kind, tokens) in [(prompt_kind, prompt), (completion_kind, completion)] {
        metrics
            .openai_tokens_total
            .with_label_values(&[kind])
            .inc_by(tokens);
    }
}

/// Reads a chat completion stream (server-sent events: `data: {chunk}` lines, `data: [DONE]`
/// at the end) into `tx`, until the reply ends or the receiver is gone.
async fn read_stream(
    mut response: reqwest::Response,
    mut model: String,
    metrics: &Metrics,
    tx: tokio::sync::mpsc::Sender<StreamEvent>,
) {
    let mut buffer: Vec<u8> = Vec::new();
    let (mut prompt_tokens, mut completion_tokens) = (0, 0);
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                let error = if e.is_timeout() {
                    AiError::Timeout
                } else {
                    AiError::Upstream(e.without_url().to_string())
                };
                let _ = tx.send(StreamEvent::Broken(error)).await;
                return;
            }
        };
        buffer.extend_from_slice(&chunk);
        // Complete lines only; a line may arrive in pieces.
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                count_tokens(metrics, prompt_tokens, completion_tokens);
                let _ = tx
                    .send(StreamEvent::Done {
                        model,
                        prompt_tokens,
                        completion_tokens,
                    })
                    .await;
                return;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if let Some(m) = v["model"].as_str() {
                model = m.to_owned();
            }
            if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
                prompt_tokens = usage["prompt_tokens"].as_u64().unwrap_or(prompt_tokens);
                completion_tokens = usage["completion_tokens"]
                    .as_u64()
                    .unwrap_or(completion_tokens);
            }
            if let Some(piece) = v["choices"][0]["delta"]["content"].as_str() {
                if !piece.is_empty() && tx.send(StreamEvent::Text(piece.to_owned())).await.is_err()
                {
                    // Nobody reads any more (withheld, or the person left): stop reading.
                    return;
                }
            }
        }
    }
    let _ = tx
        .send(StreamEvent::Broken(AiError::Upstream(
            "the reply ended without [DONE]".into(),
        )))
        .await;
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
