//! Decoding of MLflow requests: GET routes carry the message's fields as query parameters,
//! the others a JSON body. Numbers may arrive as JSON numbers or as strings, because protobuf's
//! JSON mapping writes int64 as strings, and MLflow's client writes NaN and the infinities as
//! the strings `"NaN"`, `"Infinity"` and `"-Infinity"`.

use super::error::MlflowError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::Method;
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde_json::{Map, Value};

/// A request message decoded into `T` from the query string or the JSON body.
#[derive(Debug, Clone)]
pub(super) struct MlflowRequest<T>(pub T);

impl<S, T> FromRequest<S> for MlflowRequest<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = MlflowError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let value = if request.method() == Method::GET {
            query_object(request.uri().query().unwrap_or(""))
        } else {
            let bytes = Bytes::from_request(request, state)
                .await
                .map_err(|error| MlflowError::invalid(format!("cannot read the body: {error}")))?;
            if let Some(message) = decode_object_directly(&bytes) {
                return Ok(MlflowRequest(message));
            }
            body_object(&bytes)?
        };
        decode(value).map(MlflowRequest)
    }
}

/// Decodes a JSON object body straight into `T`, or returns `None` when that fails.
///
/// This is the fast path for well-formed requests, such as a log-batch of a thousand values:
/// one pass over the bytes, with no intermediate JSON tree. A body it cannot decode goes
/// through [`decode`] instead, which finds the failing field for the error message.
fn decode_object_directly<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

/// Collects query parameters into a JSON object; a key given twice becomes an array.
fn query_object(query: &str) -> Value {
    let mut object = Map::new();
    for (key, value) in query_pairs(query) {
        match object.get_mut(&key) {
            None => {
                object.insert(key, Value::String(value));
            }
            Some(Value::Array(items)) => items.push(Value::String(value)),
            Some(first) => {
                let earlier = first.take();
                *first = Value::Array(vec![earlier, Value::String(value)]);
            }
        }
    }
    Value::Object(object)
}

/// Splits a query string into decoded key-value pairs; a malformed query yields none.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    let Ok(uri) = format!("/?{query}").parse::<axum::http::Uri>() else {
        return Vec::new();
    };
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|decoded| decoded.0)
        .unwrap_or_default()
}

fn body_object(bytes: &[u8]) -> Result<Value, MlflowError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(bytes).map_err(|error| {
        MlflowError::invalid(format!(
            "the request body is not valid JSON: {error}; send the request message as a JSON \
             object"
        ))
    })
}

fn decode<T: DeserializeOwned>(value: Value) -> Result<T, MlflowError> {
    serde_path_to_error::deserialize(&value).map_err(|error| {
        let problem = error.inner().to_string();
        let mut path = error.path().to_string();
        if path == "." {
            path = failing_field::<T>(&value, &problem).unwrap_or(path);
        }
        MlflowError::invalid(format!("invalid value for parameter `{path}`: {problem}"))
    })
}

/// Finds the top-level field of `value` that fails alone with `problem`. Fields of flattened
/// messages lose their path when decoding fails, so this decodes each field on its own.
fn failing_field<T: DeserializeOwned>(value: &Value, problem: &str) -> Option<String> {
    let Value::Object(fields) = value else {
        return None;
    };
    fields.iter().find_map(|(key, field)| {
        let single = Value::Object(Map::from_iter([(key.clone(), field.clone())]));
        match serde_json::from_value::<T>(single) {
            Err(error) if error.to_string() == problem => Some(key.clone()),
            _ => None,
        }
    })
}

/// Deserializes an optional int64 given as a number or a string.
///
/// A log-batch carries up to 1,000 metrics, so the number is read straight from the
/// deserializer, without building a [`Value`] first.
pub(super) fn lenient_i64<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_any(LenientNumber::<i64>::default())
}

/// Converts a whole number within the range of `i64`, such as `1e3`, and rejects others
/// rather than saturating.
fn whole_i64(number: f64) -> Option<i64> {
    // 2^63 is exact as an f64; every f64 in [-2^63, 2^63) converts to i64 without loss.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let in_range = (-LIMIT..LIMIT).contains(&number);
    (in_range && number.fract() == 0.0).then_some(number as i64)
}

/// Deserializes an optional double given as a number, a numeric string, or one of `NaN`,
/// `Infinity` and `-Infinity`.
pub(super) fn lenient_f64<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<f64>, D::Error> {
    deserializer.deserialize_any(LenientNumber::<f64>::default())
}

fn parse_double(text: &str) -> Option<f64> {
    match text.trim() {
        "NaN" | "nan" => Some(f64::NAN),
        "Infinity" | "inf" | "+Infinity" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// A number type that [`LenientNumber`] reads from JSON numbers and strings.
trait Lenient: Sized {
    /// The expected kind of value, as error messages name it, such as "a number".
    const EXPECTED: &'static str;

    fn from_i64(number: i64) -> Option<Self>;
    fn from_u64(number: u64) -> Option<Self>;
    fn from_f64(number: f64) -> Option<Self>;
    fn from_text(text: &str) -> Option<Self>;
}

impl Lenient for i64 {
    const EXPECTED: &'static str = "a 64-bit integer";

    fn from_i64(number: i64) -> Option<Self> {
        Some(number)
    }

    fn from_u64(number: u64) -> Option<Self> {
        i64::try_from(number).ok()
    }

    fn from_f64(number: f64) -> Option<Self> {
        whole_i64(number)
    }

    fn from_text(text: &str) -> Option<Self> {
        text.trim().parse().ok()
    }
}

impl Lenient for f64 {
    const EXPECTED: &'static str = "a number";

    fn from_i64(number: i64) -> Option<Self> {
        Some(number as f64)
    }

    fn from_u64(number: u64) -> Option<Self> {
        Some(number as f64)
    }

    fn from_f64(number: f64) -> Option<Self> {
        Some(number)
    }

    fn from_text(text: &str) -> Option<Self> {
        parse_double(text)
    }
}

/// Visitor of an optional `T` given as a JSON number, a string or null. Its errors show the
/// rejected value as JSON: `1.5 is not a 64-bit integer`, `` `abc` is not a number``.
struct LenientNumber<T>(std::marker::PhantomData<T>);

impl<T> Default for LenientNumber<T> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T: Lenient> LenientNumber<T> {
    /// Returns the converted number, or the error for `rejected` when there is none.
    fn accept<E: serde::de::Error>(
        converted: Option<T>,
        rejected: impl std::fmt::Display,
    ) -> Result<Option<T>, E> {
        match converted {
            Some(number) => Ok(Some(number)),
            None => Self::reject(rejected),
        }
    }

    /// Returns the error for a value that is not a `T`.
    fn reject<E: serde::de::Error>(rejected: impl std::fmt::Display) -> Result<Option<T>, E> {
        Err(E::custom(format!("{rejected} is not {}", T::EXPECTED)))
    }
}

impl<'de, T: Lenient> serde::de::Visitor<'de> for LenientNumber<T> {
    type Value = Option<T>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}, as a number or a string", T::EXPECTED)
    }

    fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<Self::Value, E> {
        Self::accept(T::from_i64(number), number)
    }

    fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<Self::Value, E> {
        Self::accept(T::from_u64(number), number)
    }

    fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<Self::Value, E> {
        if let Some(converted) = T::from_f64(number) {
            return Ok(Some(converted));
        }

        // Shown as serde_json writes numbers, such as 1e+30.
        let rejected = serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number);
        Self::reject(rejected)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Self::accept(T::from_text(text), format_args!("`{text}`"))
    }

    fn visit_bool<E: serde::de::Error>(self, flag: bool) -> Result<Self::Value, E> {
        Self::reject(flag)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, items: A) -> Result<Self::Value, A::Error> {
        let rejected = Value::deserialize(serde::de::value::SeqAccessDeserializer::new(items))?;
        Self::reject(rejected)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, fields: A) -> Result<Self::Value, A::Error> {
        let rejected = Value::deserialize(serde::de::value::MapAccessDeserializer::new(fields))?;
        Self::reject(rejected)
    }
}

/// Deserializes a repeated string field, which a query string gives as one value when it has
/// one element.
pub(super) fn string_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(vec![text]),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                Value::Number(number) => Ok(number.to_string()),
                other => Err(D::Error::custom(format!("{other} is not a string"))),
            })
            .collect(),
        Some(other) => Err(D::Error::custom(format!(
            "{other} is not a list of strings"
        ))),
    }
}

/// Deserializes a string field that may arrive as a number, such as an experiment id.
pub(super) fn lenient_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(other) => Err(D::Error::custom(format!("{other} is not a string"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Numbers {
        #[serde(default, deserialize_with = "lenient_i64")]
        step: Option<i64>,
        #[serde(default, deserialize_with = "lenient_f64")]
        value: Option<f64>,
    }

    fn numbers(json: &str) -> Result<Numbers, String> {
        serde_json::from_str(json).map_err(|error| error.to_string())
    }

    fn numbers_from_value(json: &str) -> Result<Numbers, String> {
        let value: Value = serde_json::from_str(json).expect("test JSON parses");
        serde_json::from_value(value).map_err(|error| error.to_string())
    }

    #[test]
    fn numbers_arrive_as_numbers_or_strings() {
        let parsed = numbers(r#"{"step": "-42", "value": "2.5"}"#).unwrap();
        assert_eq!(parsed.step, Some(-42));
        assert_eq!(parsed.value, Some(2.5));

        let parsed = numbers(r#"{"step": 1e3, "value": 7}"#).unwrap();
        assert_eq!(parsed.step, Some(1000));
        assert_eq!(parsed.value, Some(7.0));

        let parsed = numbers(r#"{"step": 9223372036854775807, "value": " Infinity "}"#).unwrap();
        assert_eq!(parsed.step, Some(i64::MAX));
        assert_eq!(parsed.value, Some(f64::INFINITY));

        let parsed = numbers(r#"{"value": "NaN"}"#).unwrap();
        assert!(parsed.value.is_some_and(f64::is_nan));
    }

    #[test]
    fn null_and_absent_numbers_are_none() {
        let parsed = numbers(r#"{"step": null}"#).unwrap();
        assert_eq!(parsed.step, None);
        assert_eq!(parsed.value, None);

        let parsed = numbers_from_value(r#"{"value": null}"#).unwrap();
        assert_eq!(parsed.step, None);
        assert_eq!(parsed.value, None);
    }

    #[test]
    fn numbers_decode_from_a_value() {
        let json = r#"{"step": "12", "value": "-Infinity"}"#;
        let parsed = numbers_from_value(json).unwrap();
        assert_eq!(parsed.step, Some(12));
        assert_eq!(parsed.value, Some(f64::NEG_INFINITY));

        let error = numbers_from_value(r#"{"step": 1.5}"#).unwrap_err();
        assert_eq!(error, "1.5 is not a 64-bit integer");
    }

    #[test]
    fn rejected_numbers_named_in_message() {
        let cases = [
            (r#"{"step": 1.5}"#, "1.5 is not a 64-bit integer"),
            (r#"{"step": 1e30}"#, "1e+30 is not a 64-bit integer"),
            (
                r#"{"step": 9223372036854775808}"#,
                "9223372036854775808 is not a 64-bit integer",
            ),
            (r#"{"step": "ten"}"#, "`ten` is not a 64-bit integer"),
            (r#"{"step": true}"#, "true is not a 64-bit integer"),
            (r#"{"value": "abc"}"#, "`abc` is not a number"),
            (r#"{"value": [1, 2]}"#, "[1,2] is not a number"),
            (r#"{"value": {"a": 1}}"#, r#"{"a":1} is not a number"#),
        ];
        for (json, message) in cases {
            let error = numbers(json).unwrap_err();
            assert!(error.starts_with(message), "{json}: {error}");
        }
    }
}
