//! Runs, tags and lineage edges recorded from OpenLineage run events.
//!
//! An OpenLineage run becomes a runledger run whose id is the event's `runId`, so both systems
//! name it the same way. Its input datasets flow into its run node and the node
//! flows into its output datasets. Events may arrive in any order and more than once: each one
//! only moves the run forward, so a late `START` never reopens a run that a `COMPLETE` ended.

use super::entity::run::{self, RunSource, RunStatus};
use super::entity::{openlineage_dataset, openlineage_run};
use super::lineage::{self, NewEdge, Node};
use super::{DEFAULT_PROJECT, Store, StoreError, batch, now_ms, params, projects, runs};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
};
use std::collections::{BTreeMap, HashSet};

/// One OpenLineage run event, checked and mapped to runledger's terms, for
/// [`Store::record_openlineage_event`].
#[derive(Debug, Clone, PartialEq)]
pub struct OpenLineageEvent {
    /// The OpenLineage `runId` as a lowercase hyphenated UUID; it becomes the run's id.
    pub run_id: String,
    /// The status the event reports: `running` for `START` and `RUNNING`, a final status for
    /// `COMPLETE`, `FAIL` and `ABORT`, and `None` for `OTHER`, which only adds metadata.
    pub status: Option<RunStatus>,
    /// Error message recorded with a final status other than `succeeded`.
    pub error: Option<String>,
    /// `eventTime`, in milliseconds since the Unix epoch.
    pub event_time_ms: i64,
    /// Namespace of the job.
    pub job_namespace: String,
    /// Name of the job; the run's name when the event creates the run.
    pub job_name: String,
    /// User or token name that sent the event; the run's user when the event creates it.
    pub user_name: String,
    /// `runId` of the parent run, from the `parent` run facet.
    pub parent_run_id: Option<String>,
    /// Tags to set on the run, such as the job namespace and the source code location.
    pub tags: Vec<(String, String)>,
    /// Datasets the run read.
    pub inputs: Vec<NamedDataset>,
    /// Datasets the run wrote.
    pub outputs: Vec<NamedDataset>,
}

/// A dataset named by an OpenLineage event.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedDataset {
    /// Namespace, such as `s3://bucket`.
    pub namespace: String,
    /// Name within the namespace.
    pub name: String,
    /// The dataset facets the event sent, as a JSON object.
    pub facets: Option<serde_json::Value>,
}

impl NamedDataset {
    /// Returns the lineage node of this dataset.
    pub fn node(&self) -> Node {
        Node::named_dataset(&self.namespace, &self.name)
    }
}

/// Outcome of [`Store::record_openlineage_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The run the event belongs to.
    pub run_id: String,
    /// Whether this event created the run.
    pub created: bool,
    /// The run's status after the event.
    pub status: RunStatus,
}

impl Store {
    /// Records an OpenLineage run event in one transaction: creates the run on its first event,
    /// moves its status forward, sets its tags, and records its datasets and lineage edges.
    ///
    /// A status only moves forward. `START` and `RUNNING` move a queued run to `running` and
    /// set `started_at` to the earliest such event time. The first final status wins and sets
    /// `ended_at` to its event time, so a later different final status is ignored with a
    /// warning. Sending an event again changes nothing. Fails with
    /// [`StoreError::OpenLineageRunIdTaken`] when the `runId` is the id of a run that was not
    /// created from OpenLineage events.
    pub async fn record_openlineage_event(
        &self,
        event: &OpenLineageEvent,
    ) -> Result<RecordedEvent, StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        let created = ensure_run(&transaction, event).await?;
        let status = apply_status(&transaction, event).await?;
        params::upsert_tags(&transaction, &event.run_id, &event.tags).await?;
        record_datasets(&transaction, event).await?;
        lineage::record_edges(&transaction, &edges_of(event), Some(&event.run_id)).await?;
        transaction.commit().await?;

        Ok(RecordedEvent {
            run_id: event.run_id.clone(),
            created,
            status,
        })
    }

    /// Returns the OpenLineage job and parent of a run, if the run was created from
    /// OpenLineage events.
    pub async fn get_openlineage_run(
        &self,
        run_id: &str,
    ) -> Result<Option<openlineage_run::Model>, StoreError> {
        Ok(openlineage_run::Entity::find_by_id(run_id)
            .one(&self.db)
            .await?)
    }

    /// Returns the dataset with this lineage node id (`NAMESPACE/NAME`), if an OpenLineage
    /// event named it.
    pub async fn get_named_dataset(
        &self,
        node_id: &str,
    ) -> Result<Option<openlineage_dataset::Model>, StoreError> {
        Ok(openlineage_dataset::Entity::find_by_id(node_id)
            .one(&self.db)
            .await?)
    }
}

/// Creates the run and its `openlineage_runs` row unless they exist, and returns whether it
/// created them.
async fn ensure_run(
    db: &impl ConnectionTrait,
    event: &OpenLineageEvent,
) -> Result<bool, StoreError> {
    if update_existing(db, event).await? {
        return Ok(false);
    }

    let inserted = run::Entity::insert(run_row(db, event).await?)
        .on_conflict(OnConflict::column(run::Column::Id).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    if inserted == 0 {
        // On PostgreSQL an insert that conflicts with a concurrent transaction's row waits for
        // its commit, so a first event of the same run sent in parallel is visible now.
        if update_existing(db, event).await? {
            return Ok(false);
        }
        return Err(StoreError::OpenLineageRunIdTaken(event.run_id.clone()));
    }

    let row = openlineage_run::ActiveModel {
        run_id: Set(event.run_id.clone()),
        job_namespace: Set(event.job_namespace.clone()),
        job_name: Set(event.job_name.clone()),
        parent_run_id: Set(event.parent_run_id.clone()),
        created_at: Set(now_ms()),
    };
    openlineage_run::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    tracing::info!(run_id = %event.run_id, job = %event.job_name, "run created from openlineage event");
    Ok(true)
}

/// Returns whether the run of the event already exists as an OpenLineage run, and adds the
/// parent that a later event names to it.
async fn update_existing(
    db: &impl ConnectionTrait,
    event: &OpenLineageEvent,
) -> Result<bool, StoreError> {
    let Some(existing) = openlineage_run::Entity::find_by_id(&event.run_id)
        .one(db)
        .await?
    else {
        return Ok(false);
    };
    if existing.parent_run_id.is_none() && event.parent_run_id.is_some() {
        let mut row: openlineage_run::ActiveModel = existing.into();
        row.parent_run_id = Set(event.parent_run_id.clone());
        openlineage_run::Entity::update(row).exec(db).await?;
    }
    Ok(true)
}

async fn run_row(
    db: &impl ConnectionTrait,
    event: &OpenLineageEvent,
) -> Result<run::ActiveModel, StoreError> {
    let project = projects::ensure_project(db, DEFAULT_PROJECT).await?;
    Ok(run::ActiveModel {
        id: Set(event.run_id.clone()),
        project_id: Set(project.id),
        pipeline_id: Set(None),
        name: Set(event.job_name.clone()),
        status: Set(RunStatus::Queued),
        source: Set(RunSource::External),
        user_name: Set(event.user_name.clone()),
        seed: Set(None),
        created_at: Set(now_ms()),
        started_at: Set(None),
        ended_at: Set(None),
        error: Set(None),
        owner_pid: Set(None),
        owner_hostname: Set(None),
    })
}

/// Moves the run's status forward as the event reports, and returns the status after it.
///
/// Each change is one `UPDATE` whose `WHERE` clause admits only a forward move, so concurrent
/// events of one run cannot move it back.
async fn apply_status(
    db: &impl ConnectionTrait,
    event: &OpenLineageEvent,
) -> Result<RunStatus, StoreError> {
    match event.status {
        None => {}
        Some(RunStatus::Running) => mark_running(db, event).await?,
        Some(status) => mark_ended(db, event, status).await?,
    }
    let run = runs::require_run(db, &event.run_id).await?;
    if let Some(reported) = event.status
        && reported.is_final()
        && reported != run.status
    {
        tracing::warn!(
            run_id = %event.run_id,
            status = %run.status,
            reported = %reported,
            "ignored openlineage event: the run already ended with another status"
        );
    }
    Ok(run.status)
}

async fn mark_running(
    db: &impl ConnectionTrait,
    event: &OpenLineageEvent,
) -> Result<(), StoreError> {
    run::Entity::update_many()
        .col_expr(run::Column::Status, Expr::value(RunStatus::Running))
        .filter(run::Column::Id.eq(&event.run_id))
        .filter(run::Column::Status.eq(RunStatus::Queued))
        .exec(db)
        .await?;

    // The earliest START or RUNNING event time is the best estimate of the start, whatever
    // order the events arrive in.
    let later_or_unset = Condition::any()
        .add(run::Column::StartedAt.is_null())
        .add(run::Column::StartedAt.gt(event.event_time_ms));
    run::Entity::update_many()
        .col_expr(run::Column::StartedAt, Expr::value(event.event_time_ms))
        .filter(run::Column::Id.eq(&event.run_id))
        .filter(later_or_unset)
        .exec(db)
        .await?;
    Ok(())
}

async fn mark_ended(
    db: &impl ConnectionTrait,
    event: &OpenLineageEvent,
    status: RunStatus,
) -> Result<(), StoreError> {
    run::Entity::update_many()
        .col_expr(run::Column::Status, Expr::value(status))
        .col_expr(run::Column::EndedAt, Expr::value(event.event_time_ms))
        .col_expr(run::Column::Error, Expr::value(event.error.clone()))
        .filter(run::Column::Id.eq(&event.run_id))
        .filter(run::Column::Status.is_in([RunStatus::Queued, RunStatus::Running]))
        .exec(db)
        .await?;
    Ok(())
}

/// Records each dataset of the event once, keeping the first namespace and name stored under
/// a node id and replacing the facets when the event sends some.
///
/// NOTE: `("s3://a", "b/c")` and `("s3://a/b", "c")` share the node id `s3://a/b/c`, so they
/// are one dataset here. OpenLineage's naming rules give both the same URI, so they name the
/// same data.
async fn record_datasets(
    db: &impl ConnectionTrait,
    event: &OpenLineageEvent,
) -> Result<(), StoreError> {
    let mut datasets: BTreeMap<String, &NamedDataset> = BTreeMap::new();
    for dataset in event.inputs.iter().chain(&event.outputs) {
        let entry = datasets.entry(dataset.node().id).or_insert(dataset);
        if entry.facets.is_none() {
            *entry = dataset;
        }
    }

    let now = now_ms();
    for (node_id, dataset) in datasets {
        let row = openlineage_dataset::ActiveModel {
            node_id: Set(node_id),
            namespace: Set(dataset.namespace.clone()),
            name: Set(dataset.name.clone()),
            facets_json: Set(dataset.facets.clone()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let mut updated = vec![openlineage_dataset::Column::UpdatedAt];
        if dataset.facets.is_some() {
            updated.push(openlineage_dataset::Column::FacetsJson);
        }
        let upsert = OnConflict::column(openlineage_dataset::Column::NodeId)
            .update_columns(updated)
            .to_owned();
        openlineage_dataset::Entity::insert(row)
            .on_conflict(upsert)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Returns the edges input dataset -> run -> output dataset of the event, each once.
fn edges_of(event: &OpenLineageEvent) -> Vec<NewEdge> {
    let run_node = Node::run(event.run_id.clone());
    let inputs = event
        .inputs
        .iter()
        .map(|dataset| (dataset.node(), run_node.clone()));
    let outputs = event
        .outputs
        .iter()
        .map(|dataset| (run_node.clone(), dataset.node()));

    let mut seen = HashSet::new();
    inputs
        .chain(outputs)
        .filter(|pair| seen.insert(pair.clone()))
        .map(|(source, target)| NewEdge {
            run_id: event.run_id.clone(),
            source,
            target,
        })
        .collect()
}
