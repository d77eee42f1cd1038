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

#[derive(clap::Args)]
struct Common {
    #[command(flatten)]
    options: run::Options,
    /// Writes every outcome (verdict, timeline, figures) here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// The scenarios, one per line.
    List,
    /// Runs scenarios (all but the sabotage when none are named).
    Run {
        scenarios: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// No fault for a long time: every process's memory and open files each minute.
    Soak {
        #[arg(long, default_value_t = 30.0)]
        minutes: f64,
        /// POSTs per second (half the pipeline's measured capacity: RELIABILITY.md).
        #[arg(long)]
        rate: f64,
        #[arg(long, default_value_t = 20)]
        clients: usize,
        /// Redis's AOF fsync policy.
        #[arg(long, default_value = "everysec", value_parser = ["everysec", "always"])]
        appendfsync: String,
        #[command(flatten)]
        common: Common,
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
        Command::Run { scenarios, common } => {
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
            run_all(&chosen, common).await
        }
        Command::Soak {
            minutes,
            rate,
            clients,
            appendfsync,
            common,
        } => {
            let mut soak = scenario::soak(minutes, rate, clients);
            soak.appendfsync = if appendfsync == "always" {
                "always"
            } else {
                "everysec"
            };
            run_all(&[soak], common).await
        }
    }
}

async fn run_all(chosen: &[scenario::Scenario], common: Common) -> anyhow::Result<()> {
    let options = common.options;
    let mut outcomes = Vec::new();
    for scenario in chosen {
        eprintln!("== {}: {}", scenario.name, scenario.about);
        let outcome = run::run(scenario, &options).await?;
        eprint!("{}", report::details(&outcome));
        eprintln!("{}", outcome.result);
        outcomes.push(outcome);
        if let Some(path) = &common.json {
            std::fs::write(path, serde_json::to_vec_pretty(&outcomes)?)?;
        }
    }
    print!("{}", report::table(&outcomes));
    if outcomes.iter().any(|o| !o.samples.is_empty()) {
        print!("{}", report::footprints(&outcomes));
    }
    if outcomes.iter().all(|o| o.passed) {
        Ok(())
    } else {
        std::process::exit(1)
    }
}
