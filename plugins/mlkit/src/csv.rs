//! RFC 4180 CSV. Records end at a line break (LF, CRLF or a lone CR), and fields are separated
//! by a one-character delimiter. A field that contains the delimiter, a double quote or a line
//! break is enclosed in double quotes, with each inner quote doubled.
//!
//! The reader is lenient in two ways common CSV files need: it skips blank lines, and it keeps a
//! double quote that appears inside an unquoted field as a literal character.

use runledger_sdk::Error;
use std::fmt;

/// One record and the 1-based source line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Line of the record's first character. A quoted field may carry the record over several
    /// lines.
    pub line: usize,
    /// The fields, unquoted.
    pub fields: Vec<String>,
}

/// A problem with the content of a CSV input, located by its 1-based source line.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    /// Line of the source the problem is on.
    pub line: usize,
    /// Description of the problem and of the fix.
    pub message: String,
}

impl LineError {
    /// Converts the error into an [`Error::InvalidInput`] that names the input artifact.
    pub fn in_input(&self, input: &str) -> Error {
        Error::InvalidInput(format!(
            "line {} of input `{input}`: {}",
            self.line, self.message
        ))
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses CSV text into records, keeping each record's source line.
///
/// Fails on a quoted field that is never closed (reporting the line its quote opened on) and on
/// characters between a closing quote and the next delimiter. Records may have different field
/// counts: [`crate::Table::from_records`] checks that.
pub fn parse(text: &str, delimiter: char) -> Result<Vec<Record>, LineError> {
    let mut parser = Parser::new(delimiter);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        parser.push(c, chars.peek().copied())?;
    }
    parser.finish()
}

/// Appends one record to `out`, quoting the fields that need it, and ends it with `\n`.
pub fn write_record<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    // A record made of one empty field would otherwise be a blank line, which readers skip.
    if let [only] = fields
        && only.as_ref().is_empty()
    {
        out.push_str("\"\"\n");
        return;
    }
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_field(out, field.as_ref());
    }
    out.push('\n');
}

fn write_field(out: &mut String, field: &str) {
    if !field.contains([',', '"', '\n', '\r']) {
        out.push_str(field);
        return;
    }
    out.push('"');
    out.push_str(&field.replace('"', "\"\""));
    out.push('"');
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing of the current field read yet.
    FieldStart,
    /// Inside a field that did not start with a quote.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just after a quote inside a quoted field: either the first of a doubled quote or the end.
    QuoteInQuoted,
}

struct Parser {
    delimiter: char,
    records: Vec<Record>,
    fields: Vec<String>,
    field: String,
    state: State,
    line: usize,
    record_line: usize,
    quote_line: usize,
}

impl Parser {
    fn new(delimiter: char) -> Self {
        Self {
            delimiter,
            records: Vec::new(),
            fields: Vec::new(),
            field: String::new(),
            state: State::FieldStart,
            line: 1,
            record_line: 1,
            quote_line: 1,
        }
    }

    fn push(&mut self, c: char, next: Option<char>) -> Result<(), LineError> {
        // The `\n` of a CRLF pair ends the line, so the `\r` only matters as data in quotes.
        if c == '\r' && next == Some('\n') {
            if self.state == State::Quoted {
                self.field.push(c);
            }
            return Ok(());
        }

        let line_break = c == '\n' || c == '\r';
        match self.state {
            State::Quoted if c == '"' => self.state = State::QuoteInQuoted,
            State::Quoted => self.field.push(c),
            State::QuoteInQuoted if c == '"' => {
                self.field.push('"');
                self.state = State::Quoted;
            }
            State::FieldStart if c == '"' => {
                self.state = State::Quoted;
                self.quote_line = self.line;
            }
            _ if c == self.delimiter => self.end_field(),
            _ if line_break => self.end_record(),
            State::QuoteInQuoted => return Err(self.after_quote_error(c)),
            State::FieldStart | State::Unquoted => {
                self.field.push(c);
                self.state = State::Unquoted;
            }
        }

        if line_break {
            self.line += 1;
        }
        Ok(())
    }

    fn after_quote_error(&self, c: char) -> LineError {
        LineError {
            line: self.line,
            message: format!(
                "unexpected character `{c}` after the closing quote of field {}; inside a \
                 quoted field write a double quote as two (\"\")",
                self.fields.len() + 1
            ),
        }
    }

    fn end_field(&mut self) {
        self.fields.push(std::mem::take(&mut self.field));
        self.state = State::FieldStart;
    }

    fn end_record(&mut self) {
        let blank_line = self.state == State::FieldStart && self.fields.is_empty();
        if !blank_line {
            self.end_field();
            self.records.push(Record {
                line: self.record_line,
                fields: std::mem::take(&mut self.fields),
            });
        }
        // The caller counts the line break after this call.
        self.record_line = self.line + 1;
    }

    fn finish(mut self) -> Result<Vec<Record>, LineError> {
        if self.state == State::Quoted {
            return Err(LineError {
                line: self.quote_line,
                message: "unterminated quoted field: the double quote that opens it on this \
                          line is never closed"
                    .into(),
            });
        }
        self.end_record();
        Ok(self.records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<Vec<String>> {
        parse(text, ',')
            .unwrap()
            .into_iter()
            .map(|record| record.fields)
            .collect()
    }

    #[test]
    fn parse_plain_records() {
        assert_eq!(fields("a,b\n1,2\n"), [["a", "b"], ["1", "2"]]);
    }

    #[test]
    fn parse_without_trailing_newline() {
        assert_eq!(fields("a,b\n1,2"), [["a", "b"], ["1", "2"]]);
    }

    #[test]
    fn parse_crlf_and_lone_cr() {
        assert_eq!(
            fields("a,b\r\n1,2\r3,4\r\n"),
            [["a", "b"], ["1", "2"], ["3", "4"]]
        );
    }

    #[test]
    fn parse_quoted_fields() {
        let text = "\"name, full\",\"say \"\"hi\"\"\"\n\"x\ny\",\"\"\n";
        assert_eq!(fields(text), [["name, full", "say \"hi\""], ["x\ny", ""]]);
    }

    #[test]
    fn parse_keeps_empty_fields() {
        assert_eq!(fields("a,,c\n,,\n"), [["a", "", "c"], ["", "", ""]]);
    }

    #[test]
    fn parse_skips_blank_lines() {
        assert_eq!(fields("a\n\n1\n\r\n2\n"), [["a"], ["1"], ["2"]]);
    }

    #[test]
    fn parse_keeps_quote_inside_unquoted_field() {
        assert_eq!(fields("5\"6,x\n"), [["5\"6", "x"]]);
    }

    #[test]
    fn parse_other_delimiter() {
        let records = parse("a;b\n\"1;5\";2\n", ';').unwrap();
        assert_eq!(records[1].fields, ["1;5", "2"]);
    }

    #[test]
    fn parse_tracks_record_lines() {
        let records = parse("h\n\"multi\nline\"\n\nlast\n", ',').unwrap();
        let lines: Vec<usize> = records.iter().map(|record| record.line).collect();
        assert_eq!(lines, [1, 2, 5]);
    }

    #[test]
    fn parse_rejects_unterminated_quote() {
        let error = parse("a,b\n1,2\n3,\"oops\n4,5\n", ',').unwrap_err();
        assert_eq!(error.line, 3);
        assert!(error.message.contains("unterminated"), "{error}");
    }

    #[test]
    fn parse_rejects_text_after_closing_quote() {
        let error = parse("a,b\n\"x\"y,2\n", ',').unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.contains("`y`"), "{error}");
    }

    #[test]
    fn line_error_names_input() {
        let error = LineError {
            line: 4,
            message: "bad".into(),
        };
        let Error::InvalidInput(message) = error.in_input("source") else {
            panic!("expected InvalidInput");
        };
        assert_eq!(message, "line 4 of input `source`: bad");
    }

    #[test]
    fn write_quotes_only_when_needed() {
        let mut out = String::new();
        write_record(&mut out, &["plain", "a,b", "say \"hi\"", "two\nlines", ""]);
        assert_eq!(out, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\n");
    }

    #[test]
    fn write_lone_empty_field_quoted() {
        let mut out = String::new();
        write_record(&mut out, &[""]);
        assert_eq!(out, "\"\"\n");
    }

    #[test]
    fn write_then_parse_round_trips() {
        let original = vec![
            vec!["a,1".to_owned(), "\"q\"".to_owned(), "x\r\ny".to_owned()],
            vec![String::new(), "plain".to_owned(), " padded ".to_owned()],
        ];
        let mut text = String::new();
        for record in &original {
            write_record(&mut text, record);
        }
        assert_eq!(fields(&text), original);
    }
}
