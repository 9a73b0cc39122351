//! The forecasting targets of docs/forecasting.md, measured by the evaluation protocol on the
//! nine simulated patients (`tests/data`, copied from `shared/data/simglucose`).

use glucosync_domain::forecast::evaluation::{evaluate, parse_csv, Report};

fn people(glucose_only: bool) -> Vec<glucosync_domain::forecast::Series> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("data")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 9);
    files
        .iter()
        .map(|f| {
            let s = parse_csv(&std::fs::read_to_string(f).expect("read")).expect("parse");
            if glucose_only {
                s.glucose_only()
            } else {
                s
            }
        })
        .collect()
}

fn print(report: &Report) {
    for (model, minutes, s) in &report.rows {
        eprintln!(
            "{model:>22} {minutes:>2} min  RMSE {:6.2}  MAE {:6.2}  MARD {:5.1} %  Clarke A {:5.1} A+B {:6.2} %  Parkes A+B {:6.2} %  lag {:4.0} min  coverage {}  (n = {})",
            s.rmse, s.mae, s.mard, s.clarke_a, s.clarke_ab, s.parkes_ab, s.lag_minutes,
            s.coverage.map(|c| format!("{c:.1} %")).unwrap_or_else(|| "—".into()), s.points
        );
    }
}

#[test]
fn the_personal_model_meets_its_targets_against_ar2() {
    let report = evaluate(&people(false));
    print(&report);
    let get = |m: &str, h: i64| report.get(m, h).expect("scored").clone();
    let (ar2_30, ar2_60) = (get("ar2", 30), get("ar2", 60));
    let (model_30, model_60) = (get("personal", 30), get("personal", 60));
    assert!(model_30.points > 7000, "{}", model_30.points);
    assert_eq!(model_30.points, ar2_30.points, "the same test points");
    assert!(
        model_30.rmse <= 0.70 * ar2_30.rmse,
        "30 min: {} vs AR2 {}",
        model_30.rmse,
        ar2_30.rmse
    );
    assert!(
        model_60.rmse <= 0.65 * ar2_60.rmse,
        "60 min: {} vs AR2 {}",
        model_60.rmse,
        ar2_60.rmse
    );
    assert!(
        model_30.clarke_ab >= 99.0,
        "Clarke A+B {}",
        model_30.clarke_ab
    );
    for s in [&model_30, &model_60] {
        let c = s.coverage.expect("interval");
        assert!((75.0..=85.0).contains(&c), "80 % interval covers {c} %");
    }
    // Without the treatments the person logged, it is still better than AR2.
    let (g30, g60) = (
        get("personal_glucose_only", 30),
        get("personal_glucose_only", 60),
    );
    assert!(g30.rmse < ar2_30.rmse && g60.rmse < ar2_60.rmse);
    // A new user's population model beats AR2 too.
    assert!(get("population", 30).rmse < ar2_30.rmse && get("population", 60).rmse < ar2_60.rmse);
}

#[test]
fn on_glucose_only_files_the_model_still_beats_ar2() {
    let report = evaluate(&people(true));
    print(&report);
    let get = |m: &str, h: i64| report.get(m, h).expect("scored").clone();
    for h in [30, 60] {
        assert!(get("personal", h).rmse < get("ar2", h).rmse, "{h} min");
    }
}

#[test]
fn the_shipped_population_model_is_the_fit_on_the_simulated_people() {
    use glucosync_domain::forecast::{fit_population, PopulationModel, SHIPPED_POPULATION_JSON};
    let people: Vec<_> = people(false)
        .into_iter()
        .map(|s| {
            let rows = s.len();
            (s, rows)
        })
        .collect();
    let fitted = fit_population(&people);
    assert_eq!(
        fitted.to_json(),
        SHIPPED_POPULATION_JSON,
        "regenerate with: glucoengine model fit-population --data ../shared/data/simglucose \
         --output crates/domain/src/forecast/population.json"
    );
    assert_eq!(PopulationModel::shipped(), fitted);
}

#[test]
fn suspected_compression_lows_raise_fewer_false_alarms_and_never_precede_a_real_low() {
    use glucosync_domain::forecast::evaluation::evaluate_compression_lows;
    let r = evaluate_compression_lows(&people(false));
    eprintln!("{r:#?}");
    assert!(r.episodes >= 15, "{} episodes", r.episodes);
    // Over half of the simulated compression lows are recognised at their first or second
    // reading (the others follow a decline or come with insulin acting: the rule leaves
    // those alone on purpose) ...
    assert!(
        r.suspected * 2 > r.episodes,
        "{} of {}",
        r.suspected,
        r.episodes
    );
    // ... and they raise a quarter fewer false predicted-low alarms or better, with
    // forecasts closer to the real glucose.
    assert!(
        r.false_alarms_handled * 4 <= r.false_alarms_ignored * 3,
        "{} vs {}",
        r.false_alarms_handled,
        r.false_alarms_ignored
    );
    assert!(r.rmse30_handled < r.rmse30_ignored);
    // On the data without them the rule is rare, never fires before a real low, and leaves
    // the accuracy where it was.
    assert!(
        r.clean_suspected * 500 <= r.clean_origins,
        "{}",
        r.clean_suspected
    );
    assert_eq!(r.clean_suspected_before_low, 0);
    assert!(r.clean_rmse30_handled <= r.clean_rmse30_ignored * 1.001);
}
