//! The short fault scenario, in the test command: a kill -9 of a listener, a processor
//! and a notify in turn while alerts flow and clients listen, judged by the checker.
//! A regression that loses, duplicates or reorders anything fails CI here.

use std::path::PathBuf;

use alert_reliability::{report, run, scenario};

/// The service binaries `cargo test` built next to this test (target/<profile>).
fn binaries() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_owned();
    for binary in ["alert-listener", "alert-processor", "alert-notify"] {
        assert!(
            dir.join(binary).exists(),
            "{binary} is not built in {}: run `cargo test --workspace` (it builds the services' binaries)",
            dir.display()
        );
    }
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_each_service_loses_and_duplicates_nothing() {
    let short = scenario::all()
        .into_iter()
        .find(|s| s.name == "short")
        .expect("the short scenario");
    let options = run::Options {
        bin: binaries(),
        dir: std::env::temp_dir().join("alert-chaos-test"),
        keep: false,
        seed: 12,
    };
    let outcome = run::run(&short, &options).await.expect("the run");
    let table = report::table(std::slice::from_ref(&outcome));
    assert!(outcome.passed, "{table}\n{}", report::details(&outcome));
    let verdict = &outcome.verdict;
    // The faults happened and were survived, not skipped. (Whether a source saw the
    // killed listener depends on the 100 ms its Service takes to notice: not asserted.)
    assert_eq!(outcome.timeline.len(), 6, "{:?}", outcome.timeline);
    assert!(verdict.alerts.accepted > 300, "{table}");
    assert!(
        verdict.clients.resumed_recovered > 0,
        "notify's clients resumed: {table}"
    );
}

/// The checker checked against a real broken pipeline: alerts the listeners accepted
/// are purged from the queue before any processor applies them (what an ack before
/// commit does when a processor dies), and the verdict says they were lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_that_drops_accepted_alerts_is_caught() {
    let sabotage = scenario::all()
        .into_iter()
        .find(|s| s.name == "sabotage-purge")
        .expect("the sabotage scenario");
    let options = run::Options {
        bin: binaries(),
        dir: std::env::temp_dir().join("alert-chaos-test"),
        keep: false,
        seed: 7,
    };
    let outcome = run::run(&sabotage, &options).await.expect("the run");
    let verdict = &outcome.verdict;
    assert!(outcome.passed, "caught: {:?}", verdict.failures);
    assert!(verdict.alerts.lost > 0);
    assert!(
        verdict.failures.iter().any(|f| f.contains("lost")),
        "{:?}",
        verdict.failures
    );
}
