//! Run params, which are immutable, and run tags, which are not.

use super::entity::{run_param, run_tag};
use super::{Store, StoreError, batch, runs};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use std::collections::BTreeMap;

impl Store {
    /// Records params of a run in one transaction.
    ///
    /// Logging a param again with the value it has is accepted and changes nothing. A different
    /// value, stored earlier or earlier in `params`, fails the whole call with
    /// [`StoreError::ParamConflict`] and records none of `params`.
    pub async fn log_params(
        &self,
        run_id: &str,
        params: &[(String, String)],
    ) -> Result<(), StoreError> {
        let distinct = distinct_params(run_id, params)?;
        if distinct.is_empty() {
            return Ok(());
        }
        let transaction = batch::begin_write(&self.db).await?;
        runs::require_run(&transaction, run_id).await?;

        let distinct: Vec<(String, String)> = distinct.into_iter().collect();
        for chunk in distinct.chunks(batch::rows_per_statement(3)) {
            insert_params(&transaction, run_id, chunk).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Returns the params of a run, by key.
    pub async fn get_params(&self, run_id: &str) -> Result<BTreeMap<String, String>, StoreError> {
        get_params(&self.db, run_id).await
    }

    /// Sets tags of a run, replacing the values of keys it already has.
    pub async fn set_tags(
        &self,
        run_id: &str,
        tags: &[(String, String)],
    ) -> Result<(), StoreError> {
        if tags.is_empty() {
            return Ok(());
        }

        let transaction = batch::begin_write(&self.db).await?;
        runs::require_run(&transaction, run_id).await?;
        upsert_tags(&transaction, run_id, tags).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes a tag of a run. Deleting a tag the run does not have is not an error.
    pub async fn delete_tag(&self, run_id: &str, key: &str) -> Result<(), StoreError> {
        run_tag::Entity::delete_many()
            .filter(run_tag::Column::RunId.eq(run_id))
            .filter(run_tag::Column::Key.eq(key))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Returns the tags of a run, by key.
    pub async fn get_tags(&self, run_id: &str) -> Result<BTreeMap<String, String>, StoreError> {
        get_tags(&self.db, run_id).await
    }
}

pub(super) async fn get_params(
    db: &impl ConnectionTrait,
    run_id: &str,
) -> Result<BTreeMap<String, String>, StoreError> {
    let rows = run_param::Entity::find()
        .filter(run_param::Column::RunId.eq(run_id))
        .order_by_asc(run_param::Column::Key)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|row| (row.key, row.value)).collect())
}

pub(super) async fn get_tags(
    db: &impl ConnectionTrait,
    run_id: &str,
) -> Result<BTreeMap<String, String>, StoreError> {
    let rows = run_tag::Entity::find()
        .filter(run_tag::Column::RunId.eq(run_id))
        .order_by_asc(run_tag::Column::Key)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|row| (row.key, row.value)).collect())
}

/// Inserts or replaces tags of a run. The caller checks that the run exists.
pub(super) async fn upsert_tags(
    db: &impl ConnectionTrait,
    run_id: &str,
    tags: &[(String, String)],
) -> Result<(), StoreError> {
    // A key given twice keeps its last value, and PostgreSQL rejects a statement that
    // updates one row twice, so duplicates go before the insert.
    let tags: BTreeMap<&String, &String> = tags.iter().map(|(k, v)| (k, v)).collect();
    let rows: Vec<_> = tags.into_iter().collect();
    for chunk in rows.chunks(batch::rows_per_statement(3)) {
        let models = chunk.iter().map(|(key, value)| run_tag::ActiveModel {
            run_id: Set(run_id.to_owned()),
            key: Set((*key).clone()),
            value: Set((*value).clone()),
        });
        let upsert = OnConflict::columns([run_tag::Column::RunId, run_tag::Column::Key])
            .update_column(run_tag::Column::Value)
            .to_owned();
        run_tag::Entity::insert_many(models)
            .on_conflict(upsert)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Inserts the params of `chunk` that the run lacks, then fails if a stored value differs.
///
/// Comparing after the insert also catches a row that a concurrent writer inserted first.
pub(super) async fn insert_params(
    db: &impl ConnectionTrait,
    run_id: &str,
    chunk: &[(String, String)],
) -> Result<(), StoreError> {
    let rows = chunk.iter().map(|(key, value)| run_param::ActiveModel {
        run_id: Set(run_id.to_owned()),
        key: Set(key.clone()),
        value: Set(value.clone()),
    });
    let conflict = OnConflict::columns([run_param::Column::RunId, run_param::Column::Key])
        .do_nothing()
        .to_owned();
    run_param::Entity::insert_many(rows)
        .on_conflict(conflict)
        .exec_without_returning(db)
        .await?;

    let stored = run_param::Entity::find()
        .filter(run_param::Column::RunId.eq(run_id))
        .filter(run_param::Column::Key.is_in(chunk.iter().map(|(key, _)| key.as_str())))
        .all(db)
        .await?;
    let requested: BTreeMap<&str, &str> = chunk
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    for row in stored {
        let new = requested[row.key.as_str()];
        if new != row.value {
            return Err(StoreError::ParamConflict {
                run_id: run_id.to_owned(),
                new: new.to_owned(),
                key: row.key,
                old: row.value,
            });
        }
    }
    Ok(())
}

/// Collects `params` by key, rejecting a key given twice with two values.
pub(super) fn distinct_params(
    run_id: &str,
    params: &[(String, String)],
) -> Result<BTreeMap<String, String>, StoreError> {
    let mut distinct: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in params {
        match distinct.get(key) {
            Some(old) if old != value => {
                return Err(StoreError::ParamConflict {
                    run_id: run_id.to_owned(),
                    key: key.clone(),
                    old: old.clone(),
                    new: value.clone(),
                });
            }
            Some(_) => {}
            None => {
                distinct.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(distinct)
}
