//! Single sign-on against a real OpenID Connect provider (npm `oidc-provider`, started by
//! `scripts/oidc`): the whole authorization code flow as a browser makes it (cookies and
//! redirects by hand), the account rules of docs/sso.md, a replayed state, and ID tokens that
//! are tampered with, for another client, expired, or signed with a rotated key.

mod common;

use std::collections::HashMap;

use common::{expect_problem, TestServer, PASSWORD};
use glucosync_server::api::sso::verify_id_token;
use glucosync_server::oidc::{Provider, TokenError, JWKS_MIN_REFETCH};
use glucosync_testing::oidc::{OidcProvider, CLIENT_ID, CLIENT_SECRET};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct Setup {
    provider: OidcProvider,
    server: TestServer,
}

async fn setup(adjust: impl FnOnce(&mut glucosync_server::config::Config)) -> Setup {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let provider = OidcProvider::start(&[format!("{base}/api/v1/auth/oidc/callback")], &[]);
    let issuer = provider.issuer.clone();
    let server = TestServer::start_with(move |c| {
        c.listen = format!("127.0.0.1:{port}").parse().expect("address");
        c.public_url = base;
        c.oidc_issuer = Some(issuer);
        c.oidc_client_id = CLIENT_ID.into();
        c.oidc_client_secret = Some(glucosync_server::config::Secret::new(CLIENT_SECRET));
        c.oidc_admin_group = Some("glucosync-admins".into());
        adjust(c);
    })
    .await;
    Setup { provider, server }
}

/// What a browser does that matters here: cookies per host, redirects followed by hand.
struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, HashMap<String, String>>,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: HashMap::new(),
        }
    }

    fn host(url: &str) -> String {
        url.split('/').nth(2).unwrap_or_default().to_owned()
    }

    async fn send(
        &mut self,
        method: Method,
        url: &str,
        form: Option<&[(&str, &str)]>,
    ) -> reqwest::Response {
        let host = Self::host(url);
        let mut r = self.http.request(method, url);
        if let Some(jar) = self.cookies.get(&host) {
            let header: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if !header.is_empty() {
                r = r.header("cookie", header.join("; "));
            }
        }
        if let Some(form) = form {
            r = r.form(form);
        }
        let response = r.send().await.expect("request");
        let jar = self.cookies.entry(host).or_default();
        for c in response.headers().get_all("set-cookie") {
            let c = c.to_str().expect("cookie");
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            if attrs.contains("Max-Age=0") || value.is_empty() {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        response
    }

    fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.cookies.get(&Self::host(url))?.get(name).cloned()
    }

    /// From a URL that leads to the provider, through its login form, to GlucoSync's
    /// callback URL (returned, not opened).
    async fn through_provider(&mut self, start: &str, login: &str, password: &str) -> String {
        let mut url = start.to_owned();
        for _ in 0..12 {
            if url.contains("/api/v1/auth/oidc/callback") {
                return url;
            }
            let r = self.send(Method::GET, &url, None).await;
            let status = r.status();
            if status.is_redirection() {
                url = absolute(&url, r.headers()["location"].to_str().expect("location"));
                continue;
            }
            assert_eq!(status, StatusCode::OK, "at {url}");
            let page = r.text().await.expect("page");
            let action = page
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("a login form");
            let posted = self
                .send(
                    Method::POST,
                    &absolute(&url, action),
                    Some(&[("login", login), ("password", password)]),
                )
                .await;
            assert!(
                posted.status().is_redirection(),
                "login refused for {login}"
            );
            url = absolute(
                &url,
                posted.headers()["location"].to_str().expect("location"),
            );
        }
        panic!("no way back to GlucoSync from {start}");
    }
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        let root: String = base.split('/').take(3).collect::<Vec<_>>().join("/");
        format!("{root}{location}")
    }
}

/// A complete single sign-on in `browser`: the callback's response.
async fn sso_login(
    s: &Setup,
    browser: &mut Browser,
    login: &str,
    password: &str,
) -> reqwest::Response {
    let start = browser
        .send(
            Method::GET,
            &s.server.url("/api/v1/auth/oidc/login?next=/app/reports"),
            None,
        )
        .await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let to_provider = start.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(to_provider.starts_with(&s.provider.issuer), "{to_provider}");
    for part in [
        "code_challenge_method=S256",
        "code_challenge=",
        "nonce=",
        "state=",
        "scope=openid",
    ] {
        assert!(to_provider.contains(part), "{part} in {to_provider}");
    }
    let callback = browser
        .through_provider(&to_provider, login, password)
        .await;
    browser.send(Method::GET, &callback, None).await
}

/// `GET /api/v1/auth/oidc`: how the installation logs people in.
async fn sso_status(s: &Setup) -> Value {
    s.server
        .client
        .get(s.server.url("/api/v1/auth/oidc"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json")
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

async fn me(s: &Setup, browser: &mut Browser) -> reqwest::Response {
    browser
        .send(Method::GET, &s.server.url("/api/v1/me"), None)
        .await
}

#[tokio::test]
async fn a_verified_email_gets_an_account_and_the_admin_group_is_honoured() {
    let s = setup(|_| {}).await;
    let status = sso_status(&s).await;
    assert_eq!(status, json!({"enabled": true, "password_login": true}));

    let mut browser = Browser::new();
    let done = sso_login(&s, &mut browser, "ana", "ana-password").await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&done), "/app/reports");
    assert!(browser
        .cookie(&s.server.url("/"), "glucosync_session")
        .is_some());
    assert!(
        browser
            .cookie(&s.server.url("/"), "glucosync_oidc")
            .is_none(),
        "state cookie cleared"
    );
    let profile: Value = me(&s, &mut browser).await.json().await.expect("json");
    assert_eq!(profile["email"], "ana@example.org");
    assert_eq!(profile["display_name"], "Ana Example");
    assert_eq!(profile["is_admin"], true, "{profile}");

    // The account has no password: password login fails like any wrong password.
    let r = s
        .server
        .client
        .post(s.server.url("/api/v1/auth/login"))
        .json(&json!({"email": "ana@example.org", "password": PASSWORD}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Another browser, another login: the same account (the identity is linked).
    let mut second = Browser::new();
    assert_eq!(
        sso_login(&s, &mut second, "ana", "ana-password")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let again: Value = me(&s, &mut second).await.json().await.expect("json");
    assert_eq!(again["id"], profile["id"]);

    // After logging out of GlucoSync, the browser is sent to end the provider's session too.
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = raw
        .get(s.server.url("/api/v1/auth/oidc/logout"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let end = location(&r);
    assert!(
        end.starts_with(&format!("{}/session/end?", s.provider.issuer)),
        "{end}"
    );
    assert!(
        end.contains("client_id=glucosync") && end.contains("post_logout_redirect_uri="),
        "{end}"
    );
}

#[tokio::test]
async fn a_replayed_or_foreign_state_does_not_log_in() {
    let s = setup(|_| {}).await;
    let mut browser = Browser::new();
    let start = browser
        .send(Method::GET, &s.server.url("/api/v1/auth/oidc/login"), None)
        .await;
    let callback = browser
        .through_provider(&location(&start), "ana", "ana-password")
        .await;
    let state_cookie = browser
        .cookie(&s.server.url("/"), "glucosync_oidc")
        .expect("state cookie");

    // Another browser (no state cookie) cannot use this browser's callback.
    let mut other = Browser::new();
    let r = other.send(Method::GET, &callback, None).await;
    assert_eq!(location(&r), "/app/login?sso_error=state");
    assert!(other
        .cookie(&s.server.url("/"), "glucosync_session")
        .is_none());

    // The browser itself completes once…
    let r = browser.send(Method::GET, &callback, None).await;
    assert_eq!(location(&r), "/app/");
    // …and a replay of the same callback, with the state cookie put back, is refused.
    let mut replay = Browser::new();
    replay
        .cookies
        .entry(Browser::host(&s.server.url("/")))
        .or_default()
        .insert("glucosync_oidc".into(), state_cookie);
    let r = replay.send(Method::GET, &callback, None).await;
    assert_eq!(location(&r), "/app/login?sso_error=state");
    assert!(replay
        .cookie(&s.server.url("/"), "glucosync_session")
        .is_none());
}

#[tokio::test]
async fn an_unverified_email_links_only_with_the_accounts_password() {
    let s = setup(|_| {}).await;
    // Ben has a password account; the provider has not verified his email.
    let session = s.server.user("ben@example.org").await;
    let mut browser = Browser::new();
    let r = sso_login(&s, &mut browser, "ben", "ben-password").await;
    assert_eq!(location(&r), "/app/login?sso_error=email_unverified");
    assert!(browser
        .cookie(&s.server.url("/"), "glucosync_session")
        .is_none());

    // Linking from his own session needs his password.
    let r = s
        .server
        .req(Method::POST, "/api/v1/auth/oidc/link", &session)
        .json(&json!({"password": "not his password at all"}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::FORBIDDEN, "wrong_password").await;
    let r = browser
        .send(Method::POST, &s.server.url("/api/v1/auth/oidc/link"), None)
        .await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a login session is needed"
    );
    // Starting a link: the provider URL, and the state cookie that comes with it.
    let start_link = || async {
        let r = s
            .server
            .client
            .post(s.server.url("/api/v1/auth/oidc/link"))
            .bearer_auth(&session)
            .json(&json!({"password": PASSWORD}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .to_owned();
        let state = cookie
            .split(';')
            .next()
            .and_then(|p| p.split_once('='))
            .map(|(_, v)| v.to_owned())
            .expect("value");
        let url = r.json::<Value>().await.expect("json")["authorization_url"]
            .as_str()
            .expect("url")
            .to_owned();
        (url, state)
    };
    let server_host = Browser::host(&s.server.url("/"));
    // Completed in a browser that is not logged in to Ben's account: refused.
    let (url, state) = start_link().await;
    let mut stranger = Browser::new();
    stranger
        .cookies
        .entry(server_host.clone())
        .or_default()
        .insert("glucosync_oidc".into(), state);
    let callback = stranger.through_provider(&url, "ben", "ben-password").await;
    let r = stranger.send(Method::GET, &callback, None).await;
    assert_eq!(location(&r), "/app/login?sso_error=state");
    // In Ben's own browser, which holds his session (the app's cookie): linked.
    let (url, state) = start_link().await;
    let jar = browser.cookies.entry(server_host).or_default();
    jar.insert("glucosync_oidc".into(), state);
    jar.insert("glucosync_session".into(), session.clone());
    let callback = browser.through_provider(&url, "ben", "ben-password").await;
    let r = browser.send(Method::GET, &callback, None).await;
    assert_eq!(location(&r), "/app/settings");

    // Now single sign-on logs in to Ben's account.
    let mut fresh = Browser::new();
    assert_eq!(
        location(&sso_login(&s, &mut fresh, "ben", "ben-password").await),
        "/app/reports"
    );
    let profile: Value = me(&s, &mut fresh).await.json().await.expect("json");
    assert_eq!(profile["email"], "ben@example.org");
    assert_eq!(profile["is_admin"], false);
}

#[tokio::test]
async fn a_password_account_is_never_taken_over_by_email() {
    let s = setup(|_| {}).await;
    // Someone signed up with ana's address (sign-up does not prove it). The provider's
    // verified email does not open that account: its owner must link from Settings.
    let session = s.server.user("ana@example.org").await;
    let mut browser = Browser::new();
    let r = sso_login(&s, &mut browser, "ana", "ana-password").await;
    assert_eq!(location(&r), "/app/login?sso_error=link_required");
    assert!(browser
        .cookie(&s.server.url("/"), "glucosync_session")
        .is_none());
    // Nothing was linked: the next single sign-on is refused the same way, and the
    // account's own session goes on.
    let mut again = Browser::new();
    let r = sso_login(&s, &mut again, "ana", "ana-password").await;
    assert_eq!(location(&r), "/app/login?sso_error=link_required");
    let r = s
        .server
        .req(Method::GET, "/api/v1/me", &session)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn password_login_can_be_switched_off() {
    let s = setup(|c| c.password_login = false).await;
    for path in ["/api/v1/auth/login", "/api/v1/auth/signup"] {
        let r = s
            .server
            .client
            .post(s.server.url(path))
            .json(&json!({"email": "x@example.org", "password": PASSWORD}))
            .send()
            .await
            .expect("send");
        expect_problem(r, StatusCode::FORBIDDEN, "password_login_disabled").await;
    }
    let status = sso_status(&s).await;
    assert_eq!(status, json!({"enabled": true, "password_login": false}));
    let mut browser = Browser::new();
    assert_eq!(
        sso_login(&s, &mut browser, "ana", "ana-password")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(me(&s, &mut browser).await.status(), StatusCode::OK);
}

/// Signs `claims` with the provider's current key (a test-only endpoint of the provider).
async fn sign(s: &Setup, claims: Value) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!("{}/test/sign", s.provider.root()))
        .json(&claims)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    r["token"].as_str().expect("token").to_owned()
}

fn claims(s: &Setup, changes: Value) -> Value {
    let now = glucosync_server::state::now_ms() / 1000;
    let mut c = json!({
        "iss": s.provider.issuer, "aud": CLIENT_ID, "sub": "ana", "nonce": "n-1",
        "iat": now, "exp": now + 300, "email": "ana@example.org", "email_verified": true,
    });
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            c.as_object_mut().expect("object").remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

#[tokio::test]
async fn id_tokens_are_verified_against_the_providers_rotating_keys() {
    let s = setup(|_| {}).await;
    let config = glucosync_server::config::Config {
        oidc_issuer: Some(s.provider.issuer.clone()),
        ..Default::default()
    };
    let provider = Provider::from_config(&config).expect("configured");
    let good = sign(&s, claims(&s, json!({}))).await;
    let identity = verify_id_token(&provider, &good, "n-1")
        .await
        .expect("a good token");
    assert_eq!(
        (identity.subject.as_str(), identity.email_verified),
        ("ana", true)
    );

    // Tampered: another subject in the payload, same signature.
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload =
        base64url(&serde_json::to_vec(&claims(&s, json!({"sub": "admin"}))).expect("json"));
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(
        verify_id_token(&provider, &tampered, "n-1").await,
        Err(TokenError::Signature)
    );
    // Unsigned.
    let none = format!("{}.{}.", base64url(br#"{"alg":"none"}"#), parts[1]);
    assert_eq!(
        verify_id_token(&provider, &none, "n-1").await,
        Err(TokenError::Algorithm("none".into()))
    );
    // For another client, expired, another login's nonce, another issuer.
    let other_client = sign(&s, claims(&s, json!({"aud": "someone-else"}))).await;
    assert_eq!(
        verify_id_token(&provider, &other_client, "n-1").await,
        Err(TokenError::Audience)
    );
    let now = glucosync_server::state::now_ms() / 1000;
    let expired = sign(&s, claims(&s, json!({"iat": now - 3600, "exp": now - 600}))).await;
    assert_eq!(
        verify_id_token(&provider, &expired, "n-1").await,
        Err(TokenError::Expired)
    );
    assert_eq!(
        verify_id_token(&provider, &good, "n-2").await,
        Err(TokenError::Nonce)
    );
    let foreign = sign(&s, claims(&s, json!({"iss": "http://127.0.0.1:1/evil"}))).await;
    assert!(matches!(
        verify_id_token(&provider, &foreign, "n-1").await,
        Err(TokenError::Issuer(_))
    ));

    // The provider rotates its keys (and drops the old one): tokens with the new key id are
    // accepted after one fetch of the keys (not sooner than the refetch interval).
    let rotated: Value = reqwest::Client::new()
        .post(format!("{}/test/rotate-keys?drop_old=1", s.provider.root()))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let fresh = sign(&s, claims(&s, json!({}))).await;
    let kid = |t: &str| {
        let header: Value =
            serde_json::from_slice(&base64url_decode(t.split('.').next().expect("header")))
                .expect("json");
        header["kid"].as_str().expect("kid").to_owned()
    };
    assert_ne!(kid(&fresh), kid(&good), "{rotated}");
    tokio::time::sleep(JWKS_MIN_REFETCH).await;
    verify_id_token(&provider, &fresh, "n-1")
        .await
        .expect("the new key is fetched");
    // A key id the provider never published is refused (after at most one more fetch).
    let unknown_kid = format!(
        "{}.{}.{}",
        base64url(br#"{"alg":"RS256","kid":"made-up"}"#),
        fresh.split('.').nth(1).expect("payload"),
        fresh.split('.').nth(2).expect("sig")
    );
    assert_eq!(
        verify_id_token(&provider, &unknown_kid, "n-1").await,
        Err(TokenError::UnknownKey)
    );
    // The old key is gone from the provider: its tokens no longer verify once the keys are
    // fetched again.
    assert_eq!(
        verify_id_token(&provider, &good, "n-1").await,
        Err(TokenError::UnknownKey)
    );
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn base64url_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64url")
}

#[tokio::test]
async fn provider_access_tokens_are_api_bearer_tokens_for_linked_accounts() {
    let s = setup(|c| c.oidc_api_audience = Some("urn:glucosync:api".into())).await;
    let mut browser = Browser::new();
    assert_eq!(
        sso_login(&s, &mut browser, "ana", "ana-password")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let api = |scope: &str| {
        claims(
            &s,
            json!({"aud": "urn:glucosync:api", "scope": scope, "nonce": null}),
        )
    };
    let call = |token: String, method: Method, path: &str| {
        s.server
            .client
            .request(method, s.server.url(path))
            .bearer_auth(token)
    };
    // A service uploads and reads for ana with the provider's token.
    let writer = sign(&s, api("read readings:write")).await;
    let r = call(writer.clone(), Method::POST, "/api/v1/readings")
        .json(&json!({"time": glucosync_domain::Timestamp::from_utc_ms(glucosync_server::state::now_ms() - 60_000).to_rfc3339_utc(), "value": 111}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = call(writer, Method::GET, "/api/v1/readings")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = r.json().await.expect("json");
    assert_eq!(page["items"][0]["value"], 111.0);
    // Scopes come from the token; a session's powers never.
    let reader = sign(&s, api("read")).await;
    let r = call(reader.clone(), Method::POST, "/api/v1/readings")
        .json(&json!({"time": "2026-01-01T00:00:00Z", "value": 100}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::FORBIDDEN, "insufficient_scope").await;
    let r = call(reader, Method::POST, "/api/v1/tokens")
        .json(&json!({"name": "x", "scopes": ["read"]}))
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::FORBIDDEN, "session_required").await;
    // A token granting none of GlucoSync's scopes grants nothing.
    let none = sign(&s, api("api")).await;
    let r = call(none, Method::GET, "/api/v1/readings")
        .send()
        .await
        .expect("send");
    expect_problem(r, StatusCode::FORBIDDEN, "insufficient_scope").await;
    // Another audience (an ID token), an ID token for the API's audience (it has a nonce), an
    // unlinked subject, an expired token: not accepted.
    let now = glucosync_server::state::now_ms() / 1000;
    for bad in [
        claims(&s, json!({"aud": "urn:glucosync:api", "scope": "read"})),
        claims(&s, json!({"scope": "read"})),
        claims(
            &s,
            json!({"aud": "urn:glucosync:api", "sub": "ben", "nonce": null}),
        ),
        claims(
            &s,
            json!({"aud": "urn:glucosync:api", "iat": now - 900, "exp": now - 600, "nonce": null}),
        ),
    ] {
        let token = sign(&s, bad.clone()).await;
        let r = call(token, Method::GET, "/api/v1/readings")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
    }
}
