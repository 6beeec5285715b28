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
pub(super) fn lenient_i64<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_i64()
            .or_else(|| number.as_f64().and_then(whole_i64))
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{number} is not a 64-bit integer"))),
        Some(Value::String(text)) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("`{text}` is not a 64-bit integer"))),
        Some(other) => Err(D::Error::custom(format!("{other} is not a 64-bit integer"))),
    }
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
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => Ok(number.as_f64()),
        Some(Value::String(text)) => parse_double(&text)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("`{text}` is not a number"))),
        Some(other) => Err(D::Error::custom(format!("{other} is not a number"))),
    }
}

fn parse_double(text: &str) -> Option<f64> {
    match text.trim() {
        "NaN" | "nan" => Some(f64::NAN),
        "Infinity" | "inf" | "+Infinity" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
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
