//! The summary metrics against an independent reference implementation (iglu-python 0.4.3) on
//! nine simulated people, within the stated tolerances: 0.5 % relative or 0.02 absolute for the
//! metrics down to HBGI, 2 % for ADRR (it depends on day boundaries: UTC days here, as there).

use glucosync_domain::analytics::{summary, GlucosePoint};

fn load(name: &str) -> Vec<GlucosePoint> {
    let path = format!("{}/tests/data/{name}.csv", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .expect("csv")
        .lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split(',').collect();
            let t = chrono::DateTime::parse_from_rfc3339(cols[0]).expect("time");
            GlucosePoint {
                utc_ms: t.timestamp_millis(),
                mgdl: cols[1].parse().expect("cgm"),
            }
        })
        .collect()
}

fn close(
    name: &str,
    metric: &str,
    ours: f64,
    reference: f64,
    rel: f64,
    abs: f64,
) -> Option<String> {
    let tol = (reference.abs() * rel).max(abs);
    ((ours - reference).abs() > tol)
        .then(|| format!("{name} {metric}: ours {ours:.6}, reference {reference:.6}"))
}

#[test]
fn summary_metrics_match_the_reference_implementation() {
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/data/golden.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("golden"),
    )
    .expect("json");
    let mut misses = Vec::new();
    let mut checked = 0;
    for (name, g) in golden.as_object().expect("object") {
        let points = load(name);
        let s = summary(&points, &chrono::Utc).expect("data");
        let r = |k: &str| g[k].as_f64().unwrap_or_else(|| panic!("{name} has no {k}"));
        assert_eq!(s.n as f64, r("n"), "{name}: reading count");
        let ours = [
            ("mean", s.mean),
            ("sd", s.sd.expect("sd")),
            ("cv", s.cv.expect("cv")),
            ("gmi", s.gmi_percent),
            ("tbr_54", s.bands.very_low),
            ("tbr_70", s.bands.below_70()),
            ("tir", s.bands.in_range),
            ("tar_180", s.bands.above_180()),
            ("tar_250", s.bands.very_high),
            ("gri", s.gri.value),
            ("lbgi", s.lbgi),
            ("hbgi", s.hbgi),
            ("j_index", s.j_index.expect("j")),
        ];
        for (metric, value) in ours {
            misses.extend(close(name, metric, value, r(metric), 0.005, 0.02));
            checked += 1;
        }
        for (metric, value) in [
            ("adrr", s.adrr),
            ("modd", s.modd),
            ("conga_1h", s.conga_1h),
            ("mage", s.mage),
        ] {
            misses.extend(close(
                name,
                metric,
                value.expect(metric),
                r(metric),
                0.005,
                0.02,
            ));
            checked += 1;
        }
    }
    assert!(
        misses.is_empty(),
        "{} of {checked} values outside tolerance:\n{}",
        misses.len(),
        misses.join("\n")
    );
    assert_eq!(checked, 9 * 17);
}
