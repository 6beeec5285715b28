//! MLflow's search grammar: `filter` strings of comparisons joined by `AND`, and `order_by`
//! terms.
//!
//! A comparison is `ENTITY.KEY OPERATOR VALUE`. The entity is `metrics`, `params`, `tags`,
//! `attributes` or `datasets`, or a singular or short form of these. A key with spaces or
//! other punctuation is quoted in backticks or double quotes. Values are quoted strings,
//! numbers, or a parenthesized list of strings after `IN` and `NOT IN`; `IS NULL` and
//! `IS NOT NULL` take no value.

use super::error::{MlflowError, MlflowResult};

/// The kind of value a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Entity {
    /// `metrics.KEY`
    Metric,
    /// `params.KEY`
    Param,
    /// `tags.KEY`
    Tag,
    /// `attributes.KEY`, or a key without an entity.
    Attribute,
    /// `datasets.KEY`
    Dataset,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operator {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `LIKE`, case-sensitive with `%` and `_` wildcards.
    Like,
    /// `ILIKE`, `LIKE` ignoring case.
    ILike,
    /// `IN (...)`
    In,
    /// `NOT IN (...)`
    NotIn,
    /// `IS NULL`: the key is absent.
    IsNull,
    /// `IS NOT NULL`: the key is present.
    IsNotNull,
}

/// A value on the right of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Literal {
    /// A number.
    Number(f64),
    /// A quoted string.
    Text(String),
    /// A parenthesized list of strings.
    List(Vec<String>),
    /// No value, after `IS NULL` and `IS NOT NULL`.
    Absent,
}

/// One comparison of a filter.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Clause {
    /// The kind of value compared.
    pub(super) entity: Entity,
    /// Its key.
    pub(super) key: String,
    /// The operator.
    pub(super) operator: Operator,
    /// The value compared with.
    pub(super) value: Literal,
}

/// One `order_by` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SortOrder {
    /// The kind of value ordered by.
    pub(super) entity: Entity,
    /// Its key.
    pub(super) key: String,
    /// Largest first.
    pub(super) descending: bool,
}

/// Parses a filter into its comparisons; an empty filter has none.
pub(super) fn parse_filter(text: &str) -> MlflowResult<Vec<Clause>> {
    let mut parser = Parser::new(text);
    let mut clauses = Vec::new();
    parser.skip_space();
    if parser.at_end() {
        return Ok(clauses);
    }
    loop {
        clauses.push(parser.clause()?);
        parser.skip_space();
        if parser.at_end() {
            return Ok(clauses);
        }
        let word = parser.word();
        if word.eq_ignore_ascii_case("OR") {
            return Err(invalid(
                text,
                "only AND joins comparisons; OR is not supported",
            ));
        }
        if !word.eq_ignore_ascii_case("AND") {
            return Err(invalid(text, &format!("expected AND, found '{word}'")));
        }
    }
}

/// Parses one `order_by` term, such as ``metrics.`val loss` DESC``.
pub(super) fn parse_order_by(text: &str) -> MlflowResult<SortOrder> {
    let mut parser = Parser::new(text);
    let (entity, key) = parser.identifier()?;
    parser.skip_space();
    let word = parser.word();
    let descending = match word.to_ascii_uppercase().as_str() {
        "" | "ASC" => false,
        "DESC" => true,
        _ => {
            return Err(MlflowError::invalid(format!(
                "invalid order_by clause '{text}': end it with ASC or DESC"
            )));
        }
    };
    parser.skip_space();
    if !parser.at_end() {
        return Err(MlflowError::invalid(format!(
            "invalid order_by clause '{text}': give one key and an optional ASC or DESC"
        )));
    }
    Ok(SortOrder {
        entity,
        key,
        descending,
    })
}

/// Tests a text against a clause with `=`, `!=`, `LIKE`, `ILIKE`, `IN` or `NOT IN`.
pub(super) fn text_matches(value: &str, clause: &Clause) -> MlflowResult<bool> {
    let expected = |clause: &Clause| match &clause.value {
        Literal::Text(text) => Ok(text.clone()),
        _ => Err(MlflowError::invalid(format!(
            "the value compared with '{}' must be a quoted string",
            clause.key
        ))),
    };
    match clause.operator {
        Operator::Eq => Ok(value == expected(clause)?),
        Operator::Ne => Ok(value != expected(clause)?),
        Operator::Like => Ok(like(value, &expected(clause)?, false)),
        Operator::ILike => Ok(like(value, &expected(clause)?, true)),
        Operator::In | Operator::NotIn => {
            let Literal::List(items) = &clause.value else {
                return Err(MlflowError::invalid(
                    "IN takes a parenthesized list of strings",
                ));
            };
            let found = items.iter().any(|item| item == value);
            Ok(found == (clause.operator == Operator::In))
        }
        _ => Err(MlflowError::invalid(format!(
            "'{}' is compared as text: use =, !=, LIKE or ILIKE",
            clause.key
        ))),
    }
}

/// Tests a number against a clause with a numeric comparison.
pub(super) fn number_matches(value: f64, clause: &Clause) -> MlflowResult<bool> {
    let Literal::Number(expected) = clause.value else {
        return Err(MlflowError::invalid(format!(
            "the value compared with '{}' must be a number",
            clause.key
        )));
    };
    match clause.operator {
        Operator::Eq => Ok(value == expected),
        Operator::Ne => Ok(value != expected),
        Operator::Lt => Ok(value < expected),
        Operator::Le => Ok(value <= expected),
        Operator::Gt => Ok(value > expected),
        Operator::Ge => Ok(value >= expected),
        _ => Err(MlflowError::invalid(format!(
            "'{}' is compared as a number: use =, !=, <, <=, > or >=",
            clause.key
        ))),
    }
}

/// Matches SQL `LIKE` patterns: `%` is any text and `_` one character.
pub(super) fn like(value: &str, pattern: &str, ignore_case: bool) -> bool {
    let fold = |text: &str| {
        if ignore_case {
            text.to_lowercase().chars().collect::<Vec<_>>()
        } else {
            text.chars().collect()
        }
    };
    like_chars(&fold(value), &fold(pattern))
}

fn like_chars(value: &[char], pattern: &[char]) -> bool {
    match pattern.split_first() {
        None => value.is_empty(),
        Some(('%', rest)) => (0..=value.len()).any(|skip| like_chars(&value[skip..], rest)),
        Some(('_', rest)) => !value.is_empty() && like_chars(&value[1..], rest),
        Some((c, rest)) => value.first() == Some(c) && like_chars(&value[1..], rest),
    }
}

fn invalid(filter: &str, problem: &str) -> MlflowError {
    MlflowError::invalid(format!("invalid filter '{filter}': {problem}"))
}

struct Parser<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, position: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.position..]
    }

    fn at_end(&self) -> bool {
        self.rest().is_empty()
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.position = self.text.len() - trimmed.len();
    }

    /// Reads a run of letters, digits, `_` and `.`.
    fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        self.position += end;
        &rest[..end]
    }

    fn clause(&mut self) -> MlflowResult<Clause> {
        let (entity, key) = self.identifier()?;
        self.skip_space();
        let operator = self.operator()?;
        self.skip_space();
        let value = self.literal(operator)?;
        Ok(Clause {
            entity,
            key,
            operator,
            value,
        })
    }

    /// Reads `ENTITY.KEY`, with the key quoted or bare, or a bare attribute name.
    fn identifier(&mut self) -> MlflowResult<(Entity, String)> {
        self.skip_space();
        let rest = self.rest();
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let prefix = &rest[..end];
        if prefix.is_empty() {
            return Err(invalid(self.text, &format!("expected a key at '{rest}'")));
        }
        self.position += end;
        if !self.rest().starts_with('.') {
            return Ok((Entity::Attribute, prefix.to_owned()));
        }
        self.position += 1;
        let entity = entity_of(prefix).ok_or_else(|| {
            invalid(
                self.text,
                &format!(
                    "unknown entity '{prefix}': use metrics, params, tags, attributes or datasets"
                ),
            )
        })?;
        let key = match self.rest().chars().next() {
            Some(quote @ ('`' | '"')) => self.quoted(quote)?,
            _ => self.bare_key(),
        };
        if key.is_empty() {
            return Err(invalid(self.text, &format!("the {prefix} key is empty")));
        }
        Ok((entity, key))
    }

    /// Reads a key up to a space or an operator character; keys may contain dots.
    fn bare_key(&mut self) -> String {
        let rest = self.rest();
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '=' | '!' | '<' | '>'))
            .unwrap_or(rest.len());
        self.position += end;
        rest[..end].to_owned()
    }

    fn quoted(&mut self, quote: char) -> MlflowResult<String> {
        let rest = &self.rest()[1..];
        let end = rest
            .find(quote)
            .ok_or_else(|| invalid(self.text, &format!("a {quote} quote is not closed")))?;
        self.position += end + 2;
        Ok(rest[..end].to_owned())
    }

    fn operator(&mut self) -> MlflowResult<Operator> {
        for (symbol, operator) in [
            ("!=", Operator::Ne),
            ("<=", Operator::Le),
            (">=", Operator::Ge),
            ("=", Operator::Eq),
            ("<", Operator::Lt),
            (">", Operator::Gt),
        ] {
            if self.rest().starts_with(symbol) {
                self.position += symbol.len();
                return Ok(operator);
            }
        }
        let word = self.word().to_ascii_uppercase();
        match word.as_str() {
            "LIKE" => Ok(Operator::Like),
            "ILIKE" => Ok(Operator::ILike),
            "IN" => Ok(Operator::In),
            "IS" => self.null_test(),
            "NOT" => {
                self.skip_space();
                if self.word().eq_ignore_ascii_case("IN") {
                    Ok(Operator::NotIn)
                } else {
                    Err(invalid(self.text, "NOT must be followed by IN"))
                }
            }
            _ => Err(invalid(
                self.text,
                &format!(
                    "unknown comparator '{word}': use =, !=, <, <=, >, >=, LIKE, ILIKE, IN, \
                     NOT IN, IS NULL or IS NOT NULL"
                ),
            )),
        }
    }

    /// Reads the rest of `IS NULL` or `IS NOT NULL` after `IS`.
    fn null_test(&mut self) -> MlflowResult<Operator> {
        self.skip_space();
        let mut word = self.word().to_ascii_uppercase();
        let negated = word == "NOT";
        if negated {
            self.skip_space();
            word = self.word().to_ascii_uppercase();
        }
        match (word.as_str(), negated) {
            ("NULL", false) => Ok(Operator::IsNull),
            ("NULL", true) => Ok(Operator::IsNotNull),
            _ => Err(invalid(
                self.text,
                "IS must be followed by NULL or NOT NULL",
            )),
        }
    }

    fn literal(&mut self, operator: Operator) -> MlflowResult<Literal> {
        if matches!(operator, Operator::In | Operator::NotIn) {
            return self.list();
        }
        if matches!(operator, Operator::IsNull | Operator::IsNotNull) {
            return Ok(Literal::Absent);
        }
        match self.rest().chars().next() {
            Some(quote @ ('\'' | '"')) => self.quoted(quote).map(Literal::Text),
            Some(_) => {
                let rest = self.rest();
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let number = &rest[..end];
                self.position += end;
                number.parse().map(Literal::Number).map_err(|_| {
                    invalid(
                        self.text,
                        &format!("'{number}' is neither a number nor a quoted string"),
                    )
                })
            }
            None => Err(invalid(self.text, "a comparison has no value")),
        }
    }

    fn list(&mut self) -> MlflowResult<Literal> {
        if !self.rest().starts_with('(') {
            return Err(invalid(
                self.text,
                "IN takes a parenthesized list, such as ('a', 'b')",
            ));
        }
        self.position += 1;
        let mut items = Vec::new();
        loop {
            self.skip_space();
            match self.rest().chars().next() {
                Some(quote @ ('\'' | '"')) => items.push(self.quoted(quote)?),
                Some(')') if items.is_empty() => {
                    return Err(invalid(self.text, "the IN list is empty"));
                }
                _ => return Err(invalid(self.text, "IN lists contain quoted strings")),
            }
            self.skip_space();
            if self.rest().starts_with(',') {
                self.position += 1;
            } else if self.rest().starts_with(')') {
                self.position += 1;
                return Ok(Literal::List(items));
            } else {
                return Err(invalid(self.text, "the IN list is not closed with ')'"));
            }
        }
    }
}

fn entity_of(prefix: &str) -> Option<Entity> {
    match prefix.to_ascii_lowercase().as_str() {
        "metric" | "metrics" => Some(Entity::Metric),
        "param" | "params" | "parameter" | "parameters" => Some(Entity::Param),
        "tag" | "tags" => Some(Entity::Tag),
        "attribute" | "attributes" | "attr" | "run" => Some(Entity::Attribute),
        "dataset" | "datasets" => Some(Entity::Dataset),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comparisons_joined_by_and() {
        let clauses = parse_filter(
            "metrics.`val loss` < 0.5 and params.lr = '0.1' AND tags.mlflow.runName LIKE 'a%'",
        )
        .unwrap();
        assert_eq!(clauses.len(), 3);
        assert_eq!(clauses[0].entity, Entity::Metric);
        assert_eq!(clauses[0].key, "val loss");
        assert_eq!(clauses[0].operator, Operator::Lt);
        assert_eq!(clauses[0].value, Literal::Number(0.5));
        assert_eq!(clauses[1].value, Literal::Text("0.1".to_owned()));
        assert_eq!(clauses[2].key, "mlflow.runName");
        assert_eq!(clauses[2].operator, Operator::Like);
    }

    #[test]
    fn parses_in_lists() {
        let clauses = parse_filter("attributes.run_id NOT IN ('a', \"b\")").unwrap();
        assert_eq!(clauses[0].operator, Operator::NotIn);
        assert_eq!(
            clauses[0].value,
            Literal::List(vec!["a".to_owned(), "b".to_owned()])
        );
    }

    #[test]
    fn parses_null_tests() {
        let clauses = parse_filter("params.seed IS NULL and tags.`team name` is not null").unwrap();
        assert_eq!(clauses[0].operator, Operator::IsNull);
        assert_eq!(clauses[0].value, Literal::Absent);
        assert_eq!(clauses[1].key, "team name");
        assert_eq!(clauses[1].operator, Operator::IsNotNull);
        assert!(parse_filter("params.seed IS 1").is_err());
    }

    #[test]
    fn rejects_or() {
        let error = parse_filter("params.a = '1' OR params.b = '2'").unwrap_err();
        assert!(error.message.contains("OR"), "{}", error.message);
    }

    #[test]
    fn rejects_unknown_comparator() {
        assert!(parse_filter("metrics.a ~ 1").is_err());
        assert!(parse_filter("metrics.a <").is_err());
    }

    #[test]
    fn parses_order_by() {
        let order = parse_order_by("metrics.`val loss` DESC").unwrap();
        assert_eq!(order.entity, Entity::Metric);
        assert_eq!(order.key, "val loss");
        assert!(order.descending);
        assert!(!parse_order_by("attributes.start_time").unwrap().descending);
        assert!(parse_order_by("name sideways").is_err());
    }

    #[test]
    fn like_follows_sql_wildcards() {
        assert!(like("train-1", "train%", false));
        assert!(like("train-1", "train-_", false));
        assert!(!like("Train-1", "train%", false));
        assert!(like("Train-1", "train%", true));
    }
}
