//! `alert-fuzz run --seed 1 --inputs 1000000`, `alert-fuzz replay FILE...`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use alert_fuzz::{Options, Target};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "alert-fuzz",
    about = "Bad input at scale against listener and notify (needs RabbitMQ and Redis on loopback)"
)]
enum Command {
    /// A bounded run: exits 1 if any input failed or good input is not answered after.
    Run {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Inputs in all, split between the targets.
        #[arg(long)]
        inputs: Option<u64>,
        /// Seconds in all, split between the targets.
        #[arg(long)]
        seconds: Option<f64>,
        /// Targets, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        targets: Vec<Target>,
        /// Where failure files go.
        #[arg(long, default_value = "fuzz-failures")]
        out: PathBuf,
        /// Bound of each wait of a case.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        #[arg(long)]
        corpus: Option<PathBuf>,
    },
    /// Prints a generated case as JSON (the run's clock is now's minute).
    Show {
        target: Target,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        index: u64,
    },
    /// Runs the case of each failure file again; exits 1 if one still fails.
    Replay {
        files: Vec<PathBuf>,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        match Command::parse() {
            Command::Run {
                seed,
                inputs,
                seconds,
                targets,
                out,
                timeout_ms,
                corpus,
            } => {
                let mut options = Options::new(seed, out);
                options.inputs = inputs;
                options.seconds = seconds;
                options.timeout = Duration::from_millis(timeout_ms);
                if !targets.is_empty() {
                    options.targets = targets;
                }
                if let Some(corpus) = corpus {
                    options.corpus = corpus;
                }
                match alert_fuzz::run(&options).await {
                    Ok(report) => {
                        print!("{}", report.render());
                        if report.passed() {
                            ExitCode::SUCCESS
                        } else {
                            ExitCode::FAILURE
                        }
                    }
                    Err(error) => {
                        eprintln!("alert-fuzz: {error:#}");
                        ExitCode::from(2)
                    }
                }
            }
            Command::Show {
                target,
                seed,
                index,
            } => {
                match alert_fuzz::generate(target, seed, index, &alert_fuzz::corpus::default_dir())
                {
                    Ok(case) => {
                        println!("{}", serde_json::to_string_pretty(&case).expect("JSON"));
                        ExitCode::SUCCESS
                    }
                    Err(error) => {
                        eprintln!("alert-fuzz: {error:#}");
                        ExitCode::from(2)
                    }
                }
            }
            Command::Replay { files, timeout_ms } => {
                let mut failed = false;
                for file in files {
                    match alert_fuzz::replay(&file, Duration::from_millis(timeout_ms)).await {
                        Ok(Ok(outcome)) => println!("{}: passes now ({outcome})", file.display()),
                        Ok(Err(what)) => {
                            failed = true;
                            println!("{}: FAILS: {what}", file.display());
                        }
                        Err(error) => {
                            failed = true;
                            println!("{}: cannot replay: {error:#}", file.display());
                        }
                    }
                }
                if failed {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
        }
    })
}
