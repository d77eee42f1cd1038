use alert_core::supervise;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config: alert_processor::Config = supervise::parse();
    alert_core::telemetry::init(config.service.log_format);
    supervise::exit(
        async {
            let listener = supervise::bind("LISTEN_ADDR", config.listen).await?;
            alert_processor::run(config, listener, alert_core::shutdown::signal()).await?;
            anyhow::Ok(())
        }
        .await,
    )
}
