//! External steps: step runs that a client outside the sandbox executes and reports over the
//! API, and the wait of the engine for that report.
//!
//! The wait and the report meet in the `external_steps` row. The first to move it out of
//! `waiting`, the report or the engine on a timeout or cancellation, completes the step run in
//! the same transaction. So exactly one of them decides how the step ends.

use super::completion::{self, StepCompletion};
use super::entity::external_step::{self, ExternalState};
use super::entity::step_run::{self, StepStatus};
use super::{Store, StoreError, batch, now_ms, runs, steps};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};

/// Fields of a new external step, for [`Store::create_external_steps`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewExternalStep {
    /// The step run, which must exist.
    pub step_run_id: String,
    /// The run of the step run.
    pub run_id: String,
    /// Lowercase hex SHA-256 of the step token.
    pub token_hash: String,
    /// Output names the pipeline declares for the step.
    pub outputs: Vec<String>,
}

/// An input of an external step, recorded when the wait for its report starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalInput {
    /// Input name from the definition.
    pub name: String,
    /// Lowercase hex SHA-256 of the artifact.
    pub digest: String,
    /// Size of the artifact in bytes.
    pub size: u64,
    /// Media type of the artifact.
    pub media_type: String,
    /// Whether the artifact is a recorded dataset rather than an output of a step, which
    /// decides the kind of its lineage node.
    pub dataset: bool,
}

impl external_step::Model {
    /// Decodes the output names the pipeline declares for the step.
    pub fn declared_outputs(&self) -> Result<Vec<String>, StoreError> {
        serde_json::from_value(self.outputs_json.clone())
            .map_err(|source| self.invalid_json("declared outputs", source))
    }

    /// Decodes the step's inputs; empty until the wait for the report starts.
    pub fn recorded_inputs(&self) -> Result<Vec<ExternalInput>, StoreError> {
        match &self.inputs_json {
            Some(inputs) => serde_json::from_value(inputs.clone())
                .map_err(|source| self.invalid_json("inputs", source)),
            None => Ok(Vec::new()),
        }
    }

    fn invalid_json(&self, field: &str, source: serde_json::Error) -> StoreError {
        StoreError::InvalidJson {
            document: format!("{field} of external step run {}", self.step_run_id),
            source,
        }
    }
}

/// An external step together with its step run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalStepRecord {
    /// The external step's row.
    pub external: external_step::Model,
    /// Its step run.
    pub step_run: step_run::Model,
}

impl Store {
    /// Records external steps in state `pending`, in one transaction.
    pub async fn create_external_steps(&self, new: Vec<NewExternalStep>) -> Result<(), StoreError> {
        if new.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let rows = new.into_iter().map(|step| external_step::ActiveModel {
            step_run_id: Set(step.step_run_id),
            run_id: Set(step.run_id),
            token_hash: Set(step.token_hash),
            outputs_json: Set(serde_json::json!(step.outputs)),
            state: Set(ExternalState::Pending),
            inputs_json: Set(None),
            created_at: Set(now),
            waiting_since: Set(None),
            ended_at: Set(None),
        });
        let rows: Vec<_> = rows.collect();
        let transaction = batch::begin_write(&self.db).await?;
        for chunk in rows.chunks(batch::rows_per_statement(9)) {
            external_step::Entity::insert_many(chunk.iter().cloned())
                .exec_without_returning(&transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Returns the external step of this step run, if the step run is one.
    pub async fn get_external_step(
        &self,
        step_run_id: &str,
    ) -> Result<Option<external_step::Model>, StoreError> {
        Ok(external_step::Entity::find_by_id(step_run_id)
            .one(&self.db)
            .await?)
    }

    /// Lists the external steps of a run with their step runs, in step creation order. An
    /// unknown run returns [`StoreError::RunNotFound`].
    pub async fn list_external_steps(
        &self,
        run_id: &str,
    ) -> Result<Vec<ExternalStepRecord>, StoreError> {
        runs::require_run(&self.db, run_id).await?;
        let rows = external_step::Entity::find()
            .find_also_related(step_run::Entity)
            .filter(external_step::Column::RunId.eq(run_id))
            .order_by_asc(step_run::Column::CreatedAt)
            .order_by_asc(step_run::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(external, step_run)| {
                step_run.map(|step_run| ExternalStepRecord { external, step_run })
            })
            .collect())
    }

    /// Starts the wait for an external step's report, in one transaction: the step run becomes
    /// `running` in its first attempt, and the external step `waiting` with its `inputs`.
    pub async fn start_external_wait(
        &self,
        step_run_id: &str,
        inputs: &[ExternalInput],
    ) -> Result<(), StoreError> {
        let inputs = serde_json::json!(inputs);
        let transaction = batch::begin_write(&self.db).await?;
        let now = now_ms();
        let waiting = external_step::Entity::update_many()
            .col_expr(
                external_step::Column::State,
                Expr::value(ExternalState::Waiting),
            )
            .col_expr(external_step::Column::InputsJson, Expr::value(inputs))
            .col_expr(external_step::Column::WaitingSince, Expr::value(now))
            .filter(external_step::Column::StepRunId.eq(step_run_id))
            .exec(&transaction)
            .await?;
        if waiting.rows_affected == 0 {
            return Err(StoreError::StepRunNotFound(step_run_id.to_owned()));
        }
        mark_running(&transaction, step_run_id, now).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Ends the wait for an external step's report with `state` and completes its step run
    /// with `completion`, in one transaction.
    ///
    /// Returns `false` and changes nothing when the wait has already ended, or when the step
    /// run has reached a final status some other way, such as when the run of a dead process
    /// was marked interrupted.
    pub async fn end_external_wait(
        &self,
        state: ExternalState,
        completion: &StepCompletion,
    ) -> Result<bool, StoreError> {
        completion::check_completion(completion)?;
        let step_run_id = &completion.step_run_id;
        let transaction = batch::begin_write(&self.db).await?;

        // On PostgreSQL the update locks the row, so a concurrent report or timeout waits
        // here and then finds the state no longer `waiting`.
        let claimed = external_step::Entity::update_many()
            .col_expr(external_step::Column::State, Expr::value(state))
            .col_expr(external_step::Column::EndedAt, Expr::value(now_ms()))
            .filter(external_step::Column::StepRunId.eq(step_run_id))
            .filter(external_step::Column::State.eq(ExternalState::Waiting))
            .exec(&transaction)
            .await?;
        if claimed.rows_affected == 0 {
            return Ok(false);
        }
        let step_run = steps::require_step_run(&transaction, step_run_id).await?;
        if step_run.status.is_final() {
            return Ok(false);
        }

        completion::write_completion(&transaction, completion).await?;
        transaction.commit().await?;
        Ok(true)
    }
}

/// Marks a step run as running its first attempt, keeping an earlier start time.
async fn mark_running(
    db: &impl ConnectionTrait,
    step_run_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let first_start = Func::coalesce([Expr::col(step_run::Column::StartedAt), Expr::value(now)]);
    let updated = step_run::Entity::update_many()
        .col_expr(step_run::Column::Status, Expr::value(StepStatus::Running))
        .col_expr(step_run::Column::Attempts, Expr::value(1))
        .col_expr(step_run::Column::StartedAt, first_start.into())
        .col_expr(step_run::Column::EndedAt, Expr::value(None::<i64>))
        .col_expr(step_run::Column::Error, Expr::value(None::<String>))
        .filter(step_run::Column::Id.eq(step_run_id))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        return Err(StoreError::StepRunNotFound(step_run_id.to_owned()));
    }
    Ok(())
}
