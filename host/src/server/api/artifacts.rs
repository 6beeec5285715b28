//! Routes of the artifacts API: streaming upload and download of content-addressed artifacts,
//! their metadata, and the artifacts of runs and step runs.
//!
//! Uploads and downloads stream: the body passes through in chunks, so a file of any size moves
//! with flat memory. An upload is hashed as it is written to a temporary file. The file moves
//! into the store only when its SHA-256 is the expected one, and is deleted otherwise.

use crate::server::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::server::extract::ApiPath;
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use crate::store::artifacts::{ArtifactWriter, validate_digest};
use crate::store::{ArtifactError, ArtifactStore, ArtifactUse, Direction};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::io::{SeekFrom, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::sync::mpsc;
use tokio_util::io::ReaderStream;
use utoipa::ToSchema;

/// Chunks of an upload queued between the request and the file writer. With hyper's chunks of
/// up to a few hundred KiB this bounds an upload's buffered memory to a few MiB.
const QUEUED_CHUNKS: usize = 16;

/// Read size of a download, in bytes.
pub(crate) const READ_CHUNK_BYTES: usize = 64 << 10;

/// Media type recorded when an upload has no `Content-Type`.
const DEFAULT_MEDIA_TYPE: &str = "application/octet-stream";

/// Longest accepted media type, in bytes; registered types are far shorter.
const MAX_MEDIA_TYPE_BYTES: usize = 255;

/// Returns the artifacts routes with their OpenAPI descriptions.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(documented!(download_artifact, upload_artifact))
        .routes(documented!(upload_new_artifact))
        // Uploads stream to disk, so the limit for bodies read whole does not apply.
        .layer(DefaultBodyLimit::disable())
        .routes(documented!(artifact_metadata))
        .routes(documented!(run_artifacts))
        .routes(documented!(step_artifacts))
}

/// An artifact just stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoredArtifact {
    /// Lowercase hex SHA-256 of the content.
    pub digest: String,
    /// Size of the content in bytes.
    pub size: u64,
    /// Media type recorded when the artifact was first stored.
    pub media_type: String,
}

/// Whether a run or step consumed or produced an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactDirection {
    /// Consumed.
    Input,
    /// Produced.
    Output,
}

impl From<Direction> for ArtifactDirection {
    fn from(direction: Direction) -> Self {
        match direction {
            Direction::Input => Self::Input,
            Direction::Output => Self::Output,
        }
    }
}

/// A name under which a run or step run consumed or produced an artifact.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ArtifactLinkDetail {
    /// Name of the input or output, such as `model`.
    pub name: String,
    /// Whether the artifact was consumed or produced.
    pub direction: ArtifactDirection,
    /// Lowercase hex SHA-256 of the content.
    pub digest: String,
    /// Size of the content in bytes.
    pub size: i64,
    /// Media type.
    pub media_type: String,
    /// The run.
    pub run_id: String,
    /// The step run; `null` for a run-level input or output.
    pub step_run_id: Option<String>,
    /// Name of the step; `null` for a run-level input or output.
    pub step_name: Option<String>,
    /// Time of linking, in milliseconds since the Unix epoch.
    pub linked_at: i64,
}

impl From<ArtifactUse> for ArtifactLinkDetail {
    fn from(used: ArtifactUse) -> Self {
        Self {
            name: used.link.name,
            direction: used.link.direction.into(),
            digest: used.link.digest,
            size: used.size,
            media_type: used.media_type,
            run_id: used.link.run_id,
            step_run_id: used.link.step_run_id,
            step_name: used.step_name,
            linked_at: used.link.created_at,
        }
    }
}

/// Body of the listings of a run's and a step run's artifacts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ArtifactLinkList {
    /// Every link, oldest first.
    pub items: Vec<ArtifactLinkDetail>,
}

/// Body of `GET /api/v1/artifacts/{digest}/metadata`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ArtifactMetadata {
    /// Lowercase hex SHA-256 of the content.
    pub digest: String,
    /// Size of the content in bytes.
    pub size: i64,
    /// Media type recorded when the artifact was first stored.
    pub media_type: String,
    /// Time the artifact was first recorded, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Whether this server's artifact store contains the content.
    pub stored: bool,
    /// The runs and step runs that consumed or produced the artifact, oldest first.
    pub links: Vec<ArtifactLinkDetail>,
}

/// Path of one artifact.
#[derive(Debug, Deserialize)]
struct DigestPath {
    digest: String,
}

/// Path of a run.
#[derive(Debug, Deserialize)]
struct RunPath {
    run_id: String,
}

/// Path of a step run of a run.
#[derive(Debug, Deserialize)]
struct StepPath {
    run_id: String,
    step_run_id: String,
}

/// `PUT /api/v1/artifacts/{digest}`: stores the body under its SHA-256, which must be `digest`.
#[utoipa::path(
    put,
    path = "/api/v1/artifacts/{digest}",
    tag = "artifacts",
    params(
        ("digest" = String, Path, description = "Lowercase hex SHA-256 of the body",
            pattern = "^[0-9a-f]{64}$"),
        ("Content-Type" = Option<String>, Header,
            description = "Media type to record; application/octet-stream when omitted"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The content, of any size; it is streamed to disk"),
    responses(
        (status = 200, description = "The content was already stored", body = StoredArtifact),
        (status = 201, description = "The content is stored", body = StoredArtifact),
        (status = 400, description = "The digest is malformed or the body hashes to another \
            digest; nothing was stored", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
    )
)]
async fn upload_artifact(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<DigestPath>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<StoredArtifact>)> {
    check_digest(&path.digest)?;
    let media_type = media_type_of(&headers)?;

    // NOTE: content already stored is hashed and dropped, not written again, so a stored
    // copy that was damaged on disk is not repaired by uploading it again.
    let existed = state.artifacts().contains(&path.digest);
    let size = if existed {
        let (actual, size) = hash_body(body).await?;
        if actual != path.digest {
            return Err(mismatch(&path.digest, &actual));
        }
        size
    } else {
        let writer = write_body(state.artifacts().clone(), body).await?;
        let size = writer.size();
        commit(writer, Some(path.digest.clone())).await?;
        size
    };

    let row = state
        .store()
        .record_artifact(&path.digest, size, &media_type)
        .await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    tracing::info!(digest = %path.digest, size, new = !existed, "artifact uploaded");
    Ok((status, Json(stored(row.digest, size, row.media_type))))
}

/// `POST /api/v1/artifacts`: stores the body under the SHA-256 the server computes.
#[utoipa::path(
    post,
    path = "/api/v1/artifacts",
    tag = "artifacts",
    params(
        ("Content-Type" = Option<String>, Header,
            description = "Media type to record; application/octet-stream when omitted"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The content, of any size; it is streamed to disk"),
    responses(
        (status = 201, description = "The content is stored; `Location` is its URL",
            body = StoredArtifact),
        (status = 400, description = "The media type is not valid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
    )
)]
async fn upload_new_artifact(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let media_type = media_type_of(&headers)?;
    let writer = write_body(state.artifacts().clone(), body).await?;
    let size = writer.size();
    let digest = commit(writer, None).await?;

    let row = state
        .store()
        .record_artifact(&digest, size, &media_type)
        .await?;
    tracing::info!(digest = %digest, size, "artifact uploaded");
    let location = format!("/api/v1/artifacts/{digest}");
    let body = Json(stored(row.digest, size, row.media_type));
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], body).into_response())
}

/// `GET /api/v1/artifacts/{digest}`: the content, streamed. `HEAD` returns the headers alone.
///
/// A single range of the `Range` header (`bytes=A-B`, `bytes=A-` or `bytes=-N`) returns 206
/// with that part. A request for several ranges returns the whole content with 200, which
/// RFC 9110 allows, and so does a `Range` or `If-Range` that does not parse or match.
#[utoipa::path(
    get,
    path = "/api/v1/artifacts/{digest}",
    tag = "artifacts",
    params(
        ("digest" = String, Path, description = "Lowercase hex SHA-256 of the content",
            pattern = "^[0-9a-f]{64}$"),
        ("Range" = Option<String>, Header, description = "One byte range, such as bytes=0-1023"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag held by the client"),
    ),
    responses(
        (status = 200, description = "The whole content", content_type = "application/octet-stream",
            body = Vec<u8>),
        (status = 206, description = "The requested range", content_type = "application/octet-stream",
            body = Vec<u8>),
        (status = 304, description = "The ETag in If-None-Match matches"),
        (status = 400, description = "The digest is malformed", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No content with this digest is stored", body = ErrorBody),
        (status = 416, description = "The range starts past the end", body = ErrorBody),
    )
)]
async fn download_artifact(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<DigestPath>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    check_digest(&path.digest)?;
    let digest = path.digest;
    let file_path = state.artifacts().path_of(&digest)?;
    let file = match tokio::fs::File::open(&file_path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(ArtifactError::NotFound(digest).into());
        }
        Err(error) => return Err(ApiError::internal(error)),
    };
    let size = file.metadata().await.map_err(ApiError::internal)?.len();
    let media_type = match state.store().get_artifact(&digest).await? {
        Some(row) => row.media_type,
        None => DEFAULT_MEDIA_TYPE.to_owned(),
    };

    let etag = format!("\"{digest}\"");
    let mut response = if none_match(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match requested_range(&headers, &etag, size) {
            Requested::Whole => whole_response(file, size, digest, &media_type),
            Requested::Part { start, end } => {
                part_response(file, size, start, end, &media_type).await?
            }
            Requested::Unsatisfiable => unsatisfiable(size),
        }
    };
    let response_headers = response.headers_mut();
    response_headers.insert(header::ETAG, header_value(&etag)?);
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    Ok(response)
}

/// `GET /api/v1/artifacts/{digest}/metadata`: size, media type and the runs that use it.
#[utoipa::path(
    get,
    path = "/api/v1/artifacts/{digest}/metadata",
    tag = "artifacts",
    params((
        "digest" = String, Path, description = "Lowercase hex SHA-256 of the content",
        pattern = "^[0-9a-f]{64}$"
    )),
    responses(
        (status = 200, description = "The artifact's metadata and links", body = ArtifactMetadata),
        (status = 400, description = "The digest is malformed", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No artifact with this digest is recorded", body = ErrorBody),
    )
)]
async fn artifact_metadata(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<DigestPath>,
) -> ApiResult<Json<ArtifactMetadata>> {
    check_digest(&path.digest)?;
    let store = state.store();
    let Some(row) = store.get_artifact(&path.digest).await? else {
        return Err(ApiError::not_found(format!(
            "artifact {} is not recorded; upload it with PUT /api/v1/artifacts/{}",
            path.digest, path.digest
        )));
    };
    let links = store.artifact_uses(&path.digest).await?;
    Ok(Json(ArtifactMetadata {
        stored: state.artifacts().contains(&row.digest),
        digest: row.digest,
        size: row.size,
        media_type: row.media_type,
        created_at: row.created_at,
        links: links.into_iter().map(ArtifactLinkDetail::from).collect(),
    }))
}

/// `GET /api/v1/runs/{run_id}/artifacts`: the inputs and outputs of a run and its step runs.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run_id}/artifacts",
    tag = "artifacts",
    params(("run_id" = String, Path, description = "Id of the run")),
    responses(
        (status = 200, description = "Run-level and step-level links, oldest first",
            body = ArtifactLinkList),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
    )
)]
async fn run_artifacts(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<RunPath>,
) -> ApiResult<Json<ArtifactLinkList>> {
    let uses = state.store().run_artifact_uses(&path.run_id, None).await?;
    Ok(Json(link_list(uses)))
}

/// `GET /api/v1/runs/{run_id}/steps/{step_run_id}/artifacts`: the inputs and outputs of one
/// step run.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run_id}/steps/{step_run_id}/artifacts",
    tag = "artifacts",
    params(
        ("run_id" = String, Path, description = "Id of the run"),
        ("step_run_id" = String, Path, description = "Id of the step run"),
    ),
    responses(
        (status = 200, description = "The step run's links, oldest first",
            body = ArtifactLinkList),
        (status = 400, description = "The step run belongs to another run", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No run or step run has this id", body = ErrorBody),
    )
)]
async fn step_artifacts(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<StepPath>,
) -> ApiResult<Json<ArtifactLinkList>> {
    let uses = state
        .store()
        .run_artifact_uses(&path.run_id, Some(&path.step_run_id))
        .await?;
    Ok(Json(link_list(uses)))
}

fn link_list(uses: Vec<ArtifactUse>) -> ArtifactLinkList {
    ArtifactLinkList {
        items: uses.into_iter().map(ArtifactLinkDetail::from).collect(),
    }
}

fn stored(digest: String, size: u64, media_type: String) -> StoredArtifact {
    StoredArtifact {
        digest,
        size,
        media_type,
    }
}

fn check_digest(digest: &str) -> ApiResult<()> {
    validate_digest(digest).map_err(|_| {
        ApiError::invalid_field(
            "digest",
            format!(
                "`{}` is not a digest; give the 64 lowercase hex characters of the content's \
                 SHA-256",
                digest.escape_debug()
            ),
        )
    })
}

fn mismatch(expected: &str, actual: &str) -> ApiError {
    tracing::warn!(
        expected,
        actual,
        "artifact upload rejected: the body hashes to another digest"
    );
    ApiError::invalid_field(
        "digest",
        format!(
            "the body hashes to {actual}, not to {expected} named in the URL; nothing was \
             stored, so check the content and its digest and upload again"
        ),
    )
}

/// Returns the media type of an upload: its `Content-Type`, or application/octet-stream.
fn media_type_of(headers: &HeaderMap) -> ApiResult<String> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(DEFAULT_MEDIA_TYPE.to_owned());
    };
    let text = value.to_str().unwrap_or_default().trim();
    let valid = text.len() <= MAX_MEDIA_TYPE_BYTES
        && text
            .split(';')
            .next()
            .and_then(|essence| essence.split_once('/'))
            .is_some_and(|(kind, subtype)| !kind.trim().is_empty() && !subtype.trim().is_empty());
    if !valid {
        return Err(ApiError::invalid_field(
            "header.content-type",
            format!(
                "`{}` is not a media type; send one such as application/octet-stream or \
                 text/csv, of at most {MAX_MEDIA_TYPE_BYTES} bytes",
                String::from_utf8_lossy(value.as_bytes()).escape_debug()
            ),
        ));
    }
    Ok(text.to_owned())
}

/// Hashes a body without storing it, and returns its digest and size.
async fn hash_body(body: Body) -> ApiResult<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut size = 0_u64;
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(body_error)?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Streams a body into a new temporary file of the store, on a blocking thread fed through a
/// bounded queue, and returns the uncommitted writer. A body that fails midway drops the
/// writer, which deletes the file.
async fn write_body(artifacts: ArtifactStore, body: Body) -> ApiResult<ArtifactWriter> {
    let (sender, receiver) = mpsc::channel::<Bytes>(QUEUED_CHUNKS);
    let writing = tokio::task::spawn_blocking(move || write_chunks(&artifacts, receiver));
    let received = forward_chunks(body, &sender).await;
    drop(sender);

    let writer = writing.await.map_err(ApiError::internal)??;
    received?;
    Ok(writer)
}

/// Sends the body's chunks to the writer until the body ends or the writer stops, which it
/// does only on an error that its result reports.
async fn forward_chunks(body: Body, sender: &mpsc::Sender<Bytes>) -> ApiResult<()> {
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        if sender.send(chunk.map_err(body_error)?).await.is_err() {
            break;
        }
    }
    Ok(())
}

fn write_chunks(
    artifacts: &ArtifactStore,
    mut receiver: mpsc::Receiver<Bytes>,
) -> Result<ArtifactWriter, ArtifactError> {
    let mut writer = artifacts.create_writer()?;
    while let Some(chunk) = receiver.blocking_recv() {
        writer
            .write_all(&chunk)
            .map_err(|source| ArtifactError::Io {
                path: artifacts.root().join("tmp"),
                source,
            })?;
    }
    Ok(writer)
}

/// Moves a written upload into the store, checking its digest against `expected` when given,
/// and returns the digest.
async fn commit(writer: ArtifactWriter, expected: Option<String>) -> ApiResult<String> {
    let committed = tokio::task::spawn_blocking(move || match &expected {
        Some(expected) => writer.commit_expecting(expected),
        None => writer.commit(),
    })
    .await
    .map_err(ApiError::internal)?;
    match committed {
        Ok((digest, _)) => Ok(digest),
        Err(ArtifactError::DigestMismatch { expected, actual }) => {
            Err(mismatch(&expected, &actual))
        }
        Err(error) => Err(error.into()),
    }
}

fn body_error(error: axum::Error) -> ApiError {
    tracing::warn!(cause = %error, "artifact upload stopped: reading the request body failed");
    ApiError::invalid(format!(
        "reading the request body failed: {error}; nothing was stored, so upload again"
    ))
}

/// The part of an artifact that the `Range` header of a download requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requested {
    /// The whole content.
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A range that starts past the end.
    Unsatisfiable,
}

/// Reads the `Range` header, honouring `If-Range` with this response's ETag.
fn requested_range(headers: &HeaderMap, etag: &str, size: u64) -> Requested {
    let Some(range) = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
    else {
        return Requested::Whole;
    };
    // If-Range compares strongly (RFC 9110), so only the exact ETag keeps the range.
    if let Some(condition) = headers.get(header::IF_RANGE)
        && condition.as_bytes() != etag.as_bytes()
    {
        return Requested::Whole;
    }
    parse_range(range, size)
}

/// Parses a `Range` header of one byte range. Headers that do not parse, and lists of
/// several ranges, request the whole content.
fn parse_range(range: &str, size: u64) -> Requested {
    let Some((unit, spec)) = range.trim().split_once('=') else {
        return Requested::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return Requested::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Requested::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |text: &str| text.parse::<u64>().ok();

    if first.is_empty() {
        // A suffix range: the last N bytes.
        return match parse(last) {
            Some(0) => Requested::Unsatisfiable,
            Some(_) if size == 0 => Requested::Unsatisfiable,
            Some(length) => Requested::Part {
                start: size.saturating_sub(length),
                end: size - 1,
            },
            None => Requested::Whole,
        };
    }
    let Some(start) = parse(first) else {
        return Requested::Whole;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match parse(last) {
            Some(end) if end >= start => end,
            _ => return Requested::Whole,
        }
    };
    if start >= size {
        return Requested::Unsatisfiable;
    }
    Requested::Part {
        start,
        end: end.min(size - 1),
    }
}

/// Checks whether `If-None-Match` lists `etag` or is `*`, comparing weakly as RFC 9110 requires
/// for this header, so `W/"..."` matches too.
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

fn whole_response(file: tokio::fs::File, size: u64, digest: String, media_type: &str) -> Response {
    let chunks = ReaderStream::with_capacity(file, READ_CHUNK_BYTES);
    let body = Body::from_stream(VerifiedChunks::new(chunks, digest));
    let mut response = Response::new(body);
    set_content_headers(response.headers_mut(), size, media_type);
    response
}

async fn part_response(
    mut file: tokio::fs::File,
    size: u64,
    start: u64,
    end: u64,
    media_type: &str,
) -> ApiResult<Response> {
    file.seek(SeekFrom::Start(start))
        .await
        .map_err(ApiError::internal)?;
    let length = end - start + 1;
    let chunks = ReaderStream::with_capacity(file.take(length), READ_CHUNK_BYTES);

    let mut response = Response::new(Body::from_stream(chunks));
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    let headers = response.headers_mut();
    set_content_headers(headers, length, media_type);
    let content_range = format!("bytes {start}-{end}/{size}");
    headers.insert(header::CONTENT_RANGE, header_value(&content_range)?);
    Ok(response)
}

fn unsatisfiable(size: u64) -> Response {
    let error = ApiError::new(
        ErrorCode::RangeNotSatisfiable,
        format!(
            "the requested range starts past the end of the {size}-byte artifact; ask for a \
             range that starts below {size}"
        ),
    );
    let mut response = error.into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, value);
    }
    response
}

fn set_content_headers(headers: &mut HeaderMap, length: u64, media_type: &str) {
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let media_type = HeaderValue::from_str(media_type)
        .unwrap_or_else(|_| HeaderValue::from_static(DEFAULT_MEDIA_TYPE));
    headers.insert(header::CONTENT_TYPE, media_type);
}

fn header_value(text: &str) -> ApiResult<HeaderValue> {
    HeaderValue::from_str(text).map_err(ApiError::internal)
}

/// The chunks of a whole artifact, hashed as they pass. Each chunk is held back until the next
/// one is read, so when the content does not hash to its digest the last chunk is replaced by
/// an error. The client then receives fewer bytes than `Content-Length` announced, so its
/// download fails instead of ending with corrupt data that looks complete.
struct VerifiedChunks<S> {
    chunks: S,
    held: Option<Bytes>,
    hasher: Option<Sha256>,
    digest: String,
}

impl<S> VerifiedChunks<S> {
    fn new(chunks: S, digest: String) -> Self {
        Self {
            chunks,
            held: None,
            hasher: Some(Sha256::new()),
            digest,
        }
    }

    /// Checks the digest once the content has ended, and returns the held chunk or the error.
    fn finish(&mut self) -> Option<std::io::Result<Bytes>> {
        if let Some(hasher) = self.hasher.take() {
            let actual = hex::encode(hasher.finalize());
            if actual != self.digest {
                self.held = None;
                tracing::error!(digest = %self.digest, actual = %actual,
                    "artifact download stopped: the stored content is corrupt");
                let message = format!("artifact {} is corrupt", self.digest);
                let error = std::io::Error::new(std::io::ErrorKind::InvalidData, message);
                return Some(Err(error));
            }
        }
        self.held.take().map(Ok)
    }
}

impl<S> Stream for VerifiedChunks<S>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let chunk = match self.chunks.poll_next_unpin(context) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => chunk,
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => return Poll::Ready(self.finish()),
            };
            if let Some(hasher) = self.hasher.as_mut() {
                hasher.update(&chunk);
            }
            if let Some(previous) = self.held.replace(chunk) {
                return Poll::Ready(Some(Ok(previous)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_ranges() {
        assert_eq!(
            parse_range("bytes=0-9", 100),
            Requested::Part { start: 0, end: 9 }
        );
        assert_eq!(
            parse_range("bytes=90-", 100),
            Requested::Part { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Requested::Part { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-500", 100),
            Requested::Part { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=50-500", 100),
            Requested::Part { start: 50, end: 99 }
        );
    }

    #[test]
    fn rejects_ranges_past_the_end() {
        assert_eq!(parse_range("bytes=100-", 100), Requested::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Requested::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Requested::Unsatisfiable);
    }

    #[test]
    fn ignores_other_range_forms() {
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Requested::Whole);
        assert_eq!(parse_range("items=0-1", 100), Requested::Whole);
        assert_eq!(parse_range("bytes=9-1", 100), Requested::Whole);
        assert_eq!(parse_range("bytes=a-b", 100), Requested::Whole);
    }
}
