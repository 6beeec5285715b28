//! Min-max downsampling done by SQLite itself, for series far longer than the points asked for.
//!
//! Streaming a million rows through the driver takes seconds, because every row crosses from
//! SQLite's thread to the async side on its own. A query that returns a few thousand rows takes
//! a fraction of that. The buckets here span equal ranges of steps rather than equal
//! numbers of points, which suits a chart whose x axis is the step.

use crate::store::{MetricPoint, StoreError};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement, Value};
use std::collections::BTreeMap;
use std::ops::RangeInclusive;

/// The series to bucket and the number of buckets.
pub(super) struct BucketQuery<'a> {
    pub run_id: &'a str,
    pub key: &'a str,
    pub step_run_id: Option<&'a str>,
    pub steps: RangeInclusive<i64>,
    /// Number of buckets; each contributes its minimum and maximum.
    pub buckets: u64,
}

/// Returns the first and last points of the series and each bucket's minimum and maximum, in
/// step order, or `None` when the series has no point in range.
pub(super) async fn bucketed_points(
    db: &impl ConnectionTrait,
    query: &BucketQuery<'_>,
) -> Result<Option<Vec<MetricPoint>>, StoreError> {
    let Some(first) = end_point(db, query, "ASC").await? else {
        return Ok(None);
    };
    let last = end_point(db, query, "DESC").await?.unwrap_or(first.clone());
    let (origin, end) = (first.1.step, last.1.step);
    let width = bucket_width(origin, end, query.buckets);

    let mut points: BTreeMap<(i64, i64, i64), MetricPoint> = BTreeMap::new();
    for (id, point) in [first, last] {
        points.insert((point.step, point.timestamp_ms, id), point);
    }
    for (id, point) in extremes(db, query, origin, end, width).await? {
        points.insert((point.step, point.timestamp_ms, id), point);
    }
    Ok(Some(points.into_values().collect()))
}

/// Steps per bucket, at least one, so that `buckets` buckets cover `first..=last`.
fn bucket_width(first: i64, last: i64, buckets: u64) -> i64 {
    let span = i128::from(last) - i128::from(first) + 1;
    let buckets = i128::from(buckets.max(1));
    i64::try_from((span + buckets - 1) / buckets)
        .unwrap_or(i64::MAX)
        .max(1)
}

/// Builds the series' `WHERE` clause and its values, with the requested step range.
fn series_condition(query: &BucketQuery<'_>) -> (String, Vec<Value>) {
    let (mut sql, mut values) = key_condition(query);
    sql.push_str(" AND step >= ? AND step <= ?");
    values.push((*query.steps.start()).into());
    values.push((*query.steps.end()).into());
    (sql, values)
}

/// Builds the series' `WHERE` clause and its values without a step range, for queries that
/// bound the steps themselves. With a second pair of step bounds, SQLite can search the index
/// by the wider pair and scan the whole series for every bucket.
fn key_condition(query: &BucketQuery<'_>) -> (String, Vec<Value>) {
    let mut sql = String::from("run_id = ? AND key = ?");
    let mut values: Vec<Value> = vec![query.run_id.into(), query.key.into()];
    if let Some(step_run_id) = query.step_run_id {
        sql.push_str(" AND step_run_id = ?");
        values.push(step_run_id.into());
    }
    (sql, values)
}

/// Reads the first (`ASC`) or last (`DESC`) point of the series.
async fn end_point(
    db: &impl ConnectionTrait,
    query: &BucketQuery<'_>,
    direction: &str,
) -> Result<Option<(i64, MetricPoint)>, StoreError> {
    let (condition, values) = series_condition(query);
    let sql = format!(
        "SELECT id, step, timestamp_ms, value, step_run_id FROM metrics WHERE {condition} \
         ORDER BY step {direction}, timestamp_ms {direction}, id {direction} LIMIT 1"
    );
    let statement = Statement::from_sql_and_values(DbBackend::Sqlite, sql, values);
    let row = db.query_one_raw(statement).await?;
    row.map(|row| point_of(&row, query.key)).transpose()
}

/// Reads the ids of each bucket's minimum and maximum, then those rows.
///
/// Each bucket is one correlated subquery over its step range, so SQLite walks the series index
/// once per extreme and never sorts the whole series, as a `GROUP BY` on a computed bucket
/// would. The minimum skips NaN, stored as NULL; the maximum of a bucket of only NaN values is
/// one of them, so such a bucket still shows.
async fn extremes(
    db: &impl ConnectionTrait,
    query: &BucketQuery<'_>,
    origin: i64,
    last: i64,
    width: i64,
) -> Result<Vec<(i64, MetricPoint)>, StoreError> {
    let (condition, condition_values) = key_condition(query);
    // The last bucket stops at the series' last step in range, so no later point joins it.
    let range = "step >= buckets.low AND step <= MIN(buckets.low + ? - 1, ?)";
    let sql = format!(
        "WITH RECURSIVE buckets(low) AS (SELECT ? UNION ALL SELECT low + ? FROM buckets \
         WHERE low + ? <= ?) \
         SELECT (SELECT id FROM metrics WHERE {condition} AND {range} AND value IS NOT NULL \
         ORDER BY value ASC LIMIT 1) AS min_id, \
         (SELECT id FROM metrics WHERE {condition} AND {range} ORDER BY value DESC LIMIT 1) \
         AS max_id FROM buckets"
    );
    let mut values: Vec<Value> = vec![origin.into(), width.into(), width.into(), last.into()];
    for _ in 0..2 {
        values.extend(condition_values.iter().cloned());
        values.push(width.into());
        values.push(last.into());
    }
    let statement = Statement::from_sql_and_values(DbBackend::Sqlite, sql, values);
    let mut ids = Vec::new();
    for row in db.query_all_raw(statement).await? {
        for column in ["min_id", "max_id"] {
            if let Some(id) = row.try_get::<Option<i64>>("", column)? {
                ids.push(id);
            }
        }
    }
    points_by_id(db, query.key, &ids).await
}

/// Reads the rows with the given ids. The ids come from the database, so they are written into
/// the statement rather than bound, which keeps clear of SQLite's limit on bound values.
async fn points_by_id(
    db: &impl ConnectionTrait,
    key: &str,
    ids: &[i64],
) -> Result<Vec<(i64, MetricPoint)>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    let sql = format!(
        "SELECT id, step, timestamp_ms, value, step_run_id FROM metrics WHERE id IN ({})",
        list.join(",")
    );
    let statement = Statement::from_string(DbBackend::Sqlite, sql);
    let rows = db.query_all_raw(statement).await?;
    rows.iter().map(|row| point_of(row, key)).collect()
}

fn point_of(row: &QueryResult, key: &str) -> Result<(i64, MetricPoint), StoreError> {
    let id: i64 = row.try_get("", "id")?;
    let value: Option<f64> = row.try_get("", "value")?;
    let point = MetricPoint {
        key: key.to_owned(),
        // SQLite stores NaN as NULL; a bucket of only NaN values yields NULL.
        value: value.unwrap_or(f64::NAN),
        step: row.try_get("", "step")?,
        timestamp_ms: row.try_get("", "timestamp_ms")?,
        step_run_id: row.try_get("", "step_run_id")?,
    };
    Ok((id, point))
}

#[cfg(test)]
mod tests {
    use super::bucket_width;

    #[test]
    fn bucket_width_covers_the_span() {
        assert_eq!(bucket_width(0, 999_999, 1_000), 1_000);
        assert_eq!(
            bucket_width(0, 9, 4),
            3,
            "rounds up so 4 buckets cover 10 steps"
        );
        assert_eq!(bucket_width(5, 5, 100), 1, "a single step is one bucket");
        assert_eq!(bucket_width(i64::MIN, i64::MAX, 1), i64::MAX, "saturates");
    }
}
