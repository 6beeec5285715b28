//! `csv-ingest` step executor: parses the RFC 4180 CSV input `source` and infers a type per
//! column (integer, float or string). It writes a normalized copy as `table`, comma-delimited
//! with plain header names and numbers in one canonical form, and the column types as `schema`.
//!
//! Build the component with `cd plugins && cargo build --release --target wasm32-wasip2`, which
//! writes `target/wasm32-wasip2/release/csv_ingest.wasm`. Run the unit tests natively with
//! `cargo test --target x86_64-unknown-linux-gnu -p csv-ingest`.

use mlkit::artifact::{read_text, write_json, write_text};
use mlkit::csv::{self, LineError};
use mlkit::table::parse_number;
use mlkit::{Table, format_float};
use runledger_sdk::log::{self, Level};
use runledger_sdk::{Error, Executor, Result, StepContext, metrics};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Params {
    #[serde(default = "default_delimiter")]
    delimiter: String,
    #[serde(default = "default_has_header")]
    has_header: bool,
}

fn default_delimiter() -> String {
    ",".into()
}

fn default_has_header() -> bool {
    true
}

/// The type inferred for a column from its non-empty cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// Every value parses as a 64-bit signed integer.
    Integer,
    /// Every value parses as a finite number, and at least one is not an integer.
    Float,
    /// Any other column, including one with no values.
    String,
}

/// One column of the `schema` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnSchema {
    /// Column name as written in the normalized header.
    pub name: String,
    /// Inferred type.
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    /// Number of empty (or whitespace-only) cells, which later steps read as missing values.
    pub missing: usize,
}

/// The `schema` output: column types in file order and the number of data rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schema {
    /// One entry per column, in file order.
    pub columns: Vec<ColumnSchema>,
    /// Number of data rows, without the header.
    pub row_count: usize,
}

/// A parsed and normalized table with its schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    /// The table with numeric cells normalized.
    pub table: Table,
    /// The inferred schema.
    pub schema: Schema,
}

/// Checks the `delimiter` param: exactly one character that cannot be confused with quoting or
/// line breaks.
pub fn parse_delimiter(text: &str) -> Result<char> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if !matches!(c, '"' | '\r' | '\n') => Ok(c),
        _ => Err(Error::InvalidParams(format!(
            "delimiter {text:?} is invalid: give one character other than a double quote or a \
             line break, such as \",\", \";\" or \"\\t\""
        ))),
    }
}

/// Parses CSV text, infers column types and normalizes numeric cells.
///
/// Integer cells are rewritten without sign or zero padding (`+007` becomes `7`), float cells
/// in [`format_float`]'s shortest round-trip form (`3` becomes `3.0`), and whitespace-only cells
/// of numeric columns become empty. String cells are kept exactly.
pub fn ingest(text: &str, delimiter: char, has_header: bool) -> Result<Ingested, LineError> {
    let records = csv::parse(text, delimiter)?;
    let mut table = Table::from_records(records, has_header)?;

    let mut columns = Vec::with_capacity(table.columns.len());
    for index in 0..table.columns.len() {
        let column_type = infer_type(&table, index);
        normalize_column(&mut table, index, column_type);
        columns.push(ColumnSchema {
            name: table.columns[index].clone(),
            column_type,
            missing: count_missing(&table, index),
        });
    }

    let schema = Schema {
        columns,
        row_count: table.rows.len(),
    };
    Ok(Ingested { table, schema })
}

fn non_empty_cells(table: &Table, column: usize) -> impl Iterator<Item = &str> {
    table
        .rows
        .iter()
        .map(move |row| row.cells[column].trim())
        .filter(|cell| !cell.is_empty())
}

fn infer_type(table: &Table, column: usize) -> ColumnType {
    let mut cells = non_empty_cells(table, column).peekable();
    if cells.peek().is_none() {
        return ColumnType::String;
    }
    if non_empty_cells(table, column).all(|cell| cell.parse::<i64>().is_ok()) {
        return ColumnType::Integer;
    }
    if non_empty_cells(table, column).all(|cell| parse_number(cell).is_some()) {
        return ColumnType::Float;
    }
    ColumnType::String
}

fn normalize_column(table: &mut Table, column: usize, column_type: ColumnType) {
    if column_type == ColumnType::String {
        return;
    }
    for row in &mut table.rows {
        let cell = row.cells[column].trim();
        row.cells[column] = match column_type {
            _ if cell.is_empty() => String::new(),
            ColumnType::Integer => normalize_with(cell, |text| text.parse::<i64>().ok()),
            _ => normalize_with(cell, |text| parse_number(text).map(format_float)),
        };
    }
}

fn normalize_with<T: ToString>(cell: &str, parse: impl Fn(&str) -> Option<T>) -> String {
    let parsed = parse(cell).unwrap_or_else(|| unreachable!("the column type was inferred"));
    parsed.to_string()
}

fn count_missing(table: &Table, column: usize) -> usize {
    table
        .rows
        .iter()
        .filter(|row| row.cells[column].trim().is_empty())
        .count()
}

/// The `csv-ingest` step executor.
pub struct CsvIngest;

impl Executor for CsvIngest {
    fn execute(context: StepContext) -> Result<()> {
        let params: Params = context.params()?;
        let delimiter = parse_delimiter(&params.delimiter)?;

        let text = read_text(&context, "source")?;
        let ingested = ingest(&text, delimiter, params.has_header)
            .map_err(|error| error.in_input("source"))?;

        write_text(&context, "table", "text/csv", &ingested.table.to_csv())?;
        write_json(&context, "schema", &ingested.schema)?;
        report(&ingested.schema)
    }
}

fn report(schema: &Schema) -> Result<()> {
    let rows = schema.row_count;
    let columns = schema.columns.len();
    metrics::log("row_count", rows as f64, 0)?;
    metrics::log("column_count", columns as f64, 0)?;
    log::log(
        Level::Info,
        "ingested csv",
        &[
            ("rows", &rows.to_string()),
            ("columns", &columns.to_string()),
        ],
    );
    Ok(())
}

// Only the component exports the executor: native test builds link several plugin crates into
// one binary, where their identically named exports would collide.
#[cfg(target_arch = "wasm32")]
runledger_sdk::export_executor!(CsvIngest);

#[cfg(test)]
mod tests {
    use super::*;

    fn types(ingested: &Ingested) -> Vec<ColumnType> {
        let columns = &ingested.schema.columns;
        columns.iter().map(|column| column.column_type).collect()
    }

    #[test]
    fn ingest_infers_types() {
        let text = "id,score,label,empty\n1,0.5,a,\n2,3,b,\n-7,1e-3,1,\n";
        let ingested = ingest(text, ',', true).unwrap();
        let expected = [
            ColumnType::Integer,
            ColumnType::Float,
            ColumnType::String,
            ColumnType::String,
        ];
        assert_eq!(types(&ingested), expected);
        assert_eq!(ingested.schema.row_count, 3);
    }

    #[test]
    fn ingest_normalizes_numbers() {
        let text = "i,f,s\n+007, 3 , x \n-1,.25,\"a,b\"\n";
        let ingested = ingest(text, ',', true).unwrap();
        assert_eq!(
            ingested.table.to_csv(),
            "i,f,s\n7,3.0, x \n-1,0.25,\"a,b\"\n"
        );
    }

    #[test]
    fn ingest_counts_missing_values() {
        let text = "a,b\n1,\n ,x\n3,y\n";
        let ingested = ingest(text, ',', true).unwrap();
        let missing: Vec<usize> = ingested.schema.columns.iter().map(|c| c.missing).collect();
        assert_eq!(missing, [1, 1]);
        assert_eq!(types(&ingested), [ColumnType::Integer, ColumnType::String]);
        assert_eq!(ingested.table.rows[1].cells[0], "");
    }

    #[test]
    fn ingest_writes_plain_header() {
        let text = "\"fixed acidity\";\"pH\"\n7;3.5\n";
        let ingested = ingest(text, ';', true).unwrap();
        assert_eq!(ingested.table.to_csv(), "fixed acidity,pH\n7,3.5\n");
    }

    #[test]
    fn ingest_without_header() {
        let ingested = ingest("1,x\n2,y\n", ',', false).unwrap();
        assert_eq!(ingested.table.columns, ["column_1", "column_2"]);
        assert_eq!(ingested.schema.row_count, 2);
    }

    #[test]
    fn ingest_rejects_wrong_field_count() {
        let error = ingest("a,b\n1,2\n3,4,5\n", ',', true).unwrap_err();
        assert_eq!(error.line, 3);
        let Error::InvalidInput(message) = error.in_input("source") else {
            panic!("expected InvalidInput");
        };
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("expected 2 fields"), "{message}");
        assert!(message.contains("found 3"), "{message}");
    }

    #[test]
    fn ingest_rejects_unterminated_quote() {
        let error = ingest("a,b\n1,2\n3,\"4\n5,6\n", ',', true).unwrap_err();
        let Error::InvalidInput(message) = error.in_input("source") else {
            panic!("expected InvalidInput");
        };
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("unterminated quoted field"), "{message}");
    }

    #[test]
    fn schema_json_shape() {
        let ingested = ingest("x,y\n1,a\n", ',', true).unwrap();
        let json = serde_json::to_value(&ingested.schema).unwrap();
        let expected = serde_json::json!({
            "columns": [
                {"name": "x", "type": "integer", "missing": 0},
                {"name": "y", "type": "string", "missing": 0},
            ],
            "row_count": 1,
        });
        assert_eq!(json, expected);
    }

    #[test]
    fn delimiter_param_validation() {
        assert_eq!(parse_delimiter(",").unwrap(), ',');
        assert_eq!(parse_delimiter("\t").unwrap(), '\t');
        for invalid in ["", ";;", "\"", "\n"] {
            let result = parse_delimiter(invalid);
            assert!(
                matches!(result, Err(Error::InvalidParams(_))),
                "{invalid:?}: {result:?}"
            );
        }
    }

    #[test]
    fn ingest_wine_quality() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/wine-quality/data/winequality-red.csv"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let ingested = ingest(&text, ',', true).unwrap();

        assert_eq!(ingested.schema.row_count, 1599);
        assert_eq!(ingested.schema.columns.len(), 12);
        assert_eq!(ingested.table.columns[0], "fixed acidity");
        let quality = &ingested.schema.columns[11];
        assert_eq!(quality.name, "quality");
        assert_eq!(quality.column_type, ColumnType::Integer);
        assert_eq!(ingested.schema.columns[10].column_type, ColumnType::Float);
    }
}
