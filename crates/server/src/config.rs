//! Configuration, layered: built-in defaults, then an optional TOML file, then `GLUCOSYNC_*`
//! environment variables. Validated once at startup; every message says how to fix it.
//! Secrets (passwords inside URLs) are redacted whenever the configuration is printed.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A secret that is not a URL (an API key, a client secret): `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// A URL that may carry a password; `Debug` and `Display` hide it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(s: impl Into<String>) -> Self {
        SecretUrl(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn redacted(&self) -> String {
        // scheme://user:password@host → scheme://user:***@host
        if let Some((scheme, rest)) = self.0.split_once("://") {
            if let Some((creds, host)) = rest.rsplit_once('@') {
                let user = creds.split(':').next().unwrap_or("");
                let masked = if creds.contains(':') {
                    format!("{user}:***")
                } else {
                    user.to_owned()
                };
                return format!("{scheme}://{masked}@{host}");
            }
        }
        self.0.clone()
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the API, the PWA and the site listen.
    pub listen: SocketAddr,
    /// Embedded database and generated keys live here.
    pub data_dir: PathBuf,
    /// The built PWA (`scripts/web build` writes it), served at `/app/`. Read from disk at each
    /// request, so a rebuild needs neither a new binary nor a restart. A relative path is
    /// relative to the working directory; a directory that does not exist yet is no error.
    pub web_dir: PathBuf,
    /// The static site, served at `/` and every other path outside the API. Same rules as
    /// `web_dir`; without its `index.html`, `/` shows a built-in page.
    pub site_dir: PathBuf,
    /// `sqlite://…` (default: a file in the data directory) or, in a cluster, `postgres://…`.
    pub database_url: SecretUrl,
    /// PostgreSQL only: a read replica for range listings (unset: the primary serves them).
    pub database_read_url: Option<SecretUrl>,
    /// PostgreSQL only: connections per pool on each replica of GlucoEngine.
    pub database_pool_size: usize,
    /// Unset: in-process shared state. `redis://…` or `redis+sentinel://…` in a cluster.
    pub redis_url: Option<SecretUrl>,
    /// Proxies (e.g. HAProxy) whose `X-Forwarded-For` names the real client address, used for
    /// per-address rate limits. Requests from other peers are taken at their TCP address.
    pub trusted_proxies: Vec<IpRange>,
    /// Web origins (`https://app.example.org`) besides the server's own that may open the
    /// WebSocket with the session cookie. A browser sends its page's origin; anything else is
    /// refused, so another site cannot open a socket with a visitor's cookie.
    pub allowed_origins: Vec<String>,
    /// Who runs this installation, told to Web Push services with every push (VAPID `sub`):
    /// `mailto:` or `https:`.
    pub push_subject: String,
    /// Accept Web Push endpoints at `http://` loopback addresses (a local push service in
    /// tests and development). Off: endpoints must be `https://`.
    pub push_allow_loopback: bool,
    /// The mail server for invites and alert emails: `smtp://user:password@host:587`
    /// (STARTTLS required), `smtps://…:465` (TLS from the start), or `smtp://host:25?tls=none`
    /// (a local relay, no TLS). Unset: no email.
    pub smtp_url: Option<SecretUrl>,
    /// The sender of GlucoSync's emails.
    pub smtp_from: String,
    /// An extra certificate authority (PEM) to trust for the mail server (a private CA).
    pub smtp_ca_file: Option<PathBuf>,
    /// Where people reach this installation, for links in emails.
    pub public_url: String,
    /// Unset: `/metrics` on the main listener. Set: only there.
    pub metrics_listen: Option<SocketAddr>,
    /// Where to send OpenTelemetry traces over OTLP/HTTP (the collector's base URL; spans go
    /// to `<it>/v1/traces`). Unset: no traces. `OTEL_EXPORTER_OTLP_ENDPOINT` is read too.
    pub otlp_endpoint: Option<String>,
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `glucosync_server=debug,info`.
    pub log_level: String,
    /// How long a login session lasts.
    pub session_ttl_hours: u64,
    /// Mark cookies `Secure`. Default: on when `public_url` is `https://`.
    pub cookie_secure: bool,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_seconds: u64,
    /// Before that, how long readiness fails while requests are still served, so that a load
    /// balancer stops routing here first (0: stop accepting at once).
    pub shutdown_drain_seconds: u64,
    /// Requests per minute one person's credentials may make to the API, counted across all
    /// replicas (0: no limit). Login and signup have limits of their own.
    pub api_rate_limit_per_minute: u32,
    /// Days between a person asking to delete their account and its deletion, during which
    /// they may cancel (0: at once). No one else sees the data from the moment they ask.
    pub account_deletion_grace_days: u32,
    /// Let `POST /api/v1/import/nightscout` fetch from addresses inside this server's network
    /// (loopback, private ranges). Off: a person's URL cannot reach internal services.
    pub import_allow_private_urls: bool,
    /// Where the built-in schedule writes backups (a directory or `s3://bucket/prefix`);
    /// unset: no scheduled backups (`glucoengine backup` still works).
    pub backup_output: Option<String>,
    pub backup_interval_hours: u32,
    /// Backups older than this are deleted after each new one.
    pub backup_retention_days: u32,
    /// The passphrase backups are encrypted with (16 characters or more).
    pub backup_key: Option<Secret>,
    /// An S3-compatible endpoint (MinIO: `http://minio:9000`); unset: AWS.
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<Secret>,
    /// Forecast each CGM reading as it arrives and fit personal models (docs/forecasting.md).
    pub forecasts: bool,
    /// An MLflow tracking server: each personal model fit is logged there as a run.
    pub mlflow_url: Option<String>,
    /// Create or refresh the demo account at startup.
    pub demo: bool,
    /// Single sign-on: the OpenID Connect provider's issuer URL (e.g. Authentik's
    /// `https://auth.example.org/application/o/glucosync/`). Unset: no single sign-on.
    pub oidc_issuer: Option<String>,
    /// The client registered at the provider for GlucoSync.
    pub oidc_client_id: String,
    pub oidc_client_secret: Option<Secret>,
    /// Members of this group (the ID token's `groups` claim) are administrators.
    pub oidc_admin_group: Option<String>,
    /// Accept the provider's JWT access tokens for this audience as bearer tokens on the API
    /// (service-to-service calls). Unset: only GlucoSync's own tokens.
    pub oidc_api_audience: Option<String>,
    /// Log in with email and password (off: single sign-on only).
    pub password_login: bool,
    /// AI summaries and questions (docs/insights.md): the key of an OpenAI-compatible API.
    /// Unset: the patterns only.
    pub openai_api_key: Option<Secret>,
    /// The API's base URL: OpenAI's, or any server speaking its chat completions API.
    pub openai_base_url: String,
    pub openai_model: String,
    /// Summaries and questions per person per day.
    pub openai_daily_limit: u32,
}

impl Default for Config {
    fn default() -> Self {
        let data_dir = PathBuf::from("data");
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: default_database_url(&data_dir),
            data_dir,
            web_dir: PathBuf::from("web/dist"),
            site_dir: PathBuf::from("site"),
            database_read_url: None,
            database_pool_size: 16,
            redis_url: None,
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
            push_subject: "mailto:admin@localhost".into(),
            push_allow_loopback: false,
            smtp_url: None,
            smtp_from: "GlucoSync <glucosync@localhost>".into(),
            smtp_ca_file: None,
            public_url: "http://127.0.0.1:8080".into(),
            metrics_listen: None,
            otlp_endpoint: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            session_ttl_hours: 24 * 30,
            cookie_secure: false,
            max_body_bytes: 8 * 1024 * 1024,
            shutdown_grace_seconds: 25,
            shutdown_drain_seconds: 0,
            api_rate_limit_per_minute: 1200,
            account_deletion_grace_days: 7,
            import_allow_private_urls: false,
            backup_output: None,
            backup_interval_hours: 6,
            backup_retention_days: 30,
            backup_key: None,
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            forecasts: true,
            mlflow_url: None,
            demo: false,
            oidc_issuer: None,
            oidc_client_id: "glucosync".into(),
            oidc_client_secret: None,
            oidc_admin_group: None,
            oidc_api_audience: None,
            password_login: true,
            openai_api_key: None,
            openai_base_url: "https://api.openai.com/v1".into(),
            openai_model: "gpt-4o-mini".into(),
            openai_daily_limit: 20,
        }
    }
}

fn default_database_url(data_dir: &Path) -> SecretUrl {
    SecretUrl(format!(
        "sqlite://{}",
        data_dir.join("glucosync.db").display()
    ))
}

/// The file and environment layers: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    web_dir: Option<PathBuf>,
    site_dir: Option<PathBuf>,
    database_url: Option<String>,
    database_read_url: Option<String>,
    database_pool_size: Option<usize>,
    redis_url: Option<String>,
    trusted_proxies: Option<String>,
    allowed_origins: Option<String>,
    push_subject: Option<String>,
    push_allow_loopback: Option<bool>,
    smtp_url: Option<String>,
    smtp_from: Option<String>,
    smtp_ca_file: Option<PathBuf>,
    public_url: Option<String>,
    metrics_listen: Option<String>,
    otlp_endpoint: Option<String>,
    log_format: Option<String>,
    log_level: Option<String>,
    session_ttl_hours: Option<u64>,
    cookie_secure: Option<bool>,
    max_body_bytes: Option<usize>,
    shutdown_grace_seconds: Option<u64>,
    shutdown_drain_seconds: Option<u64>,
    api_rate_limit_per_minute: Option<u32>,
    account_deletion_grace_days: Option<u32>,
    import_allow_private_urls: Option<bool>,
    backup_output: Option<String>,
    backup_interval_hours: Option<u32>,
    backup_retention_days: Option<u32>,
    backup_key: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    forecasts: Option<bool>,
    mlflow_url: Option<String>,
    demo: Option<bool>,
    oidc_issuer: Option<String>,
    oidc_client_id: Option<String>,
    oidc_client_secret: Option<String>,
    oidc_admin_group: Option<String>,
    oidc_api_audience: Option<String>,
    password_login: Option<bool>,
    openai_api_key: Option<String>,
    openai_base_url: Option<String>,
    openai_model: Option<String>,
    openai_daily_limit: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// Environment variables read, in the order `default-config` documents them.
pub const ENV_VARS: &[&str] = &[
    "GLUCOSYNC_LISTEN",
    "GLUCOSYNC_DATA_DIR",
    "GLUCOSYNC_WEB_DIR",
    "GLUCOSYNC_SITE_DIR",
    "GLUCOSYNC_DATABASE_URL",
    "GLUCOSYNC_DATABASE_READ_URL",
    "GLUCOSYNC_DATABASE_POOL_SIZE",
    "GLUCOSYNC_REDIS_URL",
    "GLUCOSYNC_TRUSTED_PROXIES",
    "GLUCOSYNC_ALLOWED_ORIGINS",
    "GLUCOSYNC_PUSH_SUBJECT",
    "GLUCOSYNC_PUSH_ALLOW_LOOPBACK",
    "GLUCOSYNC_SMTP_URL",
    "GLUCOSYNC_SMTP_FROM",
    "GLUCOSYNC_SMTP_CA_FILE",
    "GLUCOSYNC_PUBLIC_URL",
    "GLUCOSYNC_METRICS_LISTEN",
    "GLUCOSYNC_OTLP_ENDPOINT",
    "GLUCOSYNC_LOG_FORMAT",
    "GLUCOSYNC_LOG_LEVEL",
    "GLUCOSYNC_SESSION_TTL_HOURS",
    "GLUCOSYNC_COOKIE_SECURE",
    "GLUCOSYNC_MAX_BODY_BYTES",
    "GLUCOSYNC_SHUTDOWN_GRACE_SECONDS",
    "GLUCOSYNC_SHUTDOWN_DRAIN_SECONDS",
    "GLUCOSYNC_API_RATE_LIMIT_PER_MINUTE",
    "GLUCOSYNC_ACCOUNT_DELETION_GRACE_DAYS",
    "GLUCOSYNC_IMPORT_ALLOW_PRIVATE_URLS",
    "GLUCOSYNC_BACKUP_OUTPUT",
    "GLUCOSYNC_BACKUP_INTERVAL_HOURS",
    "GLUCOSYNC_BACKUP_RETENTION_DAYS",
    "GLUCOSYNC_BACKUP_KEY",
    "GLUCOSYNC_S3_ENDPOINT",
    "GLUCOSYNC_S3_REGION",
    "GLUCOSYNC_S3_ACCESS_KEY_ID",
    "GLUCOSYNC_S3_SECRET_ACCESS_KEY",
    "GLUCOSYNC_FORECASTS",
    "GLUCOSYNC_MLFLOW_URL",
    "GLUCOSYNC_DEMO",
    "GLUCOSYNC_OIDC_ISSUER",
    "GLUCOSYNC_OIDC_CLIENT_ID",
    "GLUCOSYNC_OIDC_CLIENT_SECRET",
    "GLUCOSYNC_OIDC_ADMIN_GROUP",
    "GLUCOSYNC_OIDC_API_AUDIENCE",
    "GLUCOSYNC_PASSWORD_LOGIN",
    "GLUCOSYNC_OPENAI_API_KEY",
    "GLUCOSYNC_OPENAI_BASE_URL",
    "GLUCOSYNC_OPENAI_MODEL",
    "GLUCOSYNC_OPENAI_DAILY_LIMIT",
];

impl Config {
    /// Defaults → `file` (if given) → the environment `env` (pass `std::env::vars()`).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let file_layer = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    bad(format!(
                        "cannot read the config file {}: {e}",
                        path.display()
                    ))
                })?;
                toml::from_str::<Layer>(&text).map_err(|e| {
                    bad(format!(
                        "{} is not a valid config file: {e}",
                        path.display()
                    ))
                })?
            }
            None => Layer::default(),
        };
        let env_layer = env_layer(env)?;
        let mut config = Config::default();
        let mut database_url_given = false;
        let mut cookie_secure_given = false;
        for layer in [file_layer, env_layer] {
            database_url_given |= layer.database_url.is_some();
            cookie_secure_given |= layer.cookie_secure.is_some();
            config.apply(layer)?;
        }
        if !database_url_given {
            config.database_url = default_database_url(&config.data_dir);
        }
        if !cookie_secure_given {
            // People reach the server over HTTPS (directly or through a proxy): browsers must
            // never send its cookies over plain HTTP.
            config.cookie_secure = config.public_url.starts_with("https://");
        }
        config.validate()?;
        Ok(config)
    }

    fn apply(&mut self, l: Layer) -> Result<(), ConfigError> {
        if let Some(v) = l.listen {
            self.listen = parse_addr("listen (GLUCOSYNC_LISTEN)", &v)?;
        }
        if let Some(v) = l.data_dir {
            self.data_dir = v;
        }
        if let Some(v) = l.web_dir {
            self.web_dir = v;
        }
        if let Some(v) = l.site_dir {
            self.site_dir = v;
        }
        if let Some(v) = l.database_url {
            self.database_url = SecretUrl(v);
        }
        if let Some(v) = l.database_read_url {
            self.database_read_url = (!v.is_empty()).then_some(SecretUrl(v));
        }
        if let Some(v) = l.database_pool_size {
            self.database_pool_size = v;
        }
        if let Some(v) = l.redis_url {
            self.redis_url = (!v.is_empty()).then_some(SecretUrl(v));
        }
        if let Some(v) = l.trusted_proxies {
            self.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse().map_err(|_| {
                        bad(format!(
                            "trusted_proxies (GLUCOSYNC_TRUSTED_PROXIES) holds `{p}`; list IP addresses or ranges (10.42.0.0/16) separated by commas"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = l.allowed_origins {
            self.allowed_origins = v
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .map(|o| {
                    if (o.starts_with("http://") || o.starts_with("https://"))
                        && !o["https://".len() - 1..].trim_start_matches('/').contains('/')
                    {
                        Ok(o)
                    } else {
                        Err(bad(format!(
                            "allowed_origins (GLUCOSYNC_ALLOWED_ORIGINS) holds `{o}`; list origins such as https://app.example.org separated by commas"
                        )))
                    }
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = l.push_subject {
            if !(v.starts_with("mailto:") || v.starts_with("https://")) {
                return Err(bad(format!(
                    "push_subject (GLUCOSYNC_PUSH_SUBJECT) is `{v}`; use mailto:you@example.org or an https:// URL"
                )));
            }
            self.push_subject = v;
        }
        if let Some(v) = l.push_allow_loopback {
            self.push_allow_loopback = v;
        }
        if let Some(v) = l.smtp_url {
            self.smtp_url = (!v.is_empty()).then_some(SecretUrl(v));
        }
        if let Some(v) = l.smtp_from {
            self.smtp_from = v;
        }
        if let Some(v) = l.smtp_ca_file {
            self.smtp_ca_file = (!v.as_os_str().is_empty()).then_some(v);
        }
        if let Some(v) = l.public_url {
            self.public_url = v.trim_end_matches('/').to_owned();
        }
        if let Some(v) = l.metrics_listen {
            self.metrics_listen = if v.is_empty() {
                None
            } else {
                Some(parse_addr("metrics_listen (GLUCOSYNC_METRICS_LISTEN)", &v)?)
            };
        }
        if let Some(v) = l.otlp_endpoint {
            let v = v.trim().trim_end_matches('/').to_owned();
            if !(v.is_empty() || v.starts_with("http://") || v.starts_with("https://")) {
                return Err(bad(format!(
                    "otlp_endpoint (GLUCOSYNC_OTLP_ENDPOINT) is `{v}`; use the OTLP/HTTP receiver's base URL, e.g. http://otel-collector:4318"
                )));
            }
            self.otlp_endpoint = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = l.log_format {
            self.log_format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(bad(format!(
                        "log_format (GLUCOSYNC_LOG_FORMAT) is `{v}`; use `text` or `json`"
                    )))
                }
            };
        }
        if let Some(v) = l.log_level {
            self.log_level = v;
        }
        if let Some(v) = l.session_ttl_hours {
            self.session_ttl_hours = v;
        }
        if let Some(v) = l.cookie_secure {
            self.cookie_secure = v;
        }
        if let Some(v) = l.max_body_bytes {
            self.max_body_bytes = v;
        }
        if let Some(v) = l.shutdown_grace_seconds {
            self.shutdown_grace_seconds = v;
        }
        if let Some(v) = l.shutdown_drain_seconds {
            self.shutdown_drain_seconds = v;
        }
        if let Some(v) = l.api_rate_limit_per_minute {
            self.api_rate_limit_per_minute = v;
        }
        if let Some(v) = l.account_deletion_grace_days {
            self.account_deletion_grace_days = v;
        }
        if let Some(v) = l.import_allow_private_urls {
            self.import_allow_private_urls = v;
        }
        if let Some(v) = l.backup_output {
            self.backup_output = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = l.backup_interval_hours {
            self.backup_interval_hours = v;
        }
        if let Some(v) = l.backup_retention_days {
            self.backup_retention_days = v;
        }
        if let Some(v) = l.backup_key {
            self.backup_key = (!v.is_empty()).then_some(Secret(v));
        }
        if let Some(v) = l.s3_endpoint {
            self.s3_endpoint = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = l.s3_region {
            self.s3_region = v;
        }
        if let Some(v) = l.s3_access_key_id {
            self.s3_access_key_id = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = l.s3_secret_access_key {
            self.s3_secret_access_key = (!v.is_empty()).then_some(Secret(v));
        }
        if let Some(v) = l.forecasts {
            self.forecasts = v;
        }
        if let Some(v) = l.mlflow_url {
            self.mlflow_url = (!v.trim().is_empty()).then(|| v.trim().to_owned());
        }
        if let Some(v) = l.demo {
            self.demo = v;
        }
        let text = |v: String| (!v.trim().is_empty()).then(|| v.trim().to_owned());
        if let Some(v) = l.oidc_issuer {
            // Compared with the discovery document's `issuer` exactly, so kept as given
            // (without a trailing slash only when given without).
            self.oidc_issuer = text(v);
        }
        if let Some(v) = l.oidc_client_id {
            self.oidc_client_id = v.trim().to_owned();
        }
        if let Some(v) = l.oidc_client_secret {
            self.oidc_client_secret = (!v.is_empty()).then_some(Secret(v));
        }
        if let Some(v) = l.oidc_admin_group {
            self.oidc_admin_group = text(v);
        }
        if let Some(v) = l.oidc_api_audience {
            self.oidc_api_audience = text(v);
        }
        if let Some(v) = l.password_login {
            self.password_login = v;
        }
        if let Some(v) = l.openai_api_key {
            self.openai_api_key = (!v.trim().is_empty()).then(|| Secret(v.trim().to_owned()));
        }
        if let Some(v) = l.openai_base_url {
            self.openai_base_url = v.trim().trim_end_matches('/').to_owned();
        }
        if let Some(v) = l.openai_model {
            self.openai_model = v.trim().to_owned();
        }
        if let Some(v) = l.openai_daily_limit {
            self.openai_daily_limit = v;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(issuer) = &self.oidc_issuer {
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                return Err(bad(format!(
                    "oidc_issuer (GLUCOSYNC_OIDC_ISSUER) is `{issuer}`; use the provider's issuer URL, e.g. https://auth.example.org/application/o/glucosync/"
                )));
            }
            if self.oidc_api_audience.as_deref() == Some(self.oidc_client_id.as_str()) {
                return Err(bad(
                    "oidc_api_audience (GLUCOSYNC_OIDC_API_AUDIENCE) equals oidc_client_id: the provider's ID tokens for GlucoSync would pass as API tokens; give the API its own audience (e.g. urn:glucosync:api)",
                ));
            }
            if self.oidc_client_id.is_empty() {
                return Err(bad(
                    "oidc_client_id (GLUCOSYNC_OIDC_CLIENT_ID) is empty; name the client registered at the provider",
                ));
            }
        }
        if !(self.openai_base_url.starts_with("https://")
            || self.openai_base_url.starts_with("http://"))
        {
            return Err(bad(format!(
                "openai_base_url (GLUCOSYNC_OPENAI_BASE_URL) is `{}`; use https://api.openai.com/v1 or another OpenAI-compatible server's URL",
                self.openai_base_url
            )));
        }
        if self.openai_model.is_empty() {
            return Err(bad("openai_model (GLUCOSYNC_OPENAI_MODEL) is empty; name a chat model such as gpt-4o-mini"));
        }
        if !self.password_login && self.oidc_issuer.is_none() {
            return Err(bad(
                "password_login (GLUCOSYNC_PASSWORD_LOGIN) is off but no oidc_issuer is set: nobody could log in",
            ));
        }
        let url = self.database_url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(bad(format!(
                "database_url (GLUCOSYNC_DATABASE_URL) is `{}`; use sqlite://path/to/file.db or postgres://user@host/db",
                self.database_url
            )));
        }
        if let Some(r) = &self.database_read_url {
            if !(r.expose().starts_with("postgres://") || r.expose().starts_with("postgresql://"))
                || url.starts_with("sqlite:")
            {
                return Err(bad(format!(
                    "database_read_url (GLUCOSYNC_DATABASE_READ_URL) is `{r}`; it must be a postgres:// URL, and database_url too"
                )));
            }
        }
        for (dir, key, example) in [
            (&self.web_dir, "web_dir (GLUCOSYNC_WEB_DIR)", "web/dist"),
            (&self.site_dir, "site_dir (GLUCOSYNC_SITE_DIR)", "site"),
        ] {
            if dir.as_os_str().is_empty() {
                return Err(bad(format!(
                    "{key} is empty; name a directory such as `{example}` (it may not exist yet)"
                )));
            }
            // Missing is fine (not built yet); a file where a directory belongs is a mistake
            // that would otherwise only show as 404s.
            if dir.exists() && !dir.is_dir() {
                return Err(bad(format!(
                    "{key} is `{}`, which is not a directory; name the directory the files are built into, such as `{example}`",
                    dir.display()
                )));
            }
        }
        if !(1..=1000).contains(&self.database_pool_size) {
            return Err(bad(
                "database_pool_size (GLUCOSYNC_DATABASE_POOL_SIZE) must be between 1 and 1000",
            ));
        }
        if let Some(r) = &self.redis_url {
            if !(r.expose().starts_with("redis://") || r.expose().starts_with("redis+sentinel://"))
            {
                return Err(bad(format!(
                    "redis_url (GLUCOSYNC_REDIS_URL) is `{r}`; use redis://host:6379 or redis+sentinel://host:26379/mymaster, or leave it unset"
                )));
            }
        }
        if let Some(u) = &self.smtp_url {
            if !(u.expose().starts_with("smtp://") || u.expose().starts_with("smtps://")) {
                return Err(bad(format!(
                    "smtp_url (GLUCOSYNC_SMTP_URL) is `{u}`; use smtp://user:password@host:587 (STARTTLS), smtps://host:465, or smtp://host:25?tls=none"
                )));
            }
        }
        if self.smtp_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(bad(format!(
                "smtp_from (GLUCOSYNC_SMTP_FROM) is `{}`; use an address such as GlucoSync <alerts@example.org>",
                self.smtp_from
            )));
        }
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            return Err(bad(format!(
                "public_url (GLUCOSYNC_PUBLIC_URL) is `{}`; use the address people open, e.g. https://glucosync.example.org",
                self.public_url
            )));
        }
        if let Some(u) = &self.mlflow_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(bad(format!(
                    "mlflow_url (GLUCOSYNC_MLFLOW_URL) is `{u}`; use http://host:5000, or leave it unset"
                )));
            }
        }
        if !(1..=24 * 365).contains(&self.session_ttl_hours) {
            return Err(bad(
                "session_ttl_hours (GLUCOSYNC_SESSION_TTL_HOURS) must be between 1 and 8760",
            ));
        }
        if !(64 * 1024..=256 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(bad(
                "max_body_bytes (GLUCOSYNC_MAX_BODY_BYTES) must be between 65536 and 268435456",
            ));
        }
        if self.account_deletion_grace_days > 30 {
            return Err(bad(
                "account_deletion_grace_days (GLUCOSYNC_ACCOUNT_DELETION_GRACE_DAYS) must be between 0 and 30",
            ));
        }
        if !(1..=24 * 7).contains(&self.backup_interval_hours) {
            return Err(bad(
                "backup_interval_hours (GLUCOSYNC_BACKUP_INTERVAL_HOURS) must be between 1 and 168",
            ));
        }
        if !(1..=3650).contains(&self.backup_retention_days) {
            return Err(bad(
                "backup_retention_days (GLUCOSYNC_BACKUP_RETENTION_DAYS) must be between 1 and 3650",
            ));
        }
        if let Some(output) = &self.backup_output {
            if !self.database_url.expose().starts_with("sqlite:") {
                return Err(bad(
                    "backup_output schedules backups of the embedded database; with PostgreSQL \
                     use its own backups (WAL-G, point-in-time recovery) and `glucoengine export \
                     --all` (docs/data-ownership.md)",
                ));
            }
            if self
                .backup_key
                .as_ref()
                .is_none_or(|k| k.expose().chars().count() < 16)
            {
                return Err(bad(format!(
                    "backup_output is `{output}`, so backups are scheduled: set backup_key \
                     (GLUCOSYNC_BACKUP_KEY), a passphrase of 16 characters or more"
                )));
            }
            if output.starts_with("s3://")
                && (self.s3_access_key_id.is_none() || self.s3_secret_access_key.is_none())
            {
                return Err(bad(
                    "backup_output is an s3:// bucket: set s3_access_key_id and \
                     s3_secret_access_key (GLUCOSYNC_S3_ACCESS_KEY_ID, GLUCOSYNC_S3_SECRET_ACCESS_KEY)",
                ));
            }
        }
        if let Some(endpoint) = &self.s3_endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(bad(format!(
                    "s3_endpoint (GLUCOSYNC_S3_ENDPOINT) is `{endpoint}`; use http(s)://host:port"
                )));
            }
        }
        if self.metrics_listen == Some(self.listen) {
            return Err(bad("metrics_listen must differ from listen; unset it to serve /metrics on the main listener"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level).map_err(|e| {
            bad(format!(
                "log_level (GLUCOSYNC_LOG_LEVEL) `{}` is not a valid filter ({e}); try `info` or `debug`",
                self.log_level
            ))
        })?;
        Ok(())
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        format!(
            "listen = {:?}\ndata_dir = {:?}\nweb_dir = {:?}\nsite_dir = {:?}\ndatabase_url = {:?}\ndatabase_read_url = {:?}\ndatabase_pool_size = {}\n\
             redis_url = {:?}\ntrusted_proxies = {:?}\nallowed_origins = {:?}\npush_subject = {:?}\npush_allow_loopback = {}\nsmtp_url = {:?}\nsmtp_from = {:?}\nsmtp_ca_file = {:?}\npublic_url = {:?}\nmetrics_listen = {:?}\notlp_endpoint = {:?}\n\
             log_format = {:?}\nlog_level = {:?}\nsession_ttl_hours = {}\ncookie_secure = {}\n\
             max_body_bytes = {}\nshutdown_grace_seconds = {}\nshutdown_drain_seconds = {}\n\
             api_rate_limit_per_minute = {}\naccount_deletion_grace_days = {}\nimport_allow_private_urls = {}\n\
             backup_output = {:?}\nbackup_interval_hours = {}\nbackup_retention_days = {}\nbackup_key = {:?}\n\
             s3_endpoint = {:?}\ns3_region = {:?}\ns3_access_key_id = {:?}\ns3_secret_access_key = {:?}\nforecasts = {}\nmlflow_url = {:?}\ndemo = {}\n\
             oidc_issuer = {:?}\noidc_client_id = {:?}\noidc_client_secret = {:?}\noidc_admin_group = {:?}\n\
             oidc_api_audience = {:?}\npassword_login = {}\n\
             openai_api_key = {:?}\nopenai_base_url = {:?}\nopenai_model = {:?}\nopenai_daily_limit = {}\n",
            self.listen.to_string(),
            self.data_dir.display().to_string(),
            self.web_dir.display().to_string(),
            self.site_dir.display().to_string(),
            self.database_url.redacted(),
            opt(&self.database_read_url.as_ref().map(|r| r.redacted())),
            self.database_pool_size,
            opt(&self.redis_url.as_ref().map(|r| r.redacted())),
            self.trusted_proxies.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
            self.allowed_origins.join(","),
            self.push_subject,
            self.push_allow_loopback,
            opt(&self.smtp_url.as_ref().map(|r| r.redacted())),
            self.smtp_from,
            opt(&self.smtp_ca_file.as_ref().map(|p| p.display().to_string())),
            self.public_url,
            opt(&self.metrics_listen.map(|a| a.to_string())),
            opt(&self.otlp_endpoint),
            match self.log_format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            },
            self.log_level,
            self.session_ttl_hours,
            self.cookie_secure,
            self.max_body_bytes,
            self.shutdown_grace_seconds,
            self.shutdown_drain_seconds,
            self.api_rate_limit_per_minute,
            self.account_deletion_grace_days,
            self.import_allow_private_urls,
            opt(&self.backup_output),
            self.backup_interval_hours,
            self.backup_retention_days,
            opt(&self.backup_key.as_ref().map(|_| "***".to_owned())),
            opt(&self.s3_endpoint),
            self.s3_region,
            opt(&self.s3_access_key_id),
            opt(&self.s3_secret_access_key.as_ref().map(|_| "***".to_owned())),
            self.forecasts,
            opt(&self.mlflow_url),
            self.demo,
            opt(&self.oidc_issuer),
            self.oidc_client_id,
            opt(&self.oidc_client_secret.as_ref().map(|_| "***".to_owned())),
            opt(&self.oidc_admin_group),
            opt(&self.oidc_api_audience),
            self.password_login,
            opt(&self.openai_api_key.as_ref().map(|_| "***".to_owned())),
            self.openai_base_url,
            self.openai_model,
            self.openai_daily_limit,
        )
    }
}

/// An IP address or a CIDR range (`10.42.0.0/16`, `fd00::/8`): a trusted proxy in a cluster
/// is any pod of the ingress controller, whose addresses change with every restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: std::net::IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack listener.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpRange {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: std::net::IpAddr = addr.parse().map_err(|_| ())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or(())?,
            None => max,
        };
        Ok(IpRange { network, prefix })
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let max = if self.network.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            write!(f, "{}", self.network)
        } else {
            write!(f, "{}/{}", self.network, self.prefix)
        }
    }
}

fn parse_addr(what: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse().map_err(|_| {
        bad(format!(
            "{what} is `{v}`; use an address and port such as 127.0.0.1:8080 or [::]:8080"
        ))
    })
}

fn parse_env<T: std::str::FromStr>(name: &str, v: &str, expected: &str) -> Result<T, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| bad(format!("{name} is `{v}`; expected {expected}")))
}

fn env_layer(env: impl IntoIterator<Item = (String, String)>) -> Result<Layer, ConfigError> {
    let mut l = Layer::default();
    // The standard variable of OpenTelemetry's SDKs, for where GLUCOSYNC_OTLP_ENDPOINT is unset.
    let mut otel_endpoint = None;
    for (key, value) in env {
        if key == "OTEL_EXPORTER_OTLP_ENDPOINT" {
            otel_endpoint = Some(value);
            continue;
        }
        let Some(name) = key.strip_prefix("GLUCOSYNC_") else {
            continue;
        };
        match name {
            "LISTEN" => l.listen = Some(value),
            "DATA_DIR" => l.data_dir = Some(PathBuf::from(value)),
            "WEB_DIR" => l.web_dir = Some(PathBuf::from(value)),
            "SITE_DIR" => l.site_dir = Some(PathBuf::from(value)),
            "DATABASE_URL" => l.database_url = Some(value),
            "DATABASE_READ_URL" => l.database_read_url = Some(value),
            "DATABASE_POOL_SIZE" => {
                l.database_pool_size = Some(parse_env(&key, &value, "a number of connections")?)
            }
            "REDIS_URL" => l.redis_url = Some(value),
            "TRUSTED_PROXIES" => l.trusted_proxies = Some(value),
            "ALLOWED_ORIGINS" => l.allowed_origins = Some(value),
            "PUSH_SUBJECT" => l.push_subject = Some(value),
            "SMTP_URL" => l.smtp_url = Some(value),
            "SMTP_FROM" => l.smtp_from = Some(value),
            "SMTP_CA_FILE" => l.smtp_ca_file = Some(PathBuf::from(value)),
            "PUBLIC_URL" => l.public_url = Some(value),
            "PUSH_ALLOW_LOOPBACK" => {
                l.push_allow_loopback = Some(parse_env(&key, &value, "true or false")?)
            }
            "METRICS_LISTEN" => l.metrics_listen = Some(value),
            "OTLP_ENDPOINT" => l.otlp_endpoint = Some(value),
            "LOG_FORMAT" => l.log_format = Some(value),
            "LOG_LEVEL" => l.log_level = Some(value),
            "SESSION_TTL_HOURS" => {
                l.session_ttl_hours = Some(parse_env(&key, &value, "a number of hours")?)
            }
            "COOKIE_SECURE" => l.cookie_secure = Some(parse_bool(&key, &value)?),
            "MAX_BODY_BYTES" => {
                l.max_body_bytes = Some(parse_env(&key, &value, "a number of bytes")?)
            }
            "SHUTDOWN_GRACE_SECONDS" => {
                l.shutdown_grace_seconds = Some(parse_env(&key, &value, "a number of seconds")?)
            }
            "SHUTDOWN_DRAIN_SECONDS" => {
                l.shutdown_drain_seconds = Some(parse_env(&key, &value, "a number of seconds")?)
            }
            "API_RATE_LIMIT_PER_MINUTE" => {
                l.api_rate_limit_per_minute = Some(parse_env(
                    &key,
                    &value,
                    "a number of requests (0: no limit)",
                )?)
            }
            "ACCOUNT_DELETION_GRACE_DAYS" => {
                l.account_deletion_grace_days = Some(parse_env(&key, &value, "a number of days")?)
            }
            "IMPORT_ALLOW_PRIVATE_URLS" => {
                l.import_allow_private_urls = Some(parse_bool(&key, &value)?)
            }
            "BACKUP_OUTPUT" => l.backup_output = Some(value),
            "BACKUP_INTERVAL_HOURS" => {
                l.backup_interval_hours = Some(parse_env(&key, &value, "a number of hours")?)
            }
            "BACKUP_RETENTION_DAYS" => {
                l.backup_retention_days = Some(parse_env(&key, &value, "a number of days")?)
            }
            "BACKUP_KEY" => l.backup_key = Some(value),
            "S3_ENDPOINT" => l.s3_endpoint = Some(value),
            "S3_REGION" => l.s3_region = Some(value),
            "S3_ACCESS_KEY_ID" => l.s3_access_key_id = Some(value),
            "S3_SECRET_ACCESS_KEY" => l.s3_secret_access_key = Some(value),
            "FORECASTS" => l.forecasts = Some(parse_bool(&key, &value)?),
            "MLFLOW_URL" => l.mlflow_url = Some(value),
            "DEMO" => l.demo = Some(parse_bool(&key, &value)?),
            "OIDC_ISSUER" => l.oidc_issuer = Some(value),
            "OIDC_CLIENT_ID" => l.oidc_client_id = Some(value),
            "OIDC_CLIENT_SECRET" => l.oidc_client_secret = Some(value),
            "OIDC_ADMIN_GROUP" => l.oidc_admin_group = Some(value),
            "OIDC_API_AUDIENCE" => l.oidc_api_audience = Some(value),
            "PASSWORD_LOGIN" => l.password_login = Some(parse_bool(&key, &value)?),
            "OPENAI_API_KEY" => l.openai_api_key = Some(value),
            "OPENAI_BASE_URL" => l.openai_base_url = Some(value),
            "OPENAI_MODEL" => l.openai_model = Some(value),
            "OPENAI_DAILY_LIMIT" => {
                l.openai_daily_limit = Some(parse_env(&key, &value, "a number per person per day")?)
            }
            // Read by the command line, not by the server configuration.
            "CONFIG" => {}
            _ => {
                return Err(bad(format!(
                    "unknown environment variable {key}; known: {}",
                    ENV_VARS.join(", ")
                )))
            }
        }
    }
    if l.otlp_endpoint.is_none() {
        l.otlp_endpoint = otel_endpoint;
    }
    Ok(l)
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(bad(format!("{name} is `{v}`; use true or false"))),
    }
}

/// A commented example configuration file, printed by `glucoengine default-config`.
pub const EXAMPLE_CONFIG: &str = r#"# GlucoEngine configuration. Every key is optional; shown are the defaults.
# Each key can also be set by an environment variable, which wins over this file:
# GLUCOSYNC_ followed by the key in upper case (listen -> GLUCOSYNC_LISTEN).

# Address and port for the API, the web app and the site.
listen = "127.0.0.1:8080"

# Directory for the embedded database and generated keys.
data_dir = "data"

# The built web app, served at /app/ (scripts/web build writes web/dist), and the static site,
# served at /. Read from disk at each request; relative paths are relative to the working
# directory. A directory that does not exist yet is fine: /app/ then says how to build it, and
# / shows a built-in page. In a cluster, an nginx container serves both instead.
web_dir = "web/dist"
site_dir = "site"

# Storage. Default: an SQLite file in data_dir. In a cluster: postgres://user:password@host/db
# SQLite options: ?synchronous=full (default, survives power loss) or normal (survives a crash
# of GlucoEngine but not of the machine), &readers=4 (read connections).
# database_url = "sqlite://data/glucosync.db"

# PostgreSQL only: a streaming replica for range listings (they may lag the primary by the
# replication delay), and the connections each GlucoEngine replica keeps per pool.
# database_read_url = "postgres://user:password@replica/glucosync"
database_pool_size = 16

# Shared state between replicas. Unset: in-process (one replica).
# redis://host:6379/0, or through Sentinel: redis+sentinel://host1:26379,host2:26379/mymaster
# redis_url = "redis://127.0.0.1:6379"

# Load balancers whose X-Forwarded-For header names the real client (for per-address limits),
# as IP addresses or CIDR ranges (a cluster's pod network: 10.42.0.0/16) separated by commas.
# Unset: the TCP peer is the client.
trusted_proxies = ""

# Web origins besides GlucoEngine's own that may open the live WebSocket with the session
# cookie (e.g. the PWA served from another host), separated by commas.
allowed_origins = ""

# Web Push: who runs this installation (told to push services), and whether endpoints at
# http:// loopback addresses are accepted (a local push service; off in production).
push_subject = "mailto:admin@localhost"
push_allow_loopback = false

# Email (invites, and alerts for those who choose it). smtp://user:password@host:587 uses
# STARTTLS (required), smtps://host:465 TLS from the start, smtp://host:25?tls=none no TLS
# (a relay on the same machine). Unset: no email; invites are shared by hand.
# smtp_url = "smtp://alerts:secret@mail.example.org:587"
smtp_from = "GlucoSync <glucosync@localhost>"
# smtp_ca_file = "/etc/glucosync/mail-ca.pem"
# Where people open GlucoSync (links in emails).
public_url = "http://127.0.0.1:8080"

# Serve /metrics on a separate address (e.g. for a scraper on a private network).
# Unset: /metrics is on the main listener.
# metrics_listen = "127.0.0.1:9090"

# OpenTelemetry traces over OTLP/HTTP to this collector (spans go to <it>/v1/traces): one span
# per request, with the database, Redis, SMTP, push and OpenAI calls inside, and the trace id
# in every log line of the request. The standard OTEL_EXPORTER_OTLP_ENDPOINT works too.
# otlp_endpoint = "http://otel-collector:4318"

# Logs: "text" for people, "json" for log collectors. Level: error, warn, info, debug.
log_format = "text"
log_level = "info"

# Login sessions last this long.
session_ttl_hours = 720

# Mark cookies Secure. Turn on when GlucoEngine is served over HTTPS.
cookie_secure = false

# Largest request body accepted, in bytes (a 10,000-reading batch is about 1.5 MB).
max_body_bytes = 8388608

# On SIGTERM/SIGINT, how long to wait for requests in flight.
shutdown_grace_seconds = 25

# Before that, fail readiness for this long while still serving, so that a load balancer
# (HAProxy checks /healthz) moves traffic away first. Use 3 or more behind HAProxy.
shutdown_drain_seconds = 0

# Requests per minute one person's credentials may make to the API, counted across all
# replicas; more get 429 with Retry-After. 0 turns the limit off.
api_rate_limit_per_minute = 1200

# Days between a person asking to delete their account and its deletion (0-30; 0: at once).
# From the moment they ask, their sessions, tokens, shares and Nightscout site stop working;
# logging in again during these days lets them cancel. Backups keep a deleted account until
# they expire (backup retention, docs/data-ownership.md).
account_deletion_grace_days = 7

# Let people import from a Nightscout site at an address inside this server's network
# (loopback, private ranges). Off by default: a URL a person types must not reach internal
# services.
import_allow_private_urls = false

# Backups of the embedded database (docs/data-ownership.md). With backup_output set, the server
# takes one every backup_interval_hours (on one replica) into that directory or S3 bucket,
# compressed and encrypted with backup_key, and deletes those older than
# backup_retention_days. `glucoengine backup --output …` takes one by hand;
# `glucoengine restore <backup>` restores one into an empty data directory. Without the key, no
# backup can be restored: keep it somewhere else than the backups.
# backup_output = "s3://backups/glucosync"
backup_interval_hours = 6
backup_retention_days = 30
# backup_key = "…"

# S3-compatible storage for s3:// backup outputs; unset endpoint means AWS.
# s3_endpoint = "http://minio:9000"
s3_region = "us-east-1"
# s3_access_key_id = "…"
# s3_secret_access_key = "…"

# Forecast each CGM reading as it arrives (GET /api/v1/forecast) and fit personal forecast
# models as data accumulates. Forecasts are informational, never dosing advice.
forecasts = true

# An MLflow tracking server (http://host:port) where each personal model fit is logged as a
# run (parameters, metrics, the model). Unset: no tracking. Fitting never waits for it.
# mlflow_url = "http://127.0.0.1:5000"

# Create (or refresh) a demo account with ten days of simulated data at startup.
demo = false

# Single sign-on through an OpenID Connect provider (Authentik in the cluster): its issuer
# URL, and the client registered there for GlucoSync with the redirect URI
# <public_url>/api/v1/auth/oidc/callback. Unset: no single sign-on. docs/sso.md has the rules
# for linking accounts.
# oidc_issuer = "https://auth.example.org/application/o/glucosync/"
oidc_client_id = "glucosync"
# oidc_client_secret = "…"
# Members of this group (the ID token's groups claim) are administrators.
# oidc_admin_group = "glucosync-admins"
# Accept the provider's JWT access tokens with this audience on the API (service calls).
# oidc_api_audience = "urn:glucosync:api"

# Log in with email and password. Off: single sign-on only (needs oidc_issuer).
password_login = true

# AI summaries and questions about a person's data (for those who opt in; only aggregates
# and detected patterns are sent, never names, emails or notes). Any server speaking
# OpenAI's chat completions API works. Unset key: the patterns alone (always available).
# openai_api_key = "sk-…"
openai_base_url = "https://api.openai.com/v1"
openai_model = "gpt-4o-mini"
# Summaries and questions per person per day.
openai_daily_limit = 20
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn traces_go_to_the_named_otlp_endpoint_or_the_standard_variables() {
        let load = |vars: &[(&str, &str)]| {
            Config::load(
                None,
                vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            )
        };
        assert_eq!(load(&[]).expect("config").otlp_endpoint, None);
        let standard = load(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert_eq!(
            standard.expect("config").otlp_endpoint.as_deref(),
            Some("http://collector:4318")
        );
        let both = load(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("GLUCOSYNC_OTLP_ENDPOINT", "https://tempo.example.org"),
        ]);
        assert_eq!(
            both.expect("config").otlp_endpoint.as_deref(),
            Some("https://tempo.example.org")
        );
        let wrong = load(&[("GLUCOSYNC_OTLP_ENDPOINT", "collector:4317")]).expect_err("refused");
        assert!(wrong.to_string().contains("otlp_endpoint"), "{wrong}");
    }

    #[test]
    fn cookies_are_secure_by_default_when_people_use_https() {
        let load = |pairs: &[(&str, &str)]| Config::load(None, env(pairs)).expect("config");
        assert!(!load(&[]).cookie_secure);
        assert!(load(&[("GLUCOSYNC_PUBLIC_URL", "https://glucosync.example.org")]).cookie_secure);
        assert!(
            !load(&[
                ("GLUCOSYNC_PUBLIC_URL", "https://glucosync.example.org"),
                ("GLUCOSYNC_COOKIE_SECURE", "false"),
            ])
            .cookie_secure
        );
        assert!(load(&[("GLUCOSYNC_COOKIE_SECURE", "true")]).cookie_secure);
    }

    #[test]
    fn single_sign_on_and_ai_settings_are_validated_and_their_secrets_never_shown() {
        let c = Config::load(
            None,
            env(&[
                (
                    "GLUCOSYNC_OIDC_ISSUER",
                    "https://auth.example.org/application/o/gs/",
                ),
                ("GLUCOSYNC_OIDC_CLIENT_SECRET", "client-secret-value"),
                ("GLUCOSYNC_OPENAI_API_KEY", "sk-secret-key-value"),
                ("GLUCOSYNC_PASSWORD_LOGIN", "false"),
            ]),
        )
        .expect("valid");
        assert!(!c.password_login);
        for shown in [format!("{c:?}"), c.to_redacted_toml()] {
            assert!(
                !shown.contains("client-secret-value") && !shown.contains("sk-secret-key-value"),
                "{shown}"
            );
        }
        for (pairs, says) in [
            (
                vec![("GLUCOSYNC_PASSWORD_LOGIN", "false")],
                "nobody could log in",
            ),
            (
                vec![("GLUCOSYNC_OIDC_ISSUER", "auth.example.org")],
                "issuer URL",
            ),
            (
                vec![
                    ("GLUCOSYNC_OIDC_ISSUER", "https://auth.example.org"),
                    ("GLUCOSYNC_OIDC_API_AUDIENCE", "glucosync"),
                ],
                "ID tokens",
            ),
            (
                vec![("GLUCOSYNC_OPENAI_BASE_URL", "api.openai.com")],
                "OpenAI-compatible",
            ),
        ] {
            let e = Config::load(None, env(&pairs)).expect_err("refused");
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = Config::load(None, env(&[])).expect("defaults valid");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url.expose(), "sqlite://data/glucosync.db");
        assert!(c.redis_url.is_none() && c.metrics_listen.is_none());
        assert_eq!(c.web_dir, PathBuf::from("web/dist"));
        assert_eq!(c.site_dir, PathBuf::from("site"));
    }

    #[test]
    fn web_and_site_directories_come_from_the_environment_and_may_not_exist_yet() {
        let c = Config::load(
            None,
            env(&[
                ("GLUCOSYNC_WEB_DIR", "/srv/glucosync/not-built-yet"),
                ("GLUCOSYNC_SITE_DIR", "public"),
            ]),
        )
        .expect("a missing directory is not an error");
        assert_eq!(c.web_dir, PathBuf::from("/srv/glucosync/not-built-yet"));
        assert_eq!(c.site_dir, PathBuf::from("public"));
    }

    #[test]
    fn environment_wins_over_file_and_data_dir_moves_the_database() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("glucosync.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nlog_level = \"debug\"\n",
        )
        .expect("write");
        let c = Config::load(
            Some(&file),
            env(&[
                ("GLUCOSYNC_LISTEN", "0.0.0.0:7000"),
                ("GLUCOSYNC_DATA_DIR", "/srv/gs"),
                ("PATH", "/bin"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.listen.to_string(), "0.0.0.0:7000");
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.database_url.expose(), "sqlite:///srv/gs/glucosync.db");
    }

    #[test]
    fn example_config_parses_to_the_defaults() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("example.toml");
        std::fs::write(&file, EXAMPLE_CONFIG).expect("write");
        let c = Config::load(Some(&file), env(&[])).expect("example is valid");
        assert_eq!(
            c.to_redacted_toml(),
            Config::load(None, env(&[]))
                .expect("defaults")
                .to_redacted_toml()
        );
    }

    #[test]
    fn mistakes_get_messages_that_say_how_to_fix_them() {
        for (pairs, needle) in [
            (vec![("GLUCOSYNC_LISTEN", "8080")], "127.0.0.1:8080"),
            (vec![("GLUCOSYNC_DATABASE_URL", "mysql://x")], "postgres://"),
            (vec![("GLUCOSYNC_REDIS_URL", "http://x")], "redis://"),
            (vec![("GLUCOSYNC_LOG_FORMAT", "xml")], "`json`"),
            (vec![("GLUCOSYNC_DEMO", "maybe")], "true or false"),
            (vec![("GLUCOSYNC_WEB_DIR", "")], "web/dist"),
            (
                vec![("GLUCOSYNC_SITE_DIR", "Cargo.toml")],
                "not a directory",
            ),
            (
                vec![("GLUCOSYNC_LISTN", "x")],
                "unknown environment variable GLUCOSYNC_LISTN",
            ),
            (
                vec![("GLUCOSYNC_TRUSTED_PROXIES", "10.42.0.0/33")],
                "10.42.0.0/16",
            ),
            (vec![("GLUCOSYNC_TRUSTED_PROXIES", "ingress")], "ranges"),
        ] {
            let err = Config::load(None, env(&pairs))
                .expect_err("invalid")
                .to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "lisen = \"x\"\n").expect("write");
        let err = Config::load(Some(&file), env(&[]))
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges_and_print_back_as_given() {
        let c = Config::load(
            None,
            env(&[(
                "GLUCOSYNC_TRUSTED_PROXIES",
                "10.0.0.5, 10.42.0.0/16,fd00::/8, 0.0.0.0/0",
            )]),
        )
        .expect("valid");
        let shown: Vec<String> = c.trusted_proxies.iter().map(|r| r.to_string()).collect();
        assert_eq!(shown, ["10.0.0.5", "10.42.0.0/16", "fd00::/8", "0.0.0.0/0"]);
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
        assert!(c.trusted_proxies[0].contains(ip("10.0.0.5")));
        assert!(!c.trusted_proxies[0].contains(ip("10.0.0.6")));
        assert!(c.trusted_proxies[1].contains(ip("10.42.255.1")));
        assert!(!c.trusted_proxies[1].contains(ip("10.43.0.1")));
        assert!(c.trusted_proxies[2].contains(ip("fd12::1")));
        assert!(
            !c.trusted_proxies[2].contains(ip("10.42.0.1")),
            "families differ"
        );
        assert!(
            c.trusted_proxies[3].contains(ip("198.51.100.1")),
            "/0 is everything"
        );
    }

    #[test]
    fn secrets_are_redacted_when_printed() {
        let c = Config::load(
            None,
            env(&[
                (
                    "GLUCOSYNC_DATABASE_URL",
                    "postgres://app:hunter2secret@db:5432/gs",
                ),
                ("GLUCOSYNC_REDIS_URL", "redis://:redispass@cache:6379"),
            ]),
        )
        .expect("valid");
        for printed in [format!("{c:?}"), c.to_redacted_toml()] {
            assert!(
                !printed.contains("hunter2secret") && !printed.contains("redispass"),
                "{printed}"
            );
            assert!(
                printed.contains("postgres://app:***@db:5432/gs"),
                "{printed}"
            );
        }
    }
}
