//! The binary fails loudly: one line naming what is wrong, a non-zero exit.

#[tokio::test]
async fn a_port_in_use_is_one_line_naming_the_address_and_a_non_zero_exit() {
    alert_testkit::exits_on_port_in_use(env!("CARGO_BIN_EXE_alert-processor"), "LISTEN_ADDR", &[])
        .await;
}

#[tokio::test]
async fn a_bad_setting_is_one_line_naming_it_and_exit_2() {
    let bin = env!("CARGO_BIN_EXE_alert-processor");
    alert_testkit::exits_on_bad_setting(bin, &[("AMQP_PREFETCH", "many")], 2, "--prefetch").await;
}
