//! Request extractors whose rejections use the API's error shape and name the field at fault.
//!
//! axum's own `Json`, `Query` and `Path` reject with plain text. These wrappers decode the same
//! way but report where the input went wrong: the line and column of malformed JSON, and the
//! path of a field with the wrong type.

use super::error::{ApiError, ErrorCode, FieldProblem};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A JSON request body decoded into `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_json_content_type(request.headers())?;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(body_rejection)?;
        decode_json(&bytes).map(ApiJson)
    }
}

/// Decodes `bytes` as JSON into `T`, naming the position of a syntax error and the path of a
/// field that does not fit.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| json_error(&error))?;
    deserializer.end().map_err(|error| {
        ApiError::invalid(format!(
            "the request body has data after the JSON value at line {}, column {}; send one \
             JSON document",
            error.line(),
            error.column()
        ))
    })?;
    Ok(value)
}

fn json_error(error: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = error.inner();
    let path = error.path().to_string();
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::invalid(format!(
            "the request body is not valid JSON: {inner}; fix the syntax at line {}, column {}",
            inner.line(),
            inner.column()
        ));
    }
    let field = if path == "." { "body".to_owned() } else { path };
    let problem = strip_position(&inner.to_string());
    ApiError::invalid(format!("field `{field}` is not valid: {problem}"))
        .with_field(FieldProblem { field, problem })
}

/// Removes serde_json's " at line L column C" suffix, which is noise for a type error.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// Accepts a JSON content type, or none at all, which clients such as curl often omit.
fn check_json_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default().to_ascii_lowercase();
    let essence = text.split(';').next().unwrap_or_default().trim();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::UnsupportedMediaType,
        format!("content type `{text}` is not accepted here; send application/json"),
    ))
}

/// Maps a failure to read the body, including one over the size limit, to the error shape.
pub fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the request body is larger than the server's limit; send smaller batches or \
             raise `runledger serve --max-body-mib`",
        );
    }
    ApiError::invalid(format!(
        "cannot read the request body: {}",
        rejection.body_text()
    ))
}

/// Query parameters decoded into `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|query| ApiQuery(query.0))
            .map_err(|rejection: QueryRejection| {
                ApiError::invalid(format!(
                    "the query string is not valid: {}",
                    rejection.body_text()
                ))
            })
    }
}

/// Path parameters decoded into `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|path| ApiPath(path.0))
            .map_err(|rejection: PathRejection| {
                ApiError::invalid(format!(
                    "the URL path is not valid: {}",
                    rejection.body_text()
                ))
            })
    }
}
