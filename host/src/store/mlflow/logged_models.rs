//! MLflow 3's logged models: creation, reads, status, deletion, params and tags.
//!
//! A logged model belongs to the project of its experiment. A model created with a source
//! run is a node of the lineage graph, `mlflow-models/<model_id>`, with an edge from the run,
//! so lineage queries from the run reach it.

use super::LifecycleStage;
use super::entity::{logged_model, logged_model_metric, logged_model_param, logged_model_tag};
use super::logged_model_links::record_model_output_edge;
use crate::store::{Store, StoreError, batch, now_ms, runs};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use std::collections::{BTreeMap, HashMap};

/// Status of a logged model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoggedModelStatus {
    /// Created; its artifacts may still be uploading.
    Pending,
    /// Finalized with its artifacts in place.
    Ready,
    /// Finalized after its upload failed.
    Failed,
}

impl LoggedModelStatus {
    /// Returns the stored name: `pending`, `ready` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }

    /// Parses a stored name; an unknown name reads as pending.
    pub fn parse(text: &str) -> Self {
        match text {
            "ready" => Self::Ready,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// A logged model to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLoggedModel {
    /// Project of the model's experiment.
    pub project_id: i64,
    /// Display name.
    pub name: String,
    /// Kind of model, such as `agent`.
    pub model_type: Option<String>,
    /// The run that produced the model, which must exist.
    pub source_run_id: Option<String>,
    /// Artifact location of the experiment, under which the model's location is formed.
    pub experiment_artifacts: String,
    /// Params, in request order.
    pub params: Vec<(String, String)>,
    /// Tags, in request order; a key given twice keeps its last value.
    pub tags: Vec<(String, String)>,
}

/// A logged model with its params, tags and metric values.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedModel {
    /// The model row.
    pub model: logged_model::Model,
    /// Params by key.
    pub params: BTreeMap<String, String>,
    /// Tags by key.
    pub tags: BTreeMap<String, String>,
    /// Every metric value logged for the model, in logging order.
    pub metrics: Vec<logged_model_metric::Model>,
}

impl LoggedModel {
    /// Returns the model's status.
    pub fn status(&self) -> LoggedModelStatus {
        LoggedModelStatus::parse(&self.model.status)
    }

    /// Returns whether the model is active or deleted.
    pub fn stage(&self) -> LifecycleStage {
        LifecycleStage::parse(&self.model.lifecycle_stage)
    }
}

/// An error of a logged-model operation that the caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum LoggedModelError {
    /// No logged model has this id.
    #[error("logged model with id '{0}' not found")]
    NotFound(String),
    /// A param was logged again with another value.
    #[error(
        "param '{key}' of logged model '{model_id}' is already '{old}' and cannot change to \
         '{new}': params are immutable, so log the new value under another key"
    )]
    ParamConflict {
        /// The model.
        model_id: String,
        /// The param name.
        key: String,
        /// The value already stored.
        old: String,
        /// The value that was rejected.
        new: String,
    },
    /// The model has no tag with this key.
    #[error("no tag with key '{key}' on logged model '{model_id}'")]
    TagNotFound {
        /// The model.
        model_id: String,
        /// The tag name.
        key: String,
    },
    /// The store failed, or a named run does not exist.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<DbErr> for LoggedModelError {
    fn from(error: DbErr) -> Self {
        Self::Store(error.into())
    }
}

impl Store {
    /// Creates a pending logged model with its params and tags, and links it to its source
    /// run in the lineage graph, in one transaction.
    pub async fn mlflow_create_logged_model(
        &self,
        new: NewLoggedModel,
    ) -> Result<LoggedModel, LoggedModelError> {
        let id = format!("m-{}", uuid::Uuid::now_v7().simple());
        let transaction = batch::begin_write(&self.db).await?;
        if let Some(run_id) = &new.source_run_id {
            runs::require_run(&transaction, run_id).await?;
        }
        insert_model(&transaction, &id, &new).await?;
        insert_params(&transaction, &id, &new.params).await?;
        upsert_tags(&transaction, &id, &new.tags).await?;
        if let Some(run_id) = &new.source_run_id {
            record_model_output_edge(&transaction, run_id, &id, &new.name).await?;
        }
        transaction.commit().await?;
        self.mlflow_require_logged_model(&id).await
    }

    /// Returns a logged model with its params, tags and metrics. A deleted model is returned
    /// only with `allow_deleted`.
    pub async fn mlflow_logged_model(
        &self,
        model_id: &str,
        allow_deleted: bool,
    ) -> Result<Option<LoggedModel>, StoreError> {
        let Some(row) = logged_model::Entity::find_by_id(model_id)
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        if !allow_deleted && row.lifecycle_stage == LifecycleStage::Deleted.as_str() {
            return Ok(None);
        }
        Ok(complete(&self.db, vec![row]).await?.pop())
    }

    /// Returns the active logged models of the projects, newest first, with their params,
    /// tags and metrics.
    pub async fn mlflow_logged_models_of(
        &self,
        project_ids: &[i64],
    ) -> Result<Vec<LoggedModel>, StoreError> {
        let mut rows = Vec::new();
        for chunk in project_ids.chunks(batch::rows_per_statement(1) - 1) {
            let found = logged_model::Entity::find()
                .filter(logged_model::Column::ProjectId.is_in(chunk.iter().copied()))
                .filter(logged_model::Column::LifecycleStage.eq(LifecycleStage::Active.as_str()))
                .order_by_desc(logged_model::Column::CreatedAt)
                .order_by_asc(logged_model::Column::Id)
                .all(&self.db)
                .await?;
            rows.extend(found);
        }
        complete(&self.db, rows).await
    }

    /// Sets the status of a logged model, deleted or not, and returns the model.
    pub async fn mlflow_finalize_logged_model(
        &self,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> Result<LoggedModel, LoggedModelError> {
        let row = self.require_row(model_id).await?;
        let mut active: logged_model::ActiveModel = row.into();
        active.status = Set(status.as_str().to_owned());
        active.updated_at = Set(now_ms());
        logged_model::Entity::update(active).exec(&self.db).await?;
        self.mlflow_require_logged_model(model_id).await
    }

    /// Marks a logged model deleted. Its records stay, so `allow_deleted` reads still find it.
    pub async fn mlflow_delete_logged_model(&self, model_id: &str) -> Result<(), LoggedModelError> {
        let row = self.require_row(model_id).await?;
        let mut active: logged_model::ActiveModel = row.into();
        active.lifecycle_stage = Set(LifecycleStage::Deleted.as_str().to_owned());
        active.updated_at = Set(now_ms());
        logged_model::Entity::update(active).exec(&self.db).await?;
        Ok(())
    }

    /// Sets tags of a logged model, replacing the values of keys it has.
    pub async fn mlflow_set_logged_model_tags(
        &self,
        model_id: &str,
        tags: &[(String, String)],
    ) -> Result<(), LoggedModelError> {
        let transaction = batch::begin_write(&self.db).await?;
        require_row(&transaction, model_id).await?;
        upsert_tags(&transaction, model_id, tags).await?;
        touch(&transaction, model_id).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes a tag of a logged model; fails when the model has no such tag.
    pub async fn mlflow_delete_logged_model_tag(
        &self,
        model_id: &str,
        key: &str,
    ) -> Result<(), LoggedModelError> {
        let transaction = batch::begin_write(&self.db).await?;
        require_row(&transaction, model_id).await?;
        let deleted = logged_model_tag::Entity::delete_many()
            .filter(logged_model_tag::Column::ModelId.eq(model_id))
            .filter(logged_model_tag::Column::Key.eq(key))
            .exec(&transaction)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(LoggedModelError::TagNotFound {
                model_id: model_id.to_owned(),
                key: key.to_owned(),
            });
        }
        touch(&transaction, model_id).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Logs params of a logged model. A param logged again with its stored value is accepted;
    /// with another value the whole request fails.
    pub async fn mlflow_log_logged_model_params(
        &self,
        model_id: &str,
        params: &[(String, String)],
    ) -> Result<(), LoggedModelError> {
        let transaction = batch::begin_write(&self.db).await?;
        require_row(&transaction, model_id).await?;
        insert_params(&transaction, model_id, params).await?;
        touch(&transaction, model_id).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Returns a logged model, deleted or not, or [`LoggedModelError::NotFound`].
    pub async fn mlflow_require_logged_model(
        &self,
        model_id: &str,
    ) -> Result<LoggedModel, LoggedModelError> {
        self.mlflow_logged_model(model_id, true)
            .await?
            .ok_or_else(|| LoggedModelError::NotFound(model_id.to_owned()))
    }

    async fn require_row(&self, model_id: &str) -> Result<logged_model::Model, LoggedModelError> {
        require_row(&self.db, model_id).await
    }
}

/// Returns the row of a logged model, deleted or not, or [`LoggedModelError::NotFound`].
pub(super) async fn require_row(
    db: &impl ConnectionTrait,
    model_id: &str,
) -> Result<logged_model::Model, LoggedModelError> {
    logged_model::Entity::find_by_id(model_id)
        .one(db)
        .await?
        .ok_or_else(|| LoggedModelError::NotFound(model_id.to_owned()))
}

async fn insert_model(
    db: &impl ConnectionTrait,
    id: &str,
    new: &NewLoggedModel,
) -> Result<(), DbErr> {
    let now = now_ms();
    let location = format!(
        "{}/models/{id}/artifacts",
        new.experiment_artifacts.trim_end_matches('/')
    );
    let row = logged_model::ActiveModel {
        id: Set(id.to_owned()),
        project_id: Set(new.project_id),
        name: Set(new.name.clone()),
        model_type: Set(new.model_type.clone()),
        source_run_id: Set(new.source_run_id.clone()),
        status: Set(LoggedModelStatus::Pending.as_str().to_owned()),
        status_message: Set(None),
        artifact_location: Set(location),
        lifecycle_stage: Set(LifecycleStage::Active.as_str().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    };
    logged_model::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Inserts params that the model lacks, after checking that none changes a stored value.
async fn insert_params(
    db: &impl ConnectionTrait,
    model_id: &str,
    params: &[(String, String)],
) -> Result<(), LoggedModelError> {
    let mut stored: BTreeMap<String, String> = logged_model_param::Entity::find()
        .filter(logged_model_param::Column::ModelId.eq(model_id))
        .all(db)
        .await?
        .into_iter()
        .map(|row| (row.key, row.value))
        .collect();
    let mut fresh = Vec::new();
    for (key, value) in params {
        match stored.get(key) {
            Some(old) if old == value => {}
            Some(old) => {
                return Err(LoggedModelError::ParamConflict {
                    model_id: model_id.to_owned(),
                    key: key.clone(),
                    old: old.clone(),
                    new: value.clone(),
                });
            }
            None => {
                stored.insert(key.clone(), value.clone());
                fresh.push(logged_model_param::ActiveModel {
                    model_id: Set(model_id.to_owned()),
                    key: Set(key.clone()),
                    value: Set(value.clone()),
                });
            }
        }
    }
    for chunk in fresh.chunks(batch::rows_per_statement(3)) {
        logged_model_param::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Inserts or replaces tags; a key given twice keeps its last value, because PostgreSQL
/// rejects an upsert that touches one row twice.
async fn upsert_tags(
    db: &impl ConnectionTrait,
    model_id: &str,
    tags: &[(String, String)],
) -> Result<(), DbErr> {
    let latest: BTreeMap<&String, &String> = tags.iter().map(|(key, value)| (key, value)).collect();
    let rows: Vec<logged_model_tag::ActiveModel> = latest
        .into_iter()
        .map(|(key, value)| logged_model_tag::ActiveModel {
            model_id: Set(model_id.to_owned()),
            key: Set(key.clone()),
            value: Set(value.clone()),
        })
        .collect();
    let replace = OnConflict::columns([
        logged_model_tag::Column::ModelId,
        logged_model_tag::Column::Key,
    ])
    .update_column(logged_model_tag::Column::Value)
    .to_owned();
    for chunk in rows.chunks(batch::rows_per_statement(3)) {
        logged_model_tag::Entity::insert_many(chunk.to_vec())
            .on_conflict(replace.clone())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Sets the model's last update time to now.
pub(super) async fn touch(db: &impl ConnectionTrait, model_id: &str) -> Result<(), DbErr> {
    logged_model::Entity::update_many()
        .col_expr(
            logged_model::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(now_ms()),
        )
        .filter(logged_model::Column::Id.eq(model_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Reads the params, tags and metrics of model rows, keeping the rows' order.
async fn complete(
    db: &impl ConnectionTrait,
    rows: Vec<logged_model::Model>,
) -> Result<Vec<LoggedModel>, StoreError> {
    let ids: Vec<String> = rows.iter().map(|row| row.id.clone()).collect();
    let mut params = params_of(db, &ids).await?;
    let mut tags = tags_of(db, &ids).await?;
    let mut metrics = metric_values(db, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|model| LoggedModel {
            params: params.remove(&model.id).unwrap_or_default(),
            tags: tags.remove(&model.id).unwrap_or_default(),
            metrics: metrics.remove(&model.id).unwrap_or_default(),
            model,
        })
        .collect())
}

/// Params or tags of models, by model and key.
type KeyValuesByModel = HashMap<String, BTreeMap<String, String>>;

/// Reads the params of `ids`, by model.
async fn params_of(
    db: &impl ConnectionTrait,
    ids: &[String],
) -> Result<KeyValuesByModel, StoreError> {
    let mut found = KeyValuesByModel::new();
    for chunk in ids.chunks(batch::rows_per_statement(1) - 1) {
        let rows = logged_model_param::Entity::find()
            .filter(logged_model_param::Column::ModelId.is_in(chunk.iter().map(String::as_str)))
            .all(db)
            .await?;
        for row in rows {
            found
                .entry(row.model_id)
                .or_default()
                .insert(row.key, row.value);
        }
    }
    Ok(found)
}

/// Reads the tags of `ids`, by model.
async fn tags_of(
    db: &impl ConnectionTrait,
    ids: &[String],
) -> Result<KeyValuesByModel, StoreError> {
    let mut found = KeyValuesByModel::new();
    for chunk in ids.chunks(batch::rows_per_statement(1) - 1) {
        let rows = logged_model_tag::Entity::find()
            .filter(logged_model_tag::Column::ModelId.is_in(chunk.iter().map(String::as_str)))
            .all(db)
            .await?;
        for row in rows {
            found
                .entry(row.model_id)
                .or_default()
                .insert(row.key, row.value);
        }
    }
    Ok(found)
}

async fn metric_values(
    db: &impl ConnectionTrait,
    ids: &[String],
) -> Result<HashMap<String, Vec<logged_model_metric::Model>>, StoreError> {
    let mut found: HashMap<String, Vec<logged_model_metric::Model>> = HashMap::new();
    for chunk in ids.chunks(batch::rows_per_statement(1) - 1) {
        let rows = logged_model_metric::Entity::find()
            .filter(logged_model_metric::Column::ModelId.is_in(chunk.iter().map(String::as_str)))
            .order_by_asc(logged_model_metric::Column::Id)
            .all(db)
            .await?;
        for row in rows {
            found.entry(row.model_id.clone()).or_default().push(row);
        }
    }
    Ok(found)
}
