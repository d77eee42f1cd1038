//! The binary fails loudly: one line naming what is wrong, a non-zero exit.

#[tokio::test]
async fn a_port_in_use_is_one_line_naming_the_address_and_a_non_zero_exit() {
    alert_testkit::exits_on_port_in_use(env!("CARGO_BIN_EXE_alert-listener"), "LISTEN_ADDR", &[])
        .await;
}

#[tokio::test]
async fn a_bad_setting_is_one_line_naming_it() {
    let bin = env!("CARGO_BIN_EXE_alert-listener");
    let listen = ("LISTEN_ADDR", "127.0.0.1:0");
    alert_testkit::exits_on_bad_setting(
        bin,
        &[listen, ("API_KEYS", "sirens=short")],
        1,
        "API_KEYS",
    )
    .await;
    let short_secret = ("SOURCE_SECRETS", "radar=0123456789abcdef");
    alert_testkit::exits_on_bad_setting(bin, &[listen, short_secret], 1, "SOURCE_SECRETS").await;
    let missing = ("API_KEYS_FILE", "/nonexistent/api-keys");
    alert_testkit::exits_on_bad_setting(bin, &[listen, missing], 1, "API_KEYS_FILE").await;
    alert_testkit::exits_on_bad_setting(bin, &[("MAX_BATCH", "many")], 2, "--max-batch").await;
}
