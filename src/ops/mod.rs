//! Operations: event log, report, metrics.

pub mod eventlog;
pub mod metrics;
pub mod report;
