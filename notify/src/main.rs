use alert_core::supervise;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config: alert_notify::Config = supervise::parse();
    supervise::check_settings(config.clients.auth.check());
    alert_core::telemetry::init(config.service.log_format);
    supervise::exit(
        async {
            let listener = supervise::bind("LISTEN_ADDR", config.listen).await?;
            alert_notify::run(config, listener, alert_core::shutdown::signal()).await?;
            anyhow::Ok(())
        }
        .await,
    )
}
