//! Documented limits on input. `docs/api.md` lists the same numbers; a test keeps them in step.

/// Lowest glucose value accepted, mg/dL. Sensors and meters do not report below this.
pub const MIN_GLUCOSE_MGDL: f64 = 20.0;
/// Highest glucose value accepted, mg/dL. Meters read up to 600 ("HI" above).
pub const MAX_GLUCOSE_MGDL: f64 = 600.0;
/// Readings and treatments may not be older than 2000-01-01T00:00:00Z (ms since the epoch).
pub const EARLIEST_TIME_MS: i64 = 946_684_800_000;
/// How far in the future a timestamp may lie, to allow for phone clocks that run fast.
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;
/// Readings in one POST.
pub const MAX_READINGS_PER_BATCH: usize = 10_000;
/// The largest file `POST /api/v1/import` takes (five years of Nightscout entries as JSON are
/// about 150 MB).
pub const MAX_IMPORT_BYTES: usize = 1024 * 1024 * 1024;
/// Treatments in one POST.
pub const MAX_TREATMENTS_PER_BATCH: usize = 1_000;
/// Length of short strings (device names, insulin names, token names), in characters.
pub const MAX_SHORT_TEXT_CHARS: usize = 100;
/// Length of a note's text, in characters.
pub const MAX_NOTE_CHARS: usize = 2_000;
/// Length of a client-supplied treatment id.
pub const MAX_CLIENT_ID_CHARS: usize = 64;
/// Items in one page of a listing.
pub const MAX_PAGE_SIZE: usize = 10_000;
/// Items in a page when the client does not say.
pub const DEFAULT_PAGE_SIZE: usize = 1_000;
/// Longest time range of one listing or range deletion, in days.
pub const MAX_RANGE_DAYS: i64 = 366;
/// Password length, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 256;
/// Email address length (RFC 5321 path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Personal API tokens one person may hold at once.
pub const MAX_API_TOKENS_PER_USER: usize = 50;
