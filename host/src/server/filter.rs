//! The filter language and `order_by` lists of run listings, parsed into the store's typed
//! search.
//!
//! ```text
//! metrics.rmse < 0.7 and params.alpha = '0.1' and tags.team IN ('a', 'b')
//! status = 'succeeded' AND attributes.created_at >= 1733300000000
//! metrics.`val loss` <= 0.25 and tags."mlflow.runName" LIKE 'wine-%'
//! ```
//!
//! A filter is comparisons joined by `and` (any case). A term is `metrics.KEY` (the latest value,
//! compared as a number with `= != < <= > >=`), `params.KEY` or `tags.KEY` (compared as text with
//! `= != LIKE ILIKE IN`), or a run attribute, with or without the `attributes.` prefix. Keys
//! with spaces or other punctuation go in backticks or double quotes. Text values go in single
//! quotes, with `''` for a quote inside; double quotes work too in value position.
//!
//! An `order_by` list is comma-separated terms, each optionally followed by `ASC` or `DESC`.

use crate::store::{
    CompareOp, Comparison, RunSource, RunStatus, SortKey, SortTerm, TextAttribute, TextMatch,
    TimeAttribute,
};

/// Maximum number of comparisons in one filter. SQLite parses `a AND b AND ...` into a tree
/// whose depth grows with each term and rejects trees deeper than 1000
/// (`SQLITE_MAX_EXPR_DEPTH`).
pub const MAX_COMPARISONS: usize = 100;

/// Maximum number of values in one `IN` list. Each value binds up to two parameters, and
/// SQLite accepts at most 32,766 per statement.
pub const MAX_IN_VALUES: usize = 1000;

/// Maximum number of keys in one `order_by`. Each metric, param or tag key joins one table,
/// and SQLite joins at most 64 tables in one query.
pub const MAX_SORT_KEYS: usize = 16;

/// A filter or `order_by` text that does not parse, with the column (1-based, in characters)
/// where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FilterError {
    /// Column of the offending token, counting characters from 1.
    pub column: usize,
    /// Description of the problem and how to write the text instead, naming the column.
    pub message: String,
}

/// Parses a filter into the comparisons that must all hold. Blank text means no filter.
pub fn parse_filter(text: &str) -> Result<Vec<Comparison>, FilterError> {
    let mut parser = Parser::new(text);
    let mut comparisons = Vec::new();
    parser.skip_space();
    if parser.at_end() {
        return Ok(comparisons);
    }
    loop {
        if comparisons.len() == MAX_COMPARISONS {
            let message = format!("a filter takes at most {MAX_COMPARISONS} comparisons");
            return Err(parser.error_here(&message, "split the listing into several requests"));
        }
        comparisons.push(parser.comparison()?);
        parser.skip_space();
        if parser.at_end() {
            return Ok(comparisons);
        }
        parser.expect_and()?;
    }
}

/// Parses an `order_by` list. Blank text means the default order.
pub fn parse_order_by(text: &str) -> Result<Vec<SortKey>, FilterError> {
    let mut parser = Parser::new(text);
    let mut keys = Vec::new();
    parser.skip_space();
    if parser.at_end() {
        return Ok(keys);
    }
    loop {
        if keys.len() == MAX_SORT_KEYS {
            let message = format!("order_by takes at most {MAX_SORT_KEYS} keys");
            return Err(parser.error_here(&message, ""));
        }
        keys.push(parser.sort_key()?);
        parser.skip_space();
        if parser.at_end() {
            return Ok(keys);
        }
        if parser.peek() != Some(',') {
            let message = format!(
                "expected `,`, `ASC`, `DESC` or the end after `{}`",
                parser.last_term
            );
            return Err(parser.error_here(&message, ""));
        }
        parser.position += 1;
        parser.skip_space();
    }
}

/// The value a term of the language refers to.
#[derive(Debug, Clone, PartialEq)]
enum Term {
    Metric(String),
    Param(String),
    Tag(String),
    Text(TextAttribute),
    Time(TimeAttribute),
}

/// A comparison operator as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Compare(CompareOp),
    Like,
    ILike,
    In,
}

/// A literal as written.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Number(f64),
    Text(String),
    List(Vec<Literal>),
}

struct Parser {
    chars: Vec<char>,
    /// Index of the next character.
    position: usize,
    /// Source text of the last term read, for messages.
    last_term: String,
}

impl Parser {
    fn new(text: &str) -> Self {
        Self {
            chars: text.chars().collect(),
            position: 0,
            last_term: String::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    fn at_end(&self) -> bool {
        self.position >= self.chars.len()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.position += 1;
        }
    }

    /// Builds an error about the token at `position`: the message, the column, the token
    /// found there, then the advice, if any.
    fn error_at(&self, position: usize, message: &str, advice: &str) -> FilterError {
        let column = position + 1;
        let found = self.describe_token_at(position);
        let mut message = format!("{message} at column {column}, found {found}");
        if !advice.is_empty() {
            message.push_str("; ");
            message.push_str(advice);
        }
        FilterError { column, message }
    }

    fn error_here(&self, message: &str, advice: &str) -> FilterError {
        self.error_at(self.position, message, advice)
    }

    /// Describes the token at `position` for a message: the word, number or character there.
    fn describe_token_at(&self, position: usize) -> String {
        let Some(&first) = self.chars.get(position) else {
            return "the end of the text".to_owned();
        };
        if matches!(first, '\'' | '"' | '`') {
            let rest = &self.chars[position + 1..];
            let inner: String = rest.iter().take_while(|c| **c != first).take(40).collect();
            return format!("{first}{inner}{first}");
        }
        if !is_word_char(first) {
            return format!("`{first}`");
        }
        let word: String = self.chars[position..]
            .iter()
            .take_while(|c| is_word_char(**c) || **c == '.')
            .collect();
        format!("`{word}`")
    }

    /// Reads `[A-Za-z0-9_]*`.
    fn word(&mut self) -> String {
        let start = self.position;
        while self.peek().is_some_and(is_word_char) {
            self.position += 1;
        }
        self.chars[start..self.position].iter().collect()
    }

    fn comparison(&mut self) -> Result<Comparison, FilterError> {
        let term = self.term()?;
        self.skip_space();
        let operator_at = self.position;
        let operator = self.operator()?;
        self.skip_space();
        let value_at = self.position;
        let literal = self.literal(operator)?;
        let place = Place {
            term: self.last_term.clone(),
            operator_at,
            value_at,
        };
        self.build(term, operator, literal, &place)
    }

    fn sort_key(&mut self) -> Result<SortKey, FilterError> {
        let term = match self.term()? {
            Term::Metric(key) => SortTerm::Metric(key),
            Term::Param(key) => SortTerm::Param(key),
            Term::Tag(key) => SortTerm::Tag(key),
            Term::Text(attribute) => SortTerm::Text(attribute),
            Term::Time(attribute) => SortTerm::Time(attribute),
        };
        self.skip_space();
        let direction_at = self.position;
        let direction = self.word();
        let descending = match direction.to_ascii_lowercase().as_str() {
            "" | "asc" => false,
            "desc" => true,
            _ => {
                let message = format!(
                    "expected `ASC`, `DESC`, `,` or the end after `{}`",
                    self.last_term
                );
                return Err(self.error_at(direction_at, &message, ""));
            }
        };
        Ok(SortKey { term, descending })
    }

    /// Reads `PREFIX.KEY` or a bare attribute name.
    fn term(&mut self) -> Result<Term, FilterError> {
        let start = self.position;
        let word = self.word();
        if word.is_empty() {
            return Err(self.error_here(
                "expected a metric, param, tag or attribute name",
                "write a term such as metrics.rmse, params.alpha, tags.team or status",
            ));
        }
        let term = if self.peek() == Some('.') {
            self.position += 1;
            self.prefixed_term(&word, start)?
        } else {
            attribute(&word).ok_or_else(|| {
                let advice = format!(
                    "write metrics.{word}, params.{word} or tags.{word}, or use one of the \
                     attributes {}",
                    attribute_names()
                );
                self.error_at(start, &format!("unknown attribute `{word}`"), &advice)
            })?
        };
        self.last_term = self.chars[start..self.position].iter().collect();
        Ok(term)
    }

    fn prefixed_term(&mut self, prefix: &str, start: usize) -> Result<Term, FilterError> {
        let key_at = self.position;
        let key = self.key(prefix)?;
        match prefix.to_ascii_lowercase().as_str() {
            "metrics" | "metric" => Ok(Term::Metric(key)),
            "params" | "param" => Ok(Term::Param(key)),
            "tags" | "tag" => Ok(Term::Tag(key)),
            "attributes" | "attribute" | "attr" => attribute(&key).ok_or_else(|| {
                let advice = format!("the attributes are {}", attribute_names());
                self.error_at(key_at, &format!("unknown attribute `{key}`"), &advice)
            }),
            _ => Err(self.error_at(
                start,
                &format!("unknown prefix `{prefix}.`"),
                "use `metrics.`, `params.`, `tags.` or `attributes.`",
            )),
        }
    }

    /// Reads a key: quoted in backticks or double quotes, where a doubled quote stands for
    /// itself, or unquoted up to a space, an operator, a quote, a comma or a parenthesis.
    fn key(&mut self, prefix: &str) -> Result<String, FilterError> {
        let start = self.position;
        let key = match self.peek() {
            Some(quote @ ('`' | '"')) => self.quoted(quote, "key")?,
            _ => {
                while self.peek().is_some_and(is_key_char) {
                    self.position += 1;
                }
                self.chars[start..self.position].iter().collect()
            }
        };
        if key.is_empty() {
            let advice = format!(
                "quote keys with spaces or punctuation in backticks, as in {prefix}.`val loss`"
            );
            return Err(self.error_at(
                start,
                &format!("expected a key after `{prefix}.`"),
                &advice,
            ));
        }
        Ok(key)
    }

    /// Reads text between `quote` characters, where a doubled quote stands for itself.
    fn quoted(&mut self, quote: char, what: &str) -> Result<String, FilterError> {
        let start = self.position;
        self.position += 1;
        let mut text = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(FilterError {
                        column: start + 1,
                        message: format!(
                            "the quoted {what} that starts at column {} is not closed; end it \
                             with {quote}",
                            start + 1
                        ),
                    });
                }
                Some('\0') => {
                    let message = format!("a quoted {what} cannot contain a NUL character");
                    return Err(self.error_here(&message, ""));
                }
                Some(c) if c == quote => {
                    self.position += 1;
                    if self.peek() != Some(quote) {
                        return Ok(text);
                    }
                    text.push(quote);
                    self.position += 1;
                }
                Some(c) => {
                    text.push(c);
                    self.position += 1;
                }
            }
        }
    }

    fn operator(&mut self) -> Result<Operator, FilterError> {
        const SYMBOLS: [(&str, CompareOp); 8] = [
            ("<=", CompareOp::Le),
            (">=", CompareOp::Ge),
            ("!=", CompareOp::Ne),
            ("<>", CompareOp::Ne),
            ("==", CompareOp::Eq),
            ("=", CompareOp::Eq),
            ("<", CompareOp::Lt),
            (">", CompareOp::Gt),
        ];
        for (symbol, op) in SYMBOLS {
            if self.starts_with(symbol) {
                self.position += symbol.chars().count();
                return Ok(Operator::Compare(op));
            }
        }
        let start = self.position;
        let word = self.word();
        match word.to_ascii_lowercase().as_str() {
            "like" => Ok(Operator::Like),
            "ilike" => Ok(Operator::ILike),
            "in" => Ok(Operator::In),
            _ => Err(self.error_at(
                start,
                &format!("expected a comparison operator after `{}`", self.last_term),
                "use =, !=, <, <=, >, >=, LIKE, ILIKE or IN",
            )),
        }
    }

    fn starts_with(&self, symbol: &str) -> bool {
        let symbol: Vec<char> = symbol.chars().collect();
        self.chars
            .get(self.position..)
            .is_some_and(|rest| rest.starts_with(&symbol))
    }

    /// Reads the value of a comparison: a parenthesised list after `IN`, else one literal.
    fn literal(&mut self, operator: Operator) -> Result<Literal, FilterError> {
        if operator != Operator::In {
            return self.scalar();
        }
        if self.peek() != Some('(') {
            return Err(self.error_here(
                &format!(
                    "expected `(` to open the list after `{} IN`",
                    self.last_term
                ),
                "write IN ('a', 'b')",
            ));
        }
        self.position += 1;
        let mut items = Vec::new();
        loop {
            self.skip_space();
            if self.peek() == Some(')') && items.is_empty() {
                return Err(self.error_here("an IN list needs at least one value", ""));
            }
            if items.len() == MAX_IN_VALUES {
                let message = format!("an IN list takes at most {MAX_IN_VALUES} values");
                return Err(self.error_here(&message, "split the listing into several requests"));
            }
            items.push(self.scalar()?);
            self.skip_space();
            match self.peek() {
                Some(',') => self.position += 1,
                Some(')') => {
                    self.position += 1;
                    return Ok(Literal::List(items));
                }
                _ => return Err(self.error_here("expected `,` or `)` in the IN list", "")),
            }
        }
    }

    /// Reads a number or a quoted text.
    fn scalar(&mut self) -> Result<Literal, FilterError> {
        match self.peek() {
            Some(quote @ ('\'' | '"')) => self.quoted(quote, "value").map(Literal::Text),
            Some(c) if c.is_ascii_digit() || matches!(c, '-' | '+' | '.') => self.number(),
            _ => Err(self.error_here(
                &format!("expected a value after `{}`", self.last_term),
                "write a number such as 0.7 or a text in single quotes such as 'abc'",
            )),
        }
    }

    fn number(&mut self) -> Result<Literal, FilterError> {
        let start = self.position;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.'))
        {
            self.position += 1;
        }
        let text: String = self.chars[start..self.position].iter().collect();
        match text.parse::<f64>() {
            Ok(number) if number.is_finite() => Ok(Literal::Number(number)),
            _ => Err(self.error_at(
                start,
                "expected a finite number",
                "write a number such as 0.7, -2 or 1e-3",
            )),
        }
    }

    /// Consumes `and` between two comparisons.
    fn expect_and(&mut self) -> Result<(), FilterError> {
        let start = self.position;
        let word = self.word();
        if word.eq_ignore_ascii_case("and") {
            self.skip_space();
            return Ok(());
        }
        let advice = if word.eq_ignore_ascii_case("or") {
            "only `and` joins conditions, so list once per alternative or use IN"
        } else {
            ""
        };
        let message = format!(
            "expected `and` or the end of the filter after the comparison on `{}`",
            self.last_term
        );
        Err(self.error_at(start, &message, advice))
    }
}

/// Positions of the parts of a comparison, for messages.
struct Place {
    term: String,
    operator_at: usize,
    value_at: usize,
}

impl Parser {
    /// Checks that the operator and literal fit the term and builds the comparison.
    fn build(
        &self,
        term: Term,
        operator: Operator,
        literal: Literal,
        place: &Place,
    ) -> Result<Comparison, FilterError> {
        match term {
            Term::Metric(key) => {
                let op = self.numeric_operator(operator, place)?;
                let value = self.number_value(literal, place)?;
                Ok(Comparison::Metric { key, op, value })
            }
            Term::Time(attribute) => {
                let op = self.numeric_operator(operator, place)?;
                let value = self.time_value(literal, place)?;
                Ok(Comparison::Time {
                    attribute,
                    op,
                    value,
                })
            }
            Term::Param(key) => Ok(Comparison::Param {
                key,
                test: self.text_match(operator, literal, place)?,
            }),
            Term::Tag(key) => Ok(Comparison::Tag {
                key,
                test: self.text_match(operator, literal, place)?,
            }),
            Term::Text(attribute) => {
                let test = self.text_match(operator, literal, place)?;
                self.check_enum_values(attribute, &test, place)?;
                Ok(Comparison::Text { attribute, test })
            }
        }
    }

    fn numeric_operator(
        &self,
        operator: Operator,
        place: &Place,
    ) -> Result<CompareOp, FilterError> {
        match operator {
            Operator::Compare(op) => Ok(op),
            _ => Err(self.error_at(
                place.operator_at,
                &format!(
                    "`{}` is a number and compares with =, !=, <, <=, > or >=",
                    place.term
                ),
                "LIKE, ILIKE and IN apply to params, tags and text attributes",
            )),
        }
    }

    fn number_value(&self, literal: Literal, place: &Place) -> Result<f64, FilterError> {
        match literal {
            Literal::Number(number) => Ok(number),
            _ => Err(self.error_at(
                place.value_at,
                &format!("`{}` compares numbers", place.term),
                "write the value without quotes, as in 0.7",
            )),
        }
    }

    fn time_value(&self, literal: Literal, place: &Place) -> Result<i64, FilterError> {
        let number = self.number_value(literal, place)?;
        let in_range = number.fract() == 0.0 && number.abs() < 9.0e15;
        if !in_range {
            return Err(self.error_at(
                place.value_at,
                &format!(
                    "`{}` is a time in whole milliseconds since the Unix epoch",
                    place.term
                ),
                "write an integer such as 1733300000000",
            ));
        }
        Ok(number as i64)
    }

    fn text_match(
        &self,
        operator: Operator,
        literal: Literal,
        place: &Place,
    ) -> Result<TextMatch, FilterError> {
        if let Literal::List(items) = literal {
            let texts = items
                .into_iter()
                .map(|item| self.text_value(item, place))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(TextMatch::In(texts));
        }
        let text = self.text_value(literal, place)?;
        match operator {
            Operator::Compare(CompareOp::Eq) => Ok(TextMatch::Eq(text)),
            Operator::Compare(CompareOp::Ne) => Ok(TextMatch::Ne(text)),
            Operator::Like => Ok(TextMatch::Like(text)),
            Operator::ILike => Ok(TextMatch::ILike(text)),
            Operator::In | Operator::Compare(_) => Err(self.error_at(
                place.operator_at,
                &format!(
                    "`{}` is text and compares with =, !=, LIKE, ILIKE or IN",
                    place.term
                ),
                "only metrics and times compare with < and >",
            )),
        }
    }

    fn text_value(&self, literal: Literal, place: &Place) -> Result<String, FilterError> {
        match literal {
            Literal::Text(text) => Ok(text),
            Literal::Number(number) => Err(self.error_at(
                place.value_at,
                &format!("`{}` compares text", place.term),
                &format!("quote the value, as in '{number}'"),
            )),
            Literal::List(_) => {
                Err(self.error_at(place.value_at, "a list is only allowed after IN", ""))
            }
        }
    }

    /// Rejects a status or source that does not exist, which would otherwise match nothing.
    fn check_enum_values(
        &self,
        attribute: TextAttribute,
        test: &TextMatch,
        place: &Place,
    ) -> Result<(), FilterError> {
        let values: Vec<&String> = match test {
            TextMatch::Eq(text) | TextMatch::Ne(text) => vec![text],
            TextMatch::In(texts) => texts.iter().collect(),
            TextMatch::Like(_) | TextMatch::ILike(_) => Vec::new(),
        };
        for value in values {
            let problem = match attribute {
                TextAttribute::Status => value.parse::<RunStatus>().err(),
                TextAttribute::Source => value.parse::<RunSource>().err(),
                _ => None,
            };
            if let Some(problem) = problem {
                let message = format!("invalid {} `{}`", problem.kind, problem.value);
                let advice = format!("expected one of {}", problem.expected);
                return Err(self.error_at(place.value_at, &message, &advice));
            }
        }
        Ok(())
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_key_char(c: char) -> bool {
    !c.is_whitespace()
        && !matches!(
            c,
            '=' | '!' | '<' | '>' | '(' | ')' | ',' | '\'' | '"' | '`' | '\0'
        )
}

/// Looks up an attribute by its name or an alias.
fn attribute(name: &str) -> Option<Term> {
    let name = name.to_ascii_lowercase();
    let name = match name.as_str() {
        "id" => "run_id",
        "user_name" => "user",
        other => other,
    };
    if let Some(text) = TextAttribute::ALL.into_iter().find(|a| a.name() == name) {
        return Some(Term::Text(text));
    }
    TimeAttribute::ALL
        .into_iter()
        .find(|a| a.name() == name)
        .map(Term::Time)
}

fn attribute_names() -> String {
    let text = TextAttribute::ALL.iter().map(|a| a.name());
    let time = TimeAttribute::ALL.iter().map(|a| a.name());
    text.chain(time).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(text: &str) -> Comparison {
        let mut comparisons = parse_filter(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(comparisons.len(), 1, "{text}");
        comparisons.remove(0)
    }

    fn error(text: &str) -> FilterError {
        parse_filter(text).expect_err(text)
    }

    #[test]
    fn blank_filter_has_no_conditions() {
        assert_eq!(parse_filter(""), Ok(Vec::new()));
        assert_eq!(parse_filter("   "), Ok(Vec::new()));
    }

    #[test]
    fn metric_comparisons_with_every_operator() {
        let cases = [
            ("=", CompareOp::Eq),
            ("==", CompareOp::Eq),
            ("!=", CompareOp::Ne),
            ("<>", CompareOp::Ne),
            ("<", CompareOp::Lt),
            ("<=", CompareOp::Le),
            (">", CompareOp::Gt),
            (">=", CompareOp::Ge),
        ];
        for (symbol, op) in cases {
            let parsed = parse_one(&format!("metrics.rmse {symbol} 0.7"));

            assert_eq!(
                parsed,
                Comparison::Metric {
                    key: "rmse".into(),
                    op,
                    value: 0.7
                },
                "operator {symbol}"
            );
        }
    }

    #[test]
    fn operators_need_no_spaces() {
        assert_eq!(
            parse_one("metrics.rmse<=-1.5e-3"),
            Comparison::Metric {
                key: "rmse".into(),
                op: CompareOp::Le,
                value: -1.5e-3
            }
        );
    }

    #[test]
    fn conjunction_of_terms_any_case() {
        let text = "metrics.rmse < 0.7 and params.alpha = '0.1' AND tags.team = 'x' \
                    And status = 'running'";

        let parsed = parse_filter(text).unwrap();

        assert_eq!(
            parsed,
            vec![
                Comparison::Metric {
                    key: "rmse".into(),
                    op: CompareOp::Lt,
                    value: 0.7
                },
                Comparison::Param {
                    key: "alpha".into(),
                    test: TextMatch::Eq("0.1".into())
                },
                Comparison::Tag {
                    key: "team".into(),
                    test: TextMatch::Eq("x".into())
                },
                Comparison::Text {
                    attribute: TextAttribute::Status,
                    test: TextMatch::Eq("running".into())
                },
            ]
        );
    }

    #[test]
    fn text_operators() {
        assert_eq!(
            parse_one("params.model LIKE 'ridge%'"),
            Comparison::Param {
                key: "model".into(),
                test: TextMatch::Like("ridge%".into())
            }
        );
        assert_eq!(
            parse_one("tags.team ilike 'ML'"),
            Comparison::Tag {
                key: "team".into(),
                test: TextMatch::ILike("ML".into())
            }
        );
        assert_eq!(
            parse_one("tags.team != 'ops'"),
            Comparison::Tag {
                key: "team".into(),
                test: TextMatch::Ne("ops".into())
            }
        );
        assert_eq!(
            parse_one("params.alpha IN ('0.1', \"0.2\",'0.3')"),
            Comparison::Param {
                key: "alpha".into(),
                test: TextMatch::In(vec!["0.1".into(), "0.2".into(), "0.3".into()])
            }
        );
    }

    #[test]
    fn quoted_keys_and_escaped_quotes() {
        assert_eq!(
            parse_one("metrics.`val loss` > 1"),
            Comparison::Metric {
                key: "val loss".into(),
                op: CompareOp::Gt,
                value: 1.0
            }
        );
        assert_eq!(
            parse_one("tags.\"mlflow.runName\" = 'it''s'"),
            Comparison::Tag {
                key: "mlflow.runName".into(),
                test: TextMatch::Eq("it's".into())
            }
        );
        assert_eq!(
            parse_one("params.`a``b` = ''"),
            Comparison::Param {
                key: "a`b".into(),
                test: TextMatch::Eq(String::new())
            }
        );
    }

    #[test]
    fn unquoted_keys_keep_dots_and_slashes() {
        assert_eq!(
            parse_one("metrics.train/wall_time_ms >= 10"),
            Comparison::Metric {
                key: "train/wall_time_ms".into(),
                op: CompareOp::Ge,
                value: 10.0
            }
        );
        assert_eq!(
            parse_one("tags.mlflow.user = 'ann'"),
            Comparison::Tag {
                key: "mlflow.user".into(),
                test: TextMatch::Eq("ann".into())
            }
        );
    }

    #[test]
    fn attributes_with_and_without_prefix() {
        let expected = Comparison::Time {
            attribute: TimeAttribute::CreatedAt,
            op: CompareOp::Ge,
            value: 1_733_300_000_000,
        };

        assert_eq!(parse_one("created_at >= 1733300000000"), expected);
        assert_eq!(
            parse_one("attributes.created_at >= 1733300000000"),
            expected
        );
        assert_eq!(
            parse_one("attributes.user = 'ann'"),
            Comparison::Text {
                attribute: TextAttribute::User,
                test: TextMatch::Eq("ann".into())
            }
        );
        assert_eq!(
            parse_one("pipeline IN ('wine-quality')"),
            Comparison::Text {
                attribute: TextAttribute::Pipeline,
                test: TextMatch::In(vec!["wine-quality".into()])
            }
        );
    }

    #[test]
    fn missing_operator_names_term_and_column() {
        let error = error("metrics.rmse 0.7");

        assert_eq!(error.column, 14);
        assert!(
            error.message.starts_with(
                "expected a comparison operator after `metrics.rmse` at column 14, found `0.7`"
            ),
            "{}",
            error.message
        );
    }

    #[test]
    fn errors_name_position_and_token() {
        let cases = [
            ("metrics.rmse < 'low'", 16, "compares numbers"),
            ("params.alpha = 0.1", 16, "quote the value"),
            ("params.alpha < '0.1'", 14, "is text"),
            ("metrics.rmse LIKE 'x'", 14, "is a number"),
            ("rmse < 1", 1, "unknown attribute `rmse`"),
            ("metric.rmse < 1 or metrics.mae < 1", 17, "only `and`"),
            ("metrics.rmse < 1 metrics.mae < 1", 18, "expected `and`"),
            ("foo.bar = 'x'", 1, "unknown prefix `foo.`"),
            ("metrics. < 1", 9, "expected a key"),
            ("tags.team = 'open", 13, "is not closed"),
            ("metrics.`open = 1", 9, "is not closed"),
            ("tags.team IN 'a'", 14, "expected `(`"),
            ("tags.team IN ()", 15, "at least one value"),
            ("tags.team IN ('a' 'b')", 19, "expected `,` or `)`"),
            ("status = 'runing'", 10, "invalid run status `runing`"),
            ("source IN ('cli', 'web')", 11, "invalid run source `web`"),
            ("created_at > 1.5", 14, "whole milliseconds"),
            ("metrics.rmse < 1e999", 16, "finite number"),
            ("metrics.rmse <", 15, "expected a value"),
            ("and", 1, "unknown attribute `and`"),
            (
                "attributes.colour = 'red'",
                12,
                "unknown attribute `colour`",
            ),
            ("tags.team = 'a\0b'", 15, "NUL"),
        ];
        for (text, column, fragment) in cases {
            let error = error(text);

            assert_eq!(error.column, column, "{text}: {}", error.message);
            assert!(
                error.message.contains(fragment),
                "{text}: `{}` lacks `{fragment}`",
                error.message
            );
            assert!(
                error.message.contains(&format!("column {column}")),
                "{text}: {}",
                error.message
            );
        }
    }

    #[test]
    fn limits_are_enforced() {
        let at_limit = vec!["metrics.a > 0"; MAX_COMPARISONS].join(" and ");
        let many = vec!["metrics.a > 0"; MAX_COMPARISONS + 1].join(" and ");
        let values = vec!["'v'"; MAX_IN_VALUES + 1].join(",");
        let keys = vec!["name"; MAX_SORT_KEYS + 1].join(",");

        let accepted = parse_filter(&at_limit).map(|comparisons| comparisons.len());
        let comparisons = parse_filter(&many).expect_err("too many comparisons");
        let list = parse_filter(&format!("tags.t IN ({values})")).expect_err("long IN list");
        let order = parse_order_by(&keys).expect_err("too many sort keys");

        assert_eq!(accepted, Ok(MAX_COMPARISONS));
        assert!(
            comparisons.message.contains("at most 100 comparisons"),
            "{comparisons}"
        );
        assert!(list.message.contains("at most 1000 values"), "{list}");
        assert!(order.message.contains("at most 16 keys"), "{order}");
    }

    #[test]
    fn nul_ends_an_unquoted_key() {
        let error = error("metrics.a\0b < 1");

        assert_eq!(error.column, 10);
        assert!(
            error.message.contains("comparison operator"),
            "{}",
            error.message
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let error = error("tags.équipe = 'é' or x");

        assert_eq!(error.column, 19);
    }

    #[test]
    fn order_by_terms_and_directions() {
        let keys =
            parse_order_by("metrics.rmse, params.alpha DESC, created_at asc, tags.`a,b` desc")
                .unwrap();

        assert_eq!(
            keys,
            vec![
                SortKey {
                    term: SortTerm::Metric("rmse".into()),
                    descending: false
                },
                SortKey {
                    term: SortTerm::Param("alpha".into()),
                    descending: true
                },
                SortKey {
                    term: SortTerm::Time(TimeAttribute::CreatedAt),
                    descending: false
                },
                SortKey {
                    term: SortTerm::Tag("a,b".into()),
                    descending: true
                },
            ]
        );
        assert_eq!(parse_order_by(" "), Ok(Vec::new()));
    }

    #[test]
    fn order_by_errors() {
        let cases = [
            ("metrics.rmse sideways", 14, "expected `ASC`"),
            ("metrics.rmse desc name", 19, "expected `,`"),
            ("colour", 1, "unknown attribute"),
            ("metrics.rmse,", 14, "expected a metric"),
        ];
        for (text, column, fragment) in cases {
            let error = parse_order_by(text).expect_err(text);

            assert_eq!(error.column, column, "{text}: {}", error.message);
            assert!(
                error.message.contains(fragment),
                "{text}: {}",
                error.message
            );
        }
    }
}
