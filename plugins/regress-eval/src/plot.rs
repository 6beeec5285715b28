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
/// Gap between the frame and the ends of the axis range, so points at the extremes stay clear
/// of the frame.
const INSET: f64 = 12.0;

/// Approximate number of tick intervals per axis. [`nice_step`] rounds the step to 1, 2 or 5
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
            .map(|value| {
                if value.abs() < self.step * 1e-9 {
                    0.0
                } else {
                    value
                }
            })
            .collect()
    }

    fn fraction(&self, value: f64) -> f64 {
        (value - self.low) / (self.high - self.low)
    }

    fn x(&self, value: f64) -> f64 {
        LEFT + INSET + self.fraction(value) * (PLOT_WIDTH - 2.0 * INSET)
    }

    fn y(&self, value: f64) -> f64 {
        TOP + PLOT_HEIGHT - INSET - self.fraction(value) * (PLOT_HEIGHT - 2.0 * INSET)
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
    write_tick_labels(&mut svg, &axis);
    write_identity_line(&mut svg, &axis);
    write_points(&mut svg, &axis, predictions, &points);
    write_axis_titles(&mut svg, &scores.target);
    svg.push_str("</svg>\n");
    svg
}

/// Formats a coordinate with the two decimals every coordinate of the plot uses.
fn coordinate(value: f64) -> String {
    format!("{value:.2}")
}

/// Appends one element on its own line: `<name a="v" .../>`, or with `content` (already
/// escaped) between an opening and a closing tag.
fn element(svg: &mut String, name: &str, attributes: &[(&str, &str)], content: Option<&str>) {
    svg.push('<');
    svg.push_str(name);
    for (key, value) in attributes {
        let _ = write!(svg, " {key}=\"{value}\"");
    }
    match content {
        Some(content) => {
            let _ = writeln!(svg, ">{content}</{name}>");
        }
        None => svg.push_str("/>\n"),
    }
}

fn write_header(svg: &mut String, scores: &Scores, drawn_points: usize) {
    let target = escape(&scores.target);
    let r2 = match scores.r2 {
        Some(r2) => format!("{r2:.3}"),
        None => "undefined".into(),
    };
    let mut summary = format!(
        "n = {} · RMSE {:.3} · MAE {:.3} · R² {r2}",
        scores.rows, scores.rmse, scores.mae
    );
    if drawn_points < scores.rows {
        let _ = write!(summary, " · {drawn_points} points shown");
    }

    let (width, height) = (WIDTH.to_string(), HEIGHT.to_string());
    let view_box = format!("0 0 {width} {height}");
    svg.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    svg.push_str("<svg xmlns=\"http://www.w3.org/2000/svg\"");
    let _ = writeln!(
        svg,
        " width=\"{width}\" height=\"{height}\" viewBox=\"{view_box}\" font-family=\"sans-serif\" \
         font-size=\"12\">"
    );
    let title = format!("Predicted vs actual {target}");
    element(svg, "title", &[], Some(&title));
    element(
        svg,
        "rect",
        &[("width", &width), ("height", &height), ("fill", "white")],
        None,
    );

    let center = coordinate(LEFT + PLOT_WIDTH / 2.0);
    let heading = [
        ("x", center.as_str()),
        ("y", "26"),
        ("text-anchor", "middle"),
        ("font-size", "16"),
    ];
    element(svg, "text", &heading, Some(&title));
    let subtitle = [
        ("x", center.as_str()),
        ("y", "46"),
        ("text-anchor", "middle"),
        ("fill", "#555"),
    ];
    element(svg, "text", &subtitle, Some(&summary));
}

fn write_grid(svg: &mut String, axis: &Axis) {
    let (left, right) = (LEFT.to_string(), (LEFT + PLOT_WIDTH).to_string());
    let (top, bottom) = (TOP.to_string(), (TOP + PLOT_HEIGHT).to_string());

    svg.push_str("<g stroke=\"#e3e3e3\">\n");
    for tick in axis.ticks() {
        let (x, y) = (coordinate(axis.x(tick)), coordinate(axis.y(tick)));
        let vertical = [
            ("x1", x.as_str()),
            ("y1", &top),
            ("x2", &x),
            ("y2", &bottom),
        ];
        element(svg, "line", &vertical, None);
        let horizontal = [
            ("x1", left.as_str()),
            ("y1", &y),
            ("x2", &right),
            ("y2", &y),
        ];
        element(svg, "line", &horizontal, None);
    }
    svg.push_str("</g>\n");

    let frame = [
        ("x", left.as_str()),
        ("y", &top),
        ("width", &PLOT_WIDTH.to_string()),
        ("height", &PLOT_HEIGHT.to_string()),
        ("fill", "none"),
        ("stroke", "#333"),
    ];
    element(svg, "rect", &frame, None);
}

fn write_tick_labels(svg: &mut String, axis: &Axis) {
    let decimals = label_decimals(axis.step);
    let below = (TOP + PLOT_HEIGHT + 16.0).to_string();
    let beside = (LEFT - 6.0).to_string();

    svg.push_str("<g font-size=\"11\" fill=\"#333\">\n");
    for tick in axis.ticks() {
        let label = format!("{tick:.decimals$}");
        let (x, y) = (coordinate(axis.x(tick)), coordinate(axis.y(tick) + 4.0));
        let x_label = [("x", x.as_str()), ("y", &below), ("text-anchor", "middle")];
        element(svg, "text", &x_label, Some(&label));
        let y_label = [("x", beside.as_str()), ("y", &y), ("text-anchor", "end")];
        element(svg, "text", &y_label, Some(&label));
    }
    svg.push_str("</g>\n");
}

fn write_identity_line(svg: &mut String, axis: &Axis) {
    let dashed = [
        ("stroke", "#d62728"),
        ("stroke-width", "1.5"),
        ("stroke-dasharray", "6 4"),
    ];
    let (x1, y1) = (coordinate(axis.x(axis.low)), coordinate(axis.y(axis.low)));
    let (x2, y2) = (coordinate(axis.x(axis.high)), coordinate(axis.y(axis.high)));
    let ends = [("x1", x1.as_str()), ("y1", &y1), ("x2", &x2), ("y2", &y2)];
    element(svg, "line", &[&ends[..], &dashed].concat(), None);

    // The legend sits top left, the corner the diagonal stays farthest from.
    let (start, end) = ((LEFT + 10.0).to_string(), (LEFT + 34.0).to_string());
    let (text_x, y, text_y) = (
        (LEFT + 40.0).to_string(),
        (TOP + 16.0).to_string(),
        (TOP + 20.0).to_string(),
    );
    let sample = [("x1", start.as_str()), ("y1", &y), ("x2", &end), ("y2", &y)];
    element(svg, "line", &[&sample[..], &dashed].concat(), None);
    let legend = [("x", text_x.as_str()), ("y", &text_y), ("fill", "#333")];
    element(svg, "text", &legend, Some("y = x (perfect prediction)"));
}

fn write_points(svg: &mut String, axis: &Axis, predictions: &Predictions, points: &[usize]) {
    svg.push_str("<g fill=\"#1f77b4\" fill-opacity=\"0.45\">\n");
    for &index in points {
        let x = coordinate(axis.x(predictions.actual[index]));
        let y = coordinate(axis.y(predictions.predicted[index]));
        element(svg, "circle", &[("cx", &x), ("cy", &y), ("r", "3")], None);
    }
    svg.push_str("</g>\n");
}

fn write_axis_titles(svg: &mut String, target: &str) {
    let target = escape(target);
    let center_x = coordinate(LEFT + PLOT_WIDTH / 2.0);
    let center_y = coordinate(TOP + PLOT_HEIGHT / 2.0);
    let below = (HEIGHT - 18.0).to_string();

    let x_title = [
        ("x", center_x.as_str()),
        ("y", &below),
        ("text-anchor", "middle"),
        ("font-size", "13"),
    ];
    element(svg, "text", &x_title, Some(&format!("actual {target}")));

    let rotation = format!("rotate(-90 22 {center_y})");
    let y_title = [
        ("x", "22"),
        ("y", center_y.as_str()),
        ("text-anchor", "middle"),
        ("font-size", "13"),
        ("transform", &rotation),
    ];
    element(svg, "text", &y_title, Some(&format!("predicted {target}")));
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
        assert_eq!(
            axis,
            Axis {
                low: 3.0,
                high: 8.0,
                step: 1.0
            }
        );
        assert_eq!(axis.ticks(), [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    }

    #[test]
    fn axis_widens_single_value() {
        let axis = Axis::covering([0.0].into_iter());
        assert!(axis.low < 0.0, "{axis:?}");
        assert!(axis.high > 0.0, "{axis:?}");
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
            r#"<line x1="{:.2}" y1="{:.2}" x2="{:.2}" y2="{:.2}""#,
            LEFT + INSET,
            TOP + PLOT_HEIGHT - INSET,
            LEFT + PLOT_WIDTH - INSET,
            TOP + INSET
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
