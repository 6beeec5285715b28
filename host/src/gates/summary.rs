//! The run summaries and lineage summaries that validators and policies receive, read from the
//! store.

use crate::runtime::{DatasetRef, LineageSummary, RunSummary, StepSummary, SummaryMetric};
use crate::store::entity::step_run;
use crate::store::{Direction, Node, NodeKind, StepStatus, Store, StoreError, TraverseDirection};
use std::collections::HashSet;

/// Builds the summary of a run: identity, params, latest metrics, tags, step runs and the
/// datasets it read. Fails with [`StoreError::RunNotFound`] for an unknown run.
pub(crate) async fn run_summary(store: &Store, run_id: &str) -> Result<RunSummary, StoreError> {
    let run = store.require_run(run_id).await?;
    let pipeline = match run.pipeline_id {
        Some(id) => store.get_pipeline(id).await?.map(|p| p.name),
        None => None,
    };

    let params = store.get_params(run_id).await?;
    let metrics = store.latest_metrics(run_id).await?;
    let tags = store.get_tags(run_id).await?;
    let steps = store.list_step_runs(run_id).await?;

    Ok(RunSummary {
        run_id: run.id.clone(),
        name: run.name,
        pipeline: pipeline.unwrap_or_default(),
        status: run.status.to_string(),
        author: run.user_name,
        params: params
            .into_iter()
            .map(|(name, value)| (name, param_json(value)))
            .collect(),
        metrics: metrics
            .into_iter()
            .map(|point| SummaryMetric {
                key: point.key,
                value: point.value,
                step: point.step,
            })
            .collect(),
        tags: tags.into_iter().collect(),
        steps: step_summaries(steps),
        input_datasets: input_datasets(store, run_id).await?,
    })
}

/// Renders a stored param as JSON text. The store keeps string params unquoted and other
/// values as JSON, so text that parses as JSON is kept and anything else becomes a JSON string.
///
/// NOTE: a string param whose text is itself valid JSON, such as `"42"`, comes back as the
/// number 42, because the store does not keep the type of a param.
fn param_json(value: String) -> String {
    match serde_json::from_str::<serde_json::Value>(&value) {
        Ok(_) => value,
        Err(_) => serde_json::Value::String(value).to_string(),
    }
}

/// Orders step runs by start time (steps that never started last, in creation order).
fn step_summaries(mut steps: Vec<step_run::Model>) -> Vec<StepSummary> {
    steps.sort_by_key(|step| (step.started_at.unwrap_or(i64::MAX), step.created_at));
    steps
        .into_iter()
        .map(|step| StepSummary {
            cached: step.status == StepStatus::Cached || step.cached_from.is_some(),
            name: step.name,
            status: step.status.to_string(),
            plugin_digest: step.plugin_digest,
        })
        .collect()
}

/// Lists the datasets a run read directly: its run-level inputs, then the datasets its lineage
/// edges start from, each digest once.
async fn input_datasets(store: &Store, run_id: &str) -> Result<Vec<DatasetRef>, StoreError> {
    let mut seen = HashSet::new();
    let mut datasets = Vec::new();
    for used in store.run_artifact_uses(run_id, None).await? {
        let link = used.link;
        let run_input = link.step_run_id.is_none() && link.direction == Direction::Input;
        if run_input && seen.insert(link.digest.clone()) {
            datasets.push(DatasetRef {
                name: link.name,
                digest: link.digest,
            });
        }
    }

    let graph = store.run_lineage(run_id).await?;
    let sources: Vec<Node> = graph
        .edges
        .iter()
        .map(|edge| Node::new(edge.source_kind, edge.source_id.clone()))
        .filter(|node| is_dataset(node.kind))
        .collect();
    for dataset in named_datasets(store, &sources).await? {
        let key = dataset_key(&dataset);
        if seen.insert(key) {
            datasets.push(dataset);
        }
    }
    Ok(datasets)
}

/// Builds the lineage summary of an artifact: every dataset upstream of it, at any depth and
/// across runs, each once, in breadth-first order.
pub(crate) async fn lineage_summary(
    store: &Store,
    artifact_digest: &str,
) -> Result<LineageSummary, StoreError> {
    let start = Node::artifact(artifact_digest);
    let graph = store
        .traverse(start, TraverseDirection::Upstream, None)
        .await?;
    let nodes: Vec<Node> = graph
        .nodes
        .into_iter()
        .filter(|node| is_dataset(node.kind))
        .collect();
    Ok(LineageSummary {
        artifact_digest: artifact_digest.to_owned(),
        datasets: named_datasets(store, &nodes).await?,
    })
}

fn is_dataset(kind: NodeKind) -> bool {
    matches!(kind, NodeKind::Dataset | NodeKind::NamedDataset)
}

/// Names dataset nodes, keeping their order and dropping repeats. A content-addressed dataset
/// is named as it was first recorded. A dataset named by an OpenLineage event is named
/// `NAMESPACE/NAME`.
///
/// NOTE: datasets named by OpenLineage events have no content digest, so their `digest` is
/// empty and a digest allowlist never matches them.
async fn named_datasets(store: &Store, nodes: &[Node]) -> Result<Vec<DatasetRef>, StoreError> {
    let described = store.describe_nodes(nodes).await?;
    let mut seen = HashSet::new();
    let mut datasets = Vec::new();
    for node in nodes {
        if !seen.insert(node.clone()) {
            continue;
        }
        let label = described
            .get(node)
            .map(|description| description.label.clone());
        let dataset = match node.kind {
            NodeKind::Dataset => DatasetRef {
                name: label.unwrap_or_default(),
                digest: node.id.clone(),
            },
            _ => DatasetRef {
                name: node.id.clone(),
                digest: String::new(),
            },
        };
        datasets.push(dataset);
    }
    Ok(datasets)
}

fn dataset_key(dataset: &DatasetRef) -> String {
    if dataset.digest.is_empty() {
        format!("named:{}", dataset.name)
    } else {
        dataset.digest.clone()
    }
}
