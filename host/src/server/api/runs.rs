//! Routes of the runs API: submit a pipeline run to this server, list runs with a filter,
//! read everything about one run, and cancel one.

mod views;

pub use views::{
    ArtifactLink, LatestMetric, PipelineRef, PluginInfo, RunAccepted, RunDetail, RunInfo, RunList,
    RunSummary, StepDetail,
};

use crate::engine::plan::{PlanContext, nearest, plan};
use crate::engine::{Engine, PipelineDefinition, Plan, RunOptions};
use crate::gates::Actor;
use crate::server::auth::Caller;
use crate::server::error::{
    ApiError, ApiResult, ErrorBody, ErrorCode, FieldProblem, definition_error,
};
use crate::server::extract::{ApiJson, ApiPath, ApiQuery};
use crate::server::filter::{parse_filter, parse_order_by};
use crate::server::jobs::RunValidation;
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use crate::store::artifacts::validate_digest;
use crate::store::{
    Comparison, Cursor, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Node, RunSearch, RunSource, RunStatus,
    TextAttribute, TextMatch, TraverseDirection,
};
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header::LOCATION};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// Name under which a submitted definition appears in problems, in place of a file name.
const SUBMITTED_PIPELINE: &str = "request body field `pipeline`";

/// Returns the routes of the runs API.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(documented!(submit_run, list_runs))
        .routes(documented!(get_run))
        .routes(documented!(cancel_run))
}

/// Body of `POST /api/v1/runs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRun {
    /// The pipeline definition, as YAML text.
    pub pipeline: String,
    /// Overrides of pipeline params, by name.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    /// Tags of the run.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Seed of the run; every step's seed derives from it.
    #[serde(default)]
    pub seed: u64,
    /// Whether steps may reuse outputs of identical earlier step runs.
    #[serde(default = "default_true")]
    pub use_cache: bool,
    /// Fixed clock and seeded randomness for every step. When false, steps see the real clock
    /// and the cache is off, since their outputs need not repeat.
    #[serde(default = "default_true")]
    pub deterministic: bool,
    /// SHA-256 digests of stored artifacts, by pipeline input name. Every input that the
    /// definition gives as a file path must be here, because the server does not read files
    /// named by clients.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
}

fn default_true() -> bool {
    true
}

/// `POST /api/v1/runs`: records a run of a pipeline definition and starts executing it on
/// this server.
#[utoipa::path(
    post,
    path = "/api/v1/runs",
    tag = "runs",
    request_body = SubmitRun,
    responses(
        (status = 202, description = "The run is recorded and queued; poll its URL in the \
            Location header", body = RunAccepted),
        (status = 400, description = "The request or the definition is invalid; `details` \
            lists every problem", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    )
)]
async fn submit_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<SubmitRun>,
) -> ApiResult<Response> {
    if state.is_stopping() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "the server is shutting down and starts no new runs; submit the run again once it \
             is back",
        ));
    }
    check_text_fields(&request)?;
    let definition = PipelineDefinition::parse(&request.pipeline, SUBMITTED_PIPELINE)
        .map_err(|error| definition_error(&error))?;
    check_inputs(&state, &definition, &request.inputs)?;
    check_param_names(&definition, &request.params)?;

    let plan = plan_run(&state, &request)?;
    check_plugins(state.engine(), &plan).await?;
    record_uploaded_inputs(&state, &request.inputs).await?;
    let options = run_options(&state, &caller, &request);
    let run_id = state.engine().create_run(&plan, &options).await?;
    // The tokens stay in memory only until the run ends, so they are read before it starts.
    let external_steps = state.engine().external_step_tokens(&run_id);
    let validation = RunValidation {
        gates: state.gates().clone(),
        registry: state.registry(),
        actor: Actor {
            name: caller.name.clone(),
            role: caller.role,
        },
    };
    state.jobs().start(
        state.engine().clone(),
        run_id.clone(),
        plan,
        options,
        validation,
    );
    tracing::info!(run_id = %run_id, user = %caller.name, "run submitted");

    let location = format!("/api/v1/runs/{run_id}");
    let body = RunAccepted {
        run_id,
        status: RunStatus::Queued,
        external_steps: external_steps.into_iter().map(Into::into).collect(),
    };
    Ok((StatusCode::ACCEPTED, [(LOCATION, location)], Json(body)).into_response())
}

/// Rejects an empty definition, and text that PostgreSQL cannot store: NUL characters.
fn check_text_fields(request: &SubmitRun) -> ApiResult<()> {
    if request.pipeline.trim().is_empty() {
        return Err(ApiError::invalid_field(
            "pipeline",
            "is empty; send the YAML text of a pipeline definition",
        ));
    }
    if request.pipeline.contains('\0') {
        return Err(ApiError::invalid_field(
            "pipeline",
            "contains a NUL character, which no YAML definition contains",
        ));
    }
    for (name, value) in &request.params {
        if name.contains('\0') || contains_nul(value) {
            return Err(ApiError::invalid_field(
                format!("params.{}", name.replace('\0', "\\0")),
                "contains a NUL character; remove it",
            ));
        }
    }
    for (key, value) in &request.tags {
        if key.is_empty() {
            return Err(ApiError::invalid_field(
                "tags",
                "a tag key is empty; name every tag",
            ));
        }
        if key.contains('\0') || value.contains('\0') {
            return Err(ApiError::invalid_field(
                format!("tags.{}", key.replace('\0', "\\0")),
                "contains a NUL character; remove it",
            ));
        }
    }
    Ok(())
}

/// Returns whether a string anywhere in `value` contains a NUL character.
fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map
            .iter()
            .any(|(key, item)| key.contains('\0') || contains_nul(item)),
        _ => false,
    }
}

/// Checks that every input comes from a stored artifact. The request's `inputs` must name
/// inputs of the definition and stored digests. They must also cover every input the
/// definition gives as a file, because clients cannot have the server read its own files.
fn check_inputs(
    state: &AppState,
    definition: &PipelineDefinition,
    inputs: &BTreeMap<String, String>,
) -> ApiResult<()> {
    let mut problems = Vec::new();
    let declared: Vec<&str> = definition.inputs.keys().map(String::as_str).collect();
    for (name, digest) in inputs {
        let problem = if !definition.inputs.contains_key(name) {
            let hint = nearest(name, declared.iter().copied());
            format!(
                "the pipeline has no input `{name}`{hint}; its inputs are [{}]",
                declared.join(", ")
            )
        } else if let Err(error) = validate_digest(digest) {
            error.to_string()
        } else if !state.artifacts().contains(digest) {
            format!(
                "no artifact with digest {digest} is stored; upload the file with POST \
                 /api/v1/artifacts first and pass the digest it returns"
            )
        } else {
            continue;
        };
        problems.push(field_problem(format!("inputs.{name}"), problem));
    }
    for (name, spec) in &definition.inputs {
        if inputs.contains_key(name) || spec.digest.is_some() {
            continue;
        }
        if let Some(path) = &spec.path {
            let problem = format!(
                "input `{name}` is the file `{path}`, which the server would read from its own \
                 disk; upload the file with POST /api/v1/artifacts and pass the digest it \
                 returns as `inputs.{name}`"
            );
            problems.push(field_problem(format!("inputs.{name}"), problem));
        }
    }
    problems_error("the run's inputs are not usable", problems)
}

/// Rejects param overrides that the definition does not declare.
fn check_param_names(
    definition: &PipelineDefinition,
    params: &Map<String, Value>,
) -> ApiResult<()> {
    let declared: Vec<&str> = definition.params.keys().map(String::as_str).collect();
    let problems = params
        .keys()
        .filter(|name| !definition.params.contains_key(*name))
        .map(|name| {
            let hint = nearest(name, declared.iter().copied());
            let problem = format!(
                "`{name}` is not a param of the pipeline{hint}; it declares [{}]",
                declared.join(", ")
            );
            field_problem(format!("params.{name}"), problem)
        })
        .collect();
    problems_error("the param overrides are not valid", problems)
}

fn field_problem(field: String, problem: String) -> FieldProblem {
    FieldProblem { field, problem }
}

/// Returns a 400 listing `problems`, or nothing when there are none.
fn problems_error(summary: &str, problems: Vec<FieldProblem>) -> ApiResult<()> {
    if problems.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.problem))
        .collect();
    let mut error = ApiError::invalid(format!("{summary}: {}", listed.join("; ")));
    error.details = problems;
    Err(error)
}

/// Records each input that no step produced, such as a file uploaded with
/// `POST /api/v1/artifacts`, as a dataset named after the input. A run from the command line
/// records its file inputs the same way, so the lineage of its artifacts starts at datasets,
/// which policies such as `dataset-allowlist` check.
async fn record_uploaded_inputs(
    state: &AppState,
    inputs: &BTreeMap<String, String>,
) -> ApiResult<()> {
    let store = state.store();
    for (name, digest) in inputs {
        if store.get_dataset(digest).await?.is_some() {
            continue;
        }
        let upstream = store
            .traverse(Node::artifact(digest), TraverseDirection::Upstream, Some(1))
            .await?;
        if upstream.nodes.len() > 1 {
            continue;
        }
        let uri = format!("/api/v1/artifacts/{digest}");
        store.record_dataset(digest, name, &uri).await?;
        tracing::info!(input = %name, digest = %digest, "uploaded input recorded as a dataset");
    }
    Ok(())
}

fn plan_run(state: &AppState, request: &SubmitRun) -> ApiResult<Plan> {
    let registry = state.registry();

    // Every file input is pinned to a digest by now, so planning reads no file and the base
    // directory only has to exist.
    let context = PlanContext {
        registry: &registry,
        base_dir: &state.config().data_dir,
        overrides: &request.params,
        artifacts: state.artifacts(),
        pinned_inputs: &request.inputs,
    };
    plan(&request.pipeline, SUBMITTED_PIPELINE, &context).map_err(|error| definition_error(&error))
}

/// Loads every plugin of the plan off the async threads, since the first load of a component
/// compiles it.
async fn check_plugins(engine: &Engine, plan: &Plan) -> ApiResult<()> {
    let engine = engine.clone();
    let plan = plan.clone();
    tokio::task::spawn_blocking(move || engine.check_plugins(&plan))
        .await
        .map_err(ApiError::internal)?
        .map_err(|error| definition_error(&error))
}

fn run_options(state: &AppState, caller: &Caller, request: &SubmitRun) -> RunOptions {
    RunOptions {
        parallelism: state.settings().parallelism.max(1),
        use_cache: request.use_cache && request.deterministic,
        deterministic: request.deterministic,
        seed: request.seed,
        tags: request
            .tags
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        user: caller.name.clone(),
        source: RunSource::Api,
        pipeline_dir: None,
    }
}

/// Query of `GET /api/v1/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListRunsQuery {
    /// Conditions joined by `and`, such as `metrics.rmse < 0.7 and params.alpha = '0.1'`.
    /// Terms: `metrics.KEY` (numbers: = != < <= > >=), `params.KEY` and `tags.KEY` (text: =
    /// != LIKE ILIKE IN), and the attributes run_id, name, status, source, user, pipeline,
    /// project, created_at, started_at, ended_at and duration (milliseconds from start to
    /// end), with or without `attributes.`. Quote keys with spaces or punctuation in
    /// backticks and text values in single quotes.
    pub filter: Option<String>,
    /// Comma-separated sort keys, each an attribute, `metrics.KEY`, `params.KEY` or
    /// `tags.KEY`, optionally followed by ASC or DESC. Runs without the metric, param or tag
    /// come last. Default: `created_at DESC`.
    pub order_by: Option<String>,
    /// Runs per page, 1 to 1000; default 100.
    pub page_size: Option<u64>,
    /// The `next_page_token` of the previous page, with the same filter and order.
    pub page_token: Option<String>,
    /// Only runs of this project.
    pub project: Option<String>,
    /// Only runs of pipelines with this name.
    pub pipeline: Option<String>,
    /// Only runs with this status.
    pub status: Option<String>,
}

/// `GET /api/v1/runs`: lists runs matching a filter, one page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/runs",
    tag = "runs",
    params(ListRunsQuery),
    responses(
        (status = 200, description = "One page of runs", body = RunList),
        (status = 400, description = "The filter, order, page size or page token is invalid",
            body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
    )
)]
async fn list_runs(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListRunsQuery>,
) -> ApiResult<Json<RunList>> {
    let search = search_of(query)?;
    let page = state.store().search_runs(&search).await?;
    let next_page_token = page.next.map(|cursor| cursor.to_token(&search));
    Ok(Json(RunList {
        items: page.runs.into_iter().map(RunSummary::from).collect(),
        next_page_token,
    }))
}

/// Turns the query into a store search, reporting the parameter at fault.
fn search_of(query: ListRunsQuery) -> ApiResult<RunSearch> {
    let filter_text = query.filter.unwrap_or_default();
    let mut filter = parse_filter(&filter_text)
        .map_err(|error| ApiError::invalid_field("filter", error.message))?;
    filter.extend(shortcut_filters(
        query.project,
        query.pipeline,
        query.status,
    )?);
    let order_text = query.order_by.unwrap_or_default();
    let order_by = parse_order_by(&order_text)
        .map_err(|error| ApiError::invalid_field("order_by", error.message))?;

    let page_size = query.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(ApiError::invalid_field(
            "page_size",
            format!("{page_size} is out of range; ask for 1 to {MAX_PAGE_SIZE} runs per page"),
        ));
    }

    let mut search = RunSearch::new(filter, order_by, page_size);
    if let Some(token) = query.page_token.filter(|token| !token.is_empty()) {
        let cursor = Cursor::from_token(&token, &search)
            .map_err(|error| ApiError::invalid_field("page_token", error.to_string()))?;
        search.after = Some(cursor);
    }
    Ok(search)
}

/// Builds the conditions of the `project`, `pipeline` and `status` parameters.
fn shortcut_filters(
    project: Option<String>,
    pipeline: Option<String>,
    status: Option<String>,
) -> ApiResult<Vec<Comparison>> {
    let mut filter = Vec::new();
    for (name, value) in [
        ("project", &project),
        ("pipeline", &pipeline),
        ("status", &status),
    ] {
        if value.as_ref().is_some_and(|text| text.contains('\0')) {
            return Err(ApiError::invalid_field(
                name,
                "contains a NUL character; remove it",
            ));
        }
    }
    let mut equal = |attribute, text: String| {
        filter.push(Comparison::Text {
            attribute,
            test: TextMatch::Eq(text),
        });
    };
    if let Some(project) = project {
        equal(TextAttribute::Project, project);
    }
    if let Some(pipeline) = pipeline {
        equal(TextAttribute::Pipeline, pipeline);
    }
    if let Some(status) = status {
        let status = status
            .parse::<RunStatus>()
            .map_err(|error| ApiError::invalid_field("status", error.to_string()))?;
        equal(TextAttribute::Status, status.to_string());
    }
    Ok(filter)
}

/// Path of the routes about one run.
#[derive(Debug, Deserialize)]
struct RunPath {
    run_id: String,
}

/// Rejects a run id that is not a UUID, before it reaches the database.
pub(crate) fn check_run_id(run_id: &str) -> ApiResult<()> {
    if uuid::Uuid::parse_str(run_id).is_ok() {
        return Ok(());
    }
    Err(ApiError::invalid_field(
        "run_id",
        format!(
            "`{run_id}` is not a run id; run ids are UUIDs such as \
             01939a4e-5c1a-7c3e-9d2b-6f1e2a3b4c5d, and GET /api/v1/runs lists them"
        ),
    ))
}

/// `GET /api/v1/runs/{run_id}`: everything recorded about one run.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run_id}",
    tag = "runs",
    params(("run_id" = String, Path, description = "Run id, a UUID")),
    responses(
        (status = 200, description = "The run with its steps, metrics, artifacts and \
            environment", body = RunDetail),
        (status = 400, description = "The run id is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
    )
)]
async fn get_run(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<RunPath>,
) -> ApiResult<Json<RunDetail>> {
    check_run_id(&path.run_id)?;
    let detail = state.store().get_run_detail(&path.run_id).await?;
    let mut detail = RunDetail::from(detail);
    detail.validations = state.gates().run_validations(&path.run_id).await?;
    Ok(Json(detail))
}

/// `POST /api/v1/runs/{run_id}/cancel`: stops a queued or running run.
///
/// A run this server executes is asked to stop and ends as `cancelled` once its running steps
/// have stopped (202). A queued or running external run is marked `cancelled` at once (200).
#[utoipa::path(
    post,
    path = "/api/v1/runs/{run_id}/cancel",
    tag = "runs",
    params(("run_id" = String, Path, description = "Run id, a UUID")),
    responses(
        (status = 200, description = "The external run is now cancelled", body = RunAccepted),
        (status = 202, description = "The run is stopping; poll it until its status is \
            cancelled", body = RunAccepted),
        (status = 400, description = "The run id is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 409, description = "The run has ended, or another process executes it",
            body = ErrorBody),
    )
)]
async fn cancel_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<RunPath>,
) -> ApiResult<Response> {
    let run_id = path.run_id;
    check_run_id(&run_id)?;
    let run = state.store().require_run(&run_id).await?;
    if run.status.is_final() {
        return Err(ApiError::conflict(format!(
            "run {run_id} already ended as {}; only queued or running runs can be cancelled",
            run.status
        )));
    }

    if state.jobs().cancel(&run_id) {
        let run = state.store().require_run(&run_id).await?;
        let body = RunAccepted {
            run_id,
            status: run.status,
            external_steps: Vec::new(),
        };
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    if run.source != RunSource::External {
        let owner = match (&run.owner_hostname, run.owner_pid) {
            (Some(host), Some(pid)) => format!("process {pid} on {host}"),
            _ => "another process".to_owned(),
        };
        return Err(ApiError::conflict(format!(
            "run {run_id} is {} in {owner}, not in this server; stop it there, for example \
             with Ctrl-C for `runledger run`",
            run.status
        )));
    }

    let reason = format!("cancelled through the API by {}", caller.name);
    let run = state
        .store()
        .set_run_status(&run_id, RunStatus::Cancelled, Some(reason))
        .await?;
    tracing::info!(run_id = %run_id, user = %caller.name, "external run cancelled");
    let body = RunAccepted {
        run_id,
        status: run.status,
        external_steps: Vec::new(),
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}
