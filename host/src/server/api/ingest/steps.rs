//! Steps and artifacts of external runs: the client creates a step run with its inputs, moves
//! it through its statuses with its outputs, and names inputs and outputs of the run itself.
//! The artifacts must be in the artifact store already, uploaded with
//! `PUT /api/v1/artifacts/{digest}`.

use super::body::{LinkRecord, StepRunRecord, check_path_id};
use crate::server::error::{ApiError, ApiResult, ErrorBody, FieldProblem};
use crate::server::extract::{ApiJson, ApiPath};
use crate::server::idempotency::IdempotencyKeyHeader;
use crate::server::names::{validate_artifact_name, validate_key};
use crate::server::state::AppState;
use crate::store::artifacts::validate_digest;
use crate::store::{
    ArtifactError, ClientArtifact, ClientStepChange, Direction, NewArtifact, NewClientStep,
    StepStatus, StoreError,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use utoipa::ToSchema;

/// Media type recorded for an artifact when the request and earlier records name none.
const DEFAULT_MEDIA_TYPE: &str = "application/octet-stream";

/// Longest accepted media type, in bytes.
const MAX_MEDIA_TYPE_BYTES: usize = 255;

/// Status of a new step run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum StartStatus {
    /// Created before its work starts.
    Pending,
    /// Its work runs now.
    #[default]
    Running,
}

/// An input of a step: a name and an artifact in the store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct InputBody {
    /// Name of the input: a relative path such as `data/train.csv`.
    name: String,
    /// SHA-256 of the artifact.
    digest: String,
}

/// Body of `POST /api/v1/runs/{run_id}/steps`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewStepBody {
    /// Step name, unique within the run.
    name: String,
    /// Params of the step.
    #[serde(default)]
    params: BTreeMap<String, Value>,
    /// `running` (the default) or `pending`.
    #[serde(default)]
    status: StartStatus,
    /// Artifacts the step consumes. Each gets a lineage edge to the step run.
    #[serde(default)]
    inputs: Vec<InputBody>,
}

/// `POST /api/v1/runs/{run_id}/steps`: records a step run of an external run.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{run_id}/steps",
    tag = "ingestion",
    description = "Records a step run of an external run, with its inputs. Each input is \
        linked to the step run, with a lineage edge from its artifact, or from its dataset if \
        the digest is a recorded dataset, to the step run, as for the steps runledger executes.",
    params(("run_id" = String, Path, description = "Run id of an external run"),
        IdempotencyKeyHeader),
    request_body = NewStepBody,
    responses(
        (status = 201, description = "The step run was created", body = StepRunRecord),
        (status = 400, description = "A field is not valid", body = ErrorBody),
        (status = 404, description = "No run has this id, or an input is not stored",
            body = ErrorBody),
        (status = 409, description = "The name is taken, or the run has ended or is not \
            external", body = ErrorBody),
    )
)]
pub(super) async fn create_step(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiJson(body): ApiJson<NewStepBody>,
) -> ApiResult<(StatusCode, Json<StepRunRecord>)> {
    check_path_id("path.run_id", &run_id)?;
    validate_key("name", &body.name)?;
    check_unique_names(
        "inputs",
        body.inputs.iter().map(|input| input.name.as_str()),
    )?;
    let mut inputs = Vec::with_capacity(body.inputs.len());
    for (index, input) in body.inputs.iter().enumerate() {
        let field = format!("inputs[{index}]");
        inputs.push(stored_artifact(
            &state,
            &field,
            &input.name,
            &input.digest,
            None,
        )?);
    }

    let new = NewClientStep {
        run_id,
        name: body.name,
        params: Value::Object(body.params.into_iter().collect()),
        status: match body.status {
            StartStatus::Pending => StepStatus::Pending,
            StartStatus::Running => StepStatus::Running,
        },
        inputs,
    };
    let detail = state.store().create_client_step(new).await?;
    tracing::info!(run_id = %detail.step_run.run_id, step_run_id = %detail.step_run.id,
        step = %detail.step_run.name, "client step created");
    Ok((StatusCode::CREATED, Json(detail.into())))
}

/// The status a client moves its step run to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum NewStatus {
    /// The work started.
    Running,
    /// The work finished. Send the outputs with this status.
    Succeeded,
    /// The work failed.
    Failed,
    /// The work was not needed.
    Skipped,
    /// The work was stopped.
    Cancelled,
}

impl From<NewStatus> for StepStatus {
    fn from(status: NewStatus) -> Self {
        match status {
            NewStatus::Running => Self::Running,
            NewStatus::Succeeded => Self::Succeeded,
            NewStatus::Failed => Self::Failed,
            NewStatus::Skipped => Self::Skipped,
            NewStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// An output of a step: a name, an artifact in the store and its media type.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct OutputBody {
    /// Name of the output: a relative path such as `model/weights.bin`.
    name: String,
    /// SHA-256 of the artifact.
    digest: String,
    /// Media type. When omitted, the one recorded at upload or `application/octet-stream`.
    #[serde(default)]
    media_type: Option<String>,
}

/// Body of `PATCH /api/v1/runs/{run_id}/steps/{step_run_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StepChangeBody {
    /// The new status.
    status: NewStatus,
    /// Reason the step failed, was skipped or was cancelled, allowed only with those statuses.
    #[serde(default)]
    error: Option<String>,
    /// Artifacts the step produced, allowed only with status `succeeded`. Each gets a lineage edge
    /// from the step run.
    #[serde(default)]
    outputs: Vec<OutputBody>,
}

/// `PATCH /api/v1/runs/{run_id}/steps/{step_run_id}`: moves a step run to a new status.
#[utoipa::path(
    patch,
    path = "/api/v1/runs/{run_id}/steps/{step_run_id}",
    tag = "ingestion",
    description = "Moves a step run of an external run to a new status. A pending step can \
        become running, skipped, cancelled or failed, and a running step succeeded, failed or \
        cancelled; sending the status a pending or running step has changes nothing. With \
        `succeeded`, the outputs are linked to the step run with lineage edges from it.",
    params(
        ("run_id" = String, Path, description = "Run id of an external run"),
        ("step_run_id" = String, Path, description = "Step run id"),
        IdempotencyKeyHeader,
    ),
    request_body = StepChangeBody,
    responses(
        (status = 200, description = "The step run", body = StepRunRecord),
        (status = 400, description = "A field is not valid", body = ErrorBody),
        (status = 404, description = "No run or step run of the run has this id, or an \
            output is not stored", body = ErrorBody),
        (status = 409, description = "The status change is not allowed, or the run has \
            ended", body = ErrorBody),
    )
)]
pub(super) async fn change_step(
    State(state): State<AppState>,
    ApiPath((run_id, step_run_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<StepChangeBody>,
) -> ApiResult<Json<StepRunRecord>> {
    check_path_id("path.run_id", &run_id)?;
    check_path_id("path.step_run_id", &step_run_id)?;
    check_change_fields(&body)?;
    check_unique_names(
        "outputs",
        body.outputs.iter().map(|output| output.name.as_str()),
    )?;
    let mut outputs = Vec::with_capacity(body.outputs.len());
    for (index, output) in body.outputs.iter().enumerate() {
        let field = format!("outputs[{index}]");
        let media_type = output.media_type.as_deref();
        outputs.push(stored_artifact(
            &state,
            &field,
            &output.name,
            &output.digest,
            media_type,
        )?);
    }

    let change = ClientStepChange {
        status: body.status.into(),
        error: body.error,
        outputs,
    };
    let detail = state
        .store()
        .change_client_step(&run_id, &step_run_id, change)
        .await
        .map_err(|error| step_not_in_run(error, &run_id))?;
    Ok(Json(detail.into()))
}

/// Checks that outputs come only with success and an error only with a status that has one.
fn check_change_fields(body: &StepChangeBody) -> ApiResult<()> {
    if !body.outputs.is_empty() && body.status != NewStatus::Succeeded {
        return Err(ApiError::invalid_field(
            "outputs",
            "are recorded only when the step succeeds; send them with status `succeeded`",
        ));
    }
    let may_have_error = matches!(
        body.status,
        NewStatus::Failed | NewStatus::Skipped | NewStatus::Cancelled
    );
    if body.error.is_some() && !may_have_error {
        return Err(ApiError::invalid_field(
            "error",
            "is allowed only with status `failed`, `skipped` or `cancelled`; leave it out",
        ));
    }
    Ok(())
}

/// Turns a step run of another run, named in the URL, into a 404 like an unknown one.
fn step_not_in_run(error: StoreError, run_id: &str) -> ApiError {
    match error {
        StoreError::StepRunNotInRun { step_run_id, .. } => ApiError::not_found(format!(
            "run {run_id} has no step run `{step_run_id}`; use a step run id that creating a \
             step of this run returned"
        )),
        other => other.into(),
    }
}

/// Whether a run consumed or produced an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum DirectionBody {
    /// The run consumed it.
    Input,
    /// The run produced it.
    Output,
}

/// Body of `POST /api/v1/runs/{run_id}/artifacts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RunArtifactBody {
    /// Whether the run consumed or produced the artifact.
    direction: DirectionBody,
    /// Name of the input or output: a relative path such as `reports/summary.html`.
    name: String,
    /// SHA-256 of the artifact.
    digest: String,
    /// Media type. When omitted, the one recorded at upload or `application/octet-stream`.
    #[serde(default)]
    media_type: Option<String>,
}

/// `POST /api/v1/runs/{run_id}/artifacts`: names an input or output of an external run.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{run_id}/artifacts",
    tag = "ingestion",
    description = "Names an artifact in the store as an input or output of an external run \
        itself, rather than of one of its steps. As for pipeline runs, lineage edges come from \
        the steps' inputs and outputs, not from these links. Naming the same digest under the \
        same name again returns the existing link, and another digest under a linked name fails \
        with 409.",
    params(("run_id" = String, Path, description = "Run id of an external run"),
        IdempotencyKeyHeader),
    request_body = RunArtifactBody,
    responses(
        (status = 201, description = "The artifact was linked", body = LinkRecord),
        (status = 200, description = "The artifact was linked under this name already",
            body = LinkRecord),
        (status = 400, description = "A field is not valid", body = ErrorBody),
        (status = 404, description = "No run has this id, or the artifact is not stored",
            body = ErrorBody),
        (status = 409, description = "The name is linked to another artifact, or the run has \
            ended or is not external", body = ErrorBody),
    )
)]
pub(super) async fn link_run_artifact(
    State(state): State<AppState>,
    ApiPath(run_id): ApiPath<String>,
    ApiJson(body): ApiJson<RunArtifactBody>,
) -> ApiResult<(StatusCode, Json<LinkRecord>)> {
    check_path_id("path.run_id", &run_id)?;
    let media_type = body.media_type.as_deref();
    let linked = stored_artifact(&state, "", &body.name, &body.digest, media_type)?;
    let direction = match body.direction {
        DirectionBody::Input => Direction::Input,
        DirectionBody::Output => Direction::Output,
    };
    let (link, created) = state
        .store()
        .link_client_artifact(&run_id, direction, &linked)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(link.into())))
}

/// Checks a named artifact of a request, `prefix` naming where it is (empty at the top level
/// of the body), and reads its size from the artifact store.
fn stored_artifact(
    state: &AppState,
    prefix: &str,
    name: &str,
    digest: &str,
    media_type: Option<&str>,
) -> ApiResult<ClientArtifact> {
    validate_artifact_name(&field_path(prefix, "name"), name)?;
    let digest_field = field_path(prefix, "digest");
    if validate_digest(digest).is_err() {
        return Err(ApiError::invalid_field(
            digest_field,
            format!(
                "`{}` is not a SHA-256 digest; give 64 lowercase hex characters",
                digest.escape_debug()
            ),
        ));
    }
    if let Some(media_type) = media_type {
        check_media_type(&field_path(prefix, "media_type"), media_type)?;
    }
    let size = match state.artifacts().size_of(digest) {
        Ok(size) => size,
        Err(ArtifactError::NotFound(_)) => {
            let message = format!(
                "{digest_field}: no artifact {digest} is stored; upload it first with \
                 PUT /api/v1/artifacts/{digest}"
            );
            return Err(ApiError::not_found(message).with_field(FieldProblem {
                field: digest_field,
                problem: String::new(),
            }));
        }
        Err(error) => return Err(error.into()),
    };
    Ok(ClientArtifact {
        name: name.to_owned(),
        artifact: NewArtifact {
            digest: digest.to_owned(),
            size,
            media_type: media_type.unwrap_or(DEFAULT_MEDIA_TYPE).to_owned(),
        },
    })
}

/// Returns the path of field `name` under `prefix`, such as `inputs[0].name`.
fn field_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Checks that a media type starts with `type/subtype`, optionally followed by parameters
/// such as `; charset=utf-8`, and has no control characters.
fn check_media_type(field: &str, media_type: &str) -> ApiResult<()> {
    let essence = media_type.split(';').next().unwrap_or_default().trim();
    let well_formed = media_type.len() <= MAX_MEDIA_TYPE_BYTES
        && !media_type.chars().any(char::is_control)
        && !essence.contains(char::is_whitespace)
        && essence
            .split_once('/')
            .is_some_and(|(kind, subtype)| !kind.is_empty() && !subtype.is_empty());
    if well_formed {
        return Ok(());
    }
    Err(ApiError::invalid_field(
        field,
        format!(
            "`{}` is not a media type; give one such as `text/csv`",
            media_type.escape_debug()
        ),
    ))
}

/// Fails with a 400 naming `section[INDEX].name` when a name repeats.
fn check_unique_names<'a>(section: &str, names: impl Iterator<Item = &'a str>) -> ApiResult<()> {
    let mut seen = HashSet::new();
    for (index, name) in names.enumerate() {
        if !seen.insert(name) {
            return Err(ApiError::invalid_field(
                format!("{section}[{index}].name"),
                format!(
                    "`{}` is given twice; give each a name of its own",
                    name.escape_debug()
                ),
            ));
        }
    }
    Ok(())
}
