//! A WebSocket client for GlucoEngine's live socket (`/api/v1/ws`), for tests of one server
//! and of a cluster.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
pub use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `ws://{addr}/api/v1/ws{query}` with a bearer token. `receive_buffer` sets the
/// kernel's receive buffer (a client that stops reading then fills it quickly).
pub async fn open(addr: &str, token: &str, query: &str, receive_buffer: Option<u32>) -> Socket {
    let mut request = format!("ws://{addr}/api/v1/ws{query}")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let target: std::net::SocketAddr = tokio::net::lookup_host(addr)
        .await
        .expect("resolve")
        .next()
        .expect("an address");
    let tcp = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .expect("socket");
    if let Some(bytes) = receive_buffer {
        tcp.set_recv_buffer_size(bytes).expect("buffer size");
    }
    let stream = tcp.connect(target).await.expect("connect");
    let (socket, _) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .expect("socket opens");
    socket
}

/// The next server message whose `type` is one of `types`, skipping others; panics after
/// `within`.
pub async fn next_of(socket: &mut Socket, types: &[&str], within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {types:?} within {within:?}"))
            .expect("socket open")
            .expect("message");
        if let Message::Text(body) = message {
            let v: Value = serde_json::from_str(&body).expect("json");
            if types.iter().any(|t| v["type"] == *t) {
                return v;
            }
        }
    }
}

/// Every message of one of `types` that arrives within `during`.
pub async fn all_of(socket: &mut Socket, types: &[&str], during: Duration) -> Vec<Value> {
    let deadline = Instant::now() + during;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(Message::Text(body)))) => {
                let v: Value = serde_json::from_str(&body).expect("json");
                if types.iter().any(|t| v["type"] == *t) {
                    seen.push(v);
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => return seen,
        }
    }
}

pub async fn send(socket: &mut Socket, v: Value) {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

/// Sends `text` as it is (any text, JSON or not).
pub async fn send_text(socket: &mut Socket, text: &str) {
    socket
        .send(Message::Text(text.to_owned().into()))
        .await
        .expect("send");
}

/// Reads until the server closes the socket; the close code (`None`: dropped without one).
pub async fn closed_with(socket: &mut Socket, within: Duration) -> Option<CloseCode> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Err(_) => panic!("the socket was not closed within {within:?}"),
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code),
            Ok(Some(Ok(_))) => {}
        }
    }
}
