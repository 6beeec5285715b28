//! Reads of the lineage graph for display: what each node is called, where a query starts, and
//! the graph one run recorded.

use super::entity::lineage_edge::{self, NodeKind};
use super::entity::{
    artifact, dataset, openlineage_dataset, openlineage_run, run, run_artifact, step_run,
};
use super::lineage::{Graph, Node};
use super::{Store, StoreError, batch, runs};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Description of a lineage node for people reading a graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeDescription {
    /// Short name: the dataset or step name, the names an artifact was linked under, the run
    /// name.
    pub label: String,
    /// The run a step run belongs to, or the run itself.
    pub run_id: Option<String>,
    /// Status of a run or step run, such as `succeeded`.
    pub status: Option<String>,
    /// Namespace of a named dataset.
    pub namespace: Option<String>,
    /// `runId` of the parent run of a run reported by OpenLineage.
    pub parent_run_id: Option<String>,
}

impl Store {
    /// Describes each of `nodes` that is recorded, with one query per node kind and chunk.
    /// Nodes that are not recorded are missing from the result.
    pub async fn describe_nodes(
        &self,
        nodes: &[Node],
    ) -> Result<HashMap<Node, NodeDescription>, StoreError> {
        let mut ids_by_kind: BTreeMap<NodeKind, Vec<&str>> = BTreeMap::new();
        for node in nodes {
            ids_by_kind.entry(node.kind).or_default().push(&node.id);
        }

        let mut described = HashMap::new();
        for (kind, ids) in ids_by_kind {
            for chunk in ids.chunks(batch::rows_per_statement(1) - 1) {
                let found = describe_kind(&self.db, kind, chunk).await?;
                described.extend(
                    found
                        .into_iter()
                        .map(|(id, description)| (Node::new(kind, id), description)),
                );
            }
        }
        Ok(described)
    }

    /// Returns the nodes a lineage query from `node` starts at, or `None` when `node` is not
    /// recorded. A run starts at its own node and at each of its step runs, because pipeline
    /// runs record their edges on step runs.
    pub async fn lineage_starts(&self, node: &Node) -> Result<Option<Vec<Node>>, StoreError> {
        let described = self.describe_nodes(std::slice::from_ref(node)).await?;
        if !described.contains_key(node) {
            return Ok(None);
        }
        let mut starts = vec![node.clone()];
        if node.kind == NodeKind::Run {
            let steps = step_run::Entity::find()
                .select_only()
                .column(step_run::Column::Id)
                .filter(step_run::Column::RunId.eq(&node.id))
                .order_by_asc(step_run::Column::CreatedAt)
                .order_by_asc(step_run::Column::Id)
                .into_tuple::<String>()
                .all(&self.db)
                .await?;
            starts.extend(steps.into_iter().map(Node::step_run));
        }
        Ok(Some(starts))
    }

    /// Returns the edges a run recorded, in recording order, and their nodes in order of first
    /// appearance. Fails with [`StoreError::RunNotFound`] for an unknown run.
    pub async fn run_lineage(&self, run_id: &str) -> Result<Graph, StoreError> {
        runs::require_run(&self.db, run_id).await?;
        let edges = lineage_edge::Entity::find()
            .filter(lineage_edge::Column::RunId.eq(run_id))
            .order_by_asc(lineage_edge::Column::Id)
            .all(&self.db)
            .await?;

        let mut seen = HashSet::new();
        let mut nodes = Vec::new();
        for edge in &edges {
            let ends = [
                Node::new(edge.source_kind, edge.source_id.clone()),
                Node::new(edge.target_kind, edge.target_id.clone()),
            ];
            for node in ends {
                if seen.insert(node.clone()) {
                    nodes.push(node);
                }
            }
        }
        Ok(Graph { nodes, edges })
    }
}

/// Describes the recorded nodes of one kind among `ids`, by id.
async fn describe_kind(
    db: &impl ConnectionTrait,
    kind: NodeKind,
    ids: &[&str],
) -> Result<Vec<(String, NodeDescription)>, StoreError> {
    let ids = ids.iter().copied();
    match kind {
        NodeKind::Dataset => describe_datasets(db, ids).await,
        NodeKind::Artifact => describe_artifacts(db, ids).await,
        NodeKind::StepRun => describe_step_runs(db, ids).await,
        NodeKind::Run => describe_runs(db, ids).await,
        NodeKind::NamedDataset => describe_named_datasets(db, ids).await,
    }
}

async fn describe_datasets<'a>(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<(String, NodeDescription)>, StoreError> {
    let rows = dataset::Entity::find()
        .filter(dataset::Column::Digest.is_in(ids))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.digest, labelled(row.name)))
        .collect())
}

/// Labels an artifact with the names it was linked under, or its media type when it was never
/// linked.
async fn describe_artifacts<'a>(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = &'a str> + Clone,
) -> Result<Vec<(String, NodeDescription)>, StoreError> {
    let recorded = artifact::Entity::find()
        .filter(artifact::Column::Digest.is_in(ids.clone()))
        .all(db)
        .await?;
    let links = run_artifact::Entity::find()
        .select_only()
        .column(run_artifact::Column::Digest)
        .column(run_artifact::Column::Name)
        .filter(run_artifact::Column::Digest.is_in(ids))
        .order_by_asc(run_artifact::Column::Id)
        .into_tuple::<(String, String)>()
        .all(db)
        .await?;

    let mut names: HashMap<String, Vec<String>> = HashMap::new();
    for (digest, name) in links {
        let names = names.entry(digest).or_default();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(recorded
        .into_iter()
        .map(|row| {
            let label = match names.remove(&row.digest) {
                Some(names) => names.join(", "),
                None => row.media_type,
            };
            (row.digest, labelled(label))
        })
        .collect())
}

async fn describe_step_runs<'a>(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<(String, NodeDescription)>, StoreError> {
    let rows = step_run::Entity::find()
        .select_only()
        .column(step_run::Column::Id)
        .column(step_run::Column::Name)
        .column(step_run::Column::RunId)
        .column(step_run::Column::Status)
        .filter(step_run::Column::Id.is_in(ids))
        .into_tuple::<(String, String, String, String)>()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, run_id, status)| {
            let description = NodeDescription {
                run_id: Some(run_id),
                status: Some(status),
                ..labelled(name)
            };
            (id, description)
        })
        .collect())
}

async fn describe_runs<'a>(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = &'a str> + Clone,
) -> Result<Vec<(String, NodeDescription)>, StoreError> {
    let rows = run::Entity::find()
        .select_only()
        .column(run::Column::Id)
        .column(run::Column::Name)
        .column(run::Column::Status)
        .filter(run::Column::Id.is_in(ids.clone()))
        .into_tuple::<(String, String, String)>()
        .all(db)
        .await?;
    let parents: HashMap<String, String> = openlineage_run::Entity::find()
        .select_only()
        .column(openlineage_run::Column::RunId)
        .column(openlineage_run::Column::ParentRunId)
        .filter(openlineage_run::Column::RunId.is_in(ids))
        .filter(openlineage_run::Column::ParentRunId.is_not_null())
        .into_tuple::<(String, String)>()
        .all(db)
        .await?
        .into_iter()
        .collect();
    Ok(rows
        .into_iter()
        .map(|(id, name, status)| {
            let description = NodeDescription {
                run_id: Some(id.clone()),
                status: Some(status),
                parent_run_id: parents.get(&id).cloned(),
                ..labelled(name)
            };
            (id, description)
        })
        .collect())
}

async fn describe_named_datasets<'a>(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<(String, NodeDescription)>, StoreError> {
    let rows = openlineage_dataset::Entity::find()
        .filter(openlineage_dataset::Column::NodeId.is_in(ids))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let description = NodeDescription {
                namespace: Some(row.namespace),
                ..labelled(row.name)
            };
            (row.node_id, description)
        })
        .collect())
}

fn labelled(label: String) -> NodeDescription {
    NodeDescription {
        label,
        ..NodeDescription::default()
    }
}
