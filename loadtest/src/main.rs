//! alert-loadtest: load generator and end-to-end latency meter for the alert
//! broadcaster (issue 6). Modes: `ingest` (POST rate and latency), `fanout`/`e2e`
//! (Socket.IO clients, POST -> client latency, delivered/missing/duplicate),
//! `idle` (server memory and CPU per held connection), `close-lag` (close events
//! against window ends), `wire` (the raw-socket floor under any fan-out server on
//! this machine), and `merge` (combine reports of several client processes).
//!
//! Data flow: POST workers ([`post`]) stamp each alert's title with the run id,
//! a sequence number and the send time; clients ([`client`], over the lean
//! WebSocket in [`ws`] and the packet rules in [`eio`]) find that tag by memmem
//! and record latency into per-thread histograms ([`stats`]); [`run`] drives a
//! mode and [`report`] writes the JSON report and SVG plot.

mod cli;
mod client;
mod eio;
mod net;
mod post;
mod procfs;
mod report;
mod run;
mod stats;
mod wire;
mod ws;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    let nofile = net::raise_nofile();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(run::main(cli, nofile))
}
