//! Metric values in JSON responses.
//!
//! JSON numbers cannot express NaN and the infinities, so a value is sent as a number, or as one
//! of the strings `NaN`, `Infinity` and `-Infinity`, the spelling MLflow's protocol uses too.

use serde::{Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

/// A metric value that serializes NaN and the infinities as strings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricValue(pub f64);

impl Serialize for MetricValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_value(&self.0, serializer)
    }
}

impl utoipa::PartialSchema for MetricValue {
    fn schema() -> RefOr<Schema> {
        value_schema()
    }
}

impl utoipa::ToSchema for MetricValue {}

/// Writes a finite value as a JSON number and NaN or an infinity as a string.
pub fn serialize_value<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_nan() {
        serializer.serialize_str("NaN")
    } else if *value == f64::INFINITY {
        serializer.serialize_str("Infinity")
    } else if *value == f64::NEG_INFINITY {
        serializer.serialize_str("-Infinity")
    } else {
        serializer.serialize_f64(*value)
    }
}

/// The OpenAPI schema of a metric value: a number or one of the three strings.
pub fn value_schema() -> RefOr<Schema> {
    let number = ObjectBuilder::new().schema_type(Type::Number);
    let special = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["NaN", "Infinity", "-Infinity"]));
    OneOfBuilder::new()
        .item(number)
        .item(special)
        .description(Some(
            "A number, or `NaN`, `Infinity` or `-Infinity` as a string",
        ))
        .into()
}
