//! Predicted-versus-actual scatter plot as a standalone SVG document.
//!
//! Both axes share one range, so the dashed `y = x` line (perfect predictions) is the diagonal
//! of the plot area. Coordinates are written with two decimals, so equal inputs give equal bytes.

use crate::{Predictions, Scores};
use std::fmt::Write;

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 64.0;
const BOTTOM: f64 = 64.0;
const PLOT_WIDTH: f64 = WIDTH - LEFT - RIGHT;
const PLOT_HEIGHT: f64 = HEIGHT - TOP - BOTTOM;

/// About how many tick intervals an axis gets; [`nice_step`] rounds the step to 1, 2 or 5
/// times a power of ten.
const TARGET_TICKS: f64 = 6.0;

/// A shared axis range and its tick step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axis {
    /// Smallest value on the axis, a multiple of `step`.
    pub low: f64,
    /// Largest value on the axis, a multiple of `step`.
    pub high: f64,
    /// Distance between ticks.
    pub step: f64,
}

impl Axis {
    /// Builds an axis from the smallest to the largest of `values` (finite, at least one),
    /// widened to whole tick steps.
    pub fn covering(values: impl Iterator<Item = f64>) -> Self {
        let (mut low, mut high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if low == high {
            let pad = if low == 0.0 { 1.0 } else { low.abs() * 0.1 };
            low -= pad;
            high += pad;
        }
        let step = nice_step((high - low) / TARGET_TICKS);
        let low = (low / step).floor() * step;
        let high = (high / step).ceil() * step;
        Self { low, high, step }
    }

    /// Returns the tick values from `low` to `high`.
    pub fn ticks(&self) -> Vec<f64> {
        let count = ((self.high - self.low) / self.step).round() as usize;
        (0..=count)
            .map(|i| self.low + i as f64 * self.step)
            .map(|value| if value.abs() < self.step * 1e-9 { 0.0 } else { value })
            .collect()
    }

    fn fraction(&self, value: f64) -> f64 {
        (value - self.low) / (self.high - self.low)
    }

    fn x(&self, value: f64) -> f64 {
        LEFT + self.fraction(value) * PLOT_WIDTH
    }

    fn y(&self, value: f64) -> f64 {
        TOP + PLOT_HEIGHT - self.fraction(value) * PLOT_HEIGHT
    }
}

/// Rounds a positive `raw` step up to 1, 2 or 5 times a power of ten.
pub fn nice_step(raw: f64) -> f64 {
    // Multiplying and dividing by 10 keeps this free of `log10`, whose last bit may differ
    // between math libraries.
    let mut magnitude = 1.0;
    while magnitude * 10.0 <= raw {
        magnitude *= 10.0;
    }
    while magnitude > raw {
        magnitude /= 10.0;
    }
    let ratio = raw / magnitude;
    let multiple = match ratio {
        r if r <= 1.0 => 1.0,
        r if r <= 2.0 => 2.0,
        r if r <= 5.0 => 5.0,
        _ => 10.0,
    };
    multiple * magnitude
}

/// Returns how many decimals a tick label needs to show multiples of `step` exactly.
pub fn label_decimals(step: f64) -> usize {
    let mut scaled = step;
    let mut decimals = 0;
    while decimals < 12 && (scaled - scaled.round()).abs() > 1e-9 * scaled.abs().max(1.0) {
        scaled *= 10.0;
        decimals += 1;
    }
    decimals
}

/// Escapes text for use in SVG element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// Returns the indices of at most `max_points` of `count` points, evenly spaced, in order.
pub fn sample_indices(count: usize, max_points: usize) -> Vec<usize> {
    if count <= max_points {
        return (0..count).collect();
    }
    (0..max_points).map(|i| i * count / max_points).collect()
}

/// Renders the scatter plot of `predictions`, drawing at most `max_points` points.
pub fn scatter_svg(predictions: &Predictions, scores: &Scores, max_points: usize) -> String {
    let values = predictions.actual.iter().chain(&predictions.predicted);
    let axis = Axis::covering(values.copied());
    let points = sample_indices(predictions.actual.len(), max_points);

    let mut svg = String::new();
    write_header(&mut svg, scores, points.len());
    write_grid(&mut svg, &axis);
    write_identity_line(&mut svg, &axis);
    write_points(&mut svg, &axis, predictions, &points);
    write_axis_titles(&mut svg, &scores.target);
    svg.push_str("</svg>\n");
    svg
}

fn write_header(svg: &mut String, scores: &Scores, shown: usize) {
    let target = escape(&scores.target);
    let r2 = match scores.r2 {
        Some(r2) => format!("{r2:.3}"),
        None => "undefined".into(),
    };
    let mut summary = format!(
        "n = {} · RMSE {:.3} · MAE {:.3} · R² {r2}",
        scores.rows, scores.rmse, scores.mae
    );
    if shown < scores.rows {
        let _ = write!(summary, " · {shown} points shown");
    }

    let _ = writeln!(svg, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, "<title>Predicted vs actual {target}</title>");
    let _ = writeln!(svg, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let center = LEFT + PLOT_WIDTH / 2.0;
    let _ = writeln!(
        svg,
        r#"<text x="{center:.2}" y="26" text-anchor="middle" font-size="16">Predicted vs actual {target}</text>"#
    );
    let _ = writeln!(
        svg,
        r##"<text x="{center:.2}" y="46" text-anchor="middle" fill="#555">{summary}</text>"##
    );
}

fn write_grid(svg: &mut String, axis: &Axis) {
    let decimals = label_decimals(axis.step);
    let (left, right) = (LEFT, LEFT + PLOT_WIDTH);
    let (top, bottom) = (TOP, TOP + PLOT_HEIGHT);

    svg.push_str(r##"<g stroke="#e3e3e3">"##);
    svg.push('\n');
    for tick in axis.ticks() {
        let (x, y) = (axis.x(tick), axis.y(tick));
        let _ = writeln!(svg, r#"<line x1="{x:.2}" y1="{top}" x2="{x:.2}" y2="{bottom}"/>"#);
        let _ = writeln!(svg, r#"<line x1="{left}" y1="{y:.2}" x2="{right}" y2="{y:.2}"/>"#);
    }
    svg.push_str("</g>\n");

    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" fill="none" stroke="#333"/>"##
    );

    svg.push_str(r##"<g font-size="11" fill="#333">"##);
    svg.push('\n');
    for tick in axis.ticks() {
        let label = format!("{tick:.decimals$}");
        let (x, y) = (axis.x(tick), axis.y(tick) + 4.0);
        let below = bottom + 16.0;
        let beside = left - 6.0;
        let _ = writeln!(
            svg,
            r#"<text x="{x:.2}" y="{below}" text-anchor="middle">{label}</text>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{beside}" y="{y:.2}" text-anchor="end">{label}</text>"#
        );
    }
    svg.push_str("</g>\n");
}

fn write_identity_line(svg: &mut String, axis: &Axis) {
    let (x1, y1) = (axis.x(axis.low), axis.y(axis.low));
    let (x2, y2) = (axis.x(axis.high), axis.y(axis.high));
    let _ = writeln!(
        svg,
        r##"<line x1="{x1:.2}" y1="{y1:.2}" x2="{x2:.2}" y2="{y2:.2}" stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 4"/>"##
    );
    let (label_x, label_y) = (LEFT + PLOT_WIDTH - 8.0, TOP + 16.0);
    let _ = writeln!(
        svg,
        r##"<text x="{label_x}" y="{label_y}" text-anchor="end" fill="#d62728">y = x</text>"##
    );
}

fn write_points(svg: &mut String, axis: &Axis, predictions: &Predictions, points: &[usize]) {
    svg.push_str(r##"<g fill="#1f77b4" fill-opacity="0.45">"##);
    svg.push('\n');
    for &index in points {
        let x = axis.x(predictions.actual[index]);
        let y = axis.y(predictions.predicted[index]);
        let _ = writeln!(svg, r#"<circle cx="{x:.2}" cy="{y:.2}" r="3"/>"#);
    }
    svg.push_str("</g>\n");
}

fn write_axis_titles(svg: &mut String, target: &str) {
    let target = escape(target);
    let center_x = LEFT + PLOT_WIDTH / 2.0;
    let center_y = TOP + PLOT_HEIGHT / 2.0;
    let below = HEIGHT - 18.0;
    let _ = writeln!(
        svg,
        r#"<text x="{center_x:.2}" y="{below}" text-anchor="middle" font-size="13">actual {target}</text>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="22" y="{center_y:.2}" text-anchor="middle" font-size="13" transform="rotate(-90 22 {center_y:.2})">predicted {target}</text>"#
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(rows: usize, target: &str) -> Scores {
        Scores {
            target: target.into(),
            rows,
            rmse: 0.5,
            mae: 0.25,
            r2: Some(0.75),
        }
    }

    fn predictions() -> Predictions {
        Predictions {
            actual: vec![3.0, 5.0, 6.0, 8.0],
            predicted: vec![4.2, 5.1, 5.9, 6.8],
        }
    }

    #[test]
    fn nice_step_rounds_up() {
        assert_eq!(nice_step(0.83), 1.0);
        assert_eq!(nice_step(1.0), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(420.0), 500.0);
        assert_eq!(nice_step(0.012), 0.02);
    }

    #[test]
    fn label_decimals_follow_step() {
        assert_eq!(label_decimals(1.0), 0);
        assert_eq!(label_decimals(500.0), 0);
        assert_eq!(label_decimals(0.5), 1);
        assert_eq!(label_decimals(0.02), 2);
    }

    #[test]
    fn axis_covers_values() {
        let axis = Axis::covering([3.0, 8.0, 4.2].into_iter());
        assert_eq!(axis, Axis { low: 3.0, high: 8.0, step: 1.0 });
        assert_eq!(axis.ticks(), [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    }

    #[test]
    fn axis_widens_single_value() {
        let axis = Axis::covering([0.0].into_iter());
        assert!(axis.low < 0.0 && axis.high > 0.0, "{axis:?}");
    }

    #[test]
    fn sample_spreads_indices() {
        assert_eq!(sample_indices(3, 10), [0, 1, 2]);
        assert_eq!(sample_indices(10, 4), [0, 2, 5, 7]);
    }

    #[test]
    fn svg_has_points_line_and_labels() {
        let svg = scatter_svg(&predictions(), &scores(4, "quality"), 100);
        assert!(svg.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg "));
        assert!(svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<circle ").count(), 4);
        assert!(svg.contains("stroke-dasharray"), "missing y = x line");
        assert!(svg.contains(">actual quality</text>"));
        assert!(svg.contains(">predicted quality</text>"));
        assert!(svg.contains("R² 0.750"));
    }

    #[test]
    fn svg_identity_line_is_diagonal() {
        let svg = scatter_svg(&predictions(), &scores(4, "y"), 100);
        let expected = format!(
            r#"<line x1="{LEFT:.2}" y1="{:.2}" x2="{:.2}" y2="{TOP:.2}""#,
            TOP + PLOT_HEIGHT,
            LEFT + PLOT_WIDTH
        );
        assert!(svg.contains(&expected), "{svg}");
    }

    #[test]
    fn svg_escapes_target() {
        let svg = scatter_svg(&predictions(), &scores(4, "a<b & \"c\""), 100);
        assert!(svg.contains("actual a&lt;b &amp; &quot;c&quot;</text>"));
        assert!(!svg.contains("a<b"));
    }

    #[test]
    fn svg_caps_points() {
        let svg = scatter_svg(&predictions(), &scores(4, "y"), 2);
        assert_eq!(svg.matches("<circle ").count(), 2);
        assert!(svg.contains("2 points shown"));
    }

    #[test]
    fn svg_is_deterministic() {
        let first = scatter_svg(&predictions(), &scores(4, "y"), 100);
        let second = scatter_svg(&predictions(), &scores(4, "y"), 100);
        assert_eq!(first, second);
    }
}
