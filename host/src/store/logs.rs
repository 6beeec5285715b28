//! Log lines of step runs.

use super::entity::step_log;
use super::{Store, StoreError, batch, steps};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

/// A log line to append with [`Store::append_step_logs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogLine {
    /// Level: `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The message.
    pub message: String,
    /// Structured fields, as a JSON object.
    pub fields: Option<serde_json::Value>,
    /// Time the line was emitted, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl Store {
    /// Appends log lines to a step run in one transaction, numbering them after the lines it
    /// already has.
    pub async fn append_step_logs(
        &self,
        step_run_id: &str,
        lines: &[NewLogLine],
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let transaction = batch::begin_write(&self.db).await?;

        // On PostgreSQL the row lock makes concurrent appends to one step run take turns, so
        // they cannot pick the same numbers. SQLite's write lock already does that.
        steps::lock_step_run(&transaction, step_run_id).await?;
        insert_numbered(&transaction, step_run_id, lines).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Lists log lines of a step run in order, starting after `after_seq` when it is set and
    /// returning at most `limit` lines when that is set.
    pub async fn list_step_logs(
        &self,
        step_run_id: &str,
        after_seq: Option<i64>,
        limit: Option<u64>,
    ) -> Result<Vec<step_log::Model>, StoreError> {
        let mut query =
            step_log::Entity::find().filter(step_log::Column::StepRunId.eq(step_run_id));
        if let Some(after) = after_seq {
            query = query.filter(step_log::Column::Seq.gt(after));
        }
        Ok(query
            .order_by_asc(step_log::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await?)
    }
}

/// Inserts log lines of a step run, numbering them after the lines it already has.
///
/// The caller must hold a lock that keeps other writers to the step run's logs out until its
/// transaction ends, such as the row lock of [`steps::lock_step_run`] or of an `UPDATE` of the
/// step run.
pub(super) async fn insert_numbered(
    db: &impl ConnectionTrait,
    step_run_id: &str,
    lines: &[NewLogLine],
) -> Result<(), StoreError> {
    if lines.is_empty() {
        return Ok(());
    }
    let last: Option<i64> = step_log::Entity::find()
        .select_only()
        .expr_as(Func::max(Expr::col(step_log::Column::Seq)), "last")
        .filter(step_log::Column::StepRunId.eq(step_run_id))
        .into_tuple::<Option<i64>>()
        .one(db)
        .await?
        .flatten();
    let first = last.map_or(0, |last| last + 1);

    let numbered: Vec<_> = (first..).zip(lines).collect();
    for chunk in numbered.chunks(batch::rows_per_statement(6)) {
        let rows = chunk.iter().map(|(seq, line)| step_log::ActiveModel {
            step_run_id: Set(step_run_id.to_owned()),
            seq: Set(*seq),
            level: Set(line.level.clone()),
            message: Set(line.message.clone()),
            fields_json: Set(line.fields.clone()),
            timestamp_ms: Set(line.timestamp_ms),
            ..Default::default()
        });
        step_log::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}
