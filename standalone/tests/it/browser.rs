//! The live page in a real browser: headless Debian chromium driven by playwright-core
//! (`notify/tests/clients/live-page.mjs`) against this standalone process. It posts an
//! alert and checks the page shows it open within a second, its extension, its close,
//! that a location filter keeps others out, and that the page's own form posts. `scripts/test` installs chromium
//! (`scripts/browser`) and playwright-core (`scripts/clients`); the screenshot is left
//! in `target/test-artifacts/live-page.png`.

use std::{path::PathBuf, process::Stdio};

use alert_testkit::contract::System;

use crate::helpers::Standalone;

#[tokio::test]
async fn the_live_page_shows_open_extended_closed_and_filtered_alerts() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let clients = root.join("notify/tests/clients");
    assert!(
        clients.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/clients"
    );
    // playwright wants a path: $CHROMIUM (scripts/test sets it), else chromium on PATH.
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|dir| dir.join("chromium"))
                .find(|path| path.is_file())
        })
        .expect("chromium is not installed: run scripts/browser");
    let artifacts = root.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("live-page.png");

    let system = Standalone::start().await;
    let output = tokio::process::Command::new("node")
        .arg(clients.join("live-page.mjs"))
        .arg("--page")
        .arg(format!("http://{}/", system.clients))
        .arg("--ingest")
        .arg(format!("http://{}", system.ingest))
        .arg("--screenshot")
        .arg(&screenshot)
        .arg("--chromium")
        .arg(&chromium)
        .arg("--form")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(90), output)
        .await
        .expect("the browser test finished in time")
        .unwrap_or_else(|e| panic!("cannot run node (install it with scripts/clients): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "live page test failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| panic!("no JSON summary: {stdout}"));
    assert_eq!(summary["ok"], true, "{summary}");
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    system.stop().await;
}
