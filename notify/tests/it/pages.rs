//! Web pages in a real browser (headless Debian chromium driven by playwright-core, see
//! `scripts/browser` and `scripts/clients`), each served from an origin of its own
//! (`notify/tests/clients/serve-page.mjs`) like the original system's page, against the
//! distributed services: the real listener -> RabbitMQ -> processor -> Redis -> notify.
//! Here the original page unmodified (standalone's tests run it too); `resume_page.rs`
//! has the client module's page.

use alert_testkit::pages::{PageServer, original_page};

use crate::helpers::{Ingest, TestApp, config};

#[tokio::test]
async fn the_original_page_from_another_origin_shows_real_times() {
    let page = PageServer::start().await;
    let ingest = Ingest::start("original-page").await;
    let mut notify = config(&ingest.prefix, crate::helpers::REDIS_URL);
    notify.clients.cors_origins = page.origin.parse().unwrap();
    let notify = TestApp::spawn(notify).await;

    original_page(&page, notify.addr, ingest.addr).await;

    ingest.stop().await;
    notify.stop().await;
}

/// The module's resume algorithm against a scripted socket doing what a server might
/// (events overtaking the snapshot, repeats, a lost epoch): `alerts-module.test.mjs`.
#[tokio::test]
async fn the_client_module_does_not_rely_on_the_servers_order() {
    let script = alert_testkit::pages::clients_dir().join("alerts-module.test.mjs");
    let output = tokio::process::Command::new("node")
        .arg("--test")
        .arg(script)
        .output()
        .await
        .expect("node (install it with scripts/clients)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
