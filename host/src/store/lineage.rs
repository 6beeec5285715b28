//! Datasets and the lineage graph: recording edges and walking them upstream or downstream.

use super::artifact_records::check_digest;
use super::entity::dataset;
use super::entity::lineage_edge::{self, NodeKind};
use super::{Store, StoreError, batch, now_ms, runs};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// A node of the lineage graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Node {
    /// Kind of the node.
    pub kind: NodeKind,
    /// A digest for datasets and artifacts, a UUID for step runs and runs, `NAMESPACE/NAME`
    /// for named datasets.
    pub id: String,
}

impl Node {
    /// Creates the node of the dataset with this digest.
    pub fn dataset(digest: impl Into<String>) -> Self {
        Self::new(NodeKind::Dataset, digest)
    }

    /// Creates the node of the artifact with this digest.
    pub fn artifact(digest: impl Into<String>) -> Self {
        Self::new(NodeKind::Artifact, digest)
    }

    /// Creates the node of the step run with this id.
    pub fn step_run(id: impl Into<String>) -> Self {
        Self::new(NodeKind::StepRun, id)
    }

    /// Creates the node of the run with this id, as OpenLineage events record it.
    pub fn run(id: impl Into<String>) -> Self {
        Self::new(NodeKind::Run, id)
    }

    /// Creates the node of a dataset an OpenLineage event named.
    pub fn named_dataset(namespace: &str, name: &str) -> Self {
        Self::new(NodeKind::NamedDataset, format!("{namespace}/{name}"))
    }

    /// Creates the node of `kind` with this id.
    pub fn new(kind: NodeKind, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
        }
    }
}

/// An edge to record with [`Store::add_edges`]: `source` flowed into `target` during `run_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEdge {
    /// The run during which the data flowed.
    pub run_id: String,
    /// Node the data came from.
    pub source: Node,
    /// Node the data went to.
    pub target: Node,
}

/// Direction in which [`Store::traverse`] follows edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraverseDirection {
    /// From a node to what it was derived from.
    Upstream,
    /// From a node to what was derived from it.
    Downstream,
}

/// The part of the lineage graph reached by a traversal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graph {
    /// Reached nodes in breadth-first order, the start node first.
    pub nodes: Vec<Node>,
    /// The edges followed, each once. Edges recorded by several runs appear once per run.
    pub edges: Vec<lineage_edge::Model>,
}

impl Store {
    /// Records a dataset and returns the stored row. Recording a digest again returns the
    /// first row, keeping its name and URI.
    pub async fn record_dataset(
        &self,
        digest: &str,
        name: &str,
        uri: &str,
    ) -> Result<dataset::Model, StoreError> {
        check_digest(digest)?;
        let row = dataset::ActiveModel {
            digest: Set(digest.to_owned()),
            name: Set(name.to_owned()),
            uri: Set(uri.to_owned()),
            created_at: Set(now_ms()),
        };
        dataset::Entity::insert(row)
            .on_conflict(
                OnConflict::column(dataset::Column::Digest)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;

        let stored = dataset::Entity::find_by_id(digest).one(&self.db).await?;
        stored.ok_or_else(|| batch::missing_after_insert(&format!("dataset {digest}")).into())
    }

    /// Returns the dataset with this digest, if recorded.
    pub async fn get_dataset(&self, digest: &str) -> Result<Option<dataset::Model>, StoreError> {
        Ok(dataset::Entity::find_by_id(digest).one(&self.db).await?)
    }

    /// Records lineage edges in one transaction. An edge already recorded for the same run is
    /// skipped. Dataset and artifact ids must be SHA-256 digests.
    pub async fn add_edges(&self, edges: &[NewEdge]) -> Result<(), StoreError> {
        check_edges(edges)?;
        if edges.is_empty() {
            return Ok(());
        }

        let transaction = batch::begin_write(&self.db).await?;
        record_edges(&transaction, edges, None).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Walks the lineage graph from `start` breadth first and returns what it reached.
    ///
    /// `max_depth` limits the number of edges between `start` and any returned node; `None`
    /// walks to the ends of the graph. Each level costs one indexed query per node kind, and a
    /// node reached twice is expanded once, so a cycle cannot loop.
    pub async fn traverse(
        &self,
        start: Node,
        direction: TraverseDirection,
        max_depth: Option<u32>,
    ) -> Result<Graph, StoreError> {
        self.traverse_from(vec![start], direction, max_depth).await
    }

    /// Walks the lineage graph like [`Store::traverse`], from several start nodes at once, such
    /// as a run and its step runs. `max_depth` counts edges from the nearest start node.
    pub async fn traverse_from(
        &self,
        starts: Vec<Node>,
        direction: TraverseDirection,
        max_depth: Option<u32>,
    ) -> Result<Graph, StoreError> {
        let mut visited = HashSet::new();
        let mut frontier: Vec<Node> = starts
            .into_iter()
            .filter(|node| visited.insert(node.clone()))
            .collect();
        let mut followed = HashSet::new();
        let mut graph = Graph {
            nodes: frontier.clone(),
            edges: Vec::new(),
        };

        let mut depth = 0;
        while !frontier.is_empty() && max_depth.is_none_or(|max| depth < max) {
            let mut next = Vec::new();
            for edge in adjacent_edges(&self.db, &frontier, direction).await? {
                let far = far_end(&edge, direction);
                if visited.insert(far.clone()) {
                    graph.nodes.push(far.clone());
                    next.push(far);
                }
                if followed.insert(edge.id) {
                    graph.edges.push(edge);
                }
            }
            frontier = next;
            depth += 1;
        }
        Ok(graph)
    }
}

/// Fails unless every dataset and artifact node of `edges` is named by a valid digest.
pub(super) fn check_edges(edges: &[NewEdge]) -> Result<(), StoreError> {
    for edge in edges {
        check_node(&edge.source)?;
        check_node(&edge.target)?;
    }
    Ok(())
}

/// Inserts lineage edges, skipping those already recorded for their run, after checking that
/// their runs exist. `checked_run` names a run the caller already checked.
pub(super) async fn record_edges(
    db: &impl ConnectionTrait,
    edges: &[NewEdge],
    checked_run: Option<&str>,
) -> Result<(), StoreError> {
    let run_ids: HashSet<&str> = edges.iter().map(|edge| edge.run_id.as_str()).collect();
    for run_id in run_ids {
        if Some(run_id) != checked_run {
            runs::require_run(db, run_id).await?;
        }
    }

    let now = now_ms();
    for chunk in edges.chunks(batch::rows_per_statement(6)) {
        insert_edges(db, chunk, now).await?;
    }
    Ok(())
}

fn check_node(node: &Node) -> Result<(), StoreError> {
    match node.kind {
        NodeKind::Dataset | NodeKind::Artifact => check_digest(&node.id),
        NodeKind::StepRun | NodeKind::Run | NodeKind::NamedDataset => Ok(()),
    }
}

async fn insert_edges(
    db: &impl ConnectionTrait,
    edges: &[NewEdge],
    now: i64,
) -> Result<(), StoreError> {
    let rows = edges.iter().map(|edge| lineage_edge::ActiveModel {
        run_id: Set(edge.run_id.clone()),
        source_kind: Set(edge.source.kind),
        source_id: Set(edge.source.id.clone()),
        target_kind: Set(edge.target.kind),
        target_id: Set(edge.target.id.clone()),
        created_at: Set(now),
        ..Default::default()
    });
    let conflict = OnConflict::columns([
        lineage_edge::Column::SourceKind,
        lineage_edge::Column::SourceId,
        lineage_edge::Column::TargetKind,
        lineage_edge::Column::TargetId,
        lineage_edge::Column::RunId,
    ])
    .do_nothing()
    .to_owned();
    lineage_edge::Entity::insert_many(rows)
        .on_conflict(conflict)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Returns the edges whose near end, the source downstream or the target upstream, is one of
/// `nodes`.
async fn adjacent_edges(
    db: &impl ConnectionTrait,
    nodes: &[Node],
    direction: TraverseDirection,
) -> Result<Vec<lineage_edge::Model>, StoreError> {
    let (kind_column, id_column) = match direction {
        TraverseDirection::Downstream => (
            lineage_edge::Column::SourceKind,
            lineage_edge::Column::SourceId,
        ),
        TraverseDirection::Upstream => (
            lineage_edge::Column::TargetKind,
            lineage_edge::Column::TargetId,
        ),
    };

    let mut ids_by_kind: BTreeMap<NodeKind, Vec<&str>> = BTreeMap::new();
    for node in nodes {
        ids_by_kind.entry(node.kind).or_default().push(&node.id);
    }

    let mut edges = Vec::new();
    for (kind, ids) in ids_by_kind {
        for chunk in ids.chunks(batch::rows_per_statement(1) - 1) {
            let found = lineage_edge::Entity::find()
                .filter(kind_column.eq(kind))
                .filter(id_column.is_in(chunk.iter().copied()))
                .order_by_asc(lineage_edge::Column::Id)
                .all(db)
                .await?;
            edges.extend(found);
        }
    }
    Ok(edges)
}

fn far_end(edge: &lineage_edge::Model, direction: TraverseDirection) -> Node {
    match direction {
        TraverseDirection::Downstream => Node::new(edge.target_kind, edge.target_id.clone()),
        TraverseDirection::Upstream => Node::new(edge.source_kind, edge.source_id.clone()),
    }
}
