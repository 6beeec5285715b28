//! `regress-eval` step executor: applies the linear `model` (as `linreg` writes it) to the `test`
//! table and scores the predictions against the model's target column. It logs `test_rmse`,
//! `test_mae` and `test_r2`, and writes them as the `metrics` output together with a
//! predicted-versus-actual scatter plot as the `plot` output (SVG).
//!
//! Build the component with `cd plugins && cargo build --release --target wasm32-wasip2`, which
//! writes `target/wasm32-wasip2/release/regress_eval.wasm`. Run the unit tests and the
//! end-to-end wine quality test natively with
//! `cargo test --target x86_64-unknown-linux-gnu -p regress-eval`.

pub mod plot;

use mlkit::Table;
use mlkit::artifact::{read_table, read_text, write_json, write_text};
use runledger_sdk::log::{self, Level};
use runledger_sdk::{Error, Executor, Result, StepContext, metrics};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Params {
    #[serde(default = "default_max_plot_points")]
    max_plot_points: usize,
}

fn default_max_plot_points() -> usize {
    5000
}

/// The fields of a linear model this step uses. Other fields of the JSON are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LinearModel {
    /// Name of the predicted column.
    pub target: String,
    /// Feature column names, matching `weights`.
    pub features: Vec<String>,
    /// One weight per feature.
    pub weights: Vec<f64>,
    /// Constant term.
    pub intercept: f64,
}

impl LinearModel {
    /// Returns `intercept + weights · features`.
    pub fn predict(&self, features: &[f64]) -> f64 {
        let dot: f64 = self.weights.iter().zip(features).map(|(w, x)| w * x).sum();
        self.intercept + dot
    }
}

/// Parses the `model` input and checks that it has one weight per feature.
pub fn parse_model(text: &str) -> Result<LinearModel> {
    let model: LinearModel = serde_json::from_str(text).map_err(|error| {
        Error::InvalidInput(format!(
            "input `model` is not a linear model ({error}); wire the `model` output of linreg"
        ))
    })?;
    if model.weights.len() != model.features.len() {
        return Err(Error::InvalidInput(format!(
            "input `model` has {} features but {} weights; it needs one weight per feature",
            model.features.len(),
            model.weights.len()
        )));
    }
    Ok(model)
}

/// Actual and predicted target values, row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// Target values from the test table.
    pub actual: Vec<f64>,
    /// Model predictions for the same rows.
    pub predicted: Vec<f64>,
}

/// Predicts every row of `test`, which must have the model's target and feature columns (in
/// any order) with a number in every used cell.
pub fn predict_table(model: &LinearModel, test: &Table) -> Result<Predictions> {
    let target_index = test.require_column(&model.target, "test")?;
    if test.rows.is_empty() {
        return Err(Error::InvalidInput("input `test` has no data rows".into()));
    }
    let numbers = |index: usize| test.numbers(index).map_err(|error| error.in_input("test"));
    let actual = numbers(target_index)?;

    let mut features = vec![Vec::with_capacity(model.features.len()); test.rows.len()];
    for name in &model.features {
        let values = numbers(test.require_column(name, "test")?)?;
        for (row, value) in features.iter_mut().zip(values) {
            row.push(value);
        }
    }
    let predicted = features.iter().map(|row| model.predict(row)).collect();
    Ok(Predictions { actual, predicted })
}

/// The `metrics` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// Name of the scored column.
    pub target: String,
    /// Number of test rows.
    pub rows: usize,
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Coefficient of determination, `1 - SS_res / SS_tot`. It is `None` (JSON `null`) when
    /// every actual value is the same, because `SS_tot` is then 0.
    pub r2: Option<f64>,
}

/// Scores `predictions` of column `target`, which must hold at least one row.
pub fn score(target: &str, predictions: &Predictions) -> Scores {
    let Predictions { actual, predicted } = predictions;
    let count = actual.len() as f64;
    let mean = actual.iter().sum::<f64>() / count;

    let mut squared = 0.0;
    let mut absolute = 0.0;
    let mut total = 0.0;
    for (y, prediction) in actual.iter().zip(predicted) {
        let error = prediction - y;
        squared += error * error;
        absolute += error.abs();
        total += (y - mean) * (y - mean);
    }

    Scores {
        target: target.to_owned(),
        rows: actual.len(),
        rmse: (squared / count).sqrt(),
        mae: absolute / count,
        r2: (total > 0.0).then(|| 1.0 - squared / total),
    }
}

/// The `regress-eval` step executor.
pub struct RegressEval;

impl Executor for RegressEval {
    fn execute(context: StepContext) -> Result<()> {
        let params: Params = context.params()?;
        if params.max_plot_points == 0 {
            return Err(Error::InvalidParams(
                "max-plot-points is 0; give at least 1".into(),
            ));
        }

        let model = parse_model(&read_text(&context, "model")?)?;
        let test = read_table(&context, "test")?;
        let predictions = predict_table(&model, &test)?;
        let scores = score(&model.target, &predictions);

        report(&scores)?;
        write_json(&context, "metrics", &scores)?;
        let svg = plot::scatter_svg(&predictions, &scores, params.max_plot_points);
        write_text(&context, "plot", "image/svg+xml", &svg)?;
        Ok(())
    }
}

fn report(scores: &Scores) -> Result<()> {
    metrics::log("test_rmse", scores.rmse, 0)?;
    metrics::log("test_mae", scores.mae, 0)?;
    metrics::log("test_r2", scores.r2.unwrap_or(f64::NAN), 0)?;
    if scores.r2.is_none() {
        log::log(
            Level::Warn,
            "r2 undefined because every actual value is the same",
            &[("target", &scores.target)],
        );
    }
    log::log(
        Level::Info,
        "scored model",
        &[
            ("rows", &scores.rows.to_string()),
            ("rmse", &scores.rmse.to_string()),
        ],
    );
    Ok(())
}

// Only the component exports the executor: native test builds link several plugin crates into
// one binary, where their identically named exports would collide.
#[cfg(target_arch = "wasm32")]
runledger_sdk::export_executor!(RegressEval);

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = r#"{"kind":"linear-regression","target":"y","features":["a","b"],
        "weights":[2.0,-1.0],"intercept":3.0,"train_rmse":0.1}"#;

    #[test]
    fn parse_model_ignores_extra_fields() {
        let model = parse_model(MODEL).unwrap();
        assert_eq!(model.features, ["a", "b"]);
        assert_eq!(model.predict(&[1.0, 2.0]), 3.0);
    }

    #[test]
    fn parse_model_rejects_mismatched_weights() {
        let text = r#"{"target":"y","features":["a"],"weights":[1.0,2.0],"intercept":0.0}"#;
        let result = parse_model(text);
        assert!(matches!(result, Err(Error::InvalidInput(_))), "{result:?}");
    }

    #[test]
    fn parse_model_rejects_other_json() {
        let Err(Error::InvalidInput(message)) = parse_model(r#"{"rmse": 1}"#) else {
            panic!("expected InvalidInput");
        };
        assert!(message.contains("linreg"), "{message}");
    }

    #[test]
    fn predict_table_matches_columns_by_name() {
        let model = parse_model(MODEL).unwrap();
        let test = Table::from_csv("b,y,a\n0,5,1\n1,0,-1\n").unwrap();
        let predictions = predict_table(&model, &test).unwrap();
        assert_eq!(predictions.actual, [5.0, 0.0]);
        assert_eq!(predictions.predicted, [5.0, 0.0]);
    }

    #[test]
    fn predict_table_requires_features() {
        let model = parse_model(MODEL).unwrap();
        let test = Table::from_csv("a,y\n1,2\n").unwrap();
        let Err(Error::InvalidInput(message)) = predict_table(&model, &test) else {
            panic!("expected InvalidInput");
        };
        assert!(
            message.contains("`b` not found in input `test`"),
            "{message}"
        );
    }

    #[test]
    fn score_known_values() {
        let predictions = Predictions {
            actual: vec![1.0, 2.0, 3.0, 4.0],
            predicted: vec![1.0, 3.0, 3.0, 2.0],
        };
        let scores = score("y", &predictions);
        assert_eq!(scores.rows, 4);
        assert_eq!(scores.mae, 0.75);
        assert_eq!(scores.rmse, (5.0f64 / 4.0).sqrt());
        // SS_res = 5, SS_tot = 5.
        assert_eq!(scores.r2, Some(0.0));
    }

    #[test]
    fn score_perfect_fit() {
        let values = vec![2.0, 4.0, 8.0];
        let predictions = Predictions {
            actual: values.clone(),
            predicted: values,
        };
        let scores = score("y", &predictions);
        assert_eq!(scores.rmse, 0.0);
        assert_eq!(scores.r2, Some(1.0));
    }

    #[test]
    fn score_constant_target_has_no_r2() {
        let predictions = Predictions {
            actual: vec![5.0, 5.0],
            predicted: vec![4.0, 6.0],
        };
        let scores = score("y", &predictions);
        assert_eq!(scores.r2, None);
        let json = serde_json::to_value(&scores).unwrap();
        assert!(json["r2"].is_null());
    }
}
