//! The original system's web page, unmodified, against alert-standalone: a page written
//! like it (stock socket.io-client 4.8.1, default options, toasts built from `sentTime`
//! and `duration`) in headless chromium, served from an origin of its own that
//! `CORS_ORIGINS` allows (`alert_testkit::pages`; notify's tests run the same page
//! against the distributed services).

use alert_testkit::pages::{PageServer, original_page};

use crate::helpers::{Standalone, config};

#[tokio::test]
async fn the_original_page_from_another_origin_shows_real_times() {
    let page = PageServer::start().await;
    let mut config = config(None);
    config.clients.cors_origins = page.origin.parse().unwrap();
    let system = Standalone::with(config).await;

    original_page(&page, system.clients, system.ingest).await;

    alert_testkit::contract::System::stop(system).await;
}
