//! Code and environment snapshots of runs.

use super::entity::environment;
use super::steps::PluginRef;
use super::{Store, StoreError, runs};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use serde::{Deserialize, Serialize};

/// The code and environment a run executed with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentSnapshot {
    /// State of the pipeline's git repository; `None` outside a repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitState>,
    /// Version of the runledger that recorded the run.
    #[serde(default)]
    pub runledger_version: String,
    /// Version of wasmtime that executed the steps; `None` for external runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasmtime_version: Option<String>,
    /// Operating system, as in `std::env::consts::OS`.
    #[serde(default)]
    pub os: String,
    /// CPU architecture, as in `std::env::consts::ARCH`.
    #[serde(default)]
    pub arch: String,
    /// Every plugin that ran.
    #[serde(default)]
    pub plugins: Vec<PluginRef>,
    /// Packages an external client reported, such as the lines of its `requirements.txt`.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Any other fields a client reported, kept as they came.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// State of a git repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitState {
    /// Full hash of the checked-out commit.
    pub commit: String,
    /// Whether tracked files had uncommitted changes.
    pub dirty: bool,
}

impl Store {
    /// Stores the environment snapshot of a run, replacing an earlier one.
    pub async fn put_environment(
        &self,
        run_id: &str,
        snapshot: &EnvironmentSnapshot,
    ) -> Result<(), StoreError> {
        runs::require_run(&self.db, run_id).await?;
        let json = serde_json::to_value(snapshot).map_err(|source| StoreError::InvalidJson {
            document: format!("environment snapshot of run {run_id}"),
            source,
        })?;
        let row = environment::ActiveModel {
            run_id: Set(run_id.to_owned()),
            snapshot_json: Set(json),
        };
        let upsert = OnConflict::column(environment::Column::RunId)
            .update_column(environment::Column::SnapshotJson)
            .to_owned();
        environment::Entity::insert(row)
            .on_conflict(upsert)
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// Returns the environment snapshot of a run, if one was stored.
    pub async fn get_environment(
        &self,
        run_id: &str,
    ) -> Result<Option<EnvironmentSnapshot>, StoreError> {
        get_environment(&self.db, run_id).await
    }
}

pub(super) async fn get_environment(
    db: &impl ConnectionTrait,
    run_id: &str,
) -> Result<Option<EnvironmentSnapshot>, StoreError> {
    let Some(row) = environment::Entity::find_by_id(run_id).one(db).await? else {
        return Ok(None);
    };
    let snapshot =
        serde_json::from_value(row.snapshot_json).map_err(|source| StoreError::InvalidJson {
            document: format!("environment snapshot of run {run_id}"),
            source,
        })?;
    Ok(Some(snapshot))
}
