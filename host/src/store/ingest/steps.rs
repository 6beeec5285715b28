//! Step runs and artifacts that clients of external runs report, recorded with the same links
//! and lineage edges as the steps the engine executes: input artifact or dataset -> step run ->
//! output artifact.

use super::super::artifact_records::{self, LinkedArtifact, NewArtifact, NewStepLink};
use super::super::detail::StepRunDetail;
use super::super::entity::run_artifact::{self, Direction};
use super::super::entity::step_run::{self, StepStatus};
use super::super::entity::{artifact, dataset};
use super::super::{NewEdge, Node, Store, StoreError, batch, lineage, new_id, now_ms, steps};
use super::{Accepts, lock_open_run};
use sea_orm::sea_query::{Expr, Func, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use std::collections::HashSet;

/// Executor kind recorded for step runs that clients report.
const CLIENT_EXECUTOR: &str = "external";

/// An artifact a client names as an input or output: the name, and the artifact's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientArtifact {
    /// Name of the input or output, such as `model`.
    pub name: String,
    /// Digest, size and media type. The first media type recorded for a digest is kept.
    pub artifact: NewArtifact,
}

/// A step run that a client of an external run creates, for [`Store::create_client_step`].
#[derive(Debug, Clone)]
pub struct NewClientStep {
    /// The run.
    pub run_id: String,
    /// Step name, unique within the run.
    pub name: String,
    /// Params of the step, a JSON object.
    pub params: serde_json::Value,
    /// Initial status: pending or running.
    pub status: StepStatus,
    /// Artifacts the step consumes.
    pub inputs: Vec<ClientArtifact>,
}

/// A status change of a client's step run, for [`Store::change_client_step`].
#[derive(Debug, Clone)]
pub struct ClientStepChange {
    /// The new status.
    pub status: StepStatus,
    /// Reason the step failed, was skipped or was cancelled.
    pub error: Option<String>,
    /// Artifacts the step produced.
    pub outputs: Vec<ClientArtifact>,
}

impl Store {
    /// Records a step run of an external run with its inputs, and returns it.
    ///
    /// Each input is linked to the step run, and a lineage edge goes from its dataset, if the
    /// digest is a recorded dataset, or else from its artifact, to the step run. A name another
    /// step run of the run has fails with [`StoreError::StepNameTaken`].
    pub async fn create_client_step(
        &self,
        new: NewClientStep,
    ) -> Result<StepRunDetail, StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        let accepts = Accepts::OpenExternalRun;
        lock_open_run(&transaction, &new.run_id, accepts, LockType::Update).await?;
        check_name_free(&transaction, &new.run_id, &new.name).await?;
        record_artifacts(&transaction, &new.inputs).await?;

        let row = step_run::Entity::insert(new_step_row(&new))
            .exec_with_returning(&transaction)
            .await?;
        let links = step_links(&new.inputs, Direction::Input);
        artifact_records::insert_step_links(&transaction, &new.run_id, &row.id, &links).await?;
        let edges = input_edges(&transaction, &new.run_id, &row.id, &new.inputs).await?;
        lineage::record_edges(&transaction, &edges, Some(&new.run_id)).await?;

        let detail = read_step_detail(&transaction, row).await?;
        transaction.commit().await?;
        Ok(detail)
    }

    /// Moves a client's step run to a new status and returns it.
    ///
    /// A pending step can become running, skipped, cancelled or failed, and a running step
    /// succeeded, failed or cancelled. Asking for the status a pending or running step has
    /// changes nothing, and any other change fails with [`StoreError::StepTransition`]. Each
    /// output is linked to the step run with a lineage edge from the step run to its artifact.
    pub async fn change_client_step(
        &self,
        run_id: &str,
        step_run_id: &str,
        change: ClientStepChange,
    ) -> Result<StepRunDetail, StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        let accepts = Accepts::OpenExternalRun;
        lock_open_run(&transaction, run_id, accepts, LockType::Share).await?;
        let current = steps::lock_step_run(&transaction, step_run_id).await?;
        if current.run_id != run_id {
            return Err(StoreError::StepRunNotInRun {
                step_run_id: step_run_id.to_owned(),
                run_id: run_id.to_owned(),
            });
        }

        if is_allowed_change(&current, change.status)? {
            update_status(&transaction, &current, &change).await?;
            record_outputs(&transaction, run_id, step_run_id, &change.outputs).await?;
        }
        let updated = steps::require_step_run(&transaction, step_run_id).await?;
        let detail = read_step_detail(&transaction, updated).await?;
        transaction.commit().await?;
        Ok(detail)
    }

    /// Names an artifact as an input or output of an external run itself, and returns the
    /// link and whether it is new.
    ///
    /// Linking the same digest under the same name again returns the existing link. Another
    /// digest under a name already linked fails with [`StoreError::ArtifactLinkConflict`].
    pub async fn link_client_artifact(
        &self,
        run_id: &str,
        direction: Direction,
        linked: &ClientArtifact,
    ) -> Result<(LinkedArtifact, bool), StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        let accepts = Accepts::OpenExternalRun;
        lock_open_run(&transaction, run_id, accepts, LockType::Update).await?;
        record_artifacts(&transaction, std::slice::from_ref(linked)).await?;

        let existing = find_run_link(&transaction, run_id, &linked.name, direction).await?;
        let (link, created) = match existing {
            Some(link) if link.digest == linked.artifact.digest => (link, false),
            Some(link) => return Err(run_link_conflict(&link, &linked.artifact.digest)),
            None => (
                insert_run_link(&transaction, run_id, direction, linked).await?,
                true,
            ),
        };
        let stored = artifact::Entity::find_by_id(&link.digest)
            .one(&transaction)
            .await?
            .ok_or_else(|| StoreError::ArtifactNotRecorded(link.digest.clone()))?;
        transaction.commit().await?;
        let linked = LinkedArtifact {
            link,
            size: stored.size,
            media_type: stored.media_type,
        };
        Ok((linked, created))
    }
}

/// Fails with [`StoreError::StepNameTaken`] if a step run of `run_id` is called `name`.
async fn check_name_free(
    db: &impl ConnectionTrait,
    run_id: &str,
    name: &str,
) -> Result<(), StoreError> {
    let same_name = step_run::Entity::find()
        .filter(step_run::Column::RunId.eq(run_id))
        .filter(step_run::Column::Name.eq(name))
        .one(db)
        .await?;
    match same_name {
        Some(_) => Err(StoreError::StepNameTaken {
            run_id: run_id.to_owned(),
            name: name.to_owned(),
        }),
        None => Ok(()),
    }
}

fn new_step_row(new: &NewClientStep) -> step_run::ActiveModel {
    let now = now_ms();
    let running = new.status == StepStatus::Running;
    step_run::ActiveModel {
        id: Set(new_id()),
        run_id: Set(new.run_id.clone()),
        name: Set(new.name.clone()),
        plugin_name: Set(None),
        plugin_version: Set(None),
        plugin_digest: Set(None),
        executor: Set(CLIENT_EXECUTOR.to_owned()),
        status: Set(new.status),
        attempts: Set(i32::from(running)),
        created_at: Set(now),
        started_at: Set(running.then_some(now)),
        ended_at: Set(None),
        params_json: Set(new.params.clone()),
        cache_key: Set(None),
        cached_from: Set(None),
        error: Set(None),
    }
}

/// Records the metadata of the artifacts, keeping rows recorded before, and checks that the
/// sizes agree with them.
async fn record_artifacts(
    db: &impl ConnectionTrait,
    linked: &[ClientArtifact],
) -> Result<(), StoreError> {
    let artifacts: Vec<NewArtifact> = linked.iter().map(|item| item.artifact.clone()).collect();
    for new in &artifacts {
        artifact_records::check_digest(&new.digest)?;
    }
    artifact_records::insert_artifacts(db, &artifacts).await?;
    artifact_records::check_recorded(db, &artifacts, []).await
}

fn step_links(linked: &[ClientArtifact], direction: Direction) -> Vec<NewStepLink> {
    linked
        .iter()
        .map(|item| NewStepLink {
            name: item.name.clone(),
            digest: item.artifact.digest.clone(),
            direction,
        })
        .collect()
}

/// Builds the edges from each input's dataset or artifact to the step run.
async fn input_edges(
    db: &impl ConnectionTrait,
    run_id: &str,
    step_run_id: &str,
    inputs: &[ClientArtifact],
) -> Result<Vec<NewEdge>, StoreError> {
    let digests: Vec<&str> = inputs
        .iter()
        .map(|item| item.artifact.digest.as_str())
        .collect();
    let mut datasets = HashSet::new();
    for chunk in digests.chunks(batch::rows_per_statement(1)) {
        let found = dataset::Entity::find()
            .select_only()
            .column(dataset::Column::Digest)
            .filter(dataset::Column::Digest.is_in(chunk.iter().copied()))
            .into_tuple::<String>()
            .all(db)
            .await?;
        datasets.extend(found);
    }

    let step_node = Node::step_run(step_run_id);
    let edges = digests
        .into_iter()
        .map(|digest| NewEdge {
            run_id: run_id.to_owned(),
            source: if datasets.contains(digest) {
                Node::dataset(digest)
            } else {
                Node::artifact(digest)
            },
            target: step_node.clone(),
        })
        .collect();
    Ok(edges)
}

/// Checks a status change and returns whether it changes anything.
fn is_allowed_change(current: &step_run::Model, to: StepStatus) -> Result<bool, StoreError> {
    use StepStatus::{Cancelled, Failed, Pending, Running, Skipped, Succeeded};
    let allowed = match (current.status, to) {
        (Pending, Pending) | (Running, Running) => return Ok(false),
        (Pending, Running | Skipped | Cancelled | Failed) => true,
        (Running, Succeeded | Failed | Cancelled) => true,
        _ => false,
    };
    if allowed {
        Ok(true)
    } else {
        Err(StoreError::StepTransition {
            step_run_id: current.id.clone(),
            from: current.status,
            to,
        })
    }
}

/// Sets the new status. Entering `running` counts the attempt and sets the start time, and a final
/// status sets the end time and the error.
async fn update_status(
    db: &impl ConnectionTrait,
    current: &step_run::Model,
    change: &ClientStepChange,
) -> Result<(), StoreError> {
    let now = now_ms();
    let mut update = step_run::Entity::update_many()
        .col_expr(step_run::Column::Status, Expr::value(change.status))
        .col_expr(step_run::Column::Error, Expr::value(change.error.clone()));
    if change.status == StepStatus::Running {
        let first_start =
            Func::coalesce([Expr::col(step_run::Column::StartedAt), Expr::value(now)]);
        update = update
            .col_expr(
                step_run::Column::Attempts,
                Expr::value(current.attempts.max(1)),
            )
            .col_expr(step_run::Column::StartedAt, first_start.into());
    }
    if change.status.is_final() {
        update = update.col_expr(step_run::Column::EndedAt, Expr::value(now));
    }
    update
        .filter(step_run::Column::Id.eq(&current.id))
        .exec(db)
        .await?;
    Ok(())
}

/// Links the outputs to the step run, with an edge from the step run to each artifact.
async fn record_outputs(
    db: &impl ConnectionTrait,
    run_id: &str,
    step_run_id: &str,
    outputs: &[ClientArtifact],
) -> Result<(), StoreError> {
    if outputs.is_empty() {
        return Ok(());
    }
    record_artifacts(db, outputs).await?;
    let links = step_links(outputs, Direction::Output);
    artifact_records::insert_step_links(db, run_id, step_run_id, &links).await?;
    let edges: Vec<NewEdge> = outputs
        .iter()
        .map(|item| NewEdge {
            run_id: run_id.to_owned(),
            source: Node::step_run(step_run_id),
            target: Node::artifact(item.artifact.digest.clone()),
        })
        .collect();
    lineage::record_edges(db, &edges, Some(run_id)).await
}

/// Reads the inputs and outputs of a step run, with their metadata, in link order.
async fn read_step_detail(
    db: &impl ConnectionTrait,
    step_run: step_run::Model,
) -> Result<StepRunDetail, StoreError> {
    let links = run_artifact::Entity::find()
        .find_also_related(artifact::Entity)
        .filter(run_artifact::Column::StepRunId.eq(&step_run.id))
        .order_by_asc(run_artifact::Column::Id)
        .all(db)
        .await?;

    let mut detail = StepRunDetail {
        step_run,
        inputs: Vec::new(),
        outputs: Vec::new(),
    };
    // The foreign key on `digest` guarantees the metadata exists.
    for (link, stored) in links {
        let Some(stored) = stored else { continue };
        let direction = link.direction;
        let linked = LinkedArtifact {
            link,
            size: stored.size,
            media_type: stored.media_type,
        };
        match direction {
            Direction::Input => detail.inputs.push(linked),
            Direction::Output => detail.outputs.push(linked),
        }
    }
    Ok(detail)
}

async fn find_run_link(
    db: &impl ConnectionTrait,
    run_id: &str,
    name: &str,
    direction: Direction,
) -> Result<Option<run_artifact::Model>, StoreError> {
    Ok(run_artifact::Entity::find()
        .filter(run_artifact::Column::RunId.eq(run_id))
        .filter(run_artifact::Column::StepRunId.is_null())
        .filter(run_artifact::Column::Name.eq(name))
        .filter(run_artifact::Column::Direction.eq(direction))
        .one(db)
        .await?)
}

async fn insert_run_link(
    db: &impl ConnectionTrait,
    run_id: &str,
    direction: Direction,
    linked: &ClientArtifact,
) -> Result<run_artifact::Model, StoreError> {
    let row = run_artifact::ActiveModel {
        run_id: Set(run_id.to_owned()),
        step_run_id: Set(None),
        name: Set(linked.name.clone()),
        digest: Set(linked.artifact.digest.clone()),
        direction: Set(direction),
        created_at: Set(now_ms()),
        ..Default::default()
    };
    Ok(run_artifact::Entity::insert(row)
        .exec_with_returning(db)
        .await?)
}

fn run_link_conflict(existing: &run_artifact::Model, digest: &str) -> StoreError {
    StoreError::ArtifactLinkConflict {
        owner: format!("run {}", existing.run_id),
        direction: existing.direction,
        name: existing.name.clone(),
        existing: existing.digest.clone(),
        digest: digest.to_owned(),
    }
}
