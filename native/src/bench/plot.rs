//! `--plot out.svg`: tokens/s against context depth for every test series (one line per
//! adapter, test and batch), and where one decode step's GPU time goes, kernel by kernel.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::*;

use super::measure::{Kind, TestResult};
use super::report::BenchReport;

/// A kernel's pipeline key without its tuning defines: the name, the weight type and
/// the output (which tell the projections apart).
fn short_kernel(key: &str) -> String {
    let mut words = key.split_whitespace();
    let mut short = words.next().unwrap_or(key).to_string();
    for w in words {
        if let Some(v) = w.strip_prefix("WTYPE=").or_else(|| w.strip_prefix("OUT=")) {
            short += " ";
            short += v;
        }
    }
    short
}

/// Every drawing call's error: the SVG backend's, which is an I/O error.
type DrawError = DrawingAreaErrorKind<std::io::Error>;

/// One side of the figure.
type Panel<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A line on the rate chart: its legend and its `(depth, tokens/s)` points.
type Series = (String, Vec<(f64, f64)>);

pub fn draw(reports: &[BenchReport], path: &Path) -> Result<()> {
    draw_figure(reports, path).map_err(|e| anyhow!("drawing {}: {e}", path.display()))
}

/// The rate chart on the left, the first step's kernel breakdown (when there is a test) on
/// the right.
fn draw_figure(reports: &[BenchReport], path: &Path) -> Result<(), DrawError> {
    let root = SVGBackend::new(path, (1280, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(660);
    draw_rates(&left, &rate_series(reports))?;
    if let Some(test) = breakdown_test(reports) {
        draw_breakdown(&right, test)?;
    }
    root.present()
}

/// One series per adapter and test (kind, length, batch), over the depths.
fn rate_series(reports: &[BenchReport]) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for r in reports {
        for t in &r.tests {
            let s = &t.shape;
            let name = format!(
                "{}{}{} · {}",
                if s.kind == Kind::Prefill { "pp" } else { "tg" },
                s.tokens,
                if s.batch > 1 {
                    format!(" ×{}", s.batch)
                } else {
                    String::new()
                },
                r.adapter.name
            );
            let point = (s.depth as f64, t.tokens_per_second);
            match series.iter_mut().find(|(n, _)| *n == name) {
                Some((_, points)) => points.push(point),
                None => series.push((name, vec![point])),
            }
        }
    }
    series
}

/// Tokens/s against depth, a line and dots per series, with a legend.
fn draw_rates(panel: &Panel<'_>, series: &[Series]) -> Result<(), DrawError> {
    let max_depth = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(0.0, f64::max)
        .max(1.0);
    let max_rate = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(0.0, f64::max)
        .max(1e-3);
    let mut chart = ChartBuilder::on(panel)
        .caption("tokens/s against context depth", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_depth * 1.05, 0.0..max_rate * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("depth (tokens in the cache)")
        .y_desc("tokens/s")
        .draw()?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

/// The test whose step the breakdown shows: the first report's first generation test, else
/// its first test.
fn breakdown_test(reports: &[BenchReport]) -> Option<&TestResult> {
    reports.first().and_then(|r| {
        r.tests
            .iter()
            .find(|t| t.shape.kind == Kind::Generate)
            .or(r.tests.first())
    })
}

/// One step's GPU time, kernel by kernel (the ten largest), as bars of percent.
fn draw_breakdown(panel: &Panel<'_>, test: &TestResult) -> Result<(), DrawError> {
    let kernels: Vec<(String, f64)> = test
        .breakdown
        .kernels
        .iter()
        .take(10)
        .map(|k| (short_kernel(&k.kernel), k.percent))
        .collect();
    let caption = if kernels.is_empty() {
        format!("{}: no per-kernel times (no timestamp queries)", test.test)
    } else {
        format!(
            "{}: one step, {:.2} ms of GPU time",
            test.test, test.breakdown.total_ms
        )
    };
    let rows = kernels.len().max(1) as f64;
    let mut bars = ChartBuilder::on(panel)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(10)
        .build_cartesian_2d(0.0..100.0, 0.0..rows)?;
    bars.configure_mesh()
        .x_desc("% of the step")
        .y_labels(0)
        .disable_y_mesh()
        .draw()?;
    for (i, (name, pct)) in kernels.iter().enumerate() {
        let y = rows - i as f64;
        bars.draw_series([Rectangle::new(
            [(0.0, y - 0.85), (*pct, y - 0.15)],
            Palette99::pick(i).filled(),
        )])?;
        bars.draw_series([Text::new(
            format!("{name} {pct:.1}%"),
            (pct.min(55.0) + 1.0, y - 0.4),
            ("sans-serif", 14),
        )])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_keys_shorten_to_name_and_weight_type() {
        assert_eq!(
            short_kernel("matvec WTYPE=q4_1 ACT=f32 OUT=act REDUCE=workgroup"),
            "matvec q4_1 act"
        );
        assert_eq!(short_kernel("rmsnorm ACT=f32 WG=64"), "rmsnorm");
    }
}
