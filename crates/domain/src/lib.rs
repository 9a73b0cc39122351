//! GlucoSync's domain core.
//!
//! This crate owns the meaning of the data: glucose units and their conversion, what a valid
//! reading or treatment is, a person's settings and their consensus defaults, and the password
//! policy. Everything here is a pure function or a plain type.
//!
//! It must never do I/O, spawn tasks, read the clock on its own (callers pass `now`), or know
//! about HTTP or SQL. Later modules (analytics, forecasting, alert rules) follow the same rule.

pub mod accounts;
pub mod agp;
pub mod alerts;
pub mod analytics;
pub mod error;
pub mod events;
pub mod export;
pub mod forecast;
pub mod import;
pub mod insights;
pub mod limits;
pub mod nightscout;
pub mod readings;
pub mod settings;
pub mod statistics;
pub mod time;
pub mod treatments;
pub mod units;

pub use error::ValidationError;
pub use time::Timestamp;
pub use units::{GlucoseMgdl, GlucoseUnit};
