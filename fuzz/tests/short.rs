//! The short fuzz run of the test command (~30 s): every target, a fixed seed, bounded
//! seconds. The long run and its figures: RELIABILITY.md, "Fuzzing (issue 12, section 5)".

use alert_fuzz::Options;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_fuzz_run_finds_nothing_and_good_input_is_still_answered() {
    let out = std::env::temp_dir().join(format!("alert-fuzz-short-{}", std::process::id()));
    let mut options = Options::new(12, &out);
    options.seconds = Some(25.0);
    // A debug build parses a 1 MiB CAP body ~10x slower than release (300 ms there):
    // the 2 s bound of the long run would call that a hang here.
    options.timeout = std::time::Duration::from_secs(10);
    let report = alert_fuzz::run(&options).await.expect("the run");
    println!("{}", report.render());
    assert!(report.passed(), "{}", report.render());
    assert!(
        report.targets.iter().all(|t| t.inputs > 0),
        "every target ran"
    );
    let _ = std::fs::remove_dir_all(&out);
}
