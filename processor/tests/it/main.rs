//! Processor integration tests against the real RabbitMQ and Redis on this machine.
//! Each test has its own queue and key prefix (`test.<name>.<random>`).

mod helpers;

mod concurrency;
mod exit;
mod failures;
mod lifecycle;
mod restart;
mod rules;
