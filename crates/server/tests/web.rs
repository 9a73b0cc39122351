//! The web app at `/app/` and the site at `/`, served from directories on disk: the real
//! server on port 0, with a built app and site written to a temporary directory per test.

mod common;

use std::path::PathBuf;

use common::{expect_problem, TestServer};
use reqwest::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, LOCATION,
};
use reqwest::{Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const APP_INDEX: &str = "<!doctype html><title>GlucoSync app shell</title>";
const APP_SCRIPT: &str = "console.log('app abc123');";
const SITE_INDEX: &str = "<!doctype html><title>GlucoSync, the site</title>";
const SECRET: &str = "TOP SECRET: outside every served directory";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A temporary tree: `web/` (a built app), `site/` (a built site), and beside them files
/// no request may reach.
struct Built {
    root: tempfile::TempDir,
}

impl Built {
    fn new() -> Built {
        let root = tempfile::tempdir().expect("temp dir");
        let write = |path: &str, text: &str| {
            let path = root.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write("web/index.html", APP_INDEX);
        write("web/assets/app-abc123.js", APP_SCRIPT);
        write("web/sw.js", "self.addEventListener('fetch', () => {});");
        write(
            "web/manifest.webmanifest",
            r#"{"name":"GlucoSync","start_url":"/app/"}"#,
        );
        write("web/.env", SECRET);
        write("site/index.html", SITE_INDEX);
        write(
            "site/privacy/index.html",
            "<!doctype html><title>Privacy</title>",
        );
        write("site/about.html", "<!doctype html><title>About</title>");
        write("secret", SECRET);
        write("Cargo.toml", SECRET);
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.path().join("secret"), root.path().join("web/leak.txt"))
            .expect("symlink");
        Built { root }
    }

    fn web_dir(&self) -> PathBuf {
        self.root.path().join("web")
    }

    fn site_dir(&self) -> PathBuf {
        self.root.path().join("site")
    }

    async fn serve(&self) -> TestServer {
        serve(self.web_dir(), self.site_dir()).await
    }
}

async fn serve(web_dir: PathBuf, site_dir: PathBuf) -> TestServer {
    TestServer::start_with(move |c| {
        c.web_dir = web_dir;
        c.site_dir = site_dir;
    })
    .await
}

async fn get(s: &TestServer, path: &str) -> Response {
    s.client.get(s.url(path)).send().await.expect("send")
}

fn header(r: &Response, name: reqwest::header::HeaderName) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Sends `path` byte for byte: an HTTP client would normalise `..` and `%2e%2e` away before
/// the server ever saw them. Returns the status and the whole response.
async fn raw_get(s: &TestServer, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("read response");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[tokio::test]
async fn the_app_is_served_with_its_shell_for_client_routes() {
    let built = Built::new();
    let s = built.serve().await;

    assert_redirect(&s, "/app?from=mail", "/app/?from=mail").await;

    for path in [
        "/app/",
        "/app/reports",
        "/app/reports/daily",
        "/app/assets/",
    ] {
        let r = get(&s, path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header(&r, CONTENT_TYPE),
            "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(header(&r, CACHE_CONTROL), "no-cache", "{path}");
        assert_eq!(r.text().await.expect("body"), APP_INDEX, "{path}");
    }

    let r = get(&s, "/app/assets/app-abc123.js").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, CONTENT_TYPE), "text/javascript");
    assert_eq!(header(&r, CACHE_CONTROL), IMMUTABLE);
    assert_eq!(r.text().await.expect("body"), APP_SCRIPT);

    let r = get(&s, "/app/sw.js").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, CONTENT_TYPE), "text/javascript");
    assert_eq!(
        header(&r, "service-worker-allowed".parse().expect("name")),
        "/app/"
    );
    assert_eq!(header(&r, CACHE_CONTROL), "no-cache");

    let r = get(&s, "/app/manifest.webmanifest").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, CONTENT_TYPE), "application/manifest+json");
    assert_eq!(header(&r, CACHE_CONTROL), "no-cache");

    // The PWA's needs are in the policy, and no inline code is allowed.
    let csp = header(&get(&s, "/app/").await, CONTENT_SECURITY_POLICY);
    for directive in [
        "default-src 'self'",
        "img-src 'self' data: blob:",
        "worker-src 'self'",
        "manifest-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp} lacks {directive}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");

    // A missing file with an extension is a 404, not the shell under a script's name.
    for path in ["/app/nope.js", "/app/assets/app-000000.js"] {
        expect_problem(get(&s, path).await, StatusCode::NOT_FOUND, "not_found").await;
    }
    s.stop().await;
}

#[tokio::test]
async fn unchanged_files_answer_304() {
    let built = Built::new();
    let s = built.serve().await;
    for path in ["/app/assets/app-abc123.js", "/app/", "/"] {
        let r = get(&s, path).await;
        let (etag, modified) = (header(&r, ETAG), header(&r, LAST_MODIFIED));
        assert!(
            !etag.is_empty() && !modified.is_empty(),
            "{path}: validators"
        );
        let cache_control = header(&r, CACHE_CONTROL);

        let r = conditional_get(&s, path, &[(IF_NONE_MATCH, &etag)]).await;
        assert_eq!(
            r.status(),
            StatusCode::NOT_MODIFIED,
            "{path}: If-None-Match"
        );
        assert_eq!(header(&r, ETAG), etag);
        assert_eq!(header(&r, CACHE_CONTROL), cache_control);
        assert!(r.bytes().await.expect("body").is_empty());

        let r = conditional_get(&s, path, &[(IF_MODIFIED_SINCE, &modified)]).await;
        assert_eq!(
            r.status(),
            StatusCode::NOT_MODIFIED,
            "{path}: If-Modified-Since"
        );

        // Another version in the browser's cache: the current one is sent in full, even if
        // the date alone would call the copy current.
        let r = conditional_get(
            &s,
            path,
            &[
                (IF_NONE_MATCH, "\"an-older-build\""),
                (IF_MODIFIED_SINCE, &modified),
            ],
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "{path}: stale ETag");
        assert!(!r.bytes().await.expect("body").is_empty());
    }
    s.stop().await;
}

#[tokio::test]
async fn no_request_reaches_a_file_outside_the_directories() {
    let built = Built::new();
    let s = built.serve().await;
    for path in [
        "/app/../Cargo.toml",
        "/app/../secret",
        "/app/%2e%2e/secret",
        "/app/%2E%2E/Cargo.toml",
        "/app/assets/..%2f..%2fsecret",
        "/app/assets/%2e%2e%2f%2e%2e%2fsecret",
        "/app/..%5csecret",
        "/app/.env",
        "/app/leak.txt",
        "/../secret",
        "/%2e%2e/secret",
        "/site/../secret",
        "/..%2fCargo.toml",
    ] {
        let (status, response) = raw_get(&s, path).await;
        assert!(
            !response.contains(SECRET),
            "{path} leaked a file: {response}"
        );
        // Refused by the server itself, as any missing file, not by the HTTP parser.
        assert_eq!(status, 404, "{path}: {response}");
        assert!(response.contains("application/problem+json"), "{path}");
    }
    // The same name inside the directory is served, so the refusals above are about the path.
    let (status, response) = raw_get(&s, "/app/assets/app-abc123.js").await;
    assert_eq!(status, 200);
    assert!(response.contains(APP_SCRIPT));
    s.stop().await;
}

#[tokio::test]
async fn the_site_is_served_at_the_root_and_the_api_keeps_its_404() {
    let built = Built::new();
    let s = built.serve().await;
    let r = get(&s, "/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(header(&r, CACHE_CONTROL), "no-cache");
    assert_eq!(r.text().await.expect("body"), SITE_INDEX);

    for (path, title) in [("/privacy/", "Privacy"), ("/about", "About")] {
        let r = get(&s, path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.text().await.expect("body").contains(title), "{path}");
    }
    assert_redirect(&s, "/privacy", "/privacy/").await;

    for path in ["/nope", "/nope.html", "/privacy/nope/"] {
        expect_problem(get(&s, path).await, StatusCode::NOT_FOUND, "not_found").await;
    }
    // The API's unknown paths stay the API's, whatever the site holds.
    for path in ["/api/v1/nope", "/api", "/health/nope"] {
        let body = expect_problem(get(&s, path).await, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(body["detail"], "No such route.", "{path}");
    }
    let r = s.client.post(s.url("/about")).send().await.expect("send");
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    for path in ["/health", "/healthz", "/api/docs", "/metrics"] {
        assert_eq!(get(&s, path).await.status(), StatusCode::OK, "{path}");
    }
    s.stop().await;
}

#[tokio::test]
async fn without_builds_the_app_says_how_to_build_it_and_the_root_shows_the_builtin_page() {
    let nothing = tempfile::tempdir().expect("temp dir");
    let s = serve(nothing.path().join("web/dist"), nothing.path().join("site")).await;
    for path in ["/app/", "/app/reports"] {
        let r = get(&s, path).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(header(&r, CONTENT_TYPE), "text/html; charset=utf-8");
        let page = r.text().await.expect("body");
        assert!(page.contains("scripts/web build"), "{page}");
    }
    expect_problem(
        get(&s, "/app/assets/app-abc123.js").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let r = get(&s, "/").await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.expect("body");
    assert!(page.contains("GlucoSync is running"), "{page}");
    assert!(page.contains("href=\"/app/\""), "{page}");
    expect_problem(
        get(&s, "/privacy/").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    s.stop().await;
}

/// `path` answers a permanent redirect to `location` (not followed).
async fn assert_redirect(s: &TestServer, path: &str, location: &str) {
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = no_redirects.get(s.url(path)).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT, "{path}");
    assert_eq!(header(&r, LOCATION), location, "{path}");
}

/// A GET with validators (`If-None-Match`, `If-Modified-Since`).
async fn conditional_get(
    s: &TestServer,
    path: &str,
    validators: &[(reqwest::header::HeaderName, &str)],
) -> Response {
    let mut request = s.client.get(s.url(path));
    for (name, value) in validators {
        request = request.header(name, *value);
    }
    request.send().await.expect("send")
}

/// Every kind of response carries the security headers (docs/security.md): the site, the app,
/// API answers and errors, a method not allowed, the Nightscout API, socket.io's transport and
/// the metrics; HSTS only when people reach the server over TLS.
#[tokio::test]
async fn every_kind_of_response_carries_the_security_headers() {
    let built = Built::new();
    let s = built.serve().await;
    let expected = [
        (reqwest::header::X_CONTENT_TYPE_OPTIONS.as_str(), "nosniff"),
        (reqwest::header::REFERRER_POLICY.as_str(), "no-referrer"),
        (reqwest::header::X_FRAME_OPTIONS.as_str(), "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
    ];
    let requests = [
        (reqwest::Method::GET, "/"),
        (reqwest::Method::GET, "/app/"),
        (reqwest::Method::GET, "/health"),
        (reqwest::Method::GET, "/api/v1/me"),
        (reqwest::Method::GET, "/api/v1/no-such-thing"),
        (reqwest::Method::DELETE, "/health"),
        (reqwest::Method::GET, "/api/v1/status.json"),
        (reqwest::Method::GET, "/socket.io/?EIO=4&transport=polling"),
        (reqwest::Method::GET, "/metrics"),
    ];
    for (method, path) in &requests {
        let r = s
            .client
            .request(method.clone(), s.url(path))
            .send()
            .await
            .expect("send");
        let what = format!("{method} {path} ({})", r.status());
        for (name, value) in expected {
            assert_eq!(
                r.headers().get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{name} on {what}"
            );
        }
        let csp = header(&r, CONTENT_SECURITY_POLICY);
        assert!(
            csp.contains("frame-ancestors 'none'"),
            "CSP on {what}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "CSP on {what}: {csp}");
        assert!(
            r.headers().get("permissions-policy").is_some(),
            "permissions-policy on {what}"
        );
        assert!(
            r.headers().get("strict-transport-security").is_none(),
            "HSTS over plain HTTP on {what}"
        );
        // Files may be cached (revalidated); everything else is health data or about it.
        let cache = header(&r, reqwest::header::CACHE_CONTROL);
        let is_file = *path == "/" || *path == "/app/";
        assert_eq!(
            cache == "no-store",
            !is_file,
            "Cache-Control on {what}: {cache}"
        );
    }
    s.stop().await;

    let tls =
        TestServer::start_with(|c| c.public_url = "https://glucosync.example.org".into()).await;
    for (_, path) in &requests {
        let r = get(&tls, path).await;
        assert_eq!(
            header(&r, reqwest::header::STRICT_TRANSPORT_SECURITY),
            "max-age=31536000",
            "HSTS on {path}"
        );
    }
    tls.stop().await;
}
