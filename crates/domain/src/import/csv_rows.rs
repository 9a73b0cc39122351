//! The CSV reading both vendor formats share: delimiter and byte-order mark, ragged rows, and
//! errors that name the line.

use std::io::{BufRead, BufReader, Read};

use super::{ImportError, Position};

/// Reads `input` as CSV, calling `each` with every record and the line it starts on.
/// Returns how many records there were.
pub(crate) fn for_each_record(
    input: impl Read,
    mut each: impl FnMut(u64, &csv::StringRecord) -> Result<(), ImportError>,
) -> Result<u64, ImportError> {
    let mut input = BufReader::with_capacity(64 * 1024, input);
    let start = input
        .fill_buf()
        .map_err(|e| ImportError::malformed(Position::line(1), format!("could not read: {e}")))?;
    if start.starts_with(&[0xFF, 0xFE]) || start.starts_with(&[0xFE, 0xFF]) {
        return Err(ImportError::malformed(
            Position::line(1),
            "the file is UTF-16 text; open it and save it as UTF-8 CSV, or export it again",
        ));
    }
    let delimiter = guess_delimiter(start);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(input);
    let mut record = csv::StringRecord::new();
    let mut count = 0;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => return Ok(count),
            Ok(true) => {
                count += 1;
                let line = record.position().map_or(count, csv::Position::line);
                each(line, &record)?;
            }
            Err(e) => {
                let line = e.position().map_or(count + 1, csv::Position::line);
                let message = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => {
                        "is not UTF-8 text (save the file as UTF-8 CSV)".to_owned()
                    }
                    csv::ErrorKind::Io(io) => format!("could not read: {io}"),
                    _ => "is not valid CSV".to_owned(),
                };
                return Err(ImportError::malformed(Position::line(line), message));
            }
        }
    }
}

/// The separator of the first line: the most frequent of comma, semicolon and tab (exports
/// from some locales use semicolons), comma when there is none.
fn guess_delimiter(start: &[u8]) -> u8 {
    let first_line = start.split(|b| *b == b'\n').next().unwrap_or(start);
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| (first_line.iter().filter(|b| *b == d).count(), *d == b','))
        .unwrap_or(b',')
}

/// A record's cell, trimmed, without a byte-order mark, empty when the row is shorter.
pub(crate) fn cell(record: &csv::StringRecord, index: usize) -> &str {
    record
        .get(index)
        .map(|c| c.trim_start_matches('\u{feff}').trim())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(input: &str) -> Result<Vec<(u64, Vec<String>)>, ImportError> {
        let mut out = Vec::new();
        for_each_record(input.as_bytes(), |line, r| {
            out.push((line, r.iter().map(str::to_owned).collect()));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn semicolons_ragged_rows_and_quoted_newlines() {
        let got = rows("a;b;c\n1;\"x\ny\";3\n4;5\n").expect("valid");
        assert_eq!(got[0], (1, vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(got[1], (2, vec!["1".into(), "x\ny".into(), "3".into()]));
        assert_eq!(got[2], (4, vec!["4".into(), "5".into()]));
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let mut bytes = b"a,b\n1,2\n3,".to_vec();
        bytes.extend([0xC3, 0x28, b'\n']);
        let err = for_each_record(&bytes[..], |_, _| Ok(())).expect_err("not UTF-8");
        assert_eq!(
            err.to_string(),
            "line 3: is not UTF-8 text (save the file as UTF-8 CSV)"
        );
    }

    #[test]
    fn utf16_is_refused_with_advice() {
        let err = for_each_record(&[0xFF, 0xFE, b'a', 0][..], |_, _| Ok(())).expect_err("utf16");
        assert!(err.to_string().contains("UTF-16"));
    }
}
