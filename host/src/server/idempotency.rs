//! `Idempotency-Key` on writes: a client that retries a write with the same key gets the
//! first response again instead of having the write applied twice.
//!
//! The middleware applies to POST, PUT, PATCH and DELETE under `/api/v1` that carry the header.
//! It hashes the method, path and body, and claims the key for the caller in the database
//! before the handler runs. When the handler has returned its response, the middleware stores
//! the status, headers and body. A retry with the same key and request gets the stored
//! response with `Idempotent-Replayed: true`. A retry while the first request still runs gets
//! 409, and the same key with another request gets 422. A 5xx response releases the key so the
//! client can retry. Artifact uploads stream their bodies and skip the middleware, because
//! their digest already makes them idempotent. Routes without a caller, such as the reports of
//! external steps, skip it too.

use super::auth::Caller;
use super::error::{ApiError, ErrorCode, FieldProblem};
use super::extract::body_rejection;
use super::state::AppState;
use crate::store::{IdempotentRequest, KeyClaim, KeyLifetime, StoredResponse};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, DATE, RETRY_AFTER, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tracing::Instrument as _;

/// The request header that carries the key.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The response header that marks a stored response sent again.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// How long a key is remembered. A day covers the retries of a client that lost a response.
const KEY_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Age after which a key still in progress is taken over by a retry. Writes finish in seconds,
/// so a key this old belongs to a request whose server process died.
const ABANDONED_AFTER: Duration = Duration::from_secs(10 * 60);

/// Largest response body kept for replays. Write responses are small JSON documents, and a
/// larger body is replayed as an empty one with the stored status and headers.
const MAX_STORED_BODY_BYTES: usize = 1 << 20;

/// Longest accepted key, in bytes.
const MAX_KEY_BYTES: usize = 255;

/// Time between two deletions of expired keys, in milliseconds.
const SWEEP_INTERVAL_MS: i64 = 60_000;

/// Time of the last deletion of expired keys, in milliseconds since the Unix epoch, shared by
/// every server in the process.
static LAST_SWEEP_MS: AtomicI64 = AtomicI64::new(0);

/// The `Idempotency-Key` request header, for the OpenAPI description of write routes.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// 1 to 255 printable ASCII characters chosen by the client. A retry with the same key and
    /// the same request within 24 hours gets the first response instead of applying the write
    /// again.
    #[param(rename = "Idempotency-Key")]
    pub idempotency_key: Option<String>,
}

/// Middleware that sends retried writes their stored responses instead of running them again.
/// It runs after authentication, because keys belong to callers.
pub async fn deduplicate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(value) = request.headers().get(IDEMPOTENCY_KEY).cloned() else {
        return next.run(request).await;
    };
    if !applies_to(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    // Public routes, such as reports of external steps, have no caller to own the key.
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return next.run(request).await;
    };
    match deduplicate_keyed(state, &caller, &value, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// Returns whether the middleware handles `method` on `path`.
fn applies_to(method: &Method, path: &str) -> bool {
    let write = matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    write && path.starts_with("/api/v1/") && !path.starts_with("/api/v1/artifacts")
}

/// A claimed key: who owns it and which request it is for.
#[derive(Debug, Clone)]
struct Claim {
    caller: String,
    key: String,
    request_hash: String,
}

impl Claim {
    fn request(&self) -> IdempotentRequest<'_> {
        IdempotentRequest {
            caller: &self.caller,
            key: &self.key,
            request_hash: &self.request_hash,
        }
    }
}

async fn deduplicate_keyed(
    state: AppState,
    caller: &Caller,
    value: &HeaderValue,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = parse_key(value)?;
    let (parts, body) = request.into_parts();
    let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), &())
        .await
        .map_err(body_rejection)?;

    let claim = Claim {
        caller: caller.name.clone(),
        key: key.to_owned(),
        request_hash: request_hash(&parts.method, &parts.uri, &bytes),
    };
    sweep_expired_keys(&state);
    let lifetime = KeyLifetime {
        expires_after: KEY_LIFETIME,
        abandoned_after: ABANDONED_AFTER,
    };
    match state
        .store()
        .claim_idempotency_key(&claim.request(), &lifetime)
        .await?
    {
        KeyClaim::Claimed => {
            let request = Request::from_parts(parts, Body::from(bytes));
            Ok(run_claimed(state, claim, request, next).await)
        }
        KeyClaim::Completed(stored) => {
            tracing::debug!(idempotency_key = %claim.key, "stored response replayed");
            Ok(replay(stored))
        }
        KeyClaim::InProgress => {
            tracing::info!(caller = %claim.caller, idempotency_key = %claim.key,
                "retry rejected: the first request is still in progress");
            let retry_after = [(RETRY_AFTER, HeaderValue::from_static("1"))];
            Ok((retry_after, in_progress(key)).into_response())
        }
        KeyClaim::OtherRequest => {
            tracing::warn!(caller = %claim.caller, idempotency_key = %claim.key,
                "request rejected: its idempotency key was used for another request");
            Err(other_request(key))
        }
    }
}

/// Checks the header: 1 to 255 printable ASCII characters.
fn parse_key(value: &HeaderValue) -> Result<&str, ApiError> {
    let bytes = value.as_bytes();
    let printable = bytes.iter().all(|byte| (b' '..=b'~').contains(byte));
    if bytes.is_empty() || bytes.len() > MAX_KEY_BYTES || !printable {
        let problem = "must be 1 to 255 printable ASCII characters, such as a UUID";
        return Err(ApiError::invalid(format!(
            "header Idempotency-Key is not valid: it {problem}; send a new key for each \
             distinct write"
        ))
        .with_field(FieldProblem {
            field: "Idempotency-Key".to_owned(),
            problem: problem.to_owned(),
        }));
    }
    // Printable ASCII is valid UTF-8.
    Ok(value.to_str().unwrap_or_default())
}

/// Computes the hex SHA-256 over the method, the path with its query, and the body.
fn request_hash(method: &Method, uri: &axum::http::Uri, body: &[u8]) -> String {
    let path = uri.path_and_query().map_or("", |path| path.as_str());
    let mut hasher = Sha256::new();
    hasher.update(method.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hex::encode(hasher.finalize())
}

/// Runs the handler for a claimed key and stores its response.
///
/// The handler runs in its own task, so a client that disconnects cannot cancel it between its
/// commit and the storing of the response. A retry then finds the stored response.
async fn run_claimed(state: AppState, claim: Claim, request: Request, next: Next) -> Response {
    let task_state = state.clone();
    let task_claim = claim.clone();
    let task = tokio::spawn(
        async move {
            let response = next.run(request).await;
            keep_response(&task_state, &task_claim, response).await
        }
        .instrument(tracing::Span::current()),
    );
    match task.await {
        Ok(response) => response,
        Err(error) => {
            release(&state, &claim).await;
            if error.is_panic() {
                // The panic layer turns it into a 500 with the error shape.
                std::panic::resume_unwind(error.into_panic());
            }
            ApiError::internal(format!("the request task was cancelled: {error}")).into_response()
        }
    }
}

/// Stores the response under the key, or releases the key after a server error, and returns
/// the response.
async fn keep_response(state: &AppState, claim: &Claim, response: Response) -> Response {
    if response.status().is_server_error() {
        release(state, claim).await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(error) => {
            release(state, claim).await;
            return ApiError::internal(format!("cannot read the response body: {error}"))
                .into_response();
        }
    };

    let stored = StoredResponse {
        status: parts.status.as_u16(),
        headers: kept_headers(&parts.headers),
        body: (bytes.len() <= MAX_STORED_BODY_BYTES).then(|| bytes.to_vec()),
    };
    if let Err(error) = state
        .store()
        .complete_idempotency_key(&claim.request(), &stored)
        .await
    {
        // NOTE: the write is applied but its key stays in progress, so retries get 409 until
        // the key counts as abandoned and a retry applies the write again.
        tracing::error!(
            cause = %error,
            idempotency_key = %claim.key,
            "cannot store the response of an idempotent request"
        );
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Selects the headers worth sending again: all except those about the connection or the
/// transfer, which the replay sets anew.
fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| ![CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION, DATE].contains(name))
        .filter_map(|(name, value)| {
            let value = value.to_str().ok()?;
            Some((name.as_str().to_owned(), value.to_owned()))
        })
        .collect()
}

/// Builds the response to a retry from the stored one.
fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = Response::new(Body::from(stored.body.unwrap_or_default()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

/// Releases a key after a failure, logging a failure to do so.
async fn release(state: &AppState, claim: &Claim) {
    if let Err(error) = state
        .store()
        .release_idempotency_key(&claim.request())
        .await
    {
        tracing::error!(
            cause = %error,
            idempotency_key = %claim.key,
            "cannot release the idempotency key of a failed request"
        );
    }
}

fn in_progress(key: &str) -> ApiError {
    ApiError::conflict(format!(
        "a request with Idempotency-Key `{key}` is still in progress; retry later with the same \
         key to get its response"
    ))
    .with_field(FieldProblem {
        field: "Idempotency-Key".to_owned(),
        problem: String::new(),
    })
}

fn other_request(key: &str) -> ApiError {
    ApiError::new(
        ErrorCode::IdempotencyKeyReused,
        format!(
            "Idempotency-Key `{key}` was already used for a different request; send a new key \
             for each distinct write"
        ),
    )
    .with_field(FieldProblem {
        field: "Idempotency-Key".to_owned(),
        problem: String::new(),
    })
}

/// Deletes expired keys in the background, at most once per [`SWEEP_INTERVAL_MS`]. Expired keys
/// are ignored when claimed anyway, so the sweep only bounds the table's size.
fn sweep_expired_keys(state: &AppState) {
    let now = chrono::Utc::now().timestamp_millis();
    let last = LAST_SWEEP_MS.load(Ordering::Relaxed);
    if now - last < SWEEP_INTERVAL_MS {
        return;
    }
    if LAST_SWEEP_MS
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let store = state.store().clone();
    let before = now - i64::try_from(KEY_LIFETIME.as_millis()).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        match store.delete_idempotency_keys_before(before).await {
            Ok(deleted) => tracing::debug!(deleted, "expired idempotency keys deleted"),
            Err(error) => {
                tracing::warn!(cause = %error, "cannot delete expired idempotency keys");
            }
        }
    });
}
