//! Streaming through a large JSON document one array element at a time (serde visitors over
//! a reader), with the line each element ends on for messages.

use std::cell::Cell;
use std::io::{BufReader, Read};
use std::rc::Rc;

use super::{ImportError, Position};

/// Counts the lines a reader has handed out; serde_json reads byte by byte (through our
/// buffer), so the count is where the parser is.
pub(crate) struct LineCounter<R> {
    inner: R,
    line: Rc<Cell<u64>>,
}

impl<R: Read> LineCounter<R> {
    pub(crate) fn new(inner: R) -> (Self, Rc<Cell<u64>>) {
        let line = Rc::new(Cell::new(1));
        (
            Self {
                inner,
                line: line.clone(),
            },
            line,
        )
    }
}

impl<R: Read> Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let newlines = buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        self.line.set(self.line.get() + newlines);
        Ok(n)
    }
}

/// A JSON deserializer over `input` and the line counter it advances.
pub(crate) fn deserializer(
    input: impl Read,
) -> (
    serde_json::Deserializer<serde_json::de::IoRead<LineCounter<BufReader<impl Read>>>>,
    Rc<Cell<u64>>,
) {
    let (counter, line) = LineCounter::new(BufReader::with_capacity(64 * 1024, input));
    (serde_json::Deserializer::from_reader(counter), line)
}

/// What a visitor met that must end the parse; kept aside because serde's errors are strings.
#[derive(Default)]
pub(crate) struct Failure(Option<ImportError>);

impl Failure {
    /// Records `error` and gives serde an error to unwind with.
    pub(crate) fn set<E: serde::de::Error>(&mut self, error: ImportError) -> E {
        let message = error.to_string();
        self.0 = Some(error);
        E::custom(message)
    }

    /// The error to report for a failed parse: ours if a visitor set one, else serde's, at its
    /// line.
    pub(crate) fn into_error(self, e: serde_json::Error, what: &str) -> ImportError {
        if let Some(error) = self.0 {
            return error;
        }
        let position = Position::line(e.line().max(1) as u64);
        let message = match e.classify() {
            serde_json::error::Category::Io => format!("could not read: {e}"),
            serde_json::error::Category::Eof => {
                format!("the file ends in the middle of {what}: was it cut short?")
            }
            serde_json::error::Category::Syntax => format!("is not valid JSON ({})", strip(&e)),
            serde_json::error::Category::Data => {
                format!("does not have the shape of {what} ({})", strip(&e))
            }
        };
        ImportError::malformed(position, message)
    }
}

/// serde_json's message without its own " at line L column C" (the position says it).
fn strip(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}
