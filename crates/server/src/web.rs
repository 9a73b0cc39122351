//! The web app (the PWA, at `/app/`) and the static site (at `/` and every other path outside
//! the API), served from directories on disk: `web_dir` and `site_dir` in the configuration.
//! They are read at each request, so a rebuild (`scripts/web build`) needs neither a new
//! binary nor a restart. This is embedded mode; in a cluster an nginx container serves both.
//!
//! Must never serve a file outside those two directories: request paths are decoded once,
//! `..`, `.` and hidden segments are refused, and the resolved file (symlinks followed) must
//! still lie inside the directory.

use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use tokio::io::AsyncReadExt;

use crate::config::Config;
use crate::error::ApiError;
use crate::state::AppState;

/// Where the web app lives in the URL space; its service worker's scope.
const APP_PREFIX: &str = "/app/";

/// Vite puts content-hashed file names here: a changed file gets a new name, so browsers may
/// keep these for a year without asking again.
const HASHED_ASSETS: &str = "assets";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Everything else may change under the same name (index.html names the current hashed
/// bundles, sw.js decides when the app updates): browsers keep it but revalidate each time,
/// which costs a 304 when nothing changed.
const REVALIDATE: &str = "no-cache";

/// Paths whose unknown routes stay the API's problem+json 404, never a page of the site.
fn is_api_path(path: &str) -> bool {
    ["/api", "/health", "/healthz", "/metrics"]
        .iter()
        .any(|prefix| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// `/app` → `/app/`, so that the app's relative URLs and its service worker's scope resolve.
pub async fn app_redirect(uri: Uri) -> Response {
    redirect_to(APP_PREFIX, &uri)
}

/// `/app/` and below: the file if it exists; for a path without an extension (a client-side
/// route such as `/app/reports`) the app's `index.html`; otherwise 404.
pub async fn app(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let web_dir = &state.config.web_dir;
    let Some(request) = RequestPath::parse(uri.path().strip_prefix(APP_PREFIX).unwrap_or(""))
    else {
        return not_found();
    };
    if !request.names_directory() {
        if let Some(file) = find_file(web_dir, &request.relative).await {
            let cache = if request.first_segment() == Some(HASHED_ASSETS) {
                IMMUTABLE
            } else {
                REVALIDATE
            };
            // The worker sits at /app/sw.js; allowing /app/ states its scope explicitly, so
            // that moving the file deeper in a later build cannot silently shrink it.
            let extra = (request.relative == Path::new("sw.js")).then_some((
                HeaderName::from_static("service-worker-allowed"),
                APP_PREFIX,
            ));
            return serve_file(&file, &headers, cache, extra).await;
        }
        if request.has_extension() {
            return not_found();
        }
    }
    match find_file(web_dir, Path::new("index.html")).await {
        Some(index) => serve_file(&index, &headers, REVALIDATE, None).await,
        None => app_not_built(),
    }
}

/// Every other GET outside the API: the site. The fallback of the router, so unknown API
/// paths and other methods keep the API's 404.
pub async fn site(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path();
    if is_api_path(path) || !(method == Method::GET || method == Method::HEAD) {
        return ApiError::NotFound("route").into_response();
    }
    let site_dir = &state.config.site_dir;
    let Some(request) = RequestPath::parse(path) else {
        return not_found();
    };
    if request.names_directory() {
        return match find_file(site_dir, &request.relative.join("index.html")).await {
            Some(index) => serve_file(&index, &headers, REVALIDATE, None).await,
            None if request.relative.as_os_str().is_empty() => builtin_home_page(),
            None => not_found(),
        };
    }
    if let Some(file) = find_file(site_dir, &request.relative).await {
        return serve_file(&file, &headers, REVALIDATE, None).await;
    }
    // `/privacy` for site/privacy/index.html: redirect to `/privacy/` so the page's relative
    // links resolve inside its directory.
    if find_file(site_dir, &request.relative.join("index.html"))
        .await
        .is_some()
    {
        // Built from the trimmed path: a raw `//host` would make a protocol-relative
        // Location, an open redirect.
        return redirect_to(&format!("/{}/", path.trim_matches('/')), &uri);
    }
    // `/privacy` for site/privacy.html, as static hosts serve it.
    if !request.has_extension() {
        if let Some(file) = find_file(site_dir, &request.relative.with_extension("html")).await {
            return serve_file(&file, &headers, REVALIDATE, None).await;
        }
    }
    not_found()
}

/// At startup, one line for each of the app and the site that is not there yet, so that a 503
/// at `/app/` is no surprise.
pub fn log_missing_builds(config: &Config) {
    if !config.web_dir.join("index.html").is_file() {
        tracing::info!(
            web_dir = %config.web_dir.display(),
            "the web app is not built: /app/ answers 503 until `scripts/web build` writes it (or set GLUCOSYNC_WEB_DIR)"
        );
    }
    if !config.site_dir.join("index.html").is_file() {
        tracing::info!(
            site_dir = %config.site_dir.display(),
            "the site is not there: / shows the built-in page until `scripts/web build` writes it (or set GLUCOSYNC_SITE_DIR)"
        );
    }
}

/// A request path made safe to join onto a directory.
struct RequestPath {
    /// Decoded segments joined: only normal names, never `..`, `.`, a root or a hidden name.
    relative: PathBuf,
    /// Ends with `/` or is empty: asks for the directory's `index.html`.
    trailing_slash: bool,
}

impl RequestPath {
    /// `None` for anything that could leave the directory or that a build never produces.
    /// Percent-decoded exactly once, before splitting, so `%2e%2e` and `..%2f` are the `..`
    /// segments they spell; a doubly encoded `%252e` stays a literal (missing) name.
    fn parse(encoded: &str) -> Option<RequestPath> {
        let decoded = percent_encoding::percent_decode_str(encoded)
            .decode_utf8()
            .ok()?;
        // A backslash separates on Windows; a NUL ends a path in the OS. Neither is in a build.
        if decoded.contains(['\\', '\0']) {
            return None;
        }
        let mut relative = PathBuf::new();
        for segment in decoded.split('/').filter(|s| !s.is_empty()) {
            let mut components = Path::new(segment).components();
            let normal = matches!(
                (components.next(), components.next()),
                (Some(Component::Normal(_)), None)
            );
            // Hidden files (.env, .git, an editor's leftovers) are never part of a build;
            // .well-known is the one hidden directory the web relies on.
            if !normal || (segment.starts_with('.') && segment != ".well-known") {
                return None;
            }
            relative.push(segment);
        }
        Some(RequestPath {
            trailing_slash: decoded.is_empty() || decoded.ends_with('/'),
            relative,
        })
    }

    fn names_directory(&self) -> bool {
        self.trailing_slash || self.relative.as_os_str().is_empty()
    }

    fn first_segment(&self) -> Option<&str> {
        self.relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
    }

    fn has_extension(&self) -> bool {
        self.relative.extension().is_some()
    }
}

/// The regular file at `root/relative`, resolved through symlinks, if it lies inside `root`.
/// The root is resolved at each request: it may be built (or rebuilt) while the server runs.
async fn find_file(root: &Path, relative: &Path) -> Option<PathBuf> {
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let file = tokio::fs::canonicalize(root.join(relative)).await.ok()?;
    if !file.starts_with(&root) {
        return None;
    }
    tokio::fs::metadata(&file)
        .await
        .ok()
        .filter(|m| m.is_file())
        .map(|_| file)
}

/// The file with its validators (ETag, Last-Modified); 304 when the browser's copy is current.
/// Read whole: the app's largest bundle is a few hundred kilobytes, and the metadata and the
/// bytes come from one open file, so the ETag always describes the bytes sent.
async fn serve_file(
    path: &Path,
    request: &HeaderMap,
    cache_control: &'static str,
    extra: Option<(HeaderName, &'static str)>,
) -> Response {
    let opened = async {
        let file = tokio::fs::File::open(path).await?;
        let metadata = file.metadata().await?;
        Ok::<_, std::io::Error>((file, metadata))
    };
    let (mut file, metadata) = match opened.await {
        Ok(opened) => opened,
        // Removed between lookup and open: a rebuild in progress.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return not_found(),
        Err(e) => return ApiError::Internal(format!("reading a static file: {e}")).into_response(),
    };
    let modified = metadata.modified().ok();
    let etag = entity_tag(metadata.len(), modified);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if let Some(v) = modified.and_then(|m| HeaderValue::from_str(&http_date(m)).ok()) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    if let Some((name, value)) = extra {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if browser_copy_is_current(request, &etag, modified) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let mut body = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    if let Err(e) = file.read_to_end(&mut body).await {
        return ApiError::Internal(format!("reading a static file: {e}")).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    (headers, body).into_response()
}

/// Size and modification time, as nginx makes them: changes whenever a build rewrites the file.
fn entity_tag(len: u64, modified: Option<SystemTime>) -> String {
    let nanos = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("\"{nanos:x}-{len:x}\"")
}

fn http_date(t: SystemTime) -> String {
    DateTime::<Utc>::from(t)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// RFC 9110 §13.1: `If-None-Match` when sent (weak comparison), else `If-Modified-Since`.
fn browser_copy_is_current(request: &HeaderMap, etag: &str, modified: Option<SystemTime>) -> bool {
    if let Some(tags) = request.get(header::IF_NONE_MATCH) {
        return tags.to_str().is_ok_and(|tags| {
            tags.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
        });
    }
    let since = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| DateTime::parse_from_rfc2822(v).ok());
    match (since, modified) {
        // Last-Modified has whole seconds; compare at that precision.
        (Some(since), Some(modified)) => {
            DateTime::<Utc>::from(modified).timestamp() <= since.timestamp()
        }
        _ => false,
    }
}

/// By extension. `X-Content-Type-Options: nosniff` is set on every response, so a browser
/// runs a script or applies a style sheet only with the right type.
fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        // Module and worker scripts are always decoded as UTF-8, so no charset is needed.
        Some("js" | "mjs") => "text/javascript",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("avif") => "image/avif",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("wasm") => "application/wasm",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// A permanent redirect that keeps the method and the query string.
fn redirect_to(location: &str, uri: &Uri) -> Response {
    let location = match uri.query() {
        Some(query) => format!("{location}?{query}"),
        None => location.to_owned(),
    };
    match HeaderValue::from_str(&location) {
        Ok(v) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, v)]).into_response(),
        Err(_) => not_found(),
    }
}

fn not_found() -> Response {
    ApiError::NotFound("file").into_response()
}

fn app_not_built() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CACHE_CONTROL, REVALIDATE)],
        Html(include_str!("../assets/app-not-built.html")),
    )
        .into_response()
}

fn builtin_home_page() -> Response {
    (
        [(header::CACHE_CONTROL, REVALIDATE)],
        Html(include_str!("../assets/index.html")),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_cannot_leave_the_directory() {
        for refused in [
            "..",
            "../Cargo.toml",
            "assets/../../secret",
            "%2e%2e/secret",
            "%2E%2E/secret",
            "assets/..%2f..%2fsecret",
            "..%5csecret",
            "a/./b",
            ".env",
            ".git/config",
            "%00",
            "%ff",
        ] {
            assert!(RequestPath::parse(refused).is_none(), "{refused}");
        }
        let double_encoded = RequestPath::parse("%252e%252e/secret").expect("a literal name");
        assert_eq!(double_encoded.relative, PathBuf::from("%2e%2e/secret"));
        let leading = RequestPath::parse("//etc/passwd").expect("empty segments dropped");
        assert_eq!(leading.relative, PathBuf::from("etc/passwd"));
        let well_known = RequestPath::parse(".well-known/security.txt").expect("allowed");
        assert_eq!(well_known.first_segment(), Some(".well-known"));
    }

    #[test]
    fn directories_and_extensions() {
        let root = RequestPath::parse("").expect("root");
        assert!(root.names_directory() && !root.has_extension());
        let route = RequestPath::parse("reports").expect("route");
        assert!(!route.names_directory() && !route.has_extension());
        let nested = RequestPath::parse("privacy/").expect("dir");
        assert!(nested.names_directory());
        let asset = RequestPath::parse("assets/app-abc123.js").expect("asset");
        assert!(asset.has_extension());
        assert_eq!(asset.first_segment(), Some("assets"));
    }

    #[test]
    fn api_paths_are_recognised_by_whole_segments() {
        for api in [
            "/api",
            "/api/v1/nope",
            "/health",
            "/health/x",
            "/healthz",
            "/metrics",
        ] {
            assert!(is_api_path(api), "{api}");
        }
        for site in ["/", "/apis", "/healthy", "/metrics.html", "/privacy/"] {
            assert!(!is_api_path(site), "{site}");
        }
    }

    #[test]
    fn validators_match_and_dates_round_trip() {
        let modified = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_500);
        let etag = entity_tag(42, Some(modified));
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{etag}")).expect("header"),
        );
        assert!(browser_copy_is_current(&h, &etag, Some(modified)));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_str(&http_date(modified)).expect("header"),
        );
        assert!(
            !browser_copy_is_current(&h, &etag, Some(modified)),
            "If-None-Match wins over If-Modified-Since"
        );
        h.remove(header::IF_NONE_MATCH);
        assert!(browser_copy_is_current(&h, &etag, Some(modified)));
        let later = modified + std::time::Duration::from_secs(2);
        assert!(!browser_copy_is_current(&h, &etag, Some(later)));
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
