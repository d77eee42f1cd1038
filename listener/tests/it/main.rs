//! Listener integration tests against the real RabbitMQ on this machine. Each test
//! declares its own queue (`test.<name>.<random>`), so tests run in parallel.

mod helpers;

mod broker_outage;
mod exit;
mod fuzz;
mod ingest;
mod invalid_input;
mod keep_alive;
mod signed;
