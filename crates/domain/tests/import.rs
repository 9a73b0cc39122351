//! The importers against files in the vendors' formats (tests/fixtures/import, README there),
//! and against arbitrary bytes: no panic, no hang, and a malformed file names its line.

use glucosync_domain::import::{
    parse, DateOrder, ImportError, ImportFormat, ImportOptions, Outcome, ParseSummary, Record, Row,
};
use glucosync_domain::readings::{NewReading, ReadingKind};
use glucosync_domain::treatments::{InsulinType, NewTreatment, TreatmentDetail};
use proptest::prelude::*;

const NOW_MS: i64 = 1_800_000_000_000; // 2027-01-15

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/import/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn options(tz: &str) -> ImportOptions {
    ImportOptions {
        time_zone: tz.parse().expect("known zone"),
        now_ms: NOW_MS,
        date_order: None,
    }
}

struct Parsed {
    summary: ParseSummary,
    readings: Vec<NewReading>,
    treatments: Vec<NewTreatment>,
    skipped: Vec<(u64, String)>,
    rows: Vec<Row>,
}

fn run(format: ImportFormat, bytes: &[u8], options: &ImportOptions) -> Result<Parsed, ImportError> {
    let mut rows = Vec::new();
    let summary = parse(format, bytes, options, &mut |row| {
        rows.push(row);
        Ok(())
    })?;
    let mut parsed = Parsed {
        summary,
        readings: Vec::new(),
        treatments: Vec::new(),
        skipped: Vec::new(),
        rows: rows.clone(),
    };
    for row in rows {
        match row.outcome {
            Outcome::Record(Record::Reading(r)) => parsed.readings.push(r),
            Outcome::Record(Record::Treatment(t)) => parsed.treatments.push(t),
            Outcome::Skipped(reason) => parsed.skipped.push((row.position.line, reason)),
            Outcome::Record(_) => {}
        }
    }
    Ok(parsed)
}

#[test]
fn clarity_mgdl_readings_treatments_and_the_sensor_limits() {
    let p = run(
        ImportFormat::Clarity,
        &fixture("clarity_mgdl.csv"),
        &options("America/New_York"),
    )
    .expect("a valid export");
    let cgm: Vec<_> = p
        .readings
        .iter()
        .filter(|r| r.kind == ReadingKind::Cgm)
        .collect();
    assert_eq!(cgm.len(), 16, "every EGV row");
    // 2025-10-21 06:02:19 in New York (EDT, UTC-4).
    assert_eq!(cgm[0].time.to_rfc3339_utc(), "2025-10-21T10:02:19.000Z");
    assert_eq!(cgm[0].time.offset_minutes, -240);
    assert_eq!(cgm[0].value.mgdl(), 118.0);
    assert_eq!(cgm[0].device, "iOS G7");
    let high: Vec<_> = cgm.iter().filter(|r| r.extra.is_some()).collect();
    assert_eq!(high.len(), 3, "two High and one Low");
    assert_eq!(high[0].value.mgdl(), 400.0);
    assert_eq!(high[0].extra.as_deref(), Some(r#"{"out_of_range":"high"}"#));
    assert_eq!(high[2].value.mgdl(), 40.0);
    let insulin: Vec<_> = p
        .treatments
        .iter()
        .filter_map(|t| match &t.detail {
            TreatmentDetail::Insulin {
                units,
                insulin_type,
                ..
            } => Some((*units, *insulin_type)),
            _ => None,
        })
        .collect();
    assert_eq!(
        insulin,
        [
            (4.5, InsulinType::Bolus),
            (3.0, InsulinType::Bolus),
            (18.0, InsulinType::Basal)
        ]
    );
    let carbs = p
        .treatments
        .iter()
        .filter(|t| matches!(t.detail, TreatmentDetail::Carbs { .. }))
        .count();
    assert_eq!(carbs, 2);
    // The ten rows describing the export (name, device, alert settings) are skipped, by line.
    assert_eq!(p.skipped.len(), 10);
    assert_eq!(p.skipped[0].0, 2);
    assert!(p
        .skipped
        .iter()
        .all(|(_, why)| why.contains("describing the export")));
    assert!(
        !p.skipped.iter().any(|(_, why)| why.contains("Alex")),
        "no personal data in reasons"
    );
}

#[test]
fn clarity_mmol_is_converted_and_a_calibration_is_a_meter_reading() {
    let p = run(
        ImportFormat::Clarity,
        &fixture("clarity_mmol.csv"),
        &options("Europe/London"),
    )
    .expect("a valid export");
    let first = &p.readings[0];
    assert_eq!(first.kind, ReadingKind::Cgm);
    assert!(
        (first.value.mgdl() - 6.7 * 18.0).abs() < 1.0,
        "{}",
        first.value.mgdl()
    );
    assert!(p.readings.iter().any(|r| r.kind == ReadingKind::Meter));
}

#[test]
fn libreview_us_is_month_first_and_scans_are_skipped() {
    let p = run(
        ImportFormat::LibreView,
        &fixture("libreview_mgdl.csv"),
        &options("America/Chicago"),
    )
    .expect("a valid export");
    assert_eq!(p.summary.date_order, Some(DateOrder::MonthFirst));
    // 03-01-2025 11:40 PM in Chicago (CST, UTC-6): 1 March, not 3 January.
    assert_eq!(
        p.readings[0].time.to_rfc3339_utc(),
        "2025-03-02T05:40:00.000Z"
    );
    assert!(p.skipped.iter().any(|(_, why)| why.starts_with("a scan")));
    assert!(p
        .treatments
        .iter()
        .any(|t| matches!(t.detail, TreatmentDetail::Carbs { .. })));
    assert!(p
        .treatments
        .iter()
        .any(|t| matches!(t.detail, TreatmentDetail::Insulin { .. })));
}

#[test]
fn libreview_uk_mmol_is_day_first_with_strip_and_ketone_rows() {
    let p = run(
        ImportFormat::LibreView,
        &fixture("libreview_mmol.csv"),
        &options("Europe/London"),
    )
    .expect("a valid export");
    assert_eq!(p.summary.date_order, Some(DateOrder::DayFirst));
    // 14-09-2025 21:58 BST (UTC+1).
    assert_eq!(
        p.readings[0].time.to_rfc3339_utc(),
        "2025-09-14T20:58:00.000Z"
    );
    assert!((p.readings[0].value.mgdl() - 6.1 * 18.0).abs() < 1.0);
    let meter: Vec<_> = p
        .readings
        .iter()
        .filter(|r| r.kind == ReadingKind::Meter)
        .collect();
    assert_eq!(meter.len(), 1);
    assert!(p.skipped.iter().any(|(_, why)| why.contains("ketone")));
    assert!(p
        .skipped
        .iter()
        .any(|(_, why)| why.contains("without an amount")));
}

#[test]
fn libreview_dates_that_contradict_each_other_are_refused_at_the_line() {
    let mut file = String::from_utf8(fixture("libreview_mmol.csv")).expect("utf-8");
    // A month-first date (the 13th month otherwise) after day-first ones.
    file.push_str("FreeStyle LibreLink,X,09-25-2025 10:00,0,5.5,,,,,,,,,,,,,,\n");
    let lines = file.lines().count() as u64;
    let err = run(ImportFormat::LibreView, file.as_bytes(), &options("UTC")).err();
    match err {
        Some(ImportError::Malformed { position, message }) => {
            assert_eq!(position.line, lines);
            assert!(message.contains("day/month order"), "{message}");
        }
        other => panic!("expected a malformed file, got {other:?}"),
    }
}

#[test]
fn a_bad_cell_names_its_line_and_nothing_else_matters() {
    let file = String::from_utf8(fixture("clarity_mgdl.csv")).expect("utf-8");
    let broken = file.replacen("2025-10-21T06:17:19", "21/10/2025 6:17", 1);
    let err = run(ImportFormat::Clarity, broken.as_bytes(), &options("UTC")).err();
    assert_eq!(
        err.map(|e| e.to_string()),
        Some(
            "line 15: the timestamp \"21/10/2025 6:17\" is not a date and time like \
             2025-10-21T06:02:19"
                .to_owned()
        )
    );
    let not_clarity = run(
        ImportFormat::Clarity,
        &fixture("libreview_mgdl.csv"),
        &options("UTC"),
    );
    assert!(matches!(not_clarity, Err(ImportError::Malformed { .. })));
    let not_libre = run(
        ImportFormat::LibreView,
        &fixture("clarity_mgdl.csv"),
        &options("UTC"),
    );
    assert!(matches!(not_libre, Err(ImportError::Malformed { .. })));
}

#[test]
fn clarity_places_the_repeated_autumn_hour_by_the_transmitter_clock() {
    // New York, 2025-11-02: 01:00–01:59 happens twice. Sorted by wall-clock time, the two
    // hours' readings interleave; the transmitter's seconds run straight through.
    let header = "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Patient Info,\
                  Device Info,Source Device ID,Glucose Value (mg/dL),Insulin Value (u),Carb \
                  Value (grams),Duration (hh:mm:ss),Glucose Rate of Change (mg/dL/min),\
                  Transmitter Time (Long Integer),Transmitter ID\n";
    let rows = [
        ("2025-11-02T00:57:00", 1000),
        ("2025-11-02T01:02:00", 1300),
        ("2025-11-02T01:04:00", 4900), // second hour
        ("2025-11-02T01:07:00", 1600),
        ("2025-11-02T01:09:00", 5200), // second hour
    ];
    let mut file = header.to_owned();
    for (i, (time, tt)) in rows.iter().enumerate() {
        file.push_str(&format!("{i},{time},EGV,,,,G6,100,,,,,{tt},ABC\n"));
    }
    let p = run(
        ImportFormat::Clarity,
        file.as_bytes(),
        &options("America/New_York"),
    )
    .expect("valid");
    let times: Vec<String> = p.readings.iter().map(|r| r.time.to_rfc3339_utc()).collect();
    assert_eq!(
        times,
        [
            "2025-11-02T04:57:00.000Z",
            "2025-11-02T05:02:00.000Z",
            "2025-11-02T06:04:00.000Z",
            "2025-11-02T05:07:00.000Z",
            "2025-11-02T06:09:00.000Z",
        ]
    );
}

#[test]
fn nightscout_entries_and_treatments_as_the_api_returns_them() {
    let json = br#"[
        {"_id":"65a1","sgv":120,"date":1761040939000,"dateString":"2025-10-21T10:02:19.000Z",
         "trend":4,"direction":"Flat","device":"xDrip-DexcomG7","type":"sgv"},
        {"_id":"65a2","mbg":134,"date":1761041000000,"type":"mbg","device":"meter"},
        {"_id":"65a3","eventType":"Meal Bolus","insulin":4.5,"carbs":45,
         "created_at":"2025-10-21T10:24:00.000Z","enteredBy":"AAPS"},
        {"_id":"65a4","sgv":5,"date":1761041300000,"type":"sgv"},
        {"hello":"world"}
    ]"#;
    let p = run(ImportFormat::Nightscout, json, &options("UTC")).expect("valid");
    assert_eq!(p.readings.len(), 2);
    assert_eq!(p.readings[0].value.mgdl(), 120.0);
    assert_eq!(p.readings[1].kind, ReadingKind::Meter);
    assert_eq!(p.treatments.len(), 2, "a meal bolus is insulin and carbs");
    assert_eq!(p.summary.rows, 5);
    assert_eq!(p.skipped.len(), 1, "{:?}", p.skipped);
    // The sensor error code (sgv 5) is kept as a Nightscout entry document, as an upload is.
    assert!(p
        .rows
        .iter()
        .any(|r| matches!(&r.outcome, Outcome::Record(Record::Document { collection, .. }) if collection == "entries")));
    // An object with the collections by name works too.
    let wrapped = br#"{"entries":[{"sgv":99,"date":1761040939000}],"treatments":[]}"#;
    let p = run(ImportFormat::Nightscout, wrapped, &options("UTC")).expect("valid");
    assert_eq!(p.readings.len(), 1);
    // Broken JSON names the line.
    let err = run(
        ImportFormat::Nightscout,
        b"[\n{\"sgv\":1,\n}\n]",
        &options("UTC"),
    )
    .err();
    assert!(
        matches!(&err, Some(ImportError::Malformed { position, .. }) if position.line == 3),
        "{err:?}"
    );
}

#[test]
fn a_glucosync_export_reads_back_and_another_document_is_refused() {
    let json = br#"{"format":"glucosync-export","version":1,"exported_at":"2026-01-01T00:00:00Z",
        "account":{"email":"a@example.org","display_name":"Alex","settings":{"time_zone":"Europe/Berlin"}},
        "readings":[{"time":"2025-10-21T06:02:19.000+02:00","value_mgdl":118,"kind":"cgm","device":"G7"}],
        "treatments":[{"id":"t1","time":"2025-10-21T06:25:00.000+02:00","kind":"insulin","units":4.5,"insulin_type":"bolus"}],
        "nightscout_documents":[{"collection":"devicestatus","id":"d1","time":"2025-10-21T04:00:00.000Z","body":{"device":"loop"}}],
        "shares":[{"direction":"shared_by_you"}],"access_log":[]}"#;
    let p = run(ImportFormat::GlucoSync, json, &options("UTC")).expect("valid");
    assert_eq!(p.readings.len(), 1);
    assert_eq!(p.readings[0].time.offset_minutes, 120);
    assert_eq!(p.treatments[0].id, "t1");
    assert!(p.rows.iter().any(|r| matches!(&r.outcome,
        Outcome::Record(Record::Account { display_name: Some(n), settings }) if n == "Alex" && settings.time_zone == "Europe/Berlin")));
    let other = run(
        ImportFormat::GlucoSync,
        br#"{"readings":[]}"#,
        &options("UTC"),
    );
    assert!(matches!(other, Err(ImportError::Malformed { .. })));
    let cut = &json[..json.len() / 2];
    let err = run(ImportFormat::GlucoSync, cut, &options("UTC")).err();
    assert!(
        err.as_ref()
            .is_some_and(|e| e.to_string().contains("cut short")),
        "{err:?}"
    );
}

fn any_format() -> impl Strategy<Value = ImportFormat> {
    prop::sample::select(ImportFormat::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes: every parser answers (Ok or a malformed-file error), never panics.
    #[test]
    fn arbitrary_bytes_never_panic(format in any_format(), bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = run(format, &bytes, &options("Europe/Berlin"));
    }

    /// A real file with bytes changed, cut or inserted: the same.
    #[test]
    fn damaged_exports_never_panic(
        which in 0usize..4,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..20),
    ) {
        let (name, format) = [
            ("clarity_mgdl.csv", ImportFormat::Clarity),
            ("clarity_mmol.csv", ImportFormat::Clarity),
            ("libreview_mgdl.csv", ImportFormat::LibreView),
            ("libreview_mmol.csv", ImportFormat::LibreView),
        ][which];
        let mut bytes = fixture(name);
        for (at, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.insert(i, byte); }
                _ => bytes.truncate(i),
            }
        }
        let _ = run(format, &bytes, &options("America/New_York"));
    }
}
