//! A table of named columns with text cells, as the plugins exchange it: CSV with a header row,
//! comma-delimited, an empty cell for a missing value.

use crate::csv::{self, LineError, Record};
use runledger_sdk::Error;

/// One data row and the source line it came from, so later errors can point at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based line of the row in the CSV it was read from, or 0 for rows built in memory.
    pub line: usize,
    /// One cell per column.
    pub cells: Vec<String>,
}

/// Column names and rows of text cells, with one cell per column in every row.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Unique column names, in file order.
    pub columns: Vec<String>,
    /// Data rows, in file order.
    pub rows: Vec<Row>,
}

impl Table {
    /// Parses comma-delimited CSV with a header row.
    pub fn from_csv(text: &str) -> Result<Self, LineError> {
        Self::from_records(csv::parse(text, ',')?, true)
    }

    /// Builds a table from parsed records, checking that every record has as many fields as the
    /// first.
    ///
    /// With `has_header`, the first record names the columns: names are trimmed, an empty name
    /// becomes `column_N` (N counting from 1), and a repeated name is an error. Without it, the
    /// columns are named `column_1`, `column_2` and so on.
    pub fn from_records(records: Vec<Record>, has_header: bool) -> Result<Self, LineError> {
        let Some(first) = records.first() else {
            return Err(LineError {
                line: 1,
                message: "the input has no records; expected at least a header row".into(),
            });
        };
        let width = first.fields.len();
        let first_line = first.line;
        for record in &records {
            check_width(record, width, first_line)?;
        }

        let mut records = records.into_iter();
        let columns = if has_header {
            let header = records
                .next()
                .unwrap_or_else(|| unreachable!("checked non-empty"));
            header_names(header)?
        } else {
            (1..=width).map(|index| format!("column_{index}")).collect()
        };
        let rows = records
            .map(|record| Row {
                line: record.line,
                cells: record.fields,
            })
            .collect();
        Ok(Self { columns, rows })
    }

    /// Writes the table as comma-delimited CSV with a header row and `\n` line endings.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        csv::write_record(&mut out, &self.columns);
        for row in &self.rows {
            csv::write_record(&mut out, &row.cells);
        }
        out
    }

    /// Returns the index of column `name`, if the table has it.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|column| column == name)
    }

    /// Returns the index of column `name`, or an [`Error::InvalidInput`] that lists the columns
    /// of input `input`.
    pub fn require_column(&self, name: &str, input: &str) -> Result<usize, Error> {
        self.column_index(name).ok_or_else(|| {
            Error::InvalidInput(format!(
                "column `{name}` not found in input `{input}`; available columns: {}",
                self.column_list()
            ))
        })
    }

    /// Returns the column names as a comma-separated list of backquoted names, for messages.
    pub fn column_list(&self) -> String {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|name| format!("`{name}`"))
            .collect();
        names.join(", ")
    }

    /// Returns whether the column has at least one value and every non-empty cell is a finite
    /// number.
    pub fn is_numeric(&self, column: usize) -> bool {
        let mut any = false;
        for row in &self.rows {
            let cell = row.cells[column].trim();
            if cell.is_empty() {
                continue;
            }
            if parse_number(cell).is_none() {
                return false;
            }
            any = true;
        }
        any
    }

    /// Parses a column whose cells are numbers or empty, mapping an empty cell to `None`.
    pub fn optional_numbers(&self, column: usize) -> Result<Vec<Option<f64>>, LineError> {
        self.rows
            .iter()
            .map(|row| {
                let cell = row.cells[column].trim();
                if cell.is_empty() {
                    return Ok(None);
                }
                parse_number(cell).map(Some).ok_or_else(|| LineError {
                    line: row.line,
                    message: format!(
                        "column `{}` value `{cell}` is not a finite number",
                        self.columns[column]
                    ),
                })
            })
            .collect()
    }

    /// Parses a column whose every cell must be a number.
    pub fn numbers(&self, column: usize) -> Result<Vec<f64>, LineError> {
        let values = self.optional_numbers(column)?;
        values
            .into_iter()
            .zip(&self.rows)
            .map(|(value, row)| {
                value.ok_or_else(|| LineError {
                    line: row.line,
                    message: format!(
                        "column `{}` is empty; drop or fill in rows with missing values upstream",
                        self.columns[column]
                    ),
                })
            })
            .collect()
    }
}

/// Parses a cell as a finite number, ignoring surrounding whitespace.
///
/// Accepts what Rust's `f64::from_str` accepts (`7`, `-0.5`, `1e-3`, `.5`) except `inf`,
/// `NaN` and values that overflow to infinity, which are not data a model can use.
pub fn parse_number(cell: &str) -> Option<f64> {
    cell.trim()
        .parse::<f64>()
        .ok()
        .filter(|value| value.is_finite())
}

fn check_width(record: &Record, width: usize, first_line: usize) -> Result<(), LineError> {
    let found = record.fields.len();
    if found == width {
        return Ok(());
    }
    Err(LineError {
        line: record.line,
        message: format!(
            "expected {width} fields as on line {first_line}, found {found}; check for a missing \
             or extra delimiter, or quote a value that contains one"
        ),
    })
}

fn header_names(header: Record) -> Result<Vec<String>, LineError> {
    let mut names: Vec<String> = Vec::with_capacity(header.fields.len());
    for (index, field) in header.fields.into_iter().enumerate() {
        let trimmed = field.trim();
        let name = if trimmed.is_empty() {
            format!("column_{}", index + 1)
        } else {
            trimmed.to_owned()
        };
        if let Some(earlier) = names.iter().position(|existing| *existing == name) {
            return Err(LineError {
                line: header.line,
                message: format!(
                    "column name `{name}` appears twice (columns {} and {}); rename one",
                    earlier + 1,
                    index + 1
                ),
            });
        }
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_csv_reads_header_and_rows() {
        let table = Table::from_csv("\"x\",y\n1,a\n2,b\n").unwrap();
        assert_eq!(table.columns, ["x", "y"]);
        assert_eq!(table.rows.len(), 2);
        assert_eq!(table.rows[1].cells, ["2", "b"]);
        assert_eq!(table.rows[1].line, 3);
    }

    #[test]
    fn from_csv_rejects_short_row() {
        let error = Table::from_csv("a,b,c\n1,2,3\n4,5\n").unwrap_err();
        assert_eq!(error.line, 3);
        assert!(error.message.contains("expected 3 fields"), "{error}");
        assert!(error.message.contains("found 2"), "{error}");
    }

    #[test]
    fn from_csv_rejects_empty_input() {
        let error = Table::from_csv("").unwrap_err();
        assert!(error.message.contains("no records"), "{error}");
    }

    #[test]
    fn from_csv_rejects_duplicate_names() {
        let error = Table::from_csv("a, b,b\n1,2,3\n").unwrap_err();
        assert!(error.message.contains("`b` appears twice"), "{error}");
    }

    #[test]
    fn header_fills_empty_names() {
        let table = Table::from_csv(",x\n1,2\n").unwrap();
        assert_eq!(table.columns, ["column_1", "x"]);
    }

    #[test]
    fn records_without_header_get_names() {
        let records = csv::parse("1,2\n3,4\n", ',').unwrap();
        let table = Table::from_records(records, false).unwrap();
        assert_eq!(table.columns, ["column_1", "column_2"]);
        assert_eq!(table.rows.len(), 2);
    }

    #[test]
    fn to_csv_round_trips() {
        let text = "name,\"a,b\"\n\"x \"\"y\"\"\",1\n,2\n";
        let table = Table::from_csv(text).unwrap();
        assert_eq!(table.to_csv(), text);
    }

    #[test]
    fn require_column_lists_available() {
        let table = Table::from_csv("a,b\n1,2\n").unwrap();
        let Err(Error::InvalidInput(message)) = table.require_column("c", "train") else {
            panic!("expected InvalidInput");
        };
        assert!(
            message.contains("`c` not found in input `train`"),
            "{message}"
        );
        assert!(message.contains("`a`, `b`"), "{message}");
    }

    #[test]
    fn numeric_detection() {
        let table = Table::from_csv("n,s,e,m\n1, 2.5 ,,1\n-3,x,,\n").unwrap();
        assert!(table.is_numeric(0));
        assert!(!table.is_numeric(1));
        assert!(!table.is_numeric(2));
        assert!(table.is_numeric(3));
    }

    #[test]
    fn parse_number_rejects_non_finite() {
        assert_eq!(parse_number(" 1e-3 "), Some(0.001));
        assert_eq!(parse_number("NaN"), None);
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_number("1e400"), None);
    }

    #[test]
    fn numbers_report_line_of_bad_cell() {
        let table = Table::from_csv("v\n1\n\n2\nabc\n").unwrap();
        let error = table.numbers(0).unwrap_err();
        assert_eq!(error.line, 5);
        assert!(error.message.contains("`abc`"), "{error}");
    }

    #[test]
    fn numbers_reject_missing_value() {
        let table = Table::from_csv("v,w\n1,a\n,b\n").unwrap();
        let error = table.numbers(0).unwrap_err();
        assert_eq!(error.line, 3);
        assert!(error.message.contains("empty"), "{error}");
        assert_eq!(table.optional_numbers(0).unwrap(), [Some(1.0), None]);
    }
}
