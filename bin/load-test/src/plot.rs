//! The `--plot` chart: latency by percentile, one curve per row, drawn as SVG with plotters.
//!
//! The x axis is the one HdrHistogram's plots use: `1/(1-p)` on a log scale, so each decade is
//! one more nine (90%, 99%, 99.9%, ...) and the tail gets as much room as the median. The SVG
//! backend needs no system library: text is left to the viewer's fonts.

use std::fs;
use std::path::Path;

use plotters::prelude::*;

use crate::report::{OutputError, OutputErrorKind, Row};

/// Chart size in pixels.
const SIZE: (u32, u32) = (1000, 600);

/// Decades shown on the x axis at least (up to 99.9%), and at most (99.9999%).
const MIN_DECADES: i32 = 3;
const MAX_DECADES: i32 = 6;

/// One curve's points: `(1/(1-p), latency in ms)`.
type Curve = Vec<(f64, f64)>;

/// Draws `rows` into an SVG file at `path`, titled with `title`.
pub fn write_svg(path: &Path, title: &str, rows: &[Row]) -> Result<(), OutputError> {
    let svg = render_svg(title, rows)
        .map_err(|err| OutputError::new(path, OutputErrorKind::Plot(err)))?;
    fs::write(path, svg).map_err(|err| OutputError::new(path, OutputErrorKind::Io(err)))
}

/// The chart as SVG text.
pub fn render_svg(title: &str, rows: &[Row]) -> Result<String, String> {
    let curves: Vec<(String, Curve)> = rows
        .iter()
        .map(|row| (format!("{} conn", row.connections), curve(row)))
        .collect();
    let decades = x_decades(rows);
    let x_max = 10f64.powi(decades);
    let y_max = curves
        .iter()
        .flat_map(|(_, points)| points.iter().map(|&(_, y)| y))
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|err| err.to_string())?;
        let key_points: Vec<f64> = (0..=decades).map(|d| 10f64.powi(d)).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (1f64..x_max).log_scale().with_key_points(key_points),
                0f64..y_max,
            )
            .map_err(|err| err.to_string())?;
        chart
            .configure_mesh()
            .x_desc("Percentile")
            .y_desc("Latency (ms)")
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| format!("{y:.3}"))
            .draw()
            .map_err(|err| err.to_string())?;
        for (index, (name, points)) in curves.into_iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            let clamped = points.into_iter().map(|(x, y)| (x.min(x_max), y));
            chart
                .draw_series(LineSeries::new(clamped, color.stroke_width(2)))
                .map_err(|err| err.to_string())?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|err| err.to_string())?;
        root.present().map_err(|err| err.to_string())?;
    }
    Ok(svg)
}

/// A row's distribution as points; the final 100% step is put at the right edge.
fn curve(row: &Row) -> Curve {
    row.distribution
        .iter()
        .map(|point| {
            let x = if point.quantile < 1.0 {
                1.0 / (1.0 - point.quantile)
            } else {
                f64::INFINITY
            };
            (x, point.value_us as f64 / 1000.0)
        })
        .collect()
}

/// How many decades (nines) the x axis shows: enough for the largest row's tail, within
/// [`MIN_DECADES`]..=[`MAX_DECADES`].
fn x_decades(rows: &[Row]) -> i32 {
    let largest = rows
        .iter()
        .map(|row| row.requests)
        .max()
        .unwrap_or(0)
        .max(1);
    let decades = (largest as f64).log10().ceil() as i32;
    decades.clamp(MIN_DECADES, MAX_DECADES)
}

/// The percentile at `x = 1/(1-p)` for the axis' decade marks: 1 → `0%`, 10 → `90%`,
/// 100 → `99%`, 1000 → `99.9%`, ...
pub fn percentile_label(x: f64) -> String {
    let nines = x.log10().round().max(0.0) as usize;
    match nines {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        _ => format!(
            "99{}{}%",
            if nines > 2 { "." } else { "" },
            "9".repeat(nines - 2)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::DistributionPoint;
    use crate::runner::ErrorCounts;
    use crate::workload::Mode;

    #[test]
    fn labels_count_nines() {
        let labels: Vec<String> = [1.0, 10.0, 100.0, 1000.0, 1e4, 1e6]
            .into_iter()
            .map(percentile_label)
            .collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.9999%"]);
    }

    #[test]
    fn renders_one_curve_per_row() {
        let row = |connections, scale| Row {
            mode: Mode::Ping,
            connections,
            requests: 20_000,
            errors: 0,
            timeouts: 0,
            throughput: 1.0,
            error_kinds: ErrorCounts::default(),
            note: None,
            latency_us: None,
            distribution: [0.0, 0.5, 0.9, 0.99, 0.999, 1.0]
                .iter()
                .enumerate()
                .map(|(i, &quantile)| DistributionPoint {
                    value_us: (i as u64 + 1) * scale,
                    quantile,
                    total_count: 0,
                })
                .collect(),
        };
        let svg = render_svg("ping", &[row(1, 100), row(8, 300)]).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        assert!(svg.contains("1 conn") && svg.contains("8 conn"));
        assert!(svg.contains("99.9%"));
        assert_eq!(
            svg.matches("stroke-width=\"2\" points=").count(),
            4,
            "two curves, two legend lines"
        );
        assert_eq!(x_decades(&[row(1, 1)]), 5);
        // No rows at all still gives a (blank) chart.
        assert!(render_svg("empty", &[]).unwrap().contains("</svg>"));
    }
}
