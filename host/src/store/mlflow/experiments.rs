//! Projects seen as MLflow experiments: lookup, creation, renaming, deletion and tags.

use super::LifecycleStage;
use super::entity::{experiment, experiment_tag, run_state};
use crate::store::entity::{project, run};
use crate::store::{Store, StoreError, batch, now_ms};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use std::collections::BTreeMap;

/// A project with its MLflow lifecycle and tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Experiment {
    /// The project.
    pub project: project::Model,
    /// Whether the experiment is active or deleted.
    pub lifecycle_stage: LifecycleStage,
    /// Artifact location the client gave at creation; `None` for the proxied default.
    pub artifact_location: Option<String>,
    /// Time of the last change, in milliseconds since the Unix epoch.
    pub last_update_time: i64,
    /// Tags by key.
    pub tags: BTreeMap<String, String>,
}

impl Store {
    /// Returns the project with this id as an experiment, if it exists.
    pub async fn mlflow_experiment(
        &self,
        project_id: i64,
    ) -> Result<Option<Experiment>, StoreError> {
        let found = project::Entity::find_by_id(project_id)
            .one(&self.db)
            .await?;
        match found {
            Some(project) => Ok(Some(describe(&self.db, project).await?)),
            None => Ok(None),
        }
    }

    /// Returns the project called `name` as an experiment, if it exists.
    pub async fn mlflow_experiment_by_name(
        &self,
        name: &str,
    ) -> Result<Option<Experiment>, StoreError> {
        let found = project::Entity::find()
            .filter(project::Column::Name.eq(name))
            .one(&self.db)
            .await?;
        match found {
            Some(project) => Ok(Some(describe(&self.db, project).await?)),
            None => Ok(None),
        }
    }

    /// Returns every project as an experiment, oldest first.
    pub async fn mlflow_experiments(&self) -> Result<Vec<Experiment>, StoreError> {
        let projects = project::Entity::find()
            .order_by_asc(project::Column::Id)
            .all(&self.db)
            .await?;
        let mut experiments = Vec::with_capacity(projects.len());
        for project in projects {
            experiments.push(describe(&self.db, project).await?);
        }
        Ok(experiments)
    }

    /// Creates a project as an experiment with `tags`, or returns `None` when a project is
    /// already called `name`.
    pub async fn mlflow_create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<Option<Experiment>, StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        let now = now_ms();
        let row = project::ActiveModel {
            name: Set(name.to_owned()),
            created_at: Set(now),
            ..Default::default()
        };
        let conflict = OnConflict::column(project::Column::Name)
            .do_nothing()
            .to_owned();
        let inserted = project::Entity::insert(row)
            .on_conflict(conflict)
            .exec_without_returning(&transaction)
            .await?;
        if inserted == 0 {
            return Ok(None);
        }

        let project = project::Entity::find()
            .filter(project::Column::Name.eq(name))
            .one(&transaction)
            .await?
            .ok_or_else(|| batch::missing_after_insert(&format!("project `{name}`")))?;
        let state = experiment::ActiveModel {
            project_id: Set(project.id),
            lifecycle_stage: Set(LifecycleStage::Active.as_str().to_owned()),
            artifact_location: Set(artifact_location.map(str::to_owned)),
            last_update_time: Set(now),
            deleted_at: Set(None),
        };
        experiment::Entity::insert(state)
            .exec_without_returning(&transaction)
            .await?;
        upsert_tags(&transaction, project.id, tags).await?;
        let created = describe(&transaction, project).await?;
        transaction.commit().await?;
        tracing::info!(project = %name, "mlflow experiment created");
        Ok(Some(created))
    }

    /// Renames a project. Returns false, changing nothing, when another project has `name`.
    pub async fn mlflow_rename_experiment(
        &self,
        project_id: i64,
        name: &str,
    ) -> Result<bool, StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        let taken = project::Entity::find()
            .filter(project::Column::Name.eq(name))
            .filter(project::Column::Id.ne(project_id))
            .one(&transaction)
            .await?;
        if taken.is_some() {
            return Ok(false);
        }
        project::Entity::update_many()
            .col_expr(project::Column::Name, Expr::value(name))
            .filter(project::Column::Id.eq(project_id))
            .exec(&transaction)
            .await?;
        touch(&transaction, project_id, None).await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Deletes or restores an experiment together with its runs. Restoring brings back the
    /// runs deleted with the experiment or after it, and leaves runs deleted before it
    /// deleted.
    pub async fn mlflow_set_experiment_stage(
        &self,
        project_id: i64,
        stage: LifecycleStage,
    ) -> Result<(), StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        let current = describe_state(&transaction, project_id).await?;
        let run_ids: Vec<String> = run::Entity::find()
            .select_only()
            .column(run::Column::Id)
            .filter(run::Column::ProjectId.eq(project_id))
            .into_tuple()
            .all(&transaction)
            .await?;
        match stage {
            LifecycleStage::Deleted => {
                let now = now_ms();
                touch(&transaction, project_id, Some(Some(now))).await?;
                super::runs::mark_deleted(&transaction, &run_ids, now).await?;
            }
            LifecycleStage::Active => {
                let since = current
                    .and_then(|state| state.deleted_at)
                    .unwrap_or(i64::MAX);
                touch(&transaction, project_id, Some(None)).await?;
                run_state::Entity::delete_many()
                    .filter(run_state::Column::RunId.is_in(run_ids))
                    .filter(run_state::Column::DeletedAt.gte(since))
                    .exec(&transaction)
                    .await?;
            }
        }
        transaction.commit().await?;
        tracing::info!(
            project_id,
            stage = stage.as_str(),
            "mlflow experiment stage changed"
        );
        Ok(())
    }

    /// Sets a tag of an experiment, replacing its value.
    pub async fn mlflow_set_experiment_tag(
        &self,
        project_id: i64,
        key: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        let transaction = batch::begin_write(&self.db).await?;
        upsert_tags(
            &transaction,
            project_id,
            &[(key.to_owned(), value.to_owned())],
        )
        .await?;
        touch(&transaction, project_id, None).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes a tag of an experiment. Deleting a tag it does not have is not an error.
    pub async fn mlflow_delete_experiment_tag(
        &self,
        project_id: i64,
        key: &str,
    ) -> Result<(), StoreError> {
        experiment_tag::Entity::delete_many()
            .filter(experiment_tag::Column::ProjectId.eq(project_id))
            .filter(experiment_tag::Column::Key.eq(key))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

/// Builds the experiment of a project from its lifecycle row and tags.
pub(super) async fn describe(
    db: &impl ConnectionTrait,
    project: project::Model,
) -> Result<Experiment, StoreError> {
    let state = describe_state(db, project.id).await?;
    let tags = experiment_tag::Entity::find()
        .filter(experiment_tag::Column::ProjectId.eq(project.id))
        .order_by_asc(experiment_tag::Column::Key)
        .all(db)
        .await?
        .into_iter()
        .map(|tag| (tag.key, tag.value))
        .collect();
    let (lifecycle_stage, artifact_location, last_update_time) = match state {
        Some(state) => (
            LifecycleStage::parse(&state.lifecycle_stage),
            state.artifact_location,
            state.last_update_time,
        ),
        None => (LifecycleStage::Active, None, project.created_at),
    };
    Ok(Experiment {
        project,
        lifecycle_stage,
        artifact_location,
        last_update_time,
        tags,
    })
}

async fn describe_state(
    db: &impl ConnectionTrait,
    project_id: i64,
) -> Result<Option<experiment::Model>, StoreError> {
    Ok(experiment::Entity::find_by_id(project_id).one(db).await?)
}

/// Sets the last update time of an experiment to now, creating its row if needed. With
/// `deleted_at` set, it also moves the experiment to the trash (`Some(time)`) or out of it
/// (`None`).
async fn touch(
    db: &impl ConnectionTrait,
    project_id: i64,
    deleted_at: Option<Option<i64>>,
) -> Result<(), StoreError> {
    let existing = describe_state(db, project_id).await?;
    let now = now_ms();
    let deleted_at = match deleted_at {
        Some(change) => change,
        None => existing.as_ref().and_then(|state| state.deleted_at),
    };
    let stage = match deleted_at {
        Some(_) => LifecycleStage::Deleted,
        None => LifecycleStage::Active,
    };
    let row = experiment::ActiveModel {
        project_id: Set(project_id),
        lifecycle_stage: Set(stage.as_str().to_owned()),
        artifact_location: Set(existing.and_then(|state| state.artifact_location)),
        last_update_time: Set(now),
        deleted_at: Set(deleted_at),
    };
    let upsert = OnConflict::column(experiment::Column::ProjectId)
        .update_columns([
            experiment::Column::LifecycleStage,
            experiment::Column::LastUpdateTime,
            experiment::Column::DeletedAt,
        ])
        .to_owned();
    experiment::Entity::insert(row)
        .on_conflict(upsert)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

async fn upsert_tags(
    db: &impl ConnectionTrait,
    project_id: i64,
    tags: &[(String, String)],
) -> Result<(), StoreError> {
    // A key given twice keeps its last value; PostgreSQL rejects an upsert that touches a row
    // twice in one statement.
    let distinct: BTreeMap<&String, &String> = tags.iter().map(|(k, v)| (k, v)).collect();
    if distinct.is_empty() {
        return Ok(());
    }
    let rows = distinct
        .into_iter()
        .map(|(key, value)| experiment_tag::ActiveModel {
            project_id: Set(project_id),
            key: Set(key.clone()),
            value: Set(value.clone()),
        });
    let upsert = OnConflict::columns([
        experiment_tag::Column::ProjectId,
        experiment_tag::Column::Key,
    ])
    .update_column(experiment_tag::Column::Value)
    .to_owned();
    experiment_tag::Entity::insert_many(rows)
        .on_conflict(upsert)
        .exec_without_returning(db)
        .await?;
    Ok(())
}
