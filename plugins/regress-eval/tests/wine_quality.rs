//! Runs the numeric core of the wine quality example natively on the real data: csv-ingest, an
//! 80/20 split with seed 42, standardize, linreg with its default hyperparameters and
//! regress-eval. Each step reads the previous step's output as CSV or JSON text, as the
//! components exchange it.
//!
//! `cargo test --target x86_64-unknown-linux-gnu -p regress-eval --test wine_quality`

use linreg::{DEFAULT_ALPHA, DEFAULT_EPOCHS, DEFAULT_LEARNING_RATE, Hyperparameters};
use mlkit::Table;
use regress_eval::{Scores, plot};

const WINE_CSV: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/wine-quality/data/winequality-red.csv"
);
const TARGET: &str = "quality";
const SEED: u64 = 42;

/// Every artifact the pipeline writes, as text.
struct Artifacts {
    train: String,
    test: String,
    scaled_train: String,
    scaled_test: String,
    model: String,
    metrics: String,
    plot: String,
}

fn reparse(table: &Table) -> Table {
    Table::from_csv(&table.to_csv()).unwrap()
}

fn hyperparameters() -> Hyperparameters {
    Hyperparameters {
        alpha: DEFAULT_ALPHA,
        learning_rate: DEFAULT_LEARNING_RATE,
        epochs: DEFAULT_EPOCHS,
        seed: SEED,
    }
}

fn split_and_scale() -> (Table, Table, Table, Table) {
    let source = std::fs::read_to_string(WINE_CSV).unwrap();
    let ingested = csv_ingest::ingest(&source, ',', true).unwrap();
    let table = reparse(&ingested.table);

    let partition = split::partition(table.rows.len(), 0.2, SEED).unwrap();
    let train = reparse(&split::select_rows(&table, &partition.train));
    let test = reparse(&split::select_rows(&table, &partition.test));

    let columns = standardize::choose_columns(&train, TARGET, None).unwrap();
    let scaler = standardize::fit(&train, TARGET, &columns).unwrap();
    let scaled_train = reparse(&standardize::apply(&train, &scaler, "train").unwrap());
    let scaled_test = reparse(&standardize::apply(&test, &scaler, "test").unwrap());
    (train, test, scaled_train, scaled_test)
}

fn run_pipeline() -> (Artifacts, Scores) {
    let (train, test, scaled_train, scaled_test) = split_and_scale();

    let data = linreg::dataset(&scaled_train, TARGET).unwrap();
    let model = linreg::train(&data, TARGET, &hyperparameters(), |_, _| Ok(())).unwrap();
    let model_json = mlkit::artifact::to_json(&model).unwrap();

    let linear = regress_eval::parse_model(&model_json).unwrap();
    let predictions = regress_eval::predict_table(&linear, &scaled_test).unwrap();
    let scores = regress_eval::score(&linear.target, &predictions);
    let svg = plot::scatter_svg(&predictions, &scores, 5000);

    let artifacts = Artifacts {
        train: train.to_csv(),
        test: test.to_csv(),
        scaled_train: scaled_train.to_csv(),
        scaled_test: scaled_test.to_csv(),
        model: model_json,
        metrics: mlkit::artifact::to_json(&scores).unwrap(),
        plot: svg,
    };
    (artifacts, scores)
}

#[test]
fn wine_split_sizes() {
    let (train, test, _, _) = split_and_scale();
    assert_eq!(train.rows.len(), 1279);
    assert_eq!(test.rows.len(), 320);
}

#[test]
fn wine_scores_in_plausible_band() {
    let (artifacts, scores) = run_pipeline();
    println!("{}", artifacts.metrics);

    // Published linear regression results on the red wine data are near RMSE 0.65.
    assert!((0.55..0.75).contains(&scores.rmse), "rmse {}", scores.rmse);
    let r2 = scores.r2.unwrap();
    assert!(r2 > 0.25, "r2 {r2}");
    assert!(scores.mae < scores.rmse, "mae {}", scores.mae);
    assert_eq!(scores.rows, 320);

    // Kept for a look at the plot: target/.../tmp/wine_quality_plot.svg.
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("wine_quality_plot.svg");
    std::fs::write(path, &artifacts.plot).unwrap();
}

#[test]
fn wine_pipeline_is_deterministic() {
    let (first, _) = run_pipeline();
    let (second, _) = run_pipeline();
    assert_eq!(first.train, second.train);
    assert_eq!(first.test, second.test);
    assert_eq!(first.scaled_train, second.scaled_train);
    assert_eq!(first.scaled_test, second.scaled_test);
    assert_eq!(first.model, second.model);
    assert_eq!(first.metrics, second.metrics);
    assert_eq!(first.plot, second.plot);
}

#[test]
fn wine_train_loss_decreases() {
    let (_, _, scaled_train, _) = split_and_scale();
    let data = linreg::dataset(&scaled_train, TARGET).unwrap();
    let mut losses = Vec::new();
    linreg::train(&data, TARGET, &hyperparameters(), |_, loss| {
        losses.push(loss);
        Ok(())
    })
    .unwrap();

    assert_eq!(losses.len(), DEFAULT_EPOCHS as usize);
    assert!(losses.windows(2).all(|pair| pair[1] <= pair[0]));
}

/// Solves `matrix · x = rhs` by Gaussian elimination with partial pivoting.
fn solve(mut matrix: Vec<Vec<f64>>, mut rhs: Vec<f64>) -> Vec<f64> {
    let n = rhs.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&a, &b| matrix[a][col].abs().total_cmp(&matrix[b][col].abs()))
            .unwrap();
        matrix.swap(col, pivot);
        rhs.swap(col, pivot);
        let pivot_row = matrix[col].clone();
        for row in col + 1..n {
            let factor = matrix[row][col] / pivot_row[col];
            for (value, pivot) in matrix[row][col..].iter_mut().zip(&pivot_row[col..]) {
                *value -= factor * pivot;
            }
            rhs[row] -= factor * rhs[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| matrix[row][k] * x[k]).sum();
        x[row] = (rhs[row] - tail) / matrix[row][row];
    }
    x
}

/// Minimizes `mean((Xw + b - y)^2) + alpha * ||w||^2` exactly: with centered `X` and `y`,
/// `(Xc'Xc / n + alpha I) w = Xc'yc / n` and `b = mean(y) - mean(X) · w`.
fn closed_form_ridge(data: &linreg::Dataset, alpha: f64) -> (Vec<f64>, f64) {
    let n = data.rows.len() as f64;
    let d = data.features.len();
    let x_mean: Vec<f64> = (0..d)
        .map(|j| data.rows.iter().map(|row| row[j]).sum::<f64>() / n)
        .collect();
    let y_mean = data.targets.iter().sum::<f64>() / n;

    let mut gram = vec![vec![0.0; d]; d];
    let mut moment = vec![0.0; d];
    for (row, y) in data.rows.iter().zip(&data.targets) {
        for i in 0..d {
            moment[i] += (row[i] - x_mean[i]) * (y - y_mean) / n;
            for j in 0..d {
                gram[i][j] += (row[i] - x_mean[i]) * (row[j] - x_mean[j]) / n;
            }
        }
    }
    for (i, row) in gram.iter_mut().enumerate() {
        row[i] += alpha;
    }

    let weights = solve(gram, moment);
    let intercept = y_mean - x_mean.iter().zip(&weights).map(|(m, w)| m * w).sum::<f64>();
    (weights, intercept)
}

#[test]
fn wine_default_descent_converges() {
    let (_, _, scaled_train, _) = split_and_scale();
    let data = linreg::dataset(&scaled_train, TARGET).unwrap();
    let hyper = hyperparameters();
    let model = linreg::train(&data, TARGET, &hyper, |_, _| Ok(())).unwrap();
    let (weights, intercept) = closed_form_ridge(&data, hyper.alpha);

    for (name, (found, exact)) in data.features.iter().zip(model.weights.iter().zip(&weights)) {
        assert!((found - exact).abs() < 1e-3, "{name}: {found} vs {exact}");
    }
    assert!(
        (model.intercept - intercept).abs() < 1e-6,
        "{} vs {intercept}",
        model.intercept
    );
}
