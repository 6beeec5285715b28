//! Whole-artifact reads and writes on top of the SDK's streaming [`Input`] and [`Output`].
//!
//! [`Input`]: runledger_sdk::Input
//! [`Output`]: runledger_sdk::Output

use crate::table::Table;
use runledger_sdk::{ArtifactRef, Error, Result, StepContext};
use serde::Serialize;
use std::io::{Read, Write};

/// Returns whether the step received an input named `name`, for optional inputs.
pub fn has_input(context: &StepContext, name: &str) -> bool {
    context.inputs().iter().any(|input| input.name == name)
}

/// Reads input `name` as UTF-8 text.
pub fn read_text(context: &StepContext, name: &str) -> Result<String> {
    let mut bytes = Vec::new();
    context.open_input(name)?.read_to_end(&mut bytes)?;
    decode_text(name, bytes)
}

/// Reads input `name` as a CSV table with a header row.
pub fn read_table(context: &StepContext, name: &str) -> Result<Table> {
    let text = read_text(context, name)?;
    Table::from_csv(&text).map_err(|error| error.in_input(name))
}

/// Decodes the bytes of input `name` as UTF-8, dropping a leading byte order mark.
pub fn decode_text(name: &str, bytes: Vec<u8>) -> Result<String> {
    let text = String::from_utf8(bytes).map_err(|error| {
        Error::InvalidInput(format!(
            "input `{name}` is not valid UTF-8 (first invalid byte at offset {}); re-encode it \
             as UTF-8",
            error.utf8_error().valid_up_to()
        ))
    })?;
    match text.strip_prefix('\u{feff}') {
        Some(rest) => Ok(rest.to_owned()),
        None => Ok(text),
    }
}

/// Writes `text` as output `name` and returns its reference.
pub fn write_text(
    context: &StepContext,
    name: &str,
    media_type: &str,
    text: &str,
) -> Result<ArtifactRef> {
    let mut output = context.create_output(name, media_type)?;
    output.write_all(text.as_bytes())?;
    output.finish()
}

/// Writes `value` as pretty-printed JSON with a trailing newline to output `name`.
pub fn write_json<T: Serialize>(
    context: &StepContext,
    name: &str,
    value: &T,
) -> Result<ArtifactRef> {
    write_text(context, name, "application/json", &to_json(value)?)
}

/// Serializes `value` as pretty-printed JSON with a trailing newline.
///
/// Field order follows the struct's declaration, and floats use serde_json's shortest
/// round-trip form, so equal values give equal bytes.
pub fn to_json<T: Serialize>(value: &T) -> Result<String> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_strips_byte_order_mark() {
        let text = decode_text("source", b"\xef\xbb\xbfa,b\n".to_vec()).unwrap();
        assert_eq!(text, "a,b\n");
    }

    #[test]
    fn decode_rejects_invalid_utf8() {
        let Err(Error::InvalidInput(message)) = decode_text("source", b"ab\xff".to_vec()) else {
            panic!("expected InvalidInput");
        };
        assert!(message.contains("offset 2"), "{message}");
        assert!(message.contains("`source`"), "{message}");
    }
}
