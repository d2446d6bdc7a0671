//! Operations: event log, log output (filter, redaction), report, metrics.

pub mod callback_log;
pub mod eventlog;
pub mod logging;
pub mod metrics;
pub mod report;
