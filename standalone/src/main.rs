use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = alert_standalone::Config::parse();
    alert_core::telemetry::init(config.service.log_format);
    let ingest = tokio::net::TcpListener::bind(config.ingest_listen).await?;
    let clients = tokio::net::TcpListener::bind(config.clients_listen).await?;
    alert_standalone::run(config, ingest, clients, alert_core::shutdown::signal()).await
}
