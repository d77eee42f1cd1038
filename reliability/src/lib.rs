//! `alert-reliability`: the fault-injection checker of issue 12. It runs the
//! distributed services on loopback under one fault scenario at a time, records what
//! the sources were told and what every client received, and judges the recording
//! against the event log and history (RELIABILITY.md).

pub mod client;
pub mod cluster;
pub mod endpoints;
pub mod link;
pub mod record;
pub mod report;
pub mod run;
pub mod scenario;
pub mod source;
pub mod verdict;
