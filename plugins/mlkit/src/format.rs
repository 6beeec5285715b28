//! Float formatting that depends only on the value, so equal results give equal bytes.

/// Decimal exponents written positionally. Values outside the range use `e` notation.
const POSITIONAL_EXPONENTS: std::ops::Range<i32> = -7..16;

/// Formats `value` with the fewest significant digits that parse back to the same `f64`.
///
/// Values with a decimal exponent from -7 to 15 are written positionally with a fractional
/// part (`5.0`, `0.0125`), so a reader infers them as floats. Others use `e` notation
/// (`1.5e-9`, `2e20`). Negative zero is written as `0.0`. Non-finite values are written
/// as `NaN`, `inf` and `-inf`.
pub fn format_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.into();
    }
    if value == 0.0 {
        return "0.0".into();
    }

    // `{:e}` writes the shortest round-trip digits as `d.ddde±x`, so only their placement is ours.
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or_else(|| unreachable!("`{{:e}}` always writes an exponent"));
    let exponent: i32 = exponent
        .parse()
        .unwrap_or_else(|_| unreachable!("`{{:e}}` writes an integer exponent"));
    if !POSITIONAL_EXPONENTS.contains(&exponent) {
        return scientific;
    }

    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    format!("{sign}{}", place_point(&digits, exponent))
}

/// Places the decimal point in significant `digits` whose first digit has decimal `exponent`.
fn place_point(digits: &str, exponent: i32) -> String {
    if exponent < 0 {
        let zeros = "0".repeat((-exponent - 1) as usize);
        return format!("0.{zeros}{digits}");
    }
    let integer_len = exponent as usize + 1;
    if digits.len() <= integer_len {
        let zeros = "0".repeat(integer_len - digits.len());
        return format!("{digits}{zeros}.0");
    }
    format!("{}.{}", &digits[..integer_len], &digits[integer_len..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_positional_values() {
        let cases = [
            (7.4, "7.4"),
            (5.0, "5.0"),
            (-0.5, "-0.5"),
            (0.9978, "0.9978"),
            (1234.5, "1234.5"),
            (100.0, "100.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.25e-7, "0.000000125"),
            (-0.0, "0.0"),
            (0.0, "0.0"),
        ];
        for (value, expected) in cases {
            assert_eq!(format_float(value), expected, "formatting {value:?}");
        }
    }

    #[test]
    fn format_exponent_values() {
        assert_eq!(format_float(1.5e-9), "1.5e-9");
        assert_eq!(format_float(2e20), "2e20");
        assert_eq!(format_float(-3.25e16), "-3.25e16");
    }

    #[test]
    fn format_non_finite() {
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::INFINITY), "inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn format_round_trips() {
        let mut value = 1.0e-9_f64;
        while value < 1.0e18 {
            for candidate in [value, -value, value * 1.234_567_890_123, 1.0 / value] {
                let text = format_float(candidate);
                assert_eq!(text.parse::<f64>().unwrap(), candidate, "parsing {text}");
            }
            value *= 3.7;
        }
    }
}
