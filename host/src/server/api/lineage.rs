//! Routes of the lineage API: graph queries from any node, the graph of one run, and the
//! OpenLineage endpoint that records run events from other tools into the same graph.
//!
//! A node is written `KIND:ID`: `dataset:DIGEST`, `artifact:DIGEST`, `step_run:UUID`,
//! `run:UUID` or `named_dataset:NAMESPACE/NAME`. Edges point the way data flowed, from an input
//! to the step run or run that read it and from there to its outputs.

use crate::server::Caller;
use crate::server::error::{ApiError, ApiResult, ErrorBody};
use crate::server::extract::{ApiJson, ApiPath, ApiQuery};
use crate::server::openlineage::{self, RunEventBody};
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use crate::store::artifacts::validate_digest;
use crate::store::entity::lineage_edge;
use crate::store::{Graph, Node, NodeDescription, NodeKind, RunStatus, TraverseDirection};
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use utoipa::{IntoParams, ToSchema};

/// Edges followed from the start node when the query names no depth.
const DEFAULT_DEPTH: u32 = 10;

/// Deepest query accepted. Each level costs a few queries, so this bounds one request's work.
const MAX_DEPTH: u32 = 100;

/// Returns the lineage routes with their OpenAPI descriptions.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(documented!(query_lineage, post_run_event))
        .routes(documented!(run_lineage))
}

/// Kind of a lineage node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineageNodeKind {
    /// A dataset identified by the SHA-256 of its content.
    Dataset,
    /// An artifact identified by the SHA-256 of its content.
    Artifact,
    /// A step run of a pipeline run, identified by UUID.
    StepRun,
    /// A run reported by OpenLineage events, identified by UUID.
    Run,
    /// A dataset named by OpenLineage events, identified by `NAMESPACE/NAME`.
    NamedDataset,
}

impl From<NodeKind> for LineageNodeKind {
    fn from(kind: NodeKind) -> Self {
        match kind {
            NodeKind::Dataset => Self::Dataset,
            NodeKind::Artifact => Self::Artifact,
            NodeKind::StepRun => Self::StepRun,
            NodeKind::Run => Self::Run,
            NodeKind::NamedDataset => Self::NamedDataset,
        }
    }
}

/// A node of a lineage graph.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LineageNode {
    /// Kind of node.
    pub kind: LineageNodeKind,
    /// Id within the kind.
    pub id: String,
    /// Name for display: dataset, artifact or step name, or run name. The id when the node
    /// is not recorded, such as a parent run that sent no events.
    pub label: String,
    /// The run of a step run, or the run itself.
    pub run_id: Option<String>,
    /// Status of a run or step run, such as `succeeded`.
    pub status: Option<String>,
    /// Namespace of a named dataset.
    pub namespace: Option<String>,
    /// Parent run of a run, from the OpenLineage `parent` run facet.
    pub parent_run_id: Option<String>,
}

/// One end of an edge.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeRef {
    /// Kind of node.
    pub kind: LineageNodeKind,
    /// Id within the kind.
    pub id: String,
}

/// An edge of a lineage graph: data flowed from `source` into `target` during `run_id`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LineageEdge {
    /// Node the data came from.
    pub source: NodeRef,
    /// Node the data went to.
    pub target: NodeRef,
    /// The run that recorded the edge.
    pub run_id: String,
    /// Time of recording, in milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// Body of the lineage queries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LineageGraph {
    /// Reached nodes, the start nodes first, then in breadth-first order.
    pub nodes: Vec<LineageNode>,
    /// The edges followed, each once.
    pub edges: Vec<LineageEdge>,
}

/// Direction in which a lineage query follows edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueryDirection {
    /// Towards what the node was derived from.
    Upstream,
    /// Towards what was derived from the node.
    Downstream,
    /// Both ways.
    Both,
}

/// Query of `GET /api/v1/lineage`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LineageQuery {
    /// Start node as `KIND:ID`, such as `artifact:DIGEST` or `named_dataset:s3://bucket/a.csv`.
    /// A run starts at its own node and at its step runs.
    node: String,
    /// `upstream` (the default), `downstream` or `both`.
    #[param(inline)]
    direction: Option<QueryDirection>,
    /// Maximum number of edges between the start and any returned node, 1 to 100; 10 when
    /// omitted.
    #[param(minimum = 1, maximum = 100)]
    depth: Option<u32>,
}

/// Body of `POST /api/v1/lineage`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunEventAccepted {
    /// The run the event belongs to; its id is the event's `runId`.
    pub run_id: String,
    /// The run's status after the event.
    #[schema(value_type = String, example = "running")]
    pub status: RunStatus,
}

/// Path of a run.
#[derive(Debug, Deserialize)]
struct RunPath {
    run_id: String,
}

/// `GET /api/v1/lineage`: the lineage graph around a node.
#[utoipa::path(
    get,
    path = "/api/v1/lineage",
    tag = "lineage",
    params(LineageQuery),
    responses(
        (status = 200, description = "The nodes and edges reached", body = LineageGraph),
        (status = 400, description = "The node, direction or depth is not valid",
            body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "The start node is not recorded", body = ErrorBody),
    )
)]
async fn query_lineage(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<LineageQuery>,
) -> ApiResult<Json<LineageGraph>> {
    let start = parse_node(&query.node)?;
    let depth = query.depth.unwrap_or(DEFAULT_DEPTH);
    if !(1..=MAX_DEPTH).contains(&depth) {
        return Err(ApiError::invalid_field(
            "query.depth",
            format!("{depth} is out of range; ask for 1 to {MAX_DEPTH} edges"),
        ));
    }

    let store = state.store();
    let Some(starts) = store.lineage_starts(&start).await? else {
        return Err(ApiError::not_found(format!(
            "lineage node {} is not recorded; check the kind and the id",
            query.node
        )));
    };
    let graph = match query.direction.unwrap_or(QueryDirection::Upstream) {
        QueryDirection::Upstream => {
            store
                .traverse_from(starts, TraverseDirection::Upstream, Some(depth))
                .await?
        }
        QueryDirection::Downstream => {
            store
                .traverse_from(starts, TraverseDirection::Downstream, Some(depth))
                .await?
        }
        QueryDirection::Both => {
            let upstream = store
                .traverse_from(starts.clone(), TraverseDirection::Upstream, Some(depth))
                .await?;
            let downstream = store
                .traverse_from(starts, TraverseDirection::Downstream, Some(depth))
                .await?;
            merge(upstream, downstream)
        }
    };
    Ok(Json(view(&state, graph).await?))
}

/// `GET /api/v1/runs/{run_id}/lineage`: the edges a run recorded and their nodes.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run_id}/lineage",
    tag = "lineage",
    params(("run_id" = String, Path, description = "Id of the run")),
    responses(
        (status = 200, description = "The run's edges in recording order and their nodes",
            body = LineageGraph),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
    )
)]
async fn run_lineage(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<RunPath>,
) -> ApiResult<Json<LineageGraph>> {
    let graph = state.store().run_lineage(&path.run_id).await?;
    Ok(Json(view(&state, graph).await?))
}

/// `POST /api/v1/lineage`: records an OpenLineage run event (spec 2-0-2).
///
/// The first event of a `runId` creates a run with that id. Later ones, in any order and
/// repeated, move its status forward and add datasets. An OpenLineage client's HTTP transport
/// sends here with the endpoint `api/v1/lineage`.
#[utoipa::path(
    post,
    path = "/api/v1/lineage",
    tag = "lineage",
    request_body = RunEventBody,
    responses(
        (status = 200, description = "The event was recorded on an existing run",
            body = RunEventAccepted),
        (status = 201, description = "The event created its run", body = RunEventAccepted),
        (status = 400, description = "A required field is missing or not valid; the details \
            name each", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
        (status = 409, description = "The runId is the id of a run not reported by \
            OpenLineage", body = ErrorBody),
        (status = 413, description = "The body is larger than the server's limit",
            body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    )
)]
async fn post_run_event(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<RunEventBody>,
) -> ApiResult<(StatusCode, Json<RunEventAccepted>)> {
    let event = openlineage::to_event(body, &caller.name)?;
    let recorded = state.store().record_openlineage_event(&event).await?;
    tracing::info!(
        run_id = %recorded.run_id,
        job = %event.job_name,
        reported = ?event.status,
        status = %recorded.status,
        "openlineage event recorded"
    );

    let code = if recorded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let accepted = RunEventAccepted {
        run_id: recorded.run_id,
        status: recorded.status,
    };
    Ok((code, Json(accepted)))
}

/// Parses `KIND:ID`, checking that datasets and artifacts are named by a digest.
fn parse_node(text: &str) -> ApiResult<Node> {
    let invalid = |problem: String| ApiError::invalid_field("query.node", problem);
    let Some((kind, id)) = text.split_once(':') else {
        return Err(invalid(format!(
            "`{}` is not a node; write KIND:ID, such as artifact:DIGEST or run:UUID",
            text.escape_debug()
        )));
    };
    let kind: NodeKind = kind.parse().map_err(|error| invalid(format!("{error}")))?;
    if id.is_empty() {
        return Err(invalid("has an empty id; write KIND:ID".to_owned()));
    }
    if matches!(kind, NodeKind::Dataset | NodeKind::Artifact) && validate_digest(id).is_err() {
        return Err(invalid(format!(
            "`{}` is not a digest; a {kind} is named by 64 lowercase hex characters",
            id.escape_debug()
        )));
    }
    Ok(Node::new(kind, id))
}

/// Joins an upstream and a downstream walk from the same starts.
fn merge(mut graph: Graph, other: Graph) -> Graph {
    let mut nodes: HashSet<Node> = graph.nodes.iter().cloned().collect();
    let mut edges: HashSet<i64> = graph.edges.iter().map(|edge| edge.id).collect();
    for node in other.nodes {
        if nodes.insert(node.clone()) {
            graph.nodes.push(node);
        }
    }
    for edge in other.edges {
        if edges.insert(edge.id) {
            graph.edges.push(edge);
        }
    }
    graph
}

/// Adds labels to a graph and converts it to the response shape.
async fn view(state: &AppState, graph: Graph) -> ApiResult<LineageGraph> {
    let mut described = state.store().describe_nodes(&graph.nodes).await?;
    let nodes = graph
        .nodes
        .into_iter()
        .map(|node| node_view(node, &mut described))
        .collect();
    let edges = graph.edges.into_iter().map(edge_view).collect();
    Ok(LineageGraph { nodes, edges })
}

fn node_view(node: Node, described: &mut HashMap<Node, NodeDescription>) -> LineageNode {
    let description = described.remove(&node).unwrap_or_else(|| NodeDescription {
        label: node.id.clone(),
        ..NodeDescription::default()
    });
    LineageNode {
        kind: node.kind.into(),
        id: node.id,
        label: description.label,
        run_id: description.run_id,
        status: description.status,
        namespace: description.namespace,
        parent_run_id: description.parent_run_id,
    }
}

fn edge_view(edge: lineage_edge::Model) -> LineageEdge {
    LineageEdge {
        source: NodeRef {
            kind: edge.source_kind.into(),
            id: edge.source_id,
        },
        target: NodeRef {
            kind: edge.target_kind.into(),
            id: edge.target_id,
        },
        run_id: edge.run_id,
        created_at: edge.created_at,
    }
}
