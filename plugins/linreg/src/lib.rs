//! `linreg` step executor: fits a linear regression of the `target` column on every other
//! numeric column of the `train` input and writes the `model`. It runs full-batch gradient
//! descent on the ridge objective `MSE + alpha * ||w||^2`, which leaves the intercept
//! unpenalized. It logs that objective as `train_loss` after every epoch, then `train_rmse`.
//!
//! Gradient descent converges with the default learning rate only on features of unit scale,
//! so put `standardize` in front of it.
//!
//! Build the component with `cd plugins && cargo build --release --target wasm32-wasip2`, which
//! writes `target/wasm32-wasip2/release/linreg.wasm`. Run the unit tests natively with
//! `cargo test --target x86_64-unknown-linux-gnu -p linreg`.

use mlkit::artifact::{read_table, write_json};
use mlkit::{SplitMix64, Table};
use runledger_sdk::log::{self, Level};
use runledger_sdk::{Error, Executor, Result, StepContext, metrics};
use serde::{Deserialize, Serialize};

/// Half-width of the uniform range the seeded initial weights are drawn from. It is small, so
/// the start is close to the all-zero model whatever the seed.
const INITIAL_WEIGHT_RANGE: f64 = 0.01;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Params {
    target: String,
    #[serde(default = "default_alpha")]
    alpha: f64,
    #[serde(default = "default_learning_rate")]
    learning_rate: f64,
    #[serde(default = "default_epochs")]
    epochs: u32,
    seed: Option<u64>,
}

/// Default of the `alpha` param.
pub const DEFAULT_ALPHA: f64 = 0.1;

/// Default of the `learning-rate` param.
///
/// Descent is stable while `learning_rate * 2 * (lambda_max + alpha) < 2`, where `lambda_max`
/// is the largest eigenvalue of the feature covariance matrix. On standardized features that is
/// the correlation matrix, whose largest eigenvalue is at most the number of features, so 0.05
/// is stable for up to 19 features whatever their correlation. On the wine quality data,
/// 500 epochs bring the weights within 1e-3 of the exact ridge solution.
pub const DEFAULT_LEARNING_RATE: f64 = 0.05;

/// Default of the `epochs` param.
pub const DEFAULT_EPOCHS: u32 = 500;

fn default_alpha() -> f64 {
    DEFAULT_ALPHA
}

fn default_learning_rate() -> f64 {
    DEFAULT_LEARNING_RATE
}

fn default_epochs() -> u32 {
    DEFAULT_EPOCHS
}

/// Settings of one training run, recorded in the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Hyperparameters {
    /// L2 penalty strength on the weights, at least 0.
    pub alpha: f64,
    /// Gradient descent step size, greater than 0.
    pub learning_rate: f64,
    /// Number of full-batch gradient steps, at least 1.
    pub epochs: u32,
    /// Seed of the initial weights.
    pub seed: u64,
}

impl Hyperparameters {
    /// Checks the ranges the params schema also states, for callers that bypass it.
    pub fn validate(&self) -> Result<()> {
        if !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            return Err(Error::InvalidParams(format!(
                "alpha is {}; give a finite number of at least 0",
                self.alpha
            )));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(Error::InvalidParams(format!(
                "learning-rate is {}; give a finite number greater than 0, such as 0.05",
                self.learning_rate
            )));
        }
        if self.epochs == 0 {
            return Err(Error::InvalidParams("epochs is 0; give at least 1".into()));
        }
        Ok(())
    }
}

/// Training data as numbers: one row of features per example.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Feature column names, in train header order.
    pub features: Vec<String>,
    /// Feature values, one inner vector per row, in `features` order.
    pub rows: Vec<Vec<f64>>,
    /// Target value of each row.
    pub targets: Vec<f64>,
    /// Non-numeric columns left out of the features.
    pub skipped: Vec<String>,
}

/// Builds the dataset from a table: the target column and every other numeric column.
///
/// Fails when the target is missing or not numeric, when a used cell is empty, or when no
/// feature column or no row remains.
pub fn dataset(train: &Table, target: &str) -> Result<Dataset> {
    let target_index = train.require_column(target, "train")?;
    if train.rows.is_empty() {
        return Err(Error::InvalidInput("input `train` has no data rows".into()));
    }
    let targets = train
        .numbers(target_index)
        .map_err(|error| error.in_input("train"))?;

    let (feature_indices, skipped): (Vec<usize>, Vec<usize>) = (0..train.columns.len())
        .filter(|&index| index != target_index)
        .partition(|&index| train.is_numeric(index));
    if feature_indices.is_empty() {
        return Err(Error::InvalidInput(format!(
            "input `train` has no numeric column besides the target `{target}`; its columns are {}",
            train.column_list()
        )));
    }

    let mut rows = vec![Vec::with_capacity(feature_indices.len()); train.rows.len()];
    for &index in &feature_indices {
        let values = train
            .numbers(index)
            .map_err(|error| error.in_input("train"))?;
        for (row, value) in rows.iter_mut().zip(values) {
            row.push(value);
        }
    }

    let names = |indices: &[usize]| -> Vec<String> {
        indices.iter().map(|&i| train.columns[i].clone()).collect()
    };
    Ok(Dataset {
        features: names(&feature_indices),
        rows,
        targets,
        skipped: names(&skipped),
    })
}

/// The `model` output: a linear model `prediction = intercept + sum(weights[i] * features[i])`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Model family, `linear-regression`.
    pub kind: String,
    /// Name of the predicted column.
    pub target: String,
    /// Feature column names, matching `weights`.
    pub features: Vec<String>,
    /// One weight per feature.
    pub weights: Vec<f64>,
    /// Constant term.
    pub intercept: f64,
    /// Settings the model was trained with.
    pub hyperparameters: Hyperparameters,
    /// Number of training rows.
    pub train_rows: usize,
    /// Final value of the training objective, `MSE + alpha * ||w||^2`.
    pub train_loss: f64,
    /// Root mean squared error on the training rows.
    pub train_rmse: f64,
}

/// Parameters during descent, with the residuals of the last evaluation.
struct Descent {
    weights: Vec<f64>,
    intercept: f64,
    residuals: Vec<f64>,
}

impl Descent {
    fn new(data: &Dataset, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let weights = data
            .features
            .iter()
            .map(|_| (2.0 * rng.next_f64() - 1.0) * INITIAL_WEIGHT_RANGE)
            .collect();
        Self {
            weights,
            intercept: 0.0,
            residuals: vec![0.0; data.rows.len()],
        }
    }

    /// Stores the residuals `prediction - target` and returns the mean squared error.
    fn evaluate(&mut self, data: &Dataset) -> f64 {
        let mut squared = 0.0;
        for (i, row) in data.rows.iter().enumerate() {
            let residual = predict(&self.weights, self.intercept, row) - data.targets[i];
            self.residuals[i] = residual;
            squared += residual * residual;
        }
        squared / data.rows.len() as f64
    }

    fn penalty(&self) -> f64 {
        self.weights.iter().map(|w| w * w).sum()
    }

    /// Takes one gradient step using the residuals of the last evaluation.
    fn step(&mut self, data: &Dataset, hyper: &Hyperparameters) {
        let scale = 2.0 / data.rows.len() as f64;
        let mut gradient = vec![0.0; self.weights.len()];
        let mut intercept_gradient = 0.0;
        for (row, residual) in data.rows.iter().zip(&self.residuals) {
            for (g, x) in gradient.iter_mut().zip(row) {
                *g += residual * x;
            }
            intercept_gradient += residual;
        }

        for (w, g) in self.weights.iter_mut().zip(&gradient) {
            let full = scale * g + 2.0 * hyper.alpha * *w;
            *w -= hyper.learning_rate * full;
        }
        self.intercept -= hyper.learning_rate * scale * intercept_gradient;
    }
}

/// Returns `intercept + weights · features`.
pub fn predict(weights: &[f64], intercept: f64, features: &[f64]) -> f64 {
    let dot: f64 = weights.iter().zip(features).map(|(w, x)| w * x).sum();
    intercept + dot
}

/// Trains the model, calling `on_epoch(epoch, train_loss)` after each of the epochs 1 to
/// `hyper.epochs`.
///
/// Fails with [`Error::InvalidParams`] when the loss becomes NaN or infinite, which means the
/// learning rate is too large for the scale of the features.
pub fn train(
    data: &Dataset,
    target: &str,
    hyper: &Hyperparameters,
    mut on_epoch: impl FnMut(u32, f64) -> Result<()>,
) -> Result<Model> {
    hyper.validate()?;
    let mut descent = Descent::new(data, hyper.seed);
    let mut mse = descent.evaluate(data);
    let mut loss = mse + hyper.alpha * descent.penalty();
    check_finite(loss, 0, hyper)?;

    for epoch in 1..=hyper.epochs {
        descent.step(data, hyper);
        mse = descent.evaluate(data);
        loss = mse + hyper.alpha * descent.penalty();
        check_finite(loss, epoch, hyper)?;
        on_epoch(epoch, loss)?;
    }

    Ok(Model {
        kind: "linear-regression".into(),
        target: target.to_owned(),
        features: data.features.clone(),
        weights: descent.weights,
        intercept: descent.intercept,
        hyperparameters: *hyper,
        train_rows: data.rows.len(),
        train_loss: loss,
        train_rmse: mse.sqrt(),
    })
}

fn check_finite(loss: f64, epoch: u32, hyper: &Hyperparameters) -> Result<()> {
    if loss.is_finite() {
        return Ok(());
    }
    Err(Error::InvalidParams(format!(
        "train_loss is {loss} at epoch {epoch}, so gradient descent diverged; lower \
         learning-rate (now {}) or standardize the features before training",
        hyper.learning_rate
    )))
}

/// The `linreg` step executor.
pub struct Linreg;

impl Executor for Linreg {
    fn execute(context: StepContext) -> Result<()> {
        let params: Params = context.params()?;
        let hyper = Hyperparameters {
            alpha: params.alpha,
            learning_rate: params.learning_rate,
            epochs: params.epochs,
            seed: params.seed.unwrap_or(context.seed()),
        };
        hyper.validate()?;

        let train_table = read_table(&context, "train")?;
        let data = dataset(&train_table, &params.target)?;
        for column in &data.skipped {
            log::log(
                Level::Warn,
                "non-numeric column left out",
                &[("column", column)],
            );
        }

        let model = train(&data, &params.target, &hyper, |epoch, loss| {
            metrics::log("train_loss", loss, i64::from(epoch))
        })?;
        metrics::log("train_rmse", model.train_rmse, i64::from(hyper.epochs))?;
        write_json(&context, "model", &model)?;
        report(&model);
        Ok(())
    }
}

fn report(model: &Model) {
    log::log(
        Level::Info,
        "trained linear regression",
        &[
            ("features", &model.features.len().to_string()),
            ("train_rows", &model.train_rows.to_string()),
            ("train_rmse", &model.train_rmse.to_string()),
        ],
    );
}

// Only the component exports the executor: native test builds link several plugin crates into
// one binary, where their identically named exports would collide.
#[cfg(target_arch = "wasm32")]
runledger_sdk::export_executor!(Linreg);

#[cfg(test)]
mod tests {
    use super::*;

    fn hyper(alpha: f64, learning_rate: f64, epochs: u32) -> Hyperparameters {
        Hyperparameters {
            alpha,
            learning_rate,
            epochs,
            seed: 42,
        }
    }

    /// Rows of `y = 3 + 2a - b` on a small grid centered at zero.
    fn exact_linear() -> Dataset {
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        for a in [-1.0, -0.5, 0.0, 0.5, 1.0] {
            for b in [-1.0, 0.0, 1.0] {
                rows.push(vec![a, b]);
                targets.push(3.0 + 2.0 * a - b);
            }
        }
        Dataset {
            features: vec!["a".into(), "b".into()],
            rows,
            targets,
            skipped: Vec::new(),
        }
    }

    fn train_quietly(data: &Dataset, hyper: &Hyperparameters) -> Result<Model> {
        train(data, "y", hyper, |_, _| Ok(()))
    }

    #[test]
    fn train_recovers_exact_line() {
        let model = train_quietly(&exact_linear(), &hyper(0.0, 0.1, 3000)).unwrap();
        assert!((model.intercept - 3.0).abs() < 1e-9, "{model:?}");
        assert!((model.weights[0] - 2.0).abs() < 1e-9, "{model:?}");
        assert!((model.weights[1] + 1.0).abs() < 1e-9, "{model:?}");
        assert!(model.train_rmse < 1e-9, "{model:?}");
    }

    #[test]
    fn ridge_penalty_shrinks_weights() {
        let data = exact_linear();
        let plain = train_quietly(&data, &hyper(0.0, 0.1, 3000)).unwrap();
        let ridge = train_quietly(&data, &hyper(1.0, 0.1, 3000)).unwrap();
        for (shrunk, full) in ridge.weights.iter().zip(&plain.weights) {
            assert!(shrunk.abs() < full.abs(), "{shrunk} vs {full}");
        }
        // The intercept is not penalized, and with centered features it stays the mean target.
        assert!((ridge.intercept - 3.0).abs() < 1e-9, "{ridge:?}");
    }

    #[test]
    fn train_logs_every_epoch() {
        let mut losses = Vec::new();
        train(
            &exact_linear(),
            "y",
            &hyper(0.1, 0.05, 50),
            |epoch, loss| {
                losses.push((epoch, loss));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(losses.len(), 50);
        assert_eq!(losses[0].0, 1);
        assert_eq!(losses[49].0, 50);
        assert!(
            losses.windows(2).all(|pair| pair[1].1 <= pair[0].1),
            "{losses:?}"
        );
    }

    #[test]
    fn train_is_deterministic() {
        let data = exact_linear();
        let first = train_quietly(&data, &hyper(0.1, 0.05, 20)).unwrap();
        let second = train_quietly(&data, &hyper(0.1, 0.05, 20)).unwrap();
        let bits =
            |model: &Model| -> Vec<u64> { model.weights.iter().map(|w| w.to_bits()).collect() };
        assert_eq!(bits(&first), bits(&second));
        assert_eq!(first.intercept.to_bits(), second.intercept.to_bits());
    }

    #[test]
    fn train_rejects_divergence() {
        let result = train_quietly(&exact_linear(), &hyper(0.0, 50.0, 1000));
        let Err(Error::InvalidParams(message)) = result else {
            panic!("expected InvalidParams, got {result:?}");
        };
        assert!(message.contains("diverged"), "{message}");
        assert!(message.contains("learning-rate"), "{message}");
    }

    #[test]
    fn hyperparameters_validated() {
        for bad in [hyper(-1.0, 0.1, 1), hyper(0.1, 0.0, 1), hyper(0.1, 0.1, 0)] {
            let result = bad.validate();
            assert!(matches!(result, Err(Error::InvalidParams(_))), "{bad:?}");
        }
    }

    #[test]
    fn dataset_uses_numeric_columns() {
        let table = Table::from_csv("a,name,y,b\n1,x,2,3\n4,z,5,6\n").unwrap();
        let data = dataset(&table, "y").unwrap();
        assert_eq!(data.features, ["a", "b"]);
        assert_eq!(data.rows, [[1.0, 3.0], [4.0, 6.0]]);
        assert_eq!(data.targets, [2.0, 5.0]);
        assert_eq!(data.skipped, ["name"]);
    }

    #[test]
    fn dataset_missing_target_lists_columns() {
        let table = Table::from_csv("a,b\n1,2\n").unwrap();
        let Err(Error::InvalidInput(message)) = dataset(&table, "y") else {
            panic!("expected InvalidInput");
        };
        assert!(message.contains("`y` not found"), "{message}");
        assert!(message.contains("`a`, `b`"), "{message}");
    }

    #[test]
    fn dataset_rejects_missing_value() {
        let table = Table::from_csv("a,y\n1,2\n,3\n").unwrap();
        let Err(Error::InvalidInput(message)) = dataset(&table, "y") else {
            panic!("expected InvalidInput");
        };
        assert!(message.contains("line 3 of input `train`"), "{message}");
    }

    #[test]
    fn model_json_fields() {
        let model = train_quietly(&exact_linear(), &hyper(0.1, 0.05, 5)).unwrap();
        let json = serde_json::to_value(&model).unwrap();
        assert_eq!(json["kind"], "linear-regression");
        assert_eq!(json["target"], "y");
        assert_eq!(json["features"], serde_json::json!(["a", "b"]));
        assert_eq!(json["hyperparameters"]["learning-rate"], 0.05);
        assert_eq!(json["hyperparameters"]["epochs"], 5);
        assert_eq!(json["train_rows"], 15);
    }
}
