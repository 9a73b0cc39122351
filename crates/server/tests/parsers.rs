//! Parser fuzzing (issue 12): generated input at every parser of outside input that the server
//! has, through the real server: JSON bodies with unusual numbers, deep nesting and hostile
//! Unicode at every JSON-taking endpoint of the API and of Nightscout's v1 and v3; Nightscout
//! query strings (`find[…][$op]=…`, v3's `field$op=…`); WebSocket messages; and the
//! configuration (file and environment). No answer may be a 5xx (a panic is one: the server's
//! catch-panic layer answers 500), the server must stay healthy, and the process's memory must
//! stay bounded (its peak resident size, `VmHWM`, may grow by at most 256 MiB over a run).
//!
//! cargo-fuzz needs a nightly compiler, which this project cannot use; proptest generates the
//! input instead (the importers have their own arbitrary-bytes tests in
//! `crates/domain/tests/import.rs`). `GS_FUZZ_CASES` sets the cases per target (default 256);
//! a long run: `GS_FUZZ_CASES=20000 cargo test -p glucosync-server --test parsers -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use common::TestServer;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{json, Value};

fn cases() -> u32 {
    std::env::var("GS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn runner() -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// Resident memory figures of this process, in KiB: (now, peak).
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

// ---- generated JSON --------------------------------------------------------------------------

/// Numbers as JSON text, the unusual ones often: beyond f64 and i64, negative zero, long
/// digit strings, exponents.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        (0.0..400.0f64).prop_map(|f| f.to_string()),
        prop::sample::select(vec![
            "1e400",
            "-1e400",
            "1e-400",
            "-0",
            "-0.0",
            "0e0",
            "1E+2",
            "66.0",
            "18446744073709551616",
            "-9223372036854775809",
            "9007199254740993",
            "123456789012345678901234567890.5",
            "0.30000000000000004",
            "4.9e-324",
        ])
        .prop_map(str::to_owned),
        "[1-9][0-9]{20,300}",
    ]
}

/// Strings as JSON text: any Unicode, and the hostile kinds (lone surrogate escapes, NUL,
/// direction overrides, zero-width joiners, combining marks, very long ones).
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_map(|s| Value::String(s).to_string()),
        "\\PC{0,40}".prop_map(|s| Value::String(s).to_string()),
        prop::sample::select(vec![
            r#""\ud800""#,
            r#""\udfff\ud800""#,
            r#""\u0000""#,
            r#""a\u0000b""#,
            "\"\u{202e}evil\u{202c}\"",
            "\"\u{200d}\u{200d}\u{200d}\"",
            "\"e\u{301}\u{301}\u{301}\"",
            "\"\u{1f489}\u{1f4c8}\"",
            "\"\u{feff}2026-11-27T10:00:00Z\"",
            "\"2026-11-27T10:00:00+25:00\"",
            "\"mg/dL\"",
            "\"mmol/L\"",
            "\"carbs\"",
            "\"insulin\"",
            "\"sgv\"",
            "\"Meal Bolus\"",
            "\"2026-11-27T10:00:00.000Z\"",
            "\"\"",
        ])
        .prop_map(str::to_owned),
        (1usize..70_000).prop_map(|n| Value::String("x".repeat(n)).to_string()),
    ]
}

/// Field names the parsers look for, and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "time", "value", "unit", "device", "kind", "grams", "units", "insulin_type", "text",
            "id", "duration_minutes", "exercise_type", "intensity", "rate", "sgv", "mbg", "date",
            "dateString", "type", "direction", "noise", "eventType", "carbs", "insulin",
            "created_at", "notes", "enteredBy", "absorptionTime", "identifier", "srvModified",
            "utcOffset", "app", "display_name", "time_zone", "target_low_mgdl",
            "target_high_mgdl", "alerts", "name", "scopes", "expires_in_days", "email", "role",
            "minutes", "question", "person", "since", "syncIdentifier", "pumpId", "percent",
            "profile", "store", "defaultProfile", "startDate", "openaps", "pump", "uploader",
        ])
        .prop_map(|k| Value::String(k.to_owned()).to_string()),
        1 => string(),
    ]
}

fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        number(),
        string(),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key(), inner), 0..10).prop_map(|fields| {
                let fields: Vec<String> = fields
                    .into_iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// A request body: generated JSON (an object, an array of objects, anything), a nesting
/// deeper than any parser's limit, or broken text.
fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => json_text(),
        2 => prop::collection::vec(json_text(), 1..40).prop_map(|v| format!("[{}]", v.join(","))),
        1 => (1usize..100_000).prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
        1 => (1usize..50_000).prop_map(|n| "{\"a\":".repeat(n)),
        1 => json_text().prop_flat_map(|t| {
            let len = t.len();
            (Just(t), 0..=len)
        })
        .prop_map(|(t, cut)| t.chars().take(cut).collect()),
    ]
}

// ---- the server under fuzz -------------------------------------------------------------------

struct Target {
    server: TestServer,
    token: String,
    ns_base: String,
    ns_secret_sha1: String,
}

async fn target() -> Target {
    let server = TestServer::start_with(|c| c.api_rate_limit_per_minute = 0).await;
    let token = server.user("fuzz@example.org").await;
    let r = server
        .req(Method::POST, "/api/v1/treatments", &token)
        .json(&json!({"id": "fuzz-target", "time": common::minutes_ago(30), "kind": "note", "text": "x"}))
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success());
    let ns = server.nightscout_site(&token).await;
    let secret = ns["api_secret"].as_str().expect("secret");
    Target {
        ns_base: ns["base_url"].as_str().expect("base").to_owned(),
        ns_secret_sha1: glucosync_server::nightscout::access::sha1_hex(secret),
        token,
        server,
    }
}

impl Target {
    async fn send(&self, method: Method, path: &str, body: Option<&str>) -> (u16, String) {
        let mut req = if path.starts_with("/ns/") {
            self.server
                .client
                .request(method.clone(), self.server.url(path))
                .header("api-secret", &self.ns_secret_sha1)
        } else {
            self.server.req(method.clone(), path, &self.token)
        };
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let r = req.send().await.expect("the server answers");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, text)
    }

    async fn healthy(&self) {
        let r = self
            .server
            .client
            .get(self.server.url("/health/ready"))
            .send()
            .await
            .expect("health");
        assert_eq!(r.status(), 200, "the server stays ready");
    }
}

/// Endpoints that take a JSON body: (method, path; `{ns}` is the person's Nightscout base).
const JSON_ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/api/v1/readings"),
    ("POST", "/api/v1/treatments"),
    ("PUT", "/api/v1/treatments/fuzz-target"),
    ("PATCH", "/api/v1/me"),
    ("PATCH", "/api/v1/me/settings"),
    ("POST", "/api/v1/tokens"),
    ("POST", "/api/v1/shares"),
    ("POST", "/api/v1/shares/accept"),
    ("POST", "/api/v1/alerts/urgent_low/snooze"),
    ("POST", "/api/v1/insights/ask"),
    ("POST", "/api/v1/push/subscriptions"),
    ("PUT", "/api/v1/nightscout"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/signup"),
    ("POST", "{ns}/api/v1/entries"),
    ("POST", "{ns}/api/v1/treatments"),
    ("PUT", "{ns}/api/v1/treatments"),
    ("POST", "{ns}/api/v1/devicestatus"),
    ("POST", "{ns}/api/v1/profile"),
    ("POST", "{ns}/api/v1/food"),
    ("POST", "{ns}/api/v3/entries"),
    ("POST", "{ns}/api/v3/treatments"),
    ("POST", "{ns}/api/v3/devicestatus"),
    ("POST", "{ns}/api/v3/profile"),
    ("POST", "{ns}/api/v3/food"),
    ("POST", "{ns}/api/v3/settings"),
    ("PUT", "{ns}/api/v3/treatments/fuzz-target"),
    ("PATCH", "{ns}/api/v3/treatments/fuzz-target"),
];

/// Runs `strategy` for `cases()` cases, each checked by `check` (which fails with a message,
/// or gives the statuses it saw); prints how many requests were answered with which status.
fn fuzz<S: Strategy>(what: &str, strategy: S, check: impl Fn(S::Value) -> Result<Vec<u16>, String>)
where
    S::Value: std::fmt::Debug,
{
    let statuses = Mutex::new(BTreeMap::<u16, u64>::new());
    runner()
        .run(&strategy, |input| {
            let seen = check(input).map_err(TestCaseError::fail)?;
            let mut statuses = statuses.lock().expect("lock");
            for status in seen {
                *statuses.entry(status).or_default() += 1;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let statuses = statuses.into_inner().expect("lock");
    let total: u64 = statuses.values().sum();
    println!("{what}: {total} requests, by status {statuses:?}");
}

#[test]
fn generated_json_bodies_query_strings_and_socket_messages_never_break_the_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let t = rt.block_on(target());
    let (_, peak_before) = memory_kib();

    // 1. JSON bodies at every JSON endpoint.
    fuzz(
        "JSON bodies",
        (0..JSON_ENDPOINTS.len(), body()),
        |(which, body)| {
            let (method, path) = JSON_ENDPOINTS[which];
            let path = path.replace("{ns}", &t.ns_base);
            let method: Method = method.parse().expect("method");
            let (status, text) = rt.block_on(t.send(method.clone(), &path, Some(&body)));
            if status >= 500 {
                return Err(format!("{method} {path}: {status} {text}"));
            }
            Ok(vec![status])
        },
    );

    // 2. Nightscout query strings, v1 (`find[field][$op]=value`) and v3 (`field$op=value`).
    let field = prop::sample::select(vec![
        "sgv",
        "date",
        "dateString",
        "type",
        "created_at",
        "eventType",
        "carbs",
        "insulin",
        "srvModified",
        "_id",
        "identifier",
        "device",
        "notes",
        "a.b",
        "$where",
        "",
    ]);
    let op = prop::sample::select(vec![
        "", "$gt", "$gte", "$lt", "$lte", "$eq", "$ne", "$in", "$nin", "$re", "$regex", "$where",
        "gt", "$",
    ]);
    let value = prop_oneof![
        number(),
        "\\PC{0,30}",
        Just("1795774500000".to_owned()),
        Just("2026-11-27T10:00:00.000Z".to_owned()),
        Just("sgv|mbg|cal".to_owned()),
        Just("/.*/".to_owned()),
    ];
    let pair = (field, op, value).prop_map(|(f, o, v)| (f.to_owned(), o.to_owned(), v));
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let collection = prop::sample::select(vec![
        "api/v1/entries.json",
        "api/v1/entries/sgv.json",
        "api/v1/treatments.json",
        "api/v1/devicestatus.json",
        "api/v1/profile.json",
        "api/v1/food.json",
        "api/v3/entries",
        "api/v3/treatments",
        "api/v3/devicestatus",
        "api/v3/food",
        "api/v3/entries/history",
    ]);
    let extra = prop::sample::select(vec![
        "",
        "count=",
        "count=-1",
        "count=99999999999",
        "count=1e3",
        "limit=0",
        "limit=abc",
        "skip=-5",
        "sort$desc=date",
        "sort=",
        "fields=sgv,date",
        "fields=_all",
        "fields=",
        "now=",
        "token=",
        "secret=",
    ]);
    fuzz(
        "Nightscout queries",
        (
            collection,
            prop::collection::vec(pair, 0..6),
            extra,
            prop::bool::ANY,
        ),
        |(collection, pairs, extra, v1_style)| {
            let mut params: Vec<String> = pairs
                .iter()
                .map(|(f, o, v)| {
                    let name = if v1_style {
                        if o.is_empty() {
                            format!("find[{f}]")
                        } else {
                            format!("find[{f}][{o}]")
                        }
                    } else {
                        format!("{f}{o}")
                    };
                    format!("{}={}", encode(&name), encode(v))
                })
                .collect();
            if !extra.is_empty() {
                params.push(extra.to_owned());
            }
            let path = format!("{}/{collection}?{}", t.ns_base, params.join("&"));
            let mut seen = Vec::new();
            for method in [Method::GET, Method::DELETE] {
                let (status, text) = rt.block_on(t.send(method.clone(), &path, None));
                if status >= 500 {
                    return Err(format!("{method} {path}: {status} {text}"));
                }
                seen.push(status);
            }
            Ok(seen)
        },
    );

    // 3. WebSocket messages: every one gets a reply or a clean close, never a broken server.
    rt.block_on(async {
        let addr = t.server.addr.to_string();
        let mut socket = glucosync_testing::live::open(&addr, &t.token, "", None).await;
        glucosync_testing::live::next_of(&mut socket, &["hello"], Duration::from_secs(10)).await;
        let messages = prop::collection::vec(
            prop_oneof![
                json_text(),
                key().prop_map(|k| format!("{{\"type\":{k}}}")),
                (number(), prop::option::of(number())).prop_map(|(p, s)| match s {
                    Some(s) => format!("{{\"type\":\"subscribe\",\"person\":{p},\"since\":{s}}}"),
                    None => format!("{{\"type\":\"unsubscribe\",\"person\":{p}}}"),
                }),
                "\\PC{0,200}",
            ],
            1..2,
        );
        let mut sent = 0u32;
        let mut generator = runner();
        for _ in 0..cases() {
            let tree = messages
                .new_tree(&mut generator)
                .expect("a generated message");
            for message in tree.current() {
                if message.len() > 4096 {
                    continue; // beyond the socket's message limit: a close, tested elsewhere
                }
                glucosync_testing::live::send_text(&mut socket, &message).await;
                sent += 1;
            }
        }
        // The socket stayed open through all of them and still answers a valid message.
        glucosync_testing::live::send(&mut socket, json!({"type": "unsubscribe", "person": 0}))
            .await;
        glucosync_testing::live::next_of(&mut socket, &["unsubscribed"], Duration::from_secs(30))
            .await;
        assert!(sent > 0);
        println!("WebSocket messages: {sent} sent; the socket stayed open and still answers");
    });

    rt.block_on(t.healthy());
    let (now, peak_after) = memory_kib();
    assert!(
        peak_after.saturating_sub(peak_before) < 256 * 1024,
        "peak resident memory grew from {peak_before} KiB to {peak_after} KiB (now {now} KiB)"
    );
    rt.block_on(t.server.stop());
}

/// The configuration: a file of generated TOML (and damaged copies of the documented example)
/// and generated values of every environment variable are either loaded or refused with a
/// message; never a panic.
#[test]
fn generated_configuration_is_loaded_or_refused_never_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("glucosync.toml");
    let example = glucosync_server::config::EXAMPLE_CONFIG;
    let toml_value = prop_oneof![
        number(),
        string(),
        Just("true".to_owned()),
        Just("[]".to_owned()),
        Just("{ a = 1 }".to_owned()),
        Just("1979-05-27T07:32:00Z".to_owned()),
        Just("\"\"\"\nmulti\n\"\"\"".to_owned()),
    ];
    let key = prop::sample::select(
        glucosync_server::config::ENV_VARS
            .iter()
            .map(|v| v.trim_start_matches("GLUCOSYNC_").to_ascii_lowercase())
            .chain(["unknown".to_owned(), "".to_owned()])
            .collect::<Vec<_>>(),
    );
    let file_text = prop_oneof![
        prop::collection::vec((key.clone(), toml_value.clone()), 0..12).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| format!("{k} = {v}\n"))
                .collect::<String>()
        }),
        (0..example.len(), any::<u8>(), 0u8..3).prop_map(move |(at, byte, op)| {
            let mut bytes = example.as_bytes().to_vec();
            match op {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => bytes.truncate(at),
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }),
        any::<String>(),
    ];
    let env_var = prop::sample::select(glucosync_server::config::ENV_VARS.to_vec());
    let env_value = prop_oneof![
        "\\PC{0,40}",
        number(),
        Just("".to_owned()),
        Just("127.0.0.1:99999".to_owned()),
        Just("[::1]:0".to_owned()),
        Just("0.0.0.0/33".to_owned()),
        Just("postgres://u:p@h:5432/db?sslmode=verify-full".to_owned()),
    ];
    runner()
        .run(
            &(
                file_text,
                prop::collection::vec((env_var, env_value), 0..6),
                prop::bool::ANY,
            ),
            |(text, env, with_file)| {
                std::fs::write(&file, &text).expect("write");
                let env = env
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<Vec<_>>();
                let loaded = glucosync_server::config::Config::load(
                    with_file.then_some(file.as_path()),
                    env,
                );
                if let Err(e) = loaded {
                    prop_assert!(!e.to_string().is_empty());
                }
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
}
