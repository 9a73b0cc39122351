//! Pulling a person's history from their Nightscout site (docs/data-ownership.md): entries
//! and treatments are read page by page from the site's API v1, newest first, and written to
//! a spool file as one Nightscout document, which the ordinary import then reads (so a pull
//! and a file import of the same records are the same import).
//!
//! The server fetches a URL the person gives, so it refuses addresses inside the server's
//! own network (loopback, private, link-local: cloud metadata services live there) unless the
//! operator allows them, and connects to the address it checked (no second DNS answer).

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

/// Records per request.
const PAGE: usize = 1000;
/// A collection longer than this many records is cut (ten years of 5-minute readings); the
/// log says so.
const MAX_RECORDS: usize = 1_100_000;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0}")]
    BadUrl(String),
    #[error("the Nightscout site answered {status} for {what}: {hint}")]
    Refused {
        status: u16,
        what: &'static str,
        hint: &'static str,
    },
    #[error("the Nightscout site could not be reached: {0}")]
    Unreachable(String),
    #[error("the Nightscout site sent something that is not Nightscout's JSON ({0})")]
    NotNightscout(String),
    #[error("writing the spool file: {0}")]
    Io(#[from] std::io::Error),
}

/// How to reach a site and what to pull.
pub struct Pull {
    /// The site's base URL, e.g. `https://me.herokuapp.com` (a path prefix is kept).
    pub url: String,
    /// An access token (`?token=`), or the API secret (sent as its SHA-1 in `api-secret`).
    pub token: Option<String>,
    pub api_secret: Option<String>,
    /// Only records at or after this time (ms); all when `None`.
    pub since_ms: Option<i64>,
    pub allow_private_addresses: bool,
}

/// A client pinned to the checked address of `url`'s host, and the base URL.
async fn client_for(pull: &Pull) -> Result<(reqwest::Client, String), PullError> {
    let url = reqwest::Url::parse(pull.url.trim_end_matches('/'))
        .map_err(|e| PullError::BadUrl(format!("`{}` is not a URL ({e})", pull.url)))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(PullError::BadUrl(
            "the URL must be an https:// (or http://) address".into(),
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| PullError::BadUrl("the URL names no host".into()))?
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| PullError::Unreachable(format!("{host}: {e}")))?
        .collect();
    let Some(address) = addresses
        .iter()
        .find(|a| pull.allow_private_addresses || crate::outbound::is_public(a.ip()))
        .copied()
    else {
        return Err(PullError::BadUrl(format!(
            "{host} is an address inside this server's network; only public sites can be pulled"
        )));
    };
    let client = reqwest::Client::builder()
        .resolve(&host, address)
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| PullError::Unreachable(e.to_string()))?;
    Ok((client, url.as_str().trim_end_matches('/').to_owned()))
}

/// Writes the site's entries and treatments (newest first) into `out` as
/// `{"entries":[…],"treatments":[…]}`; returns how many records.
pub async fn pull_into(pull: &Pull, out: &mut impl Write) -> Result<usize, PullError> {
    let (client, base) = client_for(pull).await?;
    let secret = pull
        .api_secret
        .as_deref()
        .map(crate::nightscout::access::sha1_hex);
    let mut total = 0;
    out.write_all(b"{")?;
    for (i, (collection, time_field)) in [("entries", "date"), ("treatments", "created_at")]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.write_all(b",")?;
        }
        write!(out, "\"{collection}\":[")?;
        let mut before: Option<Value> = None;
        let mut first = true;
        let mut pulled = 0;
        loop {
            let mut query: Vec<(String, String)> = vec![("count".into(), PAGE.to_string())];
            if let Some(token) = &pull.token {
                query.push(("token".into(), token.clone()));
            }
            if let Some(b) = &before {
                let bound = match b {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                // At or before: records sharing the page's oldest time that did not fit on it
                // come on the next page (those that did come again, and count as duplicates).
                query.push((format!("find[{time_field}][$lte]"), bound));
            }
            if let Some(since) = pull.since_ms {
                let bound = if time_field == "date" {
                    since.to_string()
                } else {
                    glucosync_domain::Timestamp::from_utc_ms(since).to_rfc3339_utc()
                };
                query.push((format!("find[{time_field}][$gte]"), bound));
            }
            let mut request = client
                .get(format!("{base}/api/v1/{collection}.json"))
                .query(&query);
            if let Some(secret) = &secret {
                request = request.header("api-secret", secret);
            }
            let response = request
                .send()
                .await
                .map_err(|e| PullError::Unreachable(e.without_url().to_string()))?;
            let status = response.status();
            if !status.is_success() {
                return Err(PullError::Refused {
                    status: status.as_u16(),
                    what: collection,
                    hint: match status.as_u16() {
                        401 | 403 => "check the token or API secret (it needs read access)",
                        404 => "check the site's address",
                        _ => "try again later",
                    },
                });
            }
            let page: Vec<Value> = response
                .json()
                .await
                .map_err(|e| PullError::NotNightscout(e.without_url().to_string()))?;
            let oldest = page.last().and_then(|r| r.get(time_field)).cloned();
            for record in &page {
                if !std::mem::take(&mut first) {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, record)
                    .map_err(|e| PullError::Io(std::io::Error::other(e)))?;
            }
            total += page.len();
            pulled += page.len();
            if pulled >= MAX_RECORDS {
                tracing::warn!(collection, pulled, "Nightscout pull cut at its limit");
                break;
            }
            // A short page is the last; so is one whose oldest time does not move on.
            if page.len() < PAGE || oldest.is_none() || oldest == before {
                break;
            }
            before = oldest;
        }
        out.write_all(b"]")?;
    }
    out.write_all(b"}")?;
    out.flush()?;
    Ok(total)
}
