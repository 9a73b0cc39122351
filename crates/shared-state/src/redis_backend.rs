//! Redis implementations, for clusters of GlucoEngine replicas: one Redis (or a Sentinel-managed
//! master with replicas) shared by all of them.
//!
//! Connections are made lazily and remade after any connection error, asking Sentinel for the
//! current master each time, so a failover needs no restart. Every key and channel is prefixed
//! `glucosync:`. Live events use one subscriber connection per replica, subscribed to the topics
//! its own subscribers follow, fanned out locally.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisError};
use tokio::sync::Mutex;

use crate::memory::MemoryBus;
use crate::{Cache, EventBus, RateLimiter, SharedStateError, WindowCount};

const PREFIX: &str = "glucosync:";
const TIMEOUT: Duration = Duration::from_secs(2);

/// Where the master is: a fixed address, or whatever the Sentinels say.
enum Target {
    Direct(Client),
    Sentinel {
        sentinel: Mutex<redis::sentinel::Sentinel>,
        master: String,
        node: Option<redis::sentinel::SentinelNodeConnectionInfo>,
    },
}

/// A Redis endpoint with one shared multiplexed connection, remade on failure.
pub struct RedisConnection {
    target: Target,
    conn: Mutex<Option<MultiplexedConnection>>,
}

fn unavailable(e: RedisError) -> SharedStateError {
    SharedStateError::Unavailable(format!("redis: {e}"))
}

/// Parses `redis://[:password@]host:port[/db]` or
/// `redis+sentinel://[:password@]host1:port1,host2:port2/master_name[/db][?sentinel_password=…]`.
/// The userinfo password is the data nodes'; Sentinels are asked with `sentinel_password`
/// when they have one of their own (`requirepass` in sentinel.conf), and without a password
/// otherwise: a Sentinel without one refuses AUTH, so the two cannot simply be the same.
fn parse_target(url: &str) -> Result<Target, SharedStateError> {
    let bad = |why: &str| SharedStateError::Unavailable(format!("invalid Redis URL: {why}"));
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        return Ok(Target::Direct(Client::open(url).map_err(unavailable)?));
    }
    let rest = url
        .strip_prefix("redis+sentinel://")
        .ok_or_else(|| bad("use redis:// or redis+sentinel://"))?;
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, rest),
    };
    let (hosts, path) = rest
        .split_once('/')
        .ok_or_else(|| bad("name the master: redis+sentinel://host:26379/mymaster"))?;
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut sentinel_password = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sentinel_password", v)) if !v.is_empty() => {
                sentinel_password = Some(v.to_owned())
            }
            _ => {
                let name = pair.split('=').next().unwrap_or(pair);
                return Err(bad(&format!(
                    "unknown parameter `{name}`; the one known is sentinel_password"
                )));
            }
        }
    }
    let mut path_parts = path.split('/');
    let master = path_parts
        .next()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad("missing master name"))?;
    let db: i64 = match path_parts.next() {
        Some(d) if !d.is_empty() => d
            .parse()
            .map_err(|_| bad("the database must be a number"))?,
        _ => 0,
    };
    let sentinels: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| match &sentinel_password {
            // Still percent-encoded as it came in the URL: it goes back into one.
            Some(p) => format!("redis://:{p}@{h}"),
            None => format!("redis://{h}"),
        })
        .collect();
    if sentinels.is_empty() {
        return Err(bad("no Sentinel addresses"));
    }
    let password = userinfo
        .and_then(|u| u.split_once(':').map(|(_, p)| p.to_owned()))
        .filter(|p| !p.is_empty());
    let node =
        (password.is_some() || db != 0).then(|| redis::sentinel::SentinelNodeConnectionInfo {
            tls_mode: None,
            redis_connection_info: Some(redis::RedisConnectionInfo {
                db,
                password,
                ..Default::default()
            }),
        });
    Ok(Target::Sentinel {
        sentinel: Mutex::new(redis::sentinel::Sentinel::build(sentinels).map_err(unavailable)?),
        master: master.to_owned(),
        node,
    })
}

fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.code() == Some("READONLY")
        || e.code() == Some("MASTERDOWN")
        || e.code() == Some("LOADING")
}

impl RedisConnection {
    pub fn open(url: &str) -> Result<Arc<Self>, SharedStateError> {
        Ok(Arc::new(RedisConnection {
            target: parse_target(url)?,
            conn: Mutex::new(None),
        }))
    }

    /// A client for the current master.
    async fn client(&self) -> Result<Client, SharedStateError> {
        match &self.target {
            Target::Direct(c) => Ok(c.clone()),
            Target::Sentinel {
                sentinel,
                master,
                node,
            } => {
                let mut s = sentinel.lock().await;
                tokio::time::timeout(TIMEOUT, s.async_master_for(master, node.as_ref()))
                    .await
                    .map_err(|_| {
                        SharedStateError::Unavailable(
                            "redis: Sentinel did not answer in time".into(),
                        )
                    })?
                    .map_err(unavailable)
            }
        }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, SharedStateError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let client = self.client().await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(TIMEOUT)
            .set_response_timeout(TIMEOUT);
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(unavailable)?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Runs `f` on the shared connection; after a connection error the connection is dropped
    /// (the next call asks Sentinel again) and `f` is tried once more on a new one.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, SharedStateError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        for attempt in 0..2 {
            let conn = self.connection().await?;
            match f(conn).await {
                Ok(v) => return Ok(v),
                Err(e) if is_connection_error(&e) && attempt == 0 => {
                    self.conn.lock().await.take();
                }
                Err(e) => {
                    if is_connection_error(&e) {
                        self.conn.lock().await.take();
                    }
                    return Err(unavailable(e));
                }
            }
        }
        Err(SharedStateError::Unavailable("redis: unreachable".into()))
    }

    /// PING: for readiness.
    pub async fn ping(&self) -> Result<(), SharedStateError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(drop)
    }
}

pub struct RedisRateLimiter {
    redis: Arc<RedisConnection>,
    script: redis::Script,
}

impl RedisRateLimiter {
    pub fn new(redis: Arc<RedisConnection>) -> Self {
        // Fixed window: the first hit starts the window; the count and the time left come back
        // together, atomically, whatever the number of replicas.
        let script = redis::Script::new(
            r"
            local n = redis.call('INCRBY', KEYS[1], ARGV[2])
            if n == tonumber(ARGV[2]) or redis.call('PTTL', KEYS[1]) < 0 then
                redis.call('PEXPIRE', KEYS[1], ARGV[1])
            end
            return {n, redis.call('PTTL', KEYS[1])}
            ",
        );
        RedisRateLimiter { redis, script }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    async fn add(
        &self,
        key: &str,
        hits: u32,
        window: Duration,
    ) -> Result<WindowCount, SharedStateError> {
        let key = format!("{PREFIX}rate:{key}");
        let window_ms = window.as_millis().max(1) as u64;
        let (count, ttl_ms): (u64, i64) = self
            .redis
            .run(|mut c| {
                let mut invocation = self.script.key(&key);
                invocation.arg(window_ms).arg(hits);
                async move { invocation.invoke_async(&mut c).await }
            })
            .await?;
        Ok(WindowCount {
            count,
            resets_in: Duration::from_millis(ttl_ms.max(0) as u64),
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    async fn reset(&self, key: &str) -> Result<(), SharedStateError> {
        let key = format!("{PREFIX}rate:{key}");
        self.redis
            .run(|mut c| {
                let key = key.clone();
                async move { c.del::<_, ()>(key).await }
            })
            .await
    }
}

pub struct RedisCache {
    redis: Arc<RedisConnection>,
    put_ranked: redis::Script,
}

impl RedisCache {
    pub fn new(redis: Arc<RedisConnection>) -> Self {
        // The rank lives beside the value (`<key>:rank`, same expiry), so `get` stays a GET.
        let put_ranked = redis::Script::new(
            r"
            local stored = redis.call('GET', KEYS[2])
            if stored then
                local a, b = string.match(stored, '^(-?%d+) (-?%d+)$')
                a, b = tonumber(a), tonumber(b)
                local x, y = tonumber(ARGV[1]), tonumber(ARGV[2])
                if a > x or (a == x and b > y) then
                    return 0
                end
            end
            redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
            redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[4])
            return 1
            ",
        );
        RedisCache { redis, put_ranked }
    }
}

#[async_trait]
impl Cache for RedisCache {
    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    async fn get(&self, key: &str) -> Result<Option<String>, SharedStateError> {
        let key = format!("{PREFIX}cache:{key}");
        self.redis
            .run(|mut c| {
                let key = key.clone();
                async move { c.get::<_, Option<String>>(key).await }
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), SharedStateError> {
        let key = format!("{PREFIX}cache:{key}");
        let ms = ttl.as_millis().max(1) as u64;
        self.redis
            .run(|mut c| {
                let (key, value) = (key.clone(), value.to_owned());
                async move { c.pset_ex::<_, _, ()>(key, value, ms).await }
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    async fn put_ranked(
        &self,
        key: &str,
        rank: (i64, i64),
        value: &str,
        ttl: Duration,
    ) -> Result<bool, SharedStateError> {
        let key = format!("{PREFIX}cache:{key}");
        let rank_key = format!("{key}:rank");
        let ms = ttl.as_millis().max(1) as u64;
        let stored: i64 = self
            .redis
            .run(|mut c| {
                let mut invocation = self.put_ranked.key(&key);
                invocation
                    .key(&rank_key)
                    .arg(rank.0)
                    .arg(rank.1)
                    .arg(value)
                    .arg(ms);
                async move { invocation.invoke_async(&mut c).await }
            })
            .await?;
        Ok(stored == 1)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, SharedStateError> {
        let key = format!("{PREFIX}cache:{key}");
        let ms = ttl.as_millis().max(1) as u64;
        let set: Option<String> = self
            .redis
            .run(|mut c| {
                let key = key.clone();
                async move {
                    redis::cmd("SET")
                        .arg(key)
                        .arg("")
                        .arg("NX")
                        .arg("PX")
                        .arg(ms)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        Ok(set.is_some())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    async fn remove(&self, keys: &[String]) -> Result<(), SharedStateError> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = keys
            .iter()
            .flat_map(|k| {
                [
                    format!("{PREFIX}cache:{k}"),
                    format!("{PREFIX}cache:{k}:rank"),
                ]
            })
            .collect();
        self.redis
            .run(|mut c| {
                let keys = keys.clone();
                async move { c.del::<_, ()>(keys).await }
            })
            .await
    }
}

/// Publishes with PUBLISH; receives through one subscriber connection per replica that a
/// background task keeps alive (reconnecting through Sentinel after a failover) and fans out to
/// local subscribers. The replica subscribes only to the topics its own subscribers follow
/// (SUBSCRIBE with the first, UNSUBSCRIBE after the last), so Redis sends each event to the
/// replicas that want it and nowhere else: an upload nobody watches costs one PUBLISH.
pub struct RedisBus {
    redis: Arc<RedisConnection>,
    local: Arc<MemoryBus>,
    /// Local subscribers per topic.
    topics: Topics,
    control: tokio::sync::mpsc::UnboundedSender<Control>,
}

/// Local subscribers per topic.
type Topics = Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>;

/// What `subscribe` and dropped subscriptions ask of the subscriber task.
enum Control {
    /// Make sure the topic is subscribed on the live connection; answer when it is.
    Subscribe(String, tokio::sync::oneshot::Sender<()>),
    /// The topic's last local subscriber left.
    Unsubscribe(String),
}

/// How long `subscribe` waits for the Redis subscription to be live (at startup, or while it
/// reconnects) before returning a stream that will receive once it is.
const LISTENING_WAIT: Duration = Duration::from_secs(2);

const BUS_PREFIX: &str = "glucosync:bus:";

impl RedisBus {
    pub fn new(redis: Arc<RedisConnection>) -> Self {
        let local = Arc::new(MemoryBus::new());
        let topics = Arc::default();
        let (control, requests) = tokio::sync::mpsc::unbounded_channel();
        let (r, l, t) = (redis.clone(), local.clone(), Arc::clone(&topics));
        tokio::spawn(async move { receive_forever(r, l, t, requests).await });
        RedisBus {
            redis,
            local,
            topics,
            control,
        }
    }
}

fn channel_of(topic: &str) -> String {
    format!("{BUS_PREFIX}{topic}")
}

async fn receive_forever(
    redis: Arc<RedisConnection>,
    local: Arc<MemoryBus>,
    topics: Topics,
    mut requests: tokio::sync::mpsc::UnboundedReceiver<Control>,
) {
    let mut backoff = Duration::from_millis(100);
    // Subscribers waiting for a connection.
    let mut waiting: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
    loop {
        let connected = match redis.client().await {
            Ok(client) => client.get_async_pubsub().await.map_err(
                |e| tracing::warn!(error = %e, "cannot subscribe to live events in Redis"),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach Redis for live events");
                Err(())
            }
        };
        if let Ok(pubsub) = connected {
            let (mut sink, mut messages) = pubsub.split();
            let wanted: Vec<String> = match topics.lock() {
                Ok(t) => t.keys().map(|k| channel_of(k)).collect(),
                Err(_) => Vec::new(),
            };
            if wanted.is_empty() || sink.subscribe(&wanted).await.is_ok() {
                backoff = Duration::from_millis(100);
                tracing::info!(topics = wanted.len(), "subscribed to live events in Redis");
                let mut live: std::collections::HashSet<String> = wanted.into_iter().collect();
                for w in waiting.drain(..) {
                    let _ = w.send(());
                }
                loop {
                    tokio::select! {
                        message = messages.next() => {
                            let Some(msg) = message else { break };
                            if let (Some(topic), Ok(payload)) = (
                                msg.get_channel_name().strip_prefix(BUS_PREFIX),
                                msg.get_payload::<String>(),
                            ) {
                                let _ = local.publish(topic, &payload).await;
                            }
                        }
                        request = requests.recv() => match request {
                            None => return,
                            Some(Control::Subscribe(topic, done)) => {
                                let channel = channel_of(&topic);
                                if live.contains(&channel) || sink.subscribe(&channel).await.is_ok() {
                                    live.insert(channel);
                                    let _ = done.send(());
                                } else {
                                    // The connection is gone: the topic is subscribed with
                                    // all the others once it is back.
                                    waiting.push(done);
                                    break;
                                }
                            }
                            Some(Control::Unsubscribe(topic)) => {
                                let unwanted = topics.lock().is_ok_and(|t| !t.contains_key(&topic));
                                let channel = channel_of(&topic);
                                if unwanted && live.remove(&channel) && sink.unsubscribe(&channel).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
                tracing::warn!("lost the Redis subscription for live events; reconnecting");
            }
        }
        // While disconnected, keep taking requests (their topics are in `topics` and are
        // subscribed on reconnection) so that nobody waits on a full queue.
        let pause = tokio::time::sleep(backoff);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                request = requests.recv() => match request {
                    None => return,
                    Some(Control::Subscribe(_, done)) => waiting.push(done),
                    Some(Control::Unsubscribe(_)) => {}
                }
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// A local subscriber's stream; dropping it tells the subscriber task when a topic has no
/// local subscribers left.
struct Subscription {
    events: BoxStream<'static, String>,
    topic: String,
    topics: Topics,
    control: tokio::sync::mpsc::UnboundedSender<Control>,
}

impl futures::Stream for Subscription {
    type Item = String;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<String>> {
        self.events.poll_next_unpin(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Ok(mut topics) = self.topics.lock() else {
            return;
        };
        if let Some(n) = topics.get_mut(&self.topic) {
            *n -= 1;
            if *n == 0 {
                topics.remove(&self.topic);
                let _ = self.control.send(Control::Unsubscribe(self.topic.clone()));
            }
        }
    }
}

#[async_trait]
impl EventBus for RedisBus {
    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    async fn publish(&self, topic: &str, payload: &str) -> Result<(), SharedStateError> {
        let channel = channel_of(topic);
        self.redis
            .run(|mut c| {
                let (channel, payload) = (channel.clone(), payload.to_owned());
                async move { c.publish::<_, _, ()>(channel, payload).await }
            })
            .await
    }

    /// Returns once events published from now on will arrive: the replica's Redis
    /// subscription to the topic is live (or `LISTENING_WAIT` has passed while Redis is
    /// unreachable; delivery is at most once either way).
    #[tracing::instrument(level = "debug", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    async fn subscribe(&self, topic: &str) -> Result<BoxStream<'static, String>, SharedStateError> {
        let events = self.local.subscribe(topic).await?;
        *self
            .topics
            .lock()
            .map_err(|_| SharedStateError::Unavailable("bus lock poisoned".into()))?
            .entry(topic.to_owned())
            .or_default() += 1;
        let subscription = Subscription {
            events,
            topic: topic.to_owned(),
            topics: self.topics.clone(),
            control: self.control.clone(),
        };
        let (done, live) = tokio::sync::oneshot::channel();
        if self
            .control
            .send(Control::Subscribe(topic.to_owned(), done))
            .is_ok()
        {
            let _ = tokio::time::timeout(LISTENING_WAIT, live).await;
        }
        Ok(subscription.boxed())
    }
}
