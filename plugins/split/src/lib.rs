//! `split` step executor: splits the CSV input `table` into `train` and `test` by a seeded
//! shuffle. Both outputs keep the header and the original row order within themselves. When the
//! optional `schema` input (from `csv-ingest`) is wired, the table must match it.
//!
//! Build the component with `cd plugins && cargo build --release --target wasm32-wasip2`, which
//! writes `target/wasm32-wasip2/release/split.wasm`. Run the unit tests natively with
//! `cargo test --target x86_64-unknown-linux-gnu -p split`.

use mlkit::artifact::{has_input, read_table, read_text, write_text};
use mlkit::{SplitMix64, Table};
use runledger_sdk::log::{self, Level};
use runledger_sdk::{Error, Executor, Result, StepContext, metrics};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Params {
    #[serde(default = "default_test_fraction")]
    test_fraction: f64,
    seed: Option<u64>,
}

fn default_test_fraction() -> f64 {
    0.2
}

/// Row indices of each side of a split, each in ascending order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Indices of the training rows.
    pub train: Vec<usize>,
    /// Indices of the test rows.
    pub test: Vec<usize>,
}

/// Returns how many of `rows` rows go to the test side: `test_fraction * rows` rounded to the
/// nearest integer, kept between 1 and `rows - 1` so neither side is empty.
pub fn test_size(rows: usize, test_fraction: f64) -> Result<usize> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(Error::InvalidParams(format!(
            "test-fraction is {test_fraction}; give a number strictly between 0 and 1, such as 0.2"
        )));
    }
    if rows < 2 {
        return Err(Error::InvalidInput(format!(
            "input `table` has {rows} data rows; a split needs at least 2 so that train and test \
             each get one"
        )));
    }
    let size = (rows as f64 * test_fraction).round() as usize;
    Ok(size.clamp(1, rows - 1))
}

/// Assigns `rows` rows to train and test: a Fisher-Yates shuffle seeded with `seed` orders the
/// rows, and the first [`test_size`] of that order form the test side.
pub fn partition(rows: usize, test_fraction: f64, seed: u64) -> Result<Partition> {
    let test_rows = test_size(rows, test_fraction)?;

    let mut order: Vec<usize> = (0..rows).collect();
    SplitMix64::new(seed).shuffle(&mut order);

    let mut test = order[..test_rows].to_vec();
    let mut train = order[test_rows..].to_vec();
    test.sort_unstable();
    train.sort_unstable();
    Ok(Partition { train, test })
}

/// Returns a table with the same header and the rows at `indices`.
pub fn select_rows(table: &Table, indices: &[usize]) -> Table {
    Table {
        columns: table.columns.clone(),
        rows: indices
            .iter()
            .map(|&index| table.rows[index].clone())
            .collect(),
    }
}

#[derive(Debug, Deserialize)]
struct SchemaColumn {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Schema {
    columns: Vec<SchemaColumn>,
    row_count: usize,
}

/// Checks that `table` has the columns, in order, and the row count `schema_json` describes.
pub fn check_schema(table: &Table, schema_json: &str) -> Result<()> {
    let schema: Schema = serde_json::from_str(schema_json).map_err(|error| {
        Error::InvalidInput(format!(
            "input `schema` is not a csv-ingest schema ({error}); wire the `schema` output of \
             csv-ingest or leave the input out"
        ))
    })?;

    let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    if names != table.columns {
        return Err(Error::InvalidInput(format!(
            "input `table` has columns {} but input `schema` lists `{}`; wire the table and the \
             schema from the same csv-ingest step",
            table.column_list(),
            names.join("`, `")
        )));
    }
    if schema.row_count != table.rows.len() {
        return Err(Error::InvalidInput(format!(
            "input `table` has {} data rows but input `schema` says {}; wire the table and the \
             schema from the same csv-ingest step",
            table.rows.len(),
            schema.row_count
        )));
    }
    Ok(())
}

/// The `split` step executor.
pub struct Split;

impl Executor for Split {
    fn execute(context: StepContext) -> Result<()> {
        let params: Params = context.params()?;
        let seed = params.seed.unwrap_or(context.seed());

        let table = read_table(&context, "table")?;
        if has_input(&context, "schema") {
            check_schema(&table, &read_text(&context, "schema")?)?;
        }

        let partition = partition(table.rows.len(), params.test_fraction, seed)?;
        let train = select_rows(&table, &partition.train);
        let test = select_rows(&table, &partition.test);
        write_text(&context, "train", "text/csv", &train.to_csv())?;
        write_text(&context, "test", "text/csv", &test.to_csv())?;

        report(&partition, seed)
    }
}

fn report(partition: &Partition, seed: u64) -> Result<()> {
    let train_rows = partition.train.len();
    let test_rows = partition.test.len();
    metrics::log("train_rows", train_rows as f64, 0)?;
    metrics::log("test_rows", test_rows as f64, 0)?;
    log::log(
        Level::Info,
        "split table",
        &[
            ("train_rows", &train_rows.to_string()),
            ("test_rows", &test_rows.to_string()),
            ("seed", &seed.to_string()),
        ],
    );
    Ok(())
}

// Only the component exports the executor: native test builds link several plugin crates into
// one binary, where their identically named exports would collide.
#[cfg(target_arch = "wasm32")]
runledger_sdk::export_executor!(Split);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_size_rounds_and_clamps() {
        assert_eq!(test_size(1599, 0.2).unwrap(), 320);
        assert_eq!(test_size(10, 0.25).unwrap(), 3);
        assert_eq!(test_size(10, 0.01).unwrap(), 1);
        assert_eq!(test_size(10, 0.99).unwrap(), 9);
        assert_eq!(test_size(2, 0.5).unwrap(), 1);
    }

    #[test]
    fn test_size_rejects_bad_fraction() {
        for fraction in [0.0, 1.0, -0.1, f64::NAN] {
            let result = test_size(10, fraction);
            assert!(matches!(result, Err(Error::InvalidParams(_))), "{fraction}");
        }
    }

    #[test]
    fn test_size_rejects_tiny_table() {
        let result = test_size(1, 0.2);
        assert!(matches!(result, Err(Error::InvalidInput(_))), "{result:?}");
    }

    #[test]
    fn partition_covers_every_row_once() {
        let split = partition(101, 0.3, 7).unwrap();
        assert_eq!(split.test.len(), 30);
        assert_eq!(split.train.len(), 71);
        let mut all: Vec<usize> = split.train.iter().chain(&split.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..101).collect::<Vec<_>>());
    }

    #[test]
    fn partition_sides_sorted() {
        let split = partition(50, 0.2, 3).unwrap();
        assert!(split.train.is_sorted());
        assert!(split.test.is_sorted());
    }

    #[test]
    fn partition_repeats_for_same_seed() {
        assert_eq!(
            partition(1000, 0.2, 42).unwrap(),
            partition(1000, 0.2, 42).unwrap()
        );
        assert_ne!(
            partition(1000, 0.2, 42).unwrap(),
            partition(1000, 0.2, 43).unwrap()
        );
    }

    #[test]
    fn partition_is_not_a_prefix() {
        // A shuffle spreads the test rows over the table instead of taking the first or last.
        let split = partition(1000, 0.2, 42).unwrap();
        let first_half = split.test.iter().filter(|&&index| index < 500).count();
        assert!((60..140).contains(&first_half), "{first_half}");
    }

    #[test]
    fn select_rows_keeps_header() {
        let table = Table::from_csv("a,b\n1,x\n2,y\n3,z\n").unwrap();
        let selected = select_rows(&table, &[0, 2]);
        assert_eq!(selected.to_csv(), "a,b\n1,x\n3,z\n");
    }

    #[test]
    fn check_schema_accepts_matching_table() {
        let table = Table::from_csv("a,b\n1,x\n").unwrap();
        let schema = r#"{"columns":[{"name":"a","type":"integer"},{"name":"b","type":"string"}],
                        "row_count":1}"#;
        check_schema(&table, schema).unwrap();
    }

    #[test]
    fn check_schema_rejects_other_columns() {
        let table = Table::from_csv("a,b\n1,x\n").unwrap();
        let schema = r#"{"columns":[{"name":"a"},{"name":"c"}],"row_count":1}"#;
        let Err(Error::InvalidInput(message)) = check_schema(&table, schema) else {
            panic!("expected InvalidInput");
        };
        assert!(message.contains("`a`, `c`"), "{message}");
    }

    #[test]
    fn check_schema_rejects_other_row_count() {
        let table = Table::from_csv("a\n1\n").unwrap();
        let schema = r#"{"columns":[{"name":"a"}],"row_count":5}"#;
        let result = check_schema(&table, schema);
        assert!(matches!(result, Err(Error::InvalidInput(_))), "{result:?}");
    }
}
