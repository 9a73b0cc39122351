//! Forecasts over HTTP: one per CGM reading in data time, equal to the domain's model on the
//! same data; personal models fitted from an uploaded history within seconds.

mod common;

use common::{expect_problem, TestServer};
use glucosync_domain::analytics::GlucosePoint;
use glucosync_domain::forecast::{forecast, PopulationModel, Scales, Series, STEP_MS};
use glucosync_domain::treatments::{InsulinType, Treatment, TreatmentDetail};
use glucosync_domain::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The demo person's data: (time ms, CGM, carbs g, bolus U) per 5-minute row.
fn rows() -> Vec<(i64, f64, f64, f64)> {
    include_str!("../demo/adult-001.csv")
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                Timestamp::parse_rfc3339("time", f[0]).expect("time").utc_ms,
                f[1].parse().expect("cgm"),
                f[3].parse().expect("carbs"),
                f[4].parse().expect("bolus"),
            )
        })
        .collect()
}

fn time(ms: i64) -> String {
    Timestamp::from_utc_ms(ms).to_rfc3339_utc()
}

fn treatments_of(rows: &[(i64, f64, f64, f64)]) -> Vec<Value> {
    let mut out = Vec::new();
    for &(t, _, carbs, bolus) in rows {
        if carbs > 0.0 {
            out.push(json!({"time": time(t), "kind": "carbs", "grams": carbs}));
        }
        if bolus > 0.0 {
            out.push(json!({"time": time(t), "kind": "insulin", "units": bolus, "insulin_type": "bolus"}));
        }
    }
    out
}

async fn latest(s: &TestServer, token: &str) -> reqwest::Response {
    s.req(Method::GET, "/api/v1/forecast", token)
        .send()
        .await
        .expect("send")
}

#[tokio::test]
async fn each_reading_gets_the_models_forecast_in_data_time() {
    let s = TestServer::start().await;
    let t = s.user("ana@example.org").await;
    expect_problem(latest(&s, &t).await, StatusCode::NOT_FOUND, "not_found").await;

    // Replay 5 hours of the demo person with two meals and three boluses, treatments first
    // (logged ahead of the readings they precede), one reading at a time.
    let rows: Vec<_> = rows().into_iter().skip(60).take(60).collect();
    assert!(rows.iter().filter(|r| r.2 > 0.0 || r.3 > 0.0).count() >= 3);
    for chunk in treatments_of(&rows).chunks(100) {
        let r = s
            .req(Method::POST, "/api/v1/treatments", &t)
            .json(chunk)
            .send()
            .await
            .expect("send");
        assert!(r.status().is_success());
    }
    let population = PopulationModel::shipped();
    let mut points: Vec<GlucosePoint> = Vec::new();
    let mut checked = 0;
    for &(ms, cgm, _, _) in &rows {
        let r = s
            .req(Method::POST, "/api/v1/readings", &t)
            .json(&json!({"time": time(ms), "value": cgm}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::CREATED);
        points.push(GlucosePoint {
            utc_ms: ms,
            mgdl: cgm,
        });
        let r = latest(&s, &t).await;
        if points.len() < 10 {
            // Under 45 minutes of history (a quarter of an hour is bridged): no forecast yet.
            assert_eq!(
                r.status(),
                StatusCode::NOT_FOUND,
                "after {} readings",
                points.len()
            );
            continue;
        }
        assert_eq!(r.status(), StatusCode::OK);
        let f: Value = r.json().await.expect("json");
        assert_eq!(
            f["issued_at"],
            time(ms),
            "issued from the reading, in data time"
        );
        assert_eq!(f["model_version"], "gs-ridge-1/population");
        let served = f["points"].as_array().expect("points");
        assert_eq!(served.len(), 12);
        assert_eq!(served[11]["time"], time(ms + 12 * STEP_MS));
        // The same forecast the domain computes from the same data.
        let from = ms - 108 * STEP_MS;
        let treatments: Vec<Treatment> = rows
            .iter()
            // All of them, as the server reads them (those after the reading fall outside
            // the grid; that the person logs treatments at all picks the full model).
            .flat_map(|&(t, _, carbs, bolus)| {
                let at = Timestamp::from_utc_ms(t);
                let mut v = Vec::new();
                if carbs > 0.0 {
                    v.push(Treatment {
                        id: format!("c{t}"),
                        time: at,
                        detail: TreatmentDetail::Carbs { grams: carbs },
                        extra: None,
                        created_ms: 0,
                        updated_ms: 0,
                    });
                }
                if bolus > 0.0 {
                    v.push(Treatment {
                        id: format!("b{t}"),
                        time: at,
                        detail: TreatmentDetail::Insulin {
                            units: bolus,
                            insulin_type: InsulinType::Bolus,
                            insulin_name: None,
                        },
                        extra: None,
                        created_ms: 0,
                        updated_ms: 0,
                    });
                }
                v
            })
            .collect();
        let series = Series::from_records(from, ms, &points, &treatments, Scales::default());
        let expected = forecast(
            population.for_inputs(if series.has_treatments {
                glucosync_domain::forecast::Inputs::Full
            } else {
                glucosync_domain::forecast::Inputs::GlucoseOnly
            }),
            &series,
            series.len() - 1,
        )
        .expect("a forecast");
        for (got, want) in served.iter().zip(&expected) {
            for (k, v) in [
                ("value", want.mgdl),
                ("lower", want.lower),
                ("upper", want.upper),
            ] {
                let g = got[k].as_f64().expect("number");
                assert!((g - v).abs() <= 0.051, "{k}: served {g}, model {v}");
            }
            assert!(
                got["lower"].as_f64() <= got["value"].as_f64()
                    && got["value"].as_f64() <= got["upper"].as_f64()
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 51);

    // A backfilled older reading does not replace the newest forecast.
    let newest = latest(&s, &t).await.json::<Value>().await.expect("json")["issued_at"].clone();
    let r = s
        .req(Method::POST, "/api/v1/readings", &t)
        .json(&json!({"time": time(rows[0].0 - 3_600_000), "value": 120}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        latest(&s, &t).await.json::<Value>().await.expect("json")["issued_at"],
        newest
    );
    // A meal logged at the newest reading changes its forecast at once: glucose will rise.
    let before: Value = latest(&s, &t).await.json().await.expect("json");
    let newest_ms = rows.last().expect("rows").0;
    let r = s
        .req(Method::POST, "/api/v1/treatments", &t)
        .json(&json!({"time": time(newest_ms), "kind": "carbs", "grams": 80}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let after: Value = latest(&s, &t).await.json().await.expect("json");
    assert_eq!(after["issued_at"], before["issued_at"]);
    let at_60 = |f: &Value| f["points"][11]["value"].as_f64().expect("value");
    assert!(at_60(&after) > at_60(&before) + 10.0, "{before} -> {after}");
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("glucosync_ml_predictions_total 52"),
        "{metrics}"
    );
    s.stop().await;
}

/// Someone who logs no treatments (many CGM users) gets the glucose-only model's forecast,
/// the same the domain computes from the full dose history (all zeros), although the server
/// builds a shorter series for them.
#[tokio::test]
async fn a_person_without_treatments_gets_the_glucose_only_forecast() {
    let s = TestServer::start().await;
    let t = s.user("ben@example.org").await;
    let population = PopulationModel::shipped();
    let mut points: Vec<GlucosePoint> = Vec::new();
    let mut checked = 0;
    for (ms, cgm, _, _) in rows().into_iter().skip(200).take(40) {
        let r = s
            .req(Method::POST, "/api/v1/readings", &t)
            .json(&json!({"time": time(ms), "value": cgm}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::CREATED);
        points.push(GlucosePoint {
            utc_ms: ms,
            mgdl: cgm,
        });
        let r = latest(&s, &t).await;
        if points.len() < 10 {
            assert_eq!(r.status(), StatusCode::NOT_FOUND);
            continue;
        }
        let f: Value = r.json().await.expect("json");
        assert_eq!(f["issued_at"], time(ms));
        let series = Series::from_records(ms - 108 * STEP_MS, ms, &points, &[], Scales::default());
        assert!(!series.has_treatments);
        let expected =
            forecast(&population.glucose_only, &series, series.len() - 1).expect("a forecast");
        let served = f["points"].as_array().expect("points");
        assert_eq!(served.len(), expected.len());
        for (got, want) in served.iter().zip(&expected) {
            for (k, v) in [
                ("value", want.mgdl),
                ("lower", want.lower),
                ("upper", want.upper),
            ] {
                let g = got[k].as_f64().expect("number");
                assert!((g - v).abs() <= 0.051, "{k}: served {g}, model {v}");
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 31);
    s.stop().await;
}

#[tokio::test]
async fn an_uploaded_history_gets_a_personal_model_within_seconds() {
    let s = TestServer::start().await;
    let t = s.user("ana@example.org").await;
    let other = s.user("ben@example.org").await;
    let rows: Vec<_> = rows().into_iter().take(5 * 288).collect();
    for chunk in treatments_of(&rows).chunks(1000) {
        let r = s
            .req(Method::POST, "/api/v1/treatments", &t)
            .json(chunk)
            .send()
            .await
            .expect("send");
        assert!(r.status().is_success());
    }
    let readings: Vec<Value> = rows
        .iter()
        .map(|&(ms, cgm, _, _)| json!({"time": time(ms), "value": cgm}))
        .collect();
    let r = s
        .req(Method::POST, "/api/v1/readings", &t)
        .json(&readings)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let newest = time(rows.last().expect("rows").0);
    let started = std::time::Instant::now();
    loop {
        let f: Value = latest(&s, &t).await.json().await.expect("json");
        assert_eq!(f["issued_at"], newest);
        if f["model_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("gs-ridge-1/personal/"))
        {
            assert_eq!(f["model_version"], format!("gs-ridge-1/personal/{newest}"));
            break;
        }
        assert!(
            started.elapsed().as_secs() < 10,
            "no personal model after 10 s: {f}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Nobody else sees it.
    expect_problem(latest(&s, &other).await, StatusCode::NOT_FOUND, "not_found").await;
    s.stop().await;
}
