//! Recorded validations: what each validator call on a run returned.

use crate::store::audit::{self, AuditAction, Entry};
use crate::store::entity::validation::{self, ValidationTrigger};
use crate::store::entity::{model_version, registered_model, validation_check};
use crate::store::{Store, StoreError, batch, now_ms, runs};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;

/// Severity of a check that stops a promotion when it fails.
const BLOCKING: &str = "blocking";

/// One check a validator returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRow {
    /// Check name, such as the rule it tested.
    pub name: String,
    /// Whether the check passed.
    pub passed: bool,
    /// `blocking` or `warning`.
    pub severity: String,
    /// Explanation from the plugin.
    pub message: String,
}

/// Fields of a validator call to record, for [`Store::record_validation`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewValidation {
    /// The validated run, which must exist.
    pub run_id: String,
    /// The model version being created, if the validation runs for one.
    pub model_version_id: Option<i64>,
    /// Origin of the validation: a pipeline, a new model version or a request.
    pub trigger: ValidationTrigger,
    /// Plugin reference, `name@version`.
    pub plugin: String,
    /// Lowercase hex SHA-256 of the plugin component.
    pub plugin_digest: String,
    /// Configuration passed to the plugin.
    pub config: serde_json::Value,
    /// Cause of the failure when the plugin produced no checks.
    pub error: Option<String>,
    /// The checks, in the order the plugin returned them.
    pub checks: Vec<CheckRow>,
}

/// A recorded validator call with its checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationRecord {
    /// Row id.
    pub id: i64,
    /// The validated run.
    pub run_id: String,
    /// The model version it ran for, if any and not deleted since.
    pub model_version_id: Option<i64>,
    /// Origin of the validation: a pipeline, a new model version or a request.
    pub trigger: ValidationTrigger,
    /// Plugin reference, `name@version`.
    pub plugin: String,
    /// Lowercase hex SHA-256 of the plugin component.
    pub plugin_digest: String,
    /// Configuration passed to the plugin.
    pub config: serde_json::Value,
    /// Cause of the failure when the plugin produced no checks.
    pub error: Option<String>,
    /// Time of recording, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The checks, in the order the plugin returned them.
    pub checks: Vec<CheckRow>,
}

impl Store {
    /// Records a validator call and its checks and returns the validation's id.
    ///
    /// The `validation.recorded` audit entry names the model and version when
    /// `model_version_id` is set; otherwise it names no model, and its detail carries the run.
    pub async fn record_validation(
        &self,
        actor: &str,
        new: NewValidation,
    ) -> Result<i64, StoreError> {
        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        runs::require_run(&transaction, &new.run_id).await?;
        let owner = match new.model_version_id {
            Some(id) => Some(version_and_model(&transaction, id).await?),
            None => None,
        };
        let row = validation::ActiveModel {
            run_id: Set(new.run_id.clone()),
            model_version_id: Set(new.model_version_id),
            trigger: Set(new.trigger),
            plugin: Set(new.plugin.clone()),
            plugin_digest: Set(new.plugin_digest.clone()),
            config: Set(new.config.clone()),
            error: Set(new.error.clone()),
            created_at: Set(now),
            ..Default::default()
        };
        let id = validation::Entity::insert(row)
            .exec_with_returning(&transaction)
            .await?
            .id;
        insert_checks(&transaction, id, &new.checks).await?;

        let entry = validation_entry(&new, id, owner);
        audit::append(&transaction, actor, now, entry).await?;
        transaction.commit().await?;
        Ok(id)
    }

    /// Returns the recorded validations of a run, oldest first.
    pub async fn run_validations(&self, run_id: &str) -> Result<Vec<ValidationRecord>, StoreError> {
        let rows = validation::Entity::find()
            .filter(validation::Column::RunId.eq(run_id))
            .order_by_asc(validation::Column::Id)
            .all(&self.db)
            .await?;
        with_checks(&self.db, rows).await
    }

    /// Returns the validations recorded for a model version, oldest first.
    pub async fn version_validations(
        &self,
        model_version_id: i64,
    ) -> Result<Vec<ValidationRecord>, StoreError> {
        let rows = validation::Entity::find()
            .filter(validation::Column::ModelVersionId.eq(model_version_id))
            .order_by_asc(validation::Column::Id)
            .all(&self.db)
            .await?;
        with_checks(&self.db, rows).await
    }
}

async fn insert_checks(
    db: &impl ConnectionTrait,
    validation_id: i64,
    checks: &[CheckRow],
) -> Result<(), StoreError> {
    let rows = checks
        .iter()
        .zip(0..)
        .map(|(check, position)| validation_check::ActiveModel {
            validation_id: Set(validation_id),
            position: Set(position),
            name: Set(check.name.clone()),
            passed: Set(check.passed),
            severity: Set(check.severity.clone()),
            message: Set(check.message.clone()),
        });
    validation_check::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Returns the version with row id `version_id` and its model.
async fn version_and_model(
    db: &impl ConnectionTrait,
    version_id: i64,
) -> Result<(model_version::Model, registered_model::Model), StoreError> {
    let found = model_version::Entity::find_by_id(version_id)
        .find_also_related(registered_model::Entity)
        .one(db)
        .await?;
    match found {
        Some((version, Some(model))) => Ok((version, model)),
        _ => Err(DbErr::RecordNotFound(format!(
            "model version with id {version_id}; create the version before recording its \
             validations"
        ))
        .into()),
    }
}

/// Builds the `validation.recorded` entry, with the counts of passed and failed checks.
fn validation_entry(
    new: &NewValidation,
    id: i64,
    owner: Option<(model_version::Model, registered_model::Model)>,
) -> Entry {
    let passed = new.checks.iter().filter(|check| check.passed).count();
    let failed: Vec<&CheckRow> = new.checks.iter().filter(|check| !check.passed).collect();
    let blocking_failed = failed
        .iter()
        .filter(|check| check.severity == BLOCKING)
        .count();
    let detail = json!({
        "validation_id": id,
        "run_id": new.run_id,
        "trigger": new.trigger,
        "plugin": new.plugin,
        "plugin_digest": new.plugin_digest,
        "passed": passed,
        "failed": failed.len(),
        "blocking_failed": blocking_failed,
        "error": new.error,
    });

    match owner {
        Some((version, model)) => Entry::new(AuditAction::ValidationRecorded, &model.name)
            .version(version.version)
            .detail(detail),
        None => Entry::without_model(AuditAction::ValidationRecorded).detail(detail),
    }
}

/// Loads the checks of `rows` and returns the records, in the order of `rows`.
async fn with_checks(
    db: &impl ConnectionTrait,
    rows: Vec<validation::Model>,
) -> Result<Vec<ValidationRecord>, StoreError> {
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    let mut checks: HashMap<i64, Vec<validation_check::Model>> = HashMap::new();
    // NOTE: one `IN` list carries every id, so a run or version with more than about 32,000
    // validations would exceed SQLite's bind-parameter limit.
    for check in validation_check::Entity::find()
        .filter(validation_check::Column::ValidationId.is_in(ids))
        .order_by_asc(validation_check::Column::ValidationId)
        .order_by_asc(validation_check::Column::Position)
        .all(db)
        .await?
    {
        checks.entry(check.validation_id).or_default().push(check);
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let checks = checks.remove(&row.id).unwrap_or_default();
            record(row, checks)
        })
        .collect())
}

fn record(row: validation::Model, checks: Vec<validation_check::Model>) -> ValidationRecord {
    ValidationRecord {
        id: row.id,
        run_id: row.run_id,
        model_version_id: row.model_version_id,
        trigger: row.trigger,
        plugin: row.plugin,
        plugin_digest: row.plugin_digest,
        config: row.config,
        error: row.error,
        created_at: row.created_at,
        checks: checks
            .into_iter()
            .map(|check| CheckRow {
                name: check.name,
                passed: check.passed,
                severity: check.severity,
                message: check.message,
            })
            .collect(),
    }
}
