//! The JSON report and the SVG plot written next to it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;

/// One second of a run.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct Second {
    pub(crate) second: usize,
    /// Deliveries (or accepted POSTs) in this second.
    pub(crate) count: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

pub(crate) fn timeline(per_second: &[Histogram<u64>]) -> Vec<Second> {
    let ms = |us: u64| us as f64 / 1000.0;
    per_second
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.is_empty())
        .map(|(second, h)| Second {
            second,
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        })
        .collect()
}

/// Writes `<out>.json` and, when there is a timeline, `<out>.svg`; returns the paths.
pub(crate) fn write(
    out: &Path,
    report: &serde_json::Value,
    timeline: &[Second],
    title: &str,
    count_label: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = out.with_extension("json");
    std::fs::write(&json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let mut written = vec![json];
    if !timeline.is_empty() {
        let svg = out.with_extension("svg");
        plot(&svg, timeline, title, count_label)?;
        written.push(svg);
    }
    Ok(written)
}

/// Two panels: latency percentiles per second (log scale) above, counts per second below.
fn plot(path: &Path, timeline: &[Second], title: &str, count_label: &str) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let (upper, lower) = root.split_vertically(400);
    let last = timeline.last().map_or(1, |s| s.second + 1);
    let first = timeline.first().map_or(0, |s| s.second);
    let top = timeline.iter().map(|s| s.max_ms).fold(1.0f64, f64::max) * 1.5;
    let bottom = timeline
        .iter()
        .map(|s| s.p50_ms)
        .fold(f64::INFINITY, f64::min)
        .clamp(0.001, 1.0)
        / 2.0;
    let mut chart = ChartBuilder::on(&upper)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(first..last, (bottom..top).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("second of run")
        .y_desc("latency, ms")
        .draw()?;
    type Series = (&'static str, fn(&Second) -> f64, RGBColor);
    let series: [Series; 4] = [
        ("p50", |s| s.p50_ms, BLUE),
        ("p90", |s| s.p90_ms, GREEN),
        ("p99", |s| s.p99_ms, RGBColor(230, 140, 0)),
        ("max", |s| s.max_ms, RED),
    ];
    for (name, value, color) in series {
        chart
            .draw_series(LineSeries::new(
                timeline.iter().map(|s| (s.second, value(s).max(bottom))),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;

    let peak = timeline.iter().map(|s| s.count).max().unwrap_or(1).max(1);
    let mut counts = ChartBuilder::on(&lower)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(first..last, 0u64..peak + peak / 10 + 1)?;
    counts
        .configure_mesh()
        .x_desc("second of run")
        .y_desc(count_label)
        .draw()?;
    counts.draw_series(LineSeries::new(
        timeline.iter().map(|s| (s.second, s.count)),
        BLUE.stroke_width(2),
    ))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::histogram;

    #[test]
    fn timeline_skips_empty_seconds_and_plots() {
        let mut seconds = vec![histogram(2), histogram(2), histogram(2)];
        seconds[0].record(1000).unwrap();
        seconds[2].record(5000).unwrap();
        seconds[2].record(7000).unwrap();
        let t = timeline(&seconds);
        assert_eq!(t.len(), 2);
        assert_eq!((t[1].second, t[1].count), (2, 2));
        let dir = std::env::temp_dir().join(format!("alert-loadtest-{}", std::process::id()));
        let written = write(
            &dir.join("r"),
            &serde_json::json!({"ok": true}),
            &t,
            "test",
            "per s",
        )
        .unwrap();
        assert_eq!(written.len(), 2);
        assert!(
            std::fs::read_to_string(&written[1])
                .unwrap()
                .contains("<svg")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
