//! `docs/api.md` lists every input limit; this keeps the table and the code in step.

use glucosync_domain::limits::*;

#[test]
fn every_limit_is_documented_with_its_value() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md"))
        .expect("docs/api.md");
    let limits: &[(&str, f64)] = &[
        ("MIN_GLUCOSE_MGDL", MIN_GLUCOSE_MGDL),
        ("MAX_GLUCOSE_MGDL", MAX_GLUCOSE_MGDL),
        ("EARLIEST_TIME_MS", EARLIEST_TIME_MS as f64),
        ("MAX_FUTURE_SKEW_MS", MAX_FUTURE_SKEW_MS as f64),
        ("MAX_READINGS_PER_BATCH", MAX_READINGS_PER_BATCH as f64),
        ("MAX_TREATMENTS_PER_BATCH", MAX_TREATMENTS_PER_BATCH as f64),
        ("MAX_SHORT_TEXT_CHARS", MAX_SHORT_TEXT_CHARS as f64),
        ("MAX_NOTE_CHARS", MAX_NOTE_CHARS as f64),
        ("MAX_CLIENT_ID_CHARS", MAX_CLIENT_ID_CHARS as f64),
        ("MAX_PAGE_SIZE", MAX_PAGE_SIZE as f64),
        ("DEFAULT_PAGE_SIZE", DEFAULT_PAGE_SIZE as f64),
        ("MAX_RANGE_DAYS", MAX_RANGE_DAYS as f64),
        ("MIN_PASSWORD_CHARS", MIN_PASSWORD_CHARS as f64),
        ("MAX_PASSWORD_CHARS", MAX_PASSWORD_CHARS as f64),
        ("MAX_EMAIL_CHARS", MAX_EMAIL_CHARS as f64),
        ("MAX_API_TOKENS_PER_USER", MAX_API_TOKENS_PER_USER as f64),
        ("MAX_IMPORT_BYTES", MAX_IMPORT_BYTES as f64),
    ];
    for (name, value) in limits {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("docs/api.md has no row for {name}"));
        let documented: f64 = row
            .split('|')
            .nth(2)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no number in the row of {name}: {row}"));
        assert_eq!(
            documented, *value,
            "docs/api.md says {name} is {documented}, the code says {value}"
        );
    }
}
