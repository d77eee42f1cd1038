//! The binary fails loudly: one line naming what is wrong, a non-zero exit.

#[tokio::test]
async fn a_port_in_use_is_one_line_naming_the_address_and_a_non_zero_exit() {
    alert_testkit::exits_on_port_in_use(env!("CARGO_BIN_EXE_alert-processor"), "LISTEN_ADDR", &[])
        .await;
}
