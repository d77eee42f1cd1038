use alert_core::supervise;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config: alert_standalone::Config = supervise::parse();
    supervise::check_settings(config.clients.auth.check());
    alert_core::telemetry::init(config.service.log_format);
    supervise::exit(
        async {
            let ingest = supervise::bind("INGEST_LISTEN_ADDR", config.ingest_listen).await?;
            let clients = supervise::bind("CLIENTS_LISTEN_ADDR", config.clients_listen).await?;
            alert_standalone::run(config, ingest, clients, alert_core::shutdown::signal()).await
        }
        .await,
    )
}
