//! `standardize` step executor: rescales numeric columns to z-scores, `(x - mean) / std`, with
//! mean and population std fitted on the `train` input only and applied to both `train` and
//! `test`, so no statistic of the test rows leaks into training. The `target` column and
//! non-numeric columns pass through unchanged, as do empty cells (missing values). The fitted
//! statistics go to the `scaler` output.
//!
//! Build the component with `cd plugins && cargo build --release --target wasm32-wasip2`, which
//! writes `target/wasm32-wasip2/release/standardize.wasm`. Run the unit tests natively with
//! `cargo test --target x86_64-unknown-linux-gnu -p standardize`.

use mlkit::artifact::{read_table, write_json, write_text};
use mlkit::{Table, format_float};
use runledger_sdk::log::{self, Level};
use runledger_sdk::{Error, Executor, Result, StepContext};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Params {
    target: String,
    columns: Option<Vec<String>>,
}

/// Fitted statistics of one scaled column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnScale {
    /// Column name.
    pub name: String,
    /// Mean of the column's train values.
    pub mean: f64,
    /// Population standard deviation of the column's train values.
    pub std: f64,
    /// The divisor applied: `std`, or 1 for a constant column, which is only centered.
    pub scale: f64,
}

/// The `scaler` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    /// Column excluded from scaling.
    pub target: String,
    /// Number of train rows the statistics were fitted on.
    pub fit_rows: usize,
    /// Scaled columns, in the order of the train header.
    pub columns: Vec<ColumnScale>,
}

/// Returns the names of the columns to scale, in train header order.
///
/// With `requested`, those columns must exist in `train`, be numeric and not be the target.
/// Without it, every numeric column except the target is chosen.
pub fn choose_columns(
    train: &Table,
    target: &str,
    requested: Option<&[String]>,
) -> Result<Vec<String>> {
    train.require_column(target, "train")?;
    let Some(requested) = requested else {
        return default_columns(train, target);
    };

    for name in requested {
        if name == target {
            return Err(Error::InvalidParams(format!(
                "`columns` lists the target `{target}`, which is never scaled; remove it from \
                 `columns`"
            )));
        }
        let index = train.require_column(name, "train")?;
        if !train.is_numeric(index) {
            return Err(Error::InvalidInput(format!(
                "column `{name}` of input `train` is not numeric; only numeric columns can be \
                 scaled, so remove it from `columns`"
            )));
        }
    }
    let chosen = train.columns.iter().filter(|name| requested.contains(name));
    Ok(chosen.cloned().collect())
}

fn default_columns(train: &Table, target: &str) -> Result<Vec<String>> {
    let chosen: Vec<String> = (0..train.columns.len())
        .filter(|&index| train.columns[index] != target && train.is_numeric(index))
        .map(|index| train.columns[index].clone())
        .collect();
    if chosen.is_empty() {
        return Err(Error::InvalidInput(format!(
            "input `train` has no numeric column besides the target `{target}`; its columns are {}",
            train.column_list()
        )));
    }
    Ok(chosen)
}

/// Fits mean and std of each of `columns` on the non-empty cells of `train`.
pub fn fit(train: &Table, target: &str, columns: &[String]) -> Result<Scaler> {
    let mut scales = Vec::with_capacity(columns.len());
    for name in columns {
        let index = train.require_column(name, "train")?;
        let values = train
            .optional_numbers(index)
            .map_err(|error| error.in_input("train"))?;
        let present: Vec<f64> = values.into_iter().flatten().collect();
        let scale = fit_column(name, &present).ok_or_else(|| {
            Error::InvalidInput(format!("column `{name}` of input `train` has no values"))
        })?;
        scales.push(scale);
    }
    Ok(Scaler {
        target: target.to_owned(),
        fit_rows: train.rows.len(),
        columns: scales,
    })
}

/// Fits mean and population std of `values`, or returns `None` when there are none.
pub fn fit_column(name: &str, values: &[f64]) -> Option<ColumnScale> {
    if values.is_empty() {
        return None;
    }
    let count = values.len() as f64;
    let mean = values.iter().sum::<f64>() / count;
    let variance = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / count;
    let std = variance.sqrt();

    // Compare values, not `std`, because rounding in `mean` can leave a constant column a tiny
    // nonzero std that would blow its values up.
    let constant = values.iter().all(|&value| value == values[0]);
    Some(ColumnScale {
        name: name.to_owned(),
        mean,
        std: if constant { 0.0 } else { std },
        scale: if constant { 1.0 } else { std },
    })
}

/// Returns a copy of `table` (input `input`) with the scaler's columns rescaled.
pub fn apply(table: &Table, scaler: &Scaler, input: &str) -> Result<Table> {
    let mut scaled = table.clone();
    for column in &scaler.columns {
        let index = table.require_column(&column.name, input)?;
        let values = table
            .optional_numbers(index)
            .map_err(|error| error.in_input(input))?;
        for (row, value) in scaled.rows.iter_mut().zip(values) {
            row.cells[index] = match value {
                Some(value) => format_float((value - column.mean) / column.scale),
                None => String::new(),
            };
        }
    }
    Ok(scaled)
}

/// The `standardize` step executor.
pub struct Standardize;

impl Executor for Standardize {
    fn execute(context: StepContext) -> Result<()> {
        let params: Params = context.params()?;
        let train = read_table(&context, "train")?;
        let test = read_table(&context, "test")?;

        let columns = choose_columns(&train, &params.target, params.columns.as_deref())?;
        let scaler = fit(&train, &params.target, &columns)?;
        let train_scaled = apply(&train, &scaler, "train")?;
        let test_scaled = apply(&test, &scaler, "test")?;

        write_text(&context, "train", "text/csv", &train_scaled.to_csv())?;
        write_text(&context, "test", "text/csv", &test_scaled.to_csv())?;
        write_json(&context, "scaler", &scaler)?;
        report(&scaler);
        Ok(())
    }
}

fn report(scaler: &Scaler) {
    for column in scaler.columns.iter().filter(|column| column.std == 0.0) {
        log::log(
            Level::Warn,
            "constant column only centered",
            &[("column", &column.name)],
        );
    }
    log::log(
        Level::Info,
        "fitted scaler",
        &[
            ("columns", &scaler.columns.len().to_string()),
            ("fit_rows", &scaler.fit_rows.to_string()),
        ],
    );
}

// Only the component exports the executor: native test builds link several plugin crates into
// one binary, where their identically named exports would collide.
#[cfg(target_arch = "wasm32")]
runledger_sdk::export_executor!(Standardize);

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        Table::from_csv(text).unwrap()
    }

    fn column(table: &Table, index: usize) -> Vec<&str> {
        table
            .rows
            .iter()
            .map(|row| row.cells[index].as_str())
            .collect()
    }

    #[test]
    fn fit_column_population_std() {
        let scale = fit_column("x", &[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!(scale.mean, 5.0);
        assert_eq!(scale.std, 2.0);
        assert_eq!(scale.scale, 2.0);
    }

    #[test]
    fn fit_column_constant_only_centers() {
        let scale = fit_column("x", &[0.1, 0.1, 0.1]).unwrap();
        assert_eq!(scale.std, 0.0);
        assert_eq!(scale.scale, 1.0);
    }

    #[test]
    fn fit_column_empty_is_none() {
        assert_eq!(fit_column("x", &[]), None);
    }

    #[test]
    fn default_columns_skip_target_and_text() {
        let train = table("a,label,y,b\n1,x,5,2\n3,y,6,4\n");
        assert_eq!(choose_columns(&train, "y", None).unwrap(), ["a", "b"]);
    }

    #[test]
    fn requested_columns_keep_header_order() {
        let train = table("a,b,c,y\n1,2,3,4\n5,6,7,8\n");
        let requested = ["c".to_owned(), "a".to_owned()];
        let chosen = choose_columns(&train, "y", Some(&requested)).unwrap();
        assert_eq!(chosen, ["a", "c"]);
    }

    #[test]
    fn missing_target_lists_columns() {
        let train = table("alcohol,quality\n9.4,5\n");
        let Err(Error::InvalidInput(message)) = choose_columns(&train, "qualty", None) else {
            panic!("expected InvalidInput");
        };
        assert!(message.contains("`qualty`"), "{message}");
        assert!(message.contains("`alcohol`, `quality`"), "{message}");
    }

    #[test]
    fn requested_target_rejected() {
        let train = table("a,y\n1,2\n");
        let requested = ["y".to_owned()];
        let result = choose_columns(&train, "y", Some(&requested));
        assert!(matches!(result, Err(Error::InvalidParams(_))), "{result:?}");
    }

    #[test]
    fn requested_text_column_rejected() {
        let train = table("a,y\nx,2\n");
        let requested = ["a".to_owned()];
        let result = choose_columns(&train, "y", Some(&requested));
        assert!(matches!(result, Err(Error::InvalidInput(_))), "{result:?}");
    }

    #[test]
    fn apply_uses_train_statistics() {
        let train = table("x,y\n1,0\n3,1\n");
        let test = table("x,y\n5,1\n2,0\n");
        let scaler = fit(&train, "y", &["x".to_owned()]).unwrap();
        assert_eq!(scaler.fit_rows, 2);

        let train_scaled = apply(&train, &scaler, "train").unwrap();
        let test_scaled = apply(&test, &scaler, "test").unwrap();
        assert_eq!(column(&train_scaled, 0), ["-1.0", "1.0"]);
        assert_eq!(column(&test_scaled, 0), ["3.0", "0.0"]);
        assert_eq!(column(&test_scaled, 1), ["1", "0"]);
    }

    #[test]
    fn apply_keeps_missing_cells() {
        let train = table("x,y\n1,0\n,1\n3,1\n");
        let scaler = fit(&train, "y", &["x".to_owned()]).unwrap();
        assert_eq!(scaler.columns[0].mean, 2.0);
        let scaled = apply(&train, &scaler, "train").unwrap();
        assert_eq!(column(&scaled, 0), ["-1.0", "", "1.0"]);
    }

    #[test]
    fn apply_reports_bad_test_cell() {
        let train = table("x,y\n1,0\n3,1\n");
        let test = table("x,y\n1,0\noops,1\n");
        let scaler = fit(&train, "y", &["x".to_owned()]).unwrap();
        let Err(Error::InvalidInput(message)) = apply(&test, &scaler, "test") else {
            panic!("expected InvalidInput");
        };
        assert!(message.contains("line 3 of input `test`"), "{message}");
    }

    #[test]
    fn apply_requires_column_in_test() {
        let train = table("x,y\n1,0\n3,1\n");
        let test = table("z,y\n1,0\n");
        let scaler = fit(&train, "y", &["x".to_owned()]).unwrap();
        let Err(Error::InvalidInput(message)) = apply(&test, &scaler, "test") else {
            panic!("expected InvalidInput");
        };
        assert!(
            message.contains("`x` not found in input `test`"),
            "{message}"
        );
    }
}
