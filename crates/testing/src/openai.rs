//! A local stand-in for the OpenAI API (a paid SaaS that cannot run here): an HTTP server
//! speaking its chat completions wire format — the request body, `Authorization: Bearer`,
//! the response with `choices`, `usage` and `model`, error bodies
//! (`{"error": {"message", "type", "code"}}`) with `Retry-After` on 429, and server-sent events
//! for `stream: true`. It records every request so tests can check what GlucoSync sent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// What the next request gets.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A completion with this content.
    Text(String),
    /// HTTP 429 with OpenAI's rate-limit body and `Retry-After: 1`.
    RateLimited,
    /// HTTP 500 with an error body.
    ServerError,
    /// HTTP 401 (a wrong key).
    Unauthorized,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub authorization: String,
    /// The W3C trace context the caller sent, if any.
    pub traceparent: Option<String>,
    pub body: Value,
}

impl Request {
    /// Every message's content, joined: what the model was shown.
    pub fn text(&self) -> String {
        self.body["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["content"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    /// Once the script is used up.
    default_text: String,
    requests: Vec<Request>,
}

#[derive(Clone)]
pub struct FakeOpenAi {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeOpenAi {
    /// Starts the server on 127.0.0.1; `base_url` ends in `/v1` like OpenAI's.
    pub async fn start(default_text: &str) -> FakeOpenAi {
        let inner = Arc::new(Mutex::new(Inner {
            default_text: default_text.to_owned(),
            ..Inner::default()
        }));
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(completions))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeOpenAi {
            base_url: format!("http://{addr}/v1"),
            inner,
        }
    }

    /// The replies of the next requests, in order (then the default text again).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().expect("lock").script.extend(replies);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().expect("lock").requests.clone()
    }
}

fn error(status: StatusCode, message: &str, kind: &str, code: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": kind, "param": null, "code": code}})),
    )
        .into_response()
}

async fn completions(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let reply = {
        let mut inner = inner.lock().expect("lock");
        inner.requests.push(Request {
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            traceparent: headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: body.clone(),
        });
        let default = Reply::Text(inner.default_text.clone());
        inner.script.pop_front().unwrap_or(default)
    };
    let model = body["model"].as_str().unwrap_or("gpt-4o-mini").to_owned();
    match reply {
        Reply::RateLimited => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit reached for requests",
                "requests",
                "rate_limit_exceeded",
            );
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            r
        }
        Reply::ServerError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request.",
            "server_error",
            "server_error",
        ),
        Reply::Unauthorized => error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_request_error",
            "invalid_api_key",
        ),
        Reply::Text(text) => {
            let prompt_tokens = body.to_string().len() as u64 / 4;
            let completion_tokens = text.len() as u64 / 4 + 1;
            if body["stream"].as_bool() == Some(true) {
                // Server-sent events: a role chunk, the content in pieces, the final chunk, [DONE].
                let mut events = vec![
                    json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": model,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
                ];
                for piece in text.split_inclusive(' ') {
                    events.push(json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": model,
                        "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]}));
                }
                events.push(json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}));
                // With stream_options.include_usage, a last chunk with no choices and the usage.
                if body["stream_options"]["include_usage"].as_bool() == Some(true) {
                    events.push(json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": model,
                        "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens}}));
                }
                let mut sse: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
                sse.push_str("data: [DONE]\n\n");
                return ([("content-type", "text/event-stream")], sse).into_response();
            }
            Json(json!({
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": null},
                    "logprobs": null,
                    "finish_reason": "stop",
                }],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }))
            .into_response()
        }
    }
}
