//! Notify integration tests against the real Redis (and RabbitMQ for the end-to-end
//! test) on this machine, with real clients over real sockets. Each test uses its own
//! Redis prefix (`test.<name>.<random>:`), so tests run in parallel.

mod helpers;

mod auth;
mod clients;
mod edge_input;
mod end_to_end;
mod exit;
mod gaps;
mod heartbeat;
mod limits;
mod origins;
mod pages;
mod resume;
mod resume_page;
mod rooms;
mod slow;
mod sse;
