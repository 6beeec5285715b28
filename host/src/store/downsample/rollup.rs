//! Per-block summaries of metric series, kept at ingestion in table `metric_blocks`.
//!
//! A block is a run's values of one key whose steps fall in one range of [`BLOCK_STEPS`]
//! steps. Its summary contains the number of values, the minimum and maximum with their step,
//! timestamp and step run, and the first and last point in (step, timestamp) order. Reading a
//! whole long series for a chart then reads one summary per block instead of every value.
//!
//! Each write transaction that inserts metric rows merges the summaries of the blocks it
//! touches with one multi-row upsert per chunk, so the summaries commit or roll back with the
//! rows. Runs deleted take their summaries with them through the foreign key.

use crate::store::{NewMetric, batch, metrics};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// Steps per block. A whole-series read uses the summaries only when the series has at least
/// one block per requested bucket (see `summaries`), and a chart requests about one bucket per
/// pixel of its width. With 256 steps, a 1,000,000-step series has about 3,900 blocks, enough
/// for a chart up to about 3,900 pixels wide, and a 200,000-step one about 780. Each write
/// transaction upserts one row per block it touches, so smaller blocks cost long batches more
/// rows.
pub(in crate::store) const BLOCK_STEPS: i64 = 256;

/// Columns of `metric_blocks`, in the order of [`summary_values`] and [`summary_of`].
const COLUMNS: [&str; 20] = [
    "run_id",
    "\"key\"",
    "block",
    "point_count",
    "min_value",
    "min_step",
    "min_timestamp_ms",
    "min_step_run_id",
    "max_value",
    "max_step",
    "max_timestamp_ms",
    "max_step_run_id",
    "first_value",
    "first_step",
    "first_timestamp_ms",
    "first_step_run_id",
    "last_value",
    "last_step",
    "last_timestamp_ms",
    "last_step_run_id",
];

/// Rows the backfill reads from `metrics` per query.
const BACKFILL_PAGE_ROWS: i64 = 10_000;

/// One value of a summary. `value` is `None` for NaN, as in table `metrics`.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::store) struct SummaryPoint {
    pub value: Option<f64>,
    pub step: i64,
    pub timestamp_ms: i64,
    pub step_run_id: Option<String>,
}

/// The summary of one block, or of several consecutive blocks merged.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::store) struct BlockSummary {
    pub block: i64,
    pub count: i64,
    /// Smallest value that is not NaN; `None` when every value is NaN.
    pub min: Option<SummaryPoint>,
    /// Largest value that is not NaN, or a NaN point when every value is NaN.
    pub max: SummaryPoint,
    pub first: SummaryPoint,
    pub last: SummaryPoint,
}

impl BlockSummary {
    fn of_point(block: i64, point: SummaryPoint) -> Self {
        Self {
            block,
            count: 1,
            min: point.value.is_some().then(|| point.clone()),
            max: point.clone(),
            first: point.clone(),
            last: point,
        }
    }

    /// Merges `later`, a summary of values inserted after this one's or of a later block,
    /// into this one. Ties keep this summary's minimum, maximum and first point, and take
    /// `later`'s last point, which is what the upsert in [`upsert_statement`] does too.
    pub(in crate::store) fn merge(&mut self, later: Self) {
        self.count += later.count;
        if let Some(min) = later.min {
            let smaller = self.min.as_ref().is_none_or(|held| min.value < held.value);
            if smaller {
                self.min = Some(min);
            }
        }
        if is_larger(later.max.value, self.max.value) {
            self.max = later.max;
        }
        if order_of(&later.first) < order_of(&self.first) {
            self.first = later.first;
        }
        if order_of(&later.last) >= order_of(&self.last) {
            self.last = later.last;
        }
    }
}

/// Whether `candidate` replaces `held` as a maximum: a number beats NaN and smaller numbers.
fn is_larger(candidate: Option<f64>, held: Option<f64>) -> bool {
    match (candidate, held) {
        (Some(candidate), Some(held)) => candidate > held,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn order_of(point: &SummaryPoint) -> (i64, i64) {
    (point.step, point.timestamp_ms)
}

/// Returns the block of `step`; negative steps round down, so every block spans
/// [`BLOCK_STEPS`] steps.
pub(in crate::store) fn block_of(step: i64) -> i64 {
    step.div_euclid(BLOCK_STEPS)
}

/// Merges the values of runs, given as `(run_id, value)` in insertion order, into the stored
/// summaries of their blocks, with one upsert per chunk of blocks sized to the parameter limit.
pub(in crate::store) async fn upsert_blocks<'a>(
    db: &impl ConnectionTrait,
    values: impl IntoIterator<Item = (&'a str, &'a NewMetric)>,
) -> Result<(), DbErr> {
    let summaries = summarize(values);
    let rows: Vec<(&(&str, &str, i64), &BlockSummary)> = summaries.iter().collect();
    let backend = db.get_database_backend();
    for chunk in rows.chunks(batch::rows_per_statement(COLUMNS.len())) {
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS.len());
        for ((run_id, key, _), summary) in chunk {
            values.extend(summary_values(run_id, key, summary));
        }
        let sql = upsert_statement(backend, chunk.len());
        db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
    Ok(())
}

/// Does what [`upsert_blocks`] does through a `rusqlite` connection, for metric rows written
/// outside sea-orm. The one-row upsert is prepared once per call and run for each block
/// touched.
pub(in crate::store) fn upsert_blocks_sqlite<'a>(
    connection: &rusqlite::Connection,
    values: impl IntoIterator<Item = (&'a str, &'a NewMetric)>,
) -> rusqlite::Result<()> {
    let summaries = summarize(values);
    if summaries.is_empty() {
        return Ok(());
    }
    static ONE_ROW: LazyLock<String> = LazyLock::new(|| upsert_statement(DbBackend::Sqlite, 1));
    let mut statement = connection.prepare_cached(&ONE_ROW)?;
    for ((run_id, key, _), summary) in &summaries {
        let values = summary_values(run_id, key, summary);
        statement.execute(rusqlite::params_from_iter(values.iter().map(sqlite_value)))?;
    }
    Ok(())
}

/// Converts a value of [`summary_values`], which contains only text, integers and reals.
fn sqlite_value(value: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as Sqlite;
    match value {
        Value::String(Some(text)) => Sqlite::Text(text.clone()),
        Value::BigInt(Some(number)) => Sqlite::Integer(*number),
        Value::Double(Some(number)) => Sqlite::Real(*number),
        _ => Sqlite::Null,
    }
}

/// Folds values into one summary per run, key and block. The map's order also makes
/// concurrent PostgreSQL transactions lock the summaries they share in the same order.
fn summarize<'a>(
    values: impl IntoIterator<Item = (&'a str, &'a NewMetric)>,
) -> BTreeMap<(&'a str, &'a str, i64), BlockSummary> {
    let mut summaries: BTreeMap<(&str, &str, i64), BlockSummary> = BTreeMap::new();
    for (run_id, value) in values {
        let block = block_of(value.step);
        let summary = BlockSummary::of_point(
            block,
            SummaryPoint {
                value: metrics::encode(value.value),
                step: value.step,
                timestamp_ms: value.timestamp_ms,
                step_run_id: value.step_run_id.clone(),
            },
        );
        match summaries.get_mut(&(run_id, value.key.as_str(), block)) {
            Some(held) => held.merge(summary),
            None => {
                summaries.insert((run_id, value.key.as_str(), block), summary);
            }
        }
    }
    summaries
}

fn summary_values(run_id: &str, key: &str, summary: &BlockSummary) -> Vec<Value> {
    let min = summary.min.as_ref();
    let mut values: Vec<Value> = vec![
        run_id.into(),
        key.into(),
        summary.block.into(),
        summary.count.into(),
        min.and_then(|point| point.value).into(),
        min.map(|point| point.step).into(),
        min.map(|point| point.timestamp_ms).into(),
        min.and_then(|point| point.step_run_id.clone()).into(),
    ];
    for point in [&summary.max, &summary.first, &summary.last] {
        values.push(point.value.into());
        values.push(point.step.into());
        values.push(point.timestamp_ms.into());
        values.push(point.step_run_id.clone().into());
    }
    values
}

/// Builds the upsert of `rows` summaries. On conflict it merges the stored summary with the
/// incoming one by the rules of [`BlockSummary::merge`]. Every `CASE` reads the stored row as
/// it was before the update, so a point's columns change together.
fn upsert_statement(backend: DbBackend, rows: usize) -> String {
    let mut placeholders = Vec::with_capacity(rows);
    for row in 0..rows {
        let first = row * COLUMNS.len();
        let row: Vec<String> = (first..first + COLUMNS.len())
            .map(|index| placeholder(backend, index))
            .collect();
        placeholders.push(format!("({})", row.join(", ")));
    }
    let min_wins = "excluded.min_value IS NOT NULL AND (metric_blocks.min_value IS NULL \
                    OR excluded.min_value < metric_blocks.min_value)";
    let max_wins = "excluded.max_value IS NOT NULL AND (metric_blocks.max_value IS NULL \
                    OR excluded.max_value > metric_blocks.max_value)";
    let first_wins = "excluded.first_step < metric_blocks.first_step OR (excluded.first_step \
                      = metric_blocks.first_step AND excluded.first_timestamp_ms \
                      < metric_blocks.first_timestamp_ms)";
    let last_wins = "excluded.last_step > metric_blocks.last_step OR (excluded.last_step \
                     = metric_blocks.last_step AND excluded.last_timestamp_ms \
                     >= metric_blocks.last_timestamp_ms)";
    let mut updates = vec!["point_count = metric_blocks.point_count + excluded.point_count".into()];
    for (prefix, wins) in [
        ("min", min_wins),
        ("max", max_wins),
        ("first", first_wins),
        ("last", last_wins),
    ] {
        for column in ["value", "step", "timestamp_ms", "step_run_id"] {
            updates.push(format!(
                "{prefix}_{column} = CASE WHEN {wins} THEN excluded.{prefix}_{column} \
                 ELSE metric_blocks.{prefix}_{column} END"
            ));
        }
    }
    format!(
        "INSERT INTO metric_blocks ({}) VALUES {} ON CONFLICT (run_id, \"key\", block) \
         DO UPDATE SET {}",
        COLUMNS.join(", "),
        placeholders.join(", "),
        updates.join(", ")
    )
}

/// Returns the bind placeholder of the parameter at `index`, counted from 0.
fn placeholder(backend: DbBackend, index: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${}", index + 1),
        _ => "?".to_owned(),
    }
}

/// Reads the stored summaries of a run's key in block order, at most `limit` of them.
pub(in crate::store) async fn read_blocks(
    db: &impl ConnectionTrait,
    run_id: &str,
    key: &str,
    limit: u64,
) -> Result<Vec<BlockSummary>, DbErr> {
    let backend = db.get_database_backend();
    let sql = format!(
        "SELECT {} FROM metric_blocks WHERE run_id = {} AND \"key\" = {} ORDER BY block LIMIT {limit}",
        COLUMNS.join(", "),
        placeholder(backend, 0),
        placeholder(backend, 1)
    );
    let statement = Statement::from_sql_and_values(backend, sql, [run_id.into(), key.into()]);
    let rows = db.query_all_raw(statement).await?;
    rows.iter().map(summary_of).collect()
}

fn summary_of(row: &QueryResult) -> Result<BlockSummary, DbErr> {
    let min = match row.try_get::<Option<i64>>("", "min_step")? {
        Some(step) => Some(SummaryPoint {
            value: row.try_get("", "min_value")?,
            step,
            timestamp_ms: row.try_get("", "min_timestamp_ms")?,
            step_run_id: row.try_get("", "min_step_run_id")?,
        }),
        None => None,
    };
    Ok(BlockSummary {
        block: row.try_get("", "block")?,
        count: row.try_get("", "point_count")?,
        min,
        max: point_of(row, "max")?,
        first: point_of(row, "first")?,
        last: point_of(row, "last")?,
    })
}

fn point_of(row: &QueryResult, prefix: &str) -> Result<SummaryPoint, DbErr> {
    Ok(SummaryPoint {
        value: row.try_get("", &format!("{prefix}_value"))?,
        step: row.try_get("", &format!("{prefix}_step"))?,
        timestamp_ms: row.try_get("", &format!("{prefix}_timestamp_ms"))?,
        step_run_id: row.try_get("", &format!("{prefix}_step_run_id"))?,
    })
}

/// Fills `metric_blocks` from the rows of `metrics`, in pages of rows in insertion order.
pub(in crate::store) async fn backfill(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let sql = format!(
        "SELECT id, run_id, \"key\", value, step, timestamp_ms, step_run_id FROM metrics \
         WHERE id > {} ORDER BY id LIMIT {BACKFILL_PAGE_ROWS}",
        placeholder(backend, 0)
    );
    let mut after = i64::MIN;
    loop {
        let statement = Statement::from_sql_and_values(backend, sql.clone(), [after.into()]);
        let rows = db.query_all_raw(statement).await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.try_get("", "id")?;

        let values = rows
            .iter()
            .map(stored_metric)
            .collect::<Result<Vec<_>, DbErr>>()?;
        upsert_blocks(
            db,
            values
                .iter()
                .map(|(run_id, value)| (run_id.as_str(), value)),
        )
        .await?;
    }
}

/// Reads a `metrics` row as its run id and the value as it was logged.
fn stored_metric(row: &QueryResult) -> Result<(String, NewMetric), DbErr> {
    let value: Option<f64> = row.try_get("", "value")?;
    let metric = NewMetric {
        step_run_id: row.try_get("", "step_run_id")?,
        key: row.try_get("", "key")?,
        value: value.unwrap_or(f64::NAN),
        step: row.try_get("", "step")?,
        timestamp_ms: row.try_get("", "timestamp_ms")?,
    };
    Ok((row.try_get("", "run_id")?, metric))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(value: f64, step: i64, timestamp_ms: i64) -> NewMetric {
        NewMetric {
            step_run_id: None,
            key: "loss".to_owned(),
            value,
            step,
            timestamp_ms,
        }
    }

    fn summary_of_values(values: &[NewMetric]) -> BlockSummary {
        let summaries = summarize(values.iter().map(|value| ("run", value)));
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        summaries.into_values().next().expect("one summary")
    }

    #[test]
    fn blocks_round_negative_steps_down() {
        assert_eq!(block_of(0), 0);
        assert_eq!(block_of(BLOCK_STEPS - 1), 0);
        assert_eq!(block_of(BLOCK_STEPS), 1);
        assert_eq!(block_of(-1), -1);
        assert_eq!(block_of(-BLOCK_STEPS), -1);
        assert_eq!(block_of(-BLOCK_STEPS - 1), -2);
    }

    #[test]
    fn summary_of_out_of_order_values() {
        let values = [
            metric(2.0, 7, 70),
            metric(f64::NAN, 3, 30),
            metric(-1.0, 5, 50),
            metric(9.0, 1, 10),
            metric(4.0, 7, 70),
        ];

        let summary = summary_of_values(&values);

        assert_eq!(summary.count, 5);
        assert_eq!(summary.min.as_ref().map(|point| point.step), Some(5));
        assert_eq!(summary.max.step, 1);
        assert_eq!(summary.first.step, 1);
        assert_eq!(
            summary.last.value,
            Some(4.0),
            "a tie goes to the later value"
        );
    }

    #[test]
    fn summary_of_nan_values_keeps_a_nan_point() {
        let values = [metric(f64::NAN, 4, 40), metric(f64::NAN, 2, 20)];

        let summary = summary_of_values(&values);

        assert_eq!(summary.min, None);
        assert_eq!(summary.max.value, None);
        assert_eq!(summary.max.step, 4, "the first NaN point stays");
        assert_eq!(summary.first.step, 2);
    }

    #[test]
    fn summary_keeps_infinities() {
        let values = [
            metric(f64::INFINITY, 1, 1),
            metric(0.0, 2, 2),
            metric(f64::NEG_INFINITY, 3, 3),
        ];

        let summary = summary_of_values(&values);

        assert_eq!(
            summary.min.and_then(|point| point.value),
            Some(f64::NEG_INFINITY)
        );
        assert_eq!(summary.max.value, Some(f64::INFINITY));
    }

    #[test]
    fn upsert_statement_numbers_postgres_parameters() {
        let sql = upsert_statement(DbBackend::Postgres, 2);

        assert!(sql.contains("($1, $2,"), "{sql}");
        assert!(sql.contains("$40)"), "{sql}");
        assert!(!sql.contains("$41"), "{sql}");
    }
}
