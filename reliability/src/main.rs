//! `alert-chaos`: runs fault scenarios against the distributed services and prints the
//! verdict (RELIABILITY.md).
//!
//!     alert-chaos list
//!     alert-chaos run short kill-notify --json out.json

use std::path::PathBuf;

use alert_reliability::{report, run, scenario};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "alert-chaos",
    about = "Fault scenarios against the distributed services, judged Jepsen style"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The scenarios, one per line.
    List,
    /// Runs scenarios (all but the sabotage when none are named).
    Run {
        scenarios: Vec<String>,
        /// Where alert-listener, alert-processor and alert-notify are.
        #[arg(long, default_value = "target/release")]
        bin: PathBuf,
        /// Each run's logs go in a directory under this one.
        #[arg(long, default_value = "/tmp/alert-chaos")]
        dir: PathBuf,
        /// Keep the logs and the recording of passing runs too.
        #[arg(long)]
        keep: bool,
        #[arg(long, default_value_t = 12)]
        seed: u64,
        /// Writes every outcome (verdict, timeline, figures) here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::List => {
            for s in scenario::all() {
                println!("{:<18} {:>3.0} s  {}", s.name, s.seconds, s.about);
            }
            Ok(())
        }
        Command::Run {
            scenarios,
            bin,
            dir,
            keep,
            seed,
            json,
        } => {
            let all = scenario::all();
            let chosen: Vec<_> = if scenarios.is_empty() {
                all.into_iter()
                    .filter(|s| s.caught.is_none() && s.name != "short")
                    .collect()
            } else {
                let mut chosen = Vec::new();
                for name in &scenarios {
                    match all.iter().find(|s| s.name == name) {
                        Some(s) => chosen.push(s.clone()),
                        None => anyhow::bail!("no scenario {name:?} (alert-chaos list)"),
                    }
                }
                chosen
            };
            let options = run::Options {
                bin,
                dir,
                keep,
                seed,
            };
            let mut outcomes = Vec::new();
            for scenario in &chosen {
                eprintln!("== {}: {}", scenario.name, scenario.about);
                let outcome = run::run(scenario, &options).await?;
                eprint!("{}", report::details(&outcome));
                eprintln!("{}", if outcome.passed { "pass" } else { "FAIL" });
                outcomes.push(outcome);
                if let Some(path) = &json {
                    std::fs::write(path, serde_json::to_vec_pretty(&outcomes)?)?;
                }
            }
            print!("{}", report::table(&outcomes));
            if outcomes.iter().all(|o| o.passed) {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
    }
}
