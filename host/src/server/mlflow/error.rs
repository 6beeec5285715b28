//! MLflow's error shape, `{"error_code": "...", "message": "..."}`, and the status of each
//! code. The MLflow client retries 5xx responses for minutes, so every error caused by the
//! request maps to a 4xx.

use crate::gates::{GateError, GateErrorKind};
use crate::server::error::{ApiError, ErrorCode as NativeCode};
use crate::store::{ArtifactError, StoreError};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An MLflow error code, with the HTTP status MLflow's server sends for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlflowCode {
    /// A field is missing, malformed or out of range (400).
    InvalidParameterValue,
    /// The experiment, run or artifact does not exist (404).
    ResourceDoesNotExist,
    /// An experiment with the name exists (400).
    ResourceAlreadyExists,
    /// No route has this path and method (404).
    EndpointNotFound,
    /// The bearer token is missing or not valid (401).
    Unauthenticated,
    /// The token's role does not allow the operation, or a promotion policy has not allowed
    /// an alias move (403).
    PermissionDenied,
    /// The request contradicts recorded state, such as a second approval by one approver
    /// (409).
    ResourceConflict,
    /// The server failed; its log has the cause (500).
    InternalError,
    /// The server cannot reach its database or is stopping (503).
    TemporarilyUnavailable,
}

impl MlflowCode {
    /// Returns the code's name as MLflow's `ErrorCode` enum spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            Self::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            Self::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            Self::EndpointNotFound => "ENDPOINT_NOT_FOUND",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::ResourceConflict => "RESOURCE_CONFLICT",
            Self::InternalError => "INTERNAL_ERROR",
            Self::TemporarilyUnavailable => "TEMPORARILY_UNAVAILABLE",
        }
    }

    /// Returns the HTTP status of the code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidParameterValue | Self::ResourceAlreadyExists => StatusCode::BAD_REQUEST,
            Self::ResourceDoesNotExist | Self::EndpointNotFound => StatusCode::NOT_FOUND,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::ResourceConflict => StatusCode::CONFLICT,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An error of an MLflow route.
#[derive(Debug, Clone)]
pub struct MlflowError {
    /// The code.
    pub code: MlflowCode,
    /// The message for a person: what failed and what to do next.
    pub message: String,
}

impl MlflowError {
    /// An `INVALID_PARAMETER_VALUE` error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(MlflowCode::InvalidParameterValue, message)
    }

    /// A `RESOURCE_DOES_NOT_EXIST` error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(MlflowCode::ResourceDoesNotExist, message)
    }

    /// An error with `code` and `message`.
    pub fn new(code: MlflowCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error_code": self.code.name(),
            "message": self.message,
        });
        (self.code.status(), Json(body)).into_response()
    }
}

impl From<ApiError> for MlflowError {
    fn from(error: ApiError) -> Self {
        let code = match error.code {
            NativeCode::NotFound => MlflowCode::ResourceDoesNotExist,
            NativeCode::Unauthenticated => MlflowCode::Unauthenticated,
            NativeCode::PermissionDenied => MlflowCode::PermissionDenied,
            NativeCode::Internal => MlflowCode::InternalError,
            NativeCode::Unavailable => MlflowCode::TemporarilyUnavailable,
            _ => MlflowCode::InvalidParameterValue,
        };
        Self::new(code, error.message)
    }
}

impl From<StoreError> for MlflowError {
    fn from(error: StoreError) -> Self {
        ApiError::from(error).into()
    }
}

impl From<ArtifactError> for MlflowError {
    fn from(error: ArtifactError) -> Self {
        ApiError::from(error).into()
    }
}

impl From<GateError> for MlflowError {
    fn from(error: GateError) -> Self {
        let code = match &error {
            GateError::Store(StoreError::ModelNameTaken { .. }) => {
                MlflowCode::ResourceAlreadyExists
            }
            GateError::Store(_) => return ApiError::from(error).into(),
            _ => match error.kind() {
                GateErrorKind::Invalid => MlflowCode::InvalidParameterValue,
                GateErrorKind::Forbidden => MlflowCode::PermissionDenied,
                GateErrorKind::NotFound => MlflowCode::ResourceDoesNotExist,
                GateErrorKind::Conflict => MlflowCode::ResourceConflict,
                GateErrorKind::Internal => MlflowCode::InternalError,
            },
        };
        Self::new(code, error.to_string())
    }
}

/// The result type of MLflow handlers.
pub type MlflowResult<T> = Result<T, MlflowError>;
