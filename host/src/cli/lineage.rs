//! `runledger lineage NODE`: the lineage graph upstream or downstream of a run, step run,
//! artifact or dataset, as text, JSON or Graphviz dot.

use super::context::{open_store, tokio_runtime};
use crate::store::{Graph, Node, NodeKind, Store, TraverseDirection};
use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
    Dot,
}

#[derive(Debug, Args)]
pub(crate) struct LineageArgs {
    /// A run id, step run id, or artifact or dataset SHA-256.
    node: String,
    /// Follow what the node was derived from (the default).
    #[arg(long, conflicts_with = "downstream")]
    upstream: bool,
    /// Follow what was derived from the node.
    #[arg(long)]
    downstream: bool,
    /// Maximum number of edges to follow from the node [default: unlimited].
    #[arg(long)]
    depth: Option<u32>,
    /// Follow only the edges recorded by this run.
    #[arg(long)]
    run: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

pub(crate) fn run(config: &crate::config::Config, args: LineageArgs) -> Result<ExitCode> {
    tokio_runtime()?.block_on(async {
        let store = open_store(config).await?;
        let direction = if args.downstream {
            TraverseDirection::Downstream
        } else {
            TraverseDirection::Upstream
        };
        let starts = start_nodes(&store, &args.node).await?;
        let graph = match &args.run {
            Some(run_id) => {
                store.require_run(run_id).await?;
                traverse_run(&store, starts, direction, args.depth, run_id).await?
            }
            None => {
                let mut graph = Graph::default();
                for start in starts {
                    merge(
                        &mut graph,
                        store.traverse(start, direction, args.depth).await?,
                    );
                }
                graph
            }
        };
        let labels = labels(&store, &graph).await?;
        match args.format {
            Format::Json => print_json(&graph, &labels)?,
            Format::Dot => print_dot(&graph, &labels),
            Format::Text => print_text(&graph, &labels, &args.node, direction),
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves the argument to graph nodes. A run stands for itself and its step runs, so the
/// run-level inputs and outputs of MLflow and OpenLineage runs are reached too.
async fn start_nodes(store: &Store, id: &str) -> Result<Vec<Node>> {
    // Accept the `kind:id` form the text output prints.
    let id = ["dataset:", "artifact:", "step_run:", "run:"]
        .iter()
        .find_map(|prefix| id.strip_prefix(prefix))
        .unwrap_or(id);
    if crate::store::artifacts::validate_digest(id).is_ok() {
        if store.get_dataset(id).await?.is_some() {
            return Ok(vec![Node::dataset(id)]);
        }
        if store.get_artifact(id).await?.is_some() {
            return Ok(vec![Node::artifact(id)]);
        }
        bail!("no artifact or dataset with digest {id} is recorded");
    }
    if store.get_step_run(id).await?.is_some() {
        return Ok(vec![Node::step_run(id)]);
    }
    if let Some(starts) = store.lineage_starts(&Node::run(id)).await? {
        return Ok(starts);
    }
    bail!("`{id}` is not a known run id, step run id, or artifact or dataset digest")
}

fn merge(graph: &mut Graph, part: Graph) {
    for node in part.nodes {
        if !graph.nodes.contains(&node) {
            graph.nodes.push(node);
        }
    }
    for edge in part.edges {
        if !graph.edges.iter().any(|e| e.id == edge.id) {
            graph.edges.push(edge);
        }
    }
}

/// Walks the graph one edge at a time, following only edges recorded by `run_id`.
async fn traverse_run(
    store: &Store,
    starts: Vec<Node>,
    direction: TraverseDirection,
    max_depth: Option<u32>,
    run_id: &str,
) -> Result<Graph> {
    let mut graph = Graph {
        nodes: starts.clone(),
        edges: Vec::new(),
    };
    let mut frontier = starts;
    let mut depth = 0;
    while !frontier.is_empty() && max_depth.is_none_or(|max| depth < max) {
        let mut next = Vec::new();
        for node in frontier {
            let step = store.traverse(node, direction, Some(1)).await?;
            for edge in step.edges.into_iter().filter(|e| e.run_id == run_id) {
                let neighbour = match direction {
                    TraverseDirection::Upstream => Node {
                        kind: edge.source_kind,
                        id: edge.source_id.clone(),
                    },
                    TraverseDirection::Downstream => Node {
                        kind: edge.target_kind,
                        id: edge.target_id.clone(),
                    },
                };
                if !graph.edges.iter().any(|e| e.id == edge.id) {
                    graph.edges.push(edge);
                }
                if !graph.nodes.contains(&neighbour) {
                    graph.nodes.push(neighbour.clone());
                    next.push(neighbour);
                }
            }
        }
        frontier = next;
        depth += 1;
    }
    Ok(graph)
}

/// Human-readable labels: dataset names, artifact names, step names.
async fn labels(store: &Store, graph: &Graph) -> Result<BTreeMap<Node, String>> {
    let mut labels = BTreeMap::new();
    for node in &graph.nodes {
        let label = match node.kind {
            NodeKind::Dataset => match store.get_dataset(&node.id).await? {
                Some(dataset) => format!("dataset {} ({})", dataset.name, dataset.uri),
                None => "dataset".to_owned(),
            },
            NodeKind::Artifact => match store.get_artifact(&node.id).await? {
                Some(artifact) => format!("artifact {} {} B", artifact.media_type, artifact.size),
                None => "artifact".to_owned(),
            },
            NodeKind::StepRun => match store.get_step_run(&node.id).await? {
                Some(step) => format!("step {} of run {}", step.name, step.run_id),
                None => "step run".to_owned(),
            },
            NodeKind::Run => match store.get_run(&node.id).await? {
                Some(run) => format!("run {}", run.name),
                None => "run".to_owned(),
            },
            NodeKind::NamedDataset => format!("dataset {}", node.id),
        };
        labels.insert(node.clone(), label);
    }
    Ok(labels)
}

fn node_key(kind: NodeKind, id: &str) -> String {
    format!("{kind}:{id}")
}

fn print_text(
    graph: &Graph,
    labels: &BTreeMap<Node, String>,
    start: &str,
    direction: TraverseDirection,
) {
    let word = match direction {
        TraverseDirection::Upstream => "upstream",
        TraverseDirection::Downstream => "downstream",
    };
    println!(
        "lineage {word} of {start}: {} nodes, {} edges",
        graph.nodes.len(),
        graph.edges.len()
    );
    for node in &graph.nodes {
        println!("  {:<80} {}", node_key(node.kind, &node.id), labels[node]);
    }
    println!("edges");
    for edge in &graph.edges {
        println!(
            "  {} -> {}",
            node_key(edge.source_kind, &edge.source_id),
            node_key(edge.target_kind, &edge.target_id)
        );
    }
}

fn print_json(graph: &Graph, labels: &BTreeMap<Node, String>) -> Result<()> {
    let nodes: Vec<_> = graph
        .nodes
        .iter()
        .map(|node| serde_json::json!({ "kind": node.kind, "id": node.id, "label": labels[node] }))
        .collect();
    let edges: Vec<_> = graph
        .edges
        .iter()
        .map(|edge| {
            serde_json::json!({
                "source": { "kind": edge.source_kind, "id": edge.source_id },
                "target": { "kind": edge.target_kind, "id": edge.target_id },
                "run_id": edge.run_id,
            })
        })
        .collect();
    let out = serde_json::json!({ "nodes": nodes, "edges": edges });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn print_dot(graph: &Graph, labels: &BTreeMap<Node, String>) {
    println!("digraph lineage {{");
    println!("  rankdir=LR;");
    for node in &graph.nodes {
        let shape = match node.kind {
            NodeKind::Dataset | NodeKind::NamedDataset => "cylinder",
            NodeKind::Artifact => "note",
            NodeKind::StepRun | NodeKind::Run => "box",
        };
        let label = labels[node]
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        println!(
            "  \"{}\" [shape={shape}, label=\"{label}\"];",
            node_key(node.kind, &node.id)
        );
    }
    for edge in &graph.edges {
        println!(
            "  \"{}\" -> \"{}\";",
            node_key(edge.source_kind, &edge.source_id),
            node_key(edge.target_kind, &edge.target_id)
        );
    }
    println!("}}");
}
