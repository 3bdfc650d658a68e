//! The figures BENCHMARKS.md links to, as SVG (no font or bitmap stack to
//! build): fan-out throughput and p99 latency versus publishing rate, and the
//! latency distribution of the direct scenario, one line per server.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::results::Results;

const SIZE: (u32, u32) = (800, 500);

fn color(i: usize) -> RGBColor {
    [
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
    ][i % 5]
}

/// A chart of several named series of (x, y) points, logarithmic on both axes.
fn log_log(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Ok(());
    }
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (x0.max(1e-3) * 0.8..x1 * 1.25).log_scale(),
            (y0.max(1e-3) * 0.8..y1 * 1.25).log_scale(),
        )
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(|e| anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Writes every figure the results have data for into `dir`; returns their names.
pub fn all(results: &Results, dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    if !results.fanout.is_empty() {
        let throughput: Vec<_> = results
            .fanout
            .iter()
            .map(|f| {
                let pts = f
                    .steps
                    .iter()
                    .map(|s| (s.rate, s.delivered_per_sec))
                    .collect();
                (f.target.clone(), pts)
            })
            .collect();
        log_log(
            &dir.join("fanout-throughput.svg"),
            &format!(
                "Fan-out: deliveries/s vs publishing rate ({} members)",
                results.fanout[0].members
            ),
            "messages published per second",
            "deliveries per second",
            &throughput,
        )?;
        written.push("fanout-throughput.svg".to_owned());
        let latency: Vec<_> = results
            .fanout
            .iter()
            .map(|f| {
                let pts = f
                    .steps
                    .iter()
                    .map(|s| (s.rate, s.latency.p99_ms.max(0.01)))
                    .collect();
                (format!("{} p99", f.target), pts)
            })
            .collect();
        log_log(
            &dir.join("fanout-latency.svg"),
            "Fan-out: send→receive p99 vs publishing rate",
            "messages published per second",
            "p99 latency (ms)",
            &latency,
        )?;
        written.push("fanout-latency.svg".to_owned());
    }
    if !results.direct.is_empty() {
        // x: 1 / (1 − percentile), so that p90, p99 and p99.9 are evenly spaced.
        let dist: Vec<_> = results
            .direct
            .iter()
            .map(|d| {
                let pts = d
                    .distribution
                    .iter()
                    .filter(|(q, _)| *q < 0.99999)
                    .map(|&(q, ms)| (1.0 / (1.0 - q), ms.max(0.01)))
                    .collect();
                (d.target.clone(), pts)
            })
            .collect();
        log_log(
            &dir.join("direct-latency.svg"),
            &format!(
                "Direct: latency distribution ({} users, {:.0} msg/s)",
                results.direct[0].users, results.direct[0].rate
            ),
            "1 / (1 − percentile): 10 = p90, 100 = p99, 1000 = p99.9",
            "send→receive latency (ms)",
            &dist,
        )?;
        written.push("direct-latency.svg".to_owned());
    }
    Ok(written)
}
