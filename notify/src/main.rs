use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = alert_notify::Config::parse();
    alert_core::telemetry::init(config.service.log_format);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    alert_notify::run(config, listener, alert_core::shutdown::signal()).await?;
    Ok(())
}
