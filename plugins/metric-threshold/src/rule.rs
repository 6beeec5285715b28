//! Threshold rules of the form `KEY OP NUMBER`, such as `test_rmse <= 0.75`.
//!
//! `KEY` is a metric key without whitespace or any of `` <>=!` ``, or any text other than a
//! backquote between backquotes (`` `val loss` > 0 ``). `OP` is one of `<`, `<=`, `>`, `>=`,
//! `==` and `!=`. `NUMBER` is a decimal with an optional sign, fraction and exponent (`0.75`,
//! `-3`, `.5`, `1e-3`); `inf` and `NaN` are not numbers here. Whitespace around `OP` is optional.
//! The `pattern` of `rules` in `plugin.toml` accepts the same language.

/// A comparison operator of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
}

/// Every operator with its symbol, two-character symbols first so that `<=` is not read as `<`.
const OPERATORS: [(&str, Operator); 6] = [
    ("<=", Operator::LessOrEqual),
    (">=", Operator::GreaterOrEqual),
    ("==", Operator::Equal),
    ("!=", Operator::NotEqual),
    ("<", Operator::Less),
    (">", Operator::Greater),
];

/// Characters that end a key written without backquotes.
const KEY_TERMINATORS: &[char] = &['<', '>', '=', '!', '`'];

impl Operator {
    /// Returns the operator as written in a rule.
    pub fn symbol(self) -> &'static str {
        OPERATORS
            .iter()
            .find(|(_, operator)| *operator == self)
            .map_or("?", |(symbol, _)| symbol)
    }

    /// Returns whether `value OP threshold` holds. A NaN `value` satisfies no operator, not
    /// even `!=`, so that a diverged metric never passes a rule.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        if value.is_nan() {
            return false;
        }
        match self {
            Self::Less => value < threshold,
            Self::LessOrEqual => value <= threshold,
            Self::Greater => value > threshold,
            Self::GreaterOrEqual => value >= threshold,
            Self::Equal => value == threshold,
            Self::NotEqual => value != threshold,
        }
    }
}

/// A parsed rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule as configured, without surrounding whitespace; it names the rule's check.
    pub text: String,
    /// The metric key, without backquotes.
    pub key: String,
    /// The comparison.
    pub operator: Operator,
    /// The finite number the metric is compared with.
    pub threshold: f64,
}

/// Parses one rule. The error names the rule and what is wrong with it.
pub fn parse_rule(text: &str) -> Result<Rule, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(
            "a rule is empty; write it as `KEY OP NUMBER`, such as `test_rmse <= 0.75`".into(),
        );
    }
    let invalid = |problem: String| format!("rule `{text}` is invalid: {problem}");

    let (key, rest) = split_key(text).map_err(invalid)?;
    let (operator, number) = split_operator(rest.trim_start())
        .ok_or_else(|| invalid(missing_operator(&key, rest.trim())))?;
    let threshold = parse_number(number.trim()).map_err(invalid)?;

    Ok(Rule {
        text: text.to_owned(),
        key,
        operator,
        threshold,
    })
}

/// Splits the key off the start of `text` and returns it with the rest of the text.
fn split_key(text: &str) -> Result<(String, &str), String> {
    if let Some(quoted) = text.strip_prefix('`') {
        let Some(end) = quoted.find('`') else {
            return Err("the backquoted key has no closing backquote".into());
        };
        if quoted[..end].trim().is_empty() {
            return Err("the backquoted key is empty".into());
        }
        return Ok((quoted[..end].to_owned(), &quoted[end + 1..]));
    }

    let end = text
        .find(|c: char| c.is_whitespace() || KEY_TERMINATORS.contains(&c))
        .unwrap_or(text.len());
    if end == 0 {
        return Err("it does not start with a metric key; write it as `KEY OP NUMBER`".into());
    }
    Ok((text[..end].to_owned(), &text[end..]))
}

fn split_operator(text: &str) -> Option<(Operator, &str)> {
    OPERATORS
        .iter()
        .find_map(|(symbol, operator)| text.strip_prefix(symbol).map(|number| (*operator, number)))
}

fn missing_operator(key: &str, found: &str) -> String {
    let found = if found.is_empty() {
        "nothing".to_owned()
    } else {
        format!("`{found}`")
    };
    format!(
        "expected one of the operators <, <=, >, >=, ==, != after the key `{key}`, found {found}"
    )
}

/// Parses a finite decimal number such as `0.75`, `-3`, `.5` or `1e-3`.
fn parse_number(text: &str) -> Result<f64, String> {
    if text.is_empty() {
        return Err("the number after the operator is missing".into());
    }
    if !is_decimal_literal(text) {
        return Err(format!(
            "`{text}` is not a number; write a decimal such as 0.75 or 1e-3"
        ));
    }
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(format!("`{text}` is outside the range of a 64-bit float")),
    }
}

/// Returns whether `text` matches `[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?`.
fn is_decimal_literal(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (unsigned, None),
    };
    let (integer, fraction) = match mantissa.split_once('.') {
        Some((integer, fraction)) => (integer, fraction),
        None => (mantissa, ""),
    };

    let mantissa_valid =
        all_digits(integer) && all_digits(fraction) && !(integer.is_empty() && fraction.is_empty());
    let exponent_valid = exponent.is_none_or(|exponent| {
        let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        !digits.is_empty() && all_digits(digits)
    });
    mantissa_valid && exponent_valid
}

fn all_digits(text: &str) -> bool {
    text.bytes().all(|byte| byte.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        parse_rule(text).expect_err(text)
    }

    #[test]
    fn parses_spaced_rule() {
        let rule = parse_rule("  test_rmse <= 0.75 ").unwrap();
        assert_eq!(rule.text, "test_rmse <= 0.75");
        assert_eq!(rule.key, "test_rmse");
        assert_eq!(rule.operator, Operator::LessOrEqual);
        assert_eq!(rule.threshold, 0.75);
    }

    #[test]
    fn parses_every_operator_without_spaces() {
        let cases = [
            ("a<1", Operator::Less),
            ("a<=1", Operator::LessOrEqual),
            ("a>1", Operator::Greater),
            ("a>=1", Operator::GreaterOrEqual),
            ("a==1", Operator::Equal),
            ("a!=1", Operator::NotEqual),
        ];
        for (text, operator) in cases {
            let rule = parse_rule(text).unwrap();
            assert_eq!(rule.key, "a", "{text}");
            assert_eq!(rule.operator, operator, "{text}");
            assert_eq!(rule.operator.symbol(), &text[1..text.len() - 1], "{text}");
        }
    }

    #[test]
    fn parses_backquoted_key_with_spaces() {
        let rule = parse_rule("`val loss/epoch 3` > -1.5e-2").unwrap();
        assert_eq!(rule.key, "val loss/epoch 3");
        assert_eq!(rule.operator, Operator::Greater);
        assert_eq!(rule.threshold, -0.015);
    }

    #[test]
    fn parses_number_forms() {
        for (number, expected) in [("+3", 3.0), (".5", 0.5), ("5.", 5.0), ("1E3", 1000.0)] {
            let rule = parse_rule(&format!("k >= {number}")).unwrap();
            assert_eq!(rule.threshold, expected, "{number}");
        }
    }

    #[test]
    fn rejects_unknown_operator() {
        let message = error_of("test_rmse =< 0.75");
        assert!(
            message.contains("rule `test_rmse =< 0.75` is invalid"),
            "{message}"
        );
        assert!(
            message.contains("after the key `test_rmse`, found `=< 0.75`"),
            "{message}"
        );
    }

    #[test]
    fn rejects_missing_operator() {
        let message = error_of("test_rmse");
        assert!(message.contains("found nothing"), "{message}");
    }

    #[test]
    fn rejects_non_numbers() {
        for number in ["inf", "NaN", "0.75 extra", "1e", ".", "-", "0x10", "1,5"] {
            let message = error_of(&format!("k < {number}"));
            assert!(
                message.contains(&format!("`{number}` is not a number")),
                "{message}"
            );
        }
    }

    #[test]
    fn rejects_missing_number() {
        let message = error_of("k <=");
        assert!(
            message.contains("number after the operator is missing"),
            "{message}"
        );
    }

    #[test]
    fn rejects_overflowing_number() {
        let message = error_of("k < 1e400");
        assert!(
            message.contains("`1e400` is outside the range"),
            "{message}"
        );
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(error_of("").contains("a rule is empty"));
        assert!(error_of("<= 3").contains("does not start with a metric key"));
        assert!(error_of("`open <= 3").contains("no closing backquote"));
        assert!(error_of("` ` <= 3").contains("backquoted key is empty"));
    }

    #[test]
    fn nan_satisfies_no_operator() {
        for (_, operator) in OPERATORS {
            assert!(!operator.holds(f64::NAN, 1.0), "{}", operator.symbol());
        }
    }

    #[test]
    fn operators_compare_values() {
        assert!(Operator::Less.holds(0.5, 0.75));
        assert!(!Operator::Less.holds(0.75, 0.75));
        assert!(Operator::LessOrEqual.holds(0.75, 0.75));
        assert!(!Operator::LessOrEqual.holds(0.81, 0.75));
        assert!(Operator::Greater.holds(f64::INFINITY, 1.0));
        assert!(!Operator::GreaterOrEqual.holds(f64::NEG_INFINITY, 1.0));
        assert!(Operator::Equal.holds(1.0, 1.0));
        assert!(Operator::NotEqual.holds(2.0, 1.0));
        assert!(!Operator::NotEqual.holds(1.0, 1.0));
    }
}
