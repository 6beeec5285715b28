//! The one error shape of the HTTP API and the single mapping from error kinds to statuses.
//!
//! Every error response, whatever the route, is
//! `{"error": {"code": "...", "message": "...", "details": [{"field": "...", "problem": "..."}]}}`.
//! Internal causes are logged once here and never sent to the client.

use crate::engine::EngineError;
use crate::gates::GateError;
use crate::store::StoreError;
use crate::store::artifacts::ArtifactError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Machine-readable kind of an API error. Each maps to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed: bad JSON, a wrong type, a value out of range (400).
    InvalidArgument,
    /// No bearer token, or one that is not valid (401).
    Unauthenticated,
    /// The token's role does not allow the operation (403).
    PermissionDenied,
    /// The id names nothing (404).
    NotFound,
    /// The method is not allowed on this path (405).
    MethodNotAllowed,
    /// The request contradicts recorded state: a changed param, a write to an ended run (409).
    Conflict,
    /// The body is larger than the configured limit (413).
    PayloadTooLarge,
    /// An `Idempotency-Key` was sent again with a different request (422).
    IdempotencyKeyReused,
    /// The requested byte range lies outside the artifact (416).
    RangeNotSatisfiable,
    /// The body is not of a media type the route accepts (415).
    UnsupportedMediaType,
    /// A policy attached to the alias denied the promotion (409).
    PromotionDenied,
    /// The approver requested the promotion or started the run it promotes (403).
    SelfApproval,
    /// The approver already approved this promotion (409).
    DuplicateApproval,
    /// No promotion of this version to this alias waits for approvals (404).
    NoPendingPromotion,
    /// The server failed; the cause is in its log (500).
    Internal,
    /// The server is starting, stopping or cannot reach its database (503).
    Unavailable,
}

impl ErrorCode {
    /// Returns the HTTP status of this kind of error.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidArgument => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PromotionDenied | Self::DuplicateApproval => StatusCode::CONFLICT,
            Self::SelfApproval => StatusCode::FORBIDDEN,
            Self::NoPendingPromotion => StatusCode::NOT_FOUND,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A problem with one field of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldProblem {
    /// Path of the field, such as `metrics[3].value` or `query.limit`.
    pub field: String,
    /// The problem with the field.
    pub problem: String,
}

/// Body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error inside [`ErrorBody`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Kind of error.
    pub code: ErrorCode,
    /// Explanation for a person: what failed and what to do next.
    pub message: String,
    /// The fields at fault, when the error is about specific fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldProblem>,
}

/// An error that a handler returns; it becomes a response with [`ErrorBody`].
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Kind of error.
    pub code: ErrorCode,
    /// Message for the client.
    pub message: String,
    /// Fields at fault.
    pub details: Vec<FieldProblem>,
}

impl ApiError {
    /// An error of kind `code` with `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// A 400 about one field.
    pub fn invalid_field(field: impl Into<String>, problem: impl Into<String>) -> Self {
        let field = field.into();
        let problem = problem.into();
        Self::new(ErrorCode::InvalidArgument, format!("{field}: {problem}")).with_field(
            FieldProblem {
                field,
                problem: String::new(),
            },
        )
    }

    /// A 400 with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    /// A 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// A 409 with `message`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// A 500 whose cause is logged here and replaced by a generic message for the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(cause = %cause, "request failed inside the server");
        Self::new(
            ErrorCode::Internal,
            "the server failed to handle the request; its log has the cause",
        )
    }

    /// Adds a field problem. An empty `problem` takes the message.
    pub fn with_field(mut self, mut field: FieldProblem) -> Self {
        if field.problem.is_empty() {
            field.problem = self.message.clone();
        }
        self.details.push(field);
        self
    }

    /// Returns the body this error is sent as.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                details: self.details.clone(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), Json(self.body())).into_response();
        // The rest of an oversized body stays unread, so the connection cannot carry another
        // request. The header keeps clients from sending their next request into a closing socket.
        if self.code == ErrorCode::PayloadTooLarge {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let code = match &error {
            StoreError::RunNotFound(_)
            | StoreError::StepRunNotFound(_)
            | StoreError::TokenNotFound(_)
            | StoreError::ModelNotFound { .. }
            | StoreError::ModelVersionNotFound { .. }
            | StoreError::PromotionNotFound { .. }
            | StoreError::AliasNotFound { .. } => ErrorCode::NotFound,
            StoreError::StepRunNotInRun { .. }
            | StoreError::InvalidDigest(_)
            | StoreError::StepStatusNotFinal { .. }
            | StoreError::InvalidName { .. }
            | StoreError::InvalidPageToken(_) => ErrorCode::InvalidArgument,
            StoreError::ParamConflict { .. }
            | StoreError::RunAlreadyEnded { .. }
            | StoreError::RunEnded { .. }
            | StoreError::RunDeleted(_)
            | StoreError::RunNotExternal { .. }
            | StoreError::StepNameTaken { .. }
            | StoreError::StepTransition { .. }
            | StoreError::ArtifactLinkConflict { .. }
            | StoreError::ArtifactSizeMismatch { .. }
            | StoreError::ArtifactNotRecorded(_)
            | StoreError::TokenNameTaken(_)
            | StoreError::OpenLineageRunIdTaken(_)
            | StoreError::ModelNameTaken { .. }
            | StoreError::ApprovalTaken { .. }
            | StoreError::PromotionNotPending { .. } => ErrorCode::Conflict,
            StoreError::Connect { .. } | StoreError::WalMode { .. } => ErrorCode::Unavailable,
            _ => return Self::internal(&error),
        };
        Self::new(code, error.to_string())
    }
}

impl From<ArtifactError> for ApiError {
    fn from(error: ArtifactError) -> Self {
        match &error {
            ArtifactError::InvalidDigest(_) => Self::invalid(error.to_string()),
            ArtifactError::NotFound(_) => Self::not_found(error.to_string()),
            ArtifactError::DigestMismatch { .. } => Self::invalid(error.to_string()),
            _ => Self::internal(&error),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Definition(definition) => definition_error(&definition),
            EngineError::Store(store) => store.into(),
            EngineError::Artifacts(artifacts) => artifacts.into(),
            EngineError::Runtime(runtime) => Self::invalid(runtime.to_string()),
            EngineError::Other(message) => Self::invalid(message),
        }
    }
}

impl From<GateError> for ApiError {
    fn from(error: GateError) -> Self {
        let message = error.to_string();
        match error {
            GateError::Store(store) => store.into(),
            GateError::InvalidSpec {
                list,
                index,
                plugin,
                message: problem,
            } => Self::invalid(message).with_field(FieldProblem {
                field: format!("[{index}]"),
                problem: format!("{list}[{index}] (plugin `{plugin}`): {problem}"),
            }),
            GateError::InvalidInput { field, .. } => {
                Self::invalid(message).with_field(FieldProblem {
                    field: field.to_owned(),
                    problem: String::new(),
                })
            }
            GateError::ArtifactNotFound { .. } => Self::invalid(message).with_field(FieldProblem {
                field: "artifact".to_owned(),
                problem: String::new(),
            }),
            GateError::RoleTooLow { .. } => Self::new(ErrorCode::PermissionDenied, message),
            GateError::SelfApproval { .. } => Self::new(ErrorCode::SelfApproval, message),
            GateError::DuplicateApproval { .. } => Self::new(ErrorCode::DuplicateApproval, message),
            GateError::NoPendingPromotion { .. } => {
                Self::new(ErrorCode::NoPendingPromotion, message)
            }
            GateError::Host(_) => Self::internal(message),
        }
    }
}

/// A 400 listing every problem of a pipeline definition, each with the place it names.
pub fn definition_error(error: &crate::engine::DefinitionError) -> ApiError {
    let mut api = ApiError::invalid(error.to_string());
    for problem in &error.problems {
        api.details.push(FieldProblem {
            field: problem.place.clone(),
            problem: problem.message.clone(),
        });
    }
    api
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
