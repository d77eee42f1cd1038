//! The verdict as a table (one row per scenario) and as JSON.

use std::fmt::Write;

use crate::run::Outcome;

pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | result | accepted | lost | dup | windows | bad windows | client events | delivered | reported | missing | in flight (slow/stalled) | dup | order | forgotten (told/untold) | resumes (recovered/not) | gap max ms | 5xx | retried | close late max ms | s |"
    );
    let _ = writeln!(out, "|{}", "---|".repeat(21));
    for o in outcomes {
        let v = &o.verdict;
        let (a, w, c, p) = (&v.alerts, &v.windows, &v.clients, &v.posts);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {} | {} | {}/{} | {}/{} | {} | {} | {} | {} | {:.0} |",
            o.scenario,
            o.result,
            a.accepted,
            a.lost,
            a.duplicated,
            w.windows,
            w.malformed + w.closed_early + w.overlapping + w.never_closed,
            c.expected,
            c.delivered,
            c.reported,
            c.missing,
            c.in_flight_slow,
            c.in_flight_stalled,
            c.duplicated,
            c.out_of_order,
            c.unlogged_told,
            c.unlogged_untold,
            c.resumed_recovered,
            c.resumed_unrecovered,
            o.reconnect_gap_ms_max,
            p.status_5xx,
            p.retried,
            w.close_late_ms_max,
            o.seconds,
        );
    }
    out
}

/// What went wrong in a run, for the terminal.
pub fn details(outcome: &Outcome) -> String {
    let mut out = String::new();
    let v = &outcome.verdict;
    for line in outcome.problems.iter().chain(&v.failures) {
        let _ = writeln!(out, "  - {line}");
    }
    for example in v
        .alerts
        .examples
        .iter()
        .chain(&v.windows.examples)
        .chain(&v.clients.examples)
    {
        let _ = writeln!(out, "    e.g. {example}");
    }
    for step in &outcome.timeline {
        let took = step
            .took_ms
            .map(|t| format!(" ({t} ms)"))
            .unwrap_or_default();
        let error = step
            .error
            .as_ref()
            .map(|e| format!(" ERROR {e}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  +{:.1} s {}{took}{error}", step.at_s, step.what);
    }
    if let Some(logs) = &outcome.logs {
        let _ = writeln!(out, "  logs: {}", logs.display());
    }
    out
}

/// A soak's samples: per process, RSS (MiB) and open files at each minute.
pub fn footprints(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes.iter().filter(|o| !o.samples.is_empty()) {
        let mut processes: Vec<&str> = o.samples.iter().map(|s| s.process.as_str()).collect();
        processes.dedup();
        processes.sort_unstable();
        processes.dedup();
        let _ = writeln!(
            out,
            "\n| {} at s | {} | backlog |",
            o.scenario,
            processes.join(" | ")
        );
        let _ = writeln!(out, "|{}", "---|".repeat(processes.len() + 2));
        let mut times: Vec<f64> = o.samples.iter().map(|s| s.at_s).collect();
        times.dedup();
        for at in times {
            let cells: Vec<String> = processes
                .iter()
                .map(|p| {
                    o.samples
                        .iter()
                        .find(|s| s.at_s == at && s.process == *p)
                        .map(|s| {
                            format!("{:.1} MiB, {} fds", s.rss_kib as f64 / 1024.0, s.open_files)
                        })
                        .unwrap_or_default()
                })
                .collect();
            let backlog = o
                .backlog
                .iter()
                .find(|b| b.at_s == at)
                .and_then(|b| b.messages)
                .map(|m| m.to_string())
                .unwrap_or_default();
            let _ = writeln!(out, "| {at:.0} | {} | {backlog} |", cells.join(" | "));
        }
    }
    out
}
