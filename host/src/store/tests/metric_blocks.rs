//! Whole-series reads from the block summaries kept at ingestion, checked against the minimum
//! and maximum that the stored rows give for each bucket.

use super::{new_run, on_each_backend};
use crate::store::downsample::rollup::{self, BLOCK_STEPS, block_of};
use crate::store::{MetricPoint, NewMetric, Store};
use sea_orm::{ConnectionTrait, Statement};
use std::collections::BTreeMap;

/// Blocks of the test series: steps `0..BLOCKS * BLOCK_STEPS`.
const BLOCKS: i64 = 20;

/// Steps between two values of the test series.
const STRIDE: i64 = 4;

/// Block whose values are all NaN.
const NAN_BLOCK: i64 = 7;

fn value(step: i64, value: f64) -> NewMetric {
    NewMetric {
        step_run_id: None,
        key: "loss".to_owned(),
        value,
        step,
        timestamp_ms: 1_000 + step,
    }
}

/// A value for every `STRIDE` steps, distinct from every other value, with NaN values here and
/// there, a block of only NaN, both infinities and a second value at some steps.
fn series() -> Vec<NewMetric> {
    let mut values = Vec::new();
    for step in (0..BLOCKS * BLOCK_STEPS).step_by(STRIDE as usize) {
        let number = ((step * 7_919) % 10_007) as f64 + step as f64 / 1e6;
        let number = match step {
            _ if block_of(step) == NAN_BLOCK || step % 404 == 200 => f64::NAN,
            _ if step == 2 * BLOCK_STEPS + 8 => f64::INFINITY,
            _ if step == 12 * BLOCK_STEPS + 8 => f64::NEG_INFINITY,
            _ => number,
        };
        values.push(value(step, number));
        if step % 100 == 0 {
            values.push(value(step, -number - 0.5));
        }
    }
    values
}

/// Logs `values` in several transactions, each with its values in reverse step order, so the
/// summaries merge in the database and out of step order.
async fn log_out_of_order(store: &Store, run_id: &str, values: &[NewMetric]) {
    let mut chunks: Vec<Vec<NewMetric>> = values.chunks(700).map(<[_]>::to_vec).collect();
    chunks.reverse();
    for mut chunk in chunks {
        chunk.reverse();
        store.log_metrics(run_id, &chunk).await.unwrap();
    }
}

async fn whole_series(store: &Store, run_id: &str, max_points: usize) -> Vec<MetricPoint> {
    let series = store
        .metric_series(run_id, "loss", None, i64::MIN..=i64::MAX, max_points)
        .await
        .unwrap();
    assert!(series.downsampled, "{} points", series.points.len());
    assert!(
        series.points.len() <= max_points,
        "{} points",
        series.points.len()
    );
    let raw = store.metric_history(run_id, "loss").await.unwrap();
    assert_eq!(series.total_points, raw.len() as u64);
    series.points
}

/// Checks `points` against the stored rows of the series, whose blocks `bucket_of` maps to
/// buckets: every point is a stored one, the first and last stored points are there, and each
/// bucket shows its exact minimum and maximum, or a NaN point when all its values are NaN.
async fn check_buckets(
    store: &Store,
    run_id: &str,
    points: &[MetricPoint],
    bucket_of: impl Fn(i64) -> i64,
) {
    let raw = store.metric_history(run_id, "loss").await.unwrap();
    for point in points {
        let stored = raw
            .iter()
            .any(|row| row.step == point.step && row.value.to_bits() == point.value.to_bits());
        assert!(stored, "{point:?} is not a stored point");
    }
    let ends = |list: &[MetricPoint]| {
        let first = list
            .first()
            .map(|point| (point.step, point.value.to_bits()));
        let last = list.last().map(|point| (point.step, point.value.to_bits()));
        (first, last)
    };
    assert_eq!(ends(points), ends(&raw), "first and last points");

    let expected = extremes_by_bucket(&raw, &bucket_of);
    let shown = extremes_by_bucket(points, &bucket_of);
    assert_eq!(shown.len(), expected.len(), "buckets with points");
    for (bucket, extremes) in &expected {
        assert_eq!(shown.get(bucket), Some(extremes), "bucket {bucket}");
    }
}

/// The minimum and maximum of each bucket's values that are not NaN, or `None` for a bucket
/// with only NaN values.
fn extremes_by_bucket(
    points: &[MetricPoint],
    bucket_of: &impl Fn(i64) -> i64,
) -> BTreeMap<i64, Option<(f64, f64)>> {
    let mut extremes: BTreeMap<i64, Option<(f64, f64)>> = BTreeMap::new();
    for point in points {
        let slot = extremes.entry(bucket_of(block_of(point.step))).or_default();
        if point.value.is_nan() {
            continue;
        }
        let (min, max) = slot.get_or_insert((point.value, point.value));
        *min = min.min(point.value);
        *max = max.max(point.value);
    }
    extremes
}

async fn count_blocks(store: &Store, run_id: &str) -> i64 {
    let backend = store.db.get_database_backend();
    let placeholder = if backend == sea_orm::DbBackend::Postgres {
        "$1"
    } else {
        "?"
    };
    let sql = format!("SELECT COUNT(*) AS blocks FROM metric_blocks WHERE run_id = {placeholder}");
    let statement = Statement::from_sql_and_values(backend, sql, [run_id.into()]);
    let row = store.db.query_one_raw(statement).await.unwrap().unwrap();
    row.try_get("", "blocks").unwrap()
}

#[tokio::test]
async fn one_bucket_per_block_keeps_exact_extremes() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("blocks")).await.unwrap();
        log_out_of_order(store, &run.id, &series()).await;

        let max_points = 2 * BLOCKS as usize + 2;
        let points = whole_series(store, &run.id, max_points).await;

        check_buckets(store, &run.id, &points, |block| block).await;
        let nan_points = points.iter().filter(|point| point.value.is_nan()).count();
        assert_eq!(nan_points, 1, "only the NaN block shows a NaN point");
        assert!(points.iter().any(|point| point.value == f64::INFINITY));
        assert!(points.iter().any(|point| point.value == f64::NEG_INFINITY));
    })
    .await;
}

#[tokio::test]
async fn buckets_of_several_blocks_keep_exact_extremes() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("blocks")).await.unwrap();
        log_out_of_order(store, &run.id, &series()).await;

        let points = whole_series(store, &run.id, 12).await;

        // 12 points leave 5 buckets, so each spans 4 of the 20 blocks.
        check_buckets(store, &run.id, &points, |block| block / 4).await;
    })
    .await;
}

#[tokio::test]
async fn whole_series_is_read_from_summaries() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("blocks")).await.unwrap();
        log_out_of_order(store, &run.id, &series()).await;

        // A summary changed behind the store's back shows in whole-series reads only.
        let backend = store.db.get_database_backend();
        let sql = format!(
            "UPDATE metric_blocks SET max_value = 123456.0 WHERE run_id = '{}' AND block = 3",
            run.id
        );
        store
            .db
            .execute_raw(Statement::from_string(backend, sql))
            .await
            .unwrap();

        let whole = whole_series(store, &run.id, 42).await;
        assert!(whole.iter().any(|point| point.value == 123456.0));
        let ranged = store
            .metric_series(&run.id, "loss", None, 0..=i64::MAX, 42)
            .await
            .unwrap();
        assert!(ranged.points.iter().all(|point| point.value != 123456.0));
    })
    .await;
}

#[tokio::test]
async fn backfill_rebuilds_the_same_summaries() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("backfill")).await.unwrap();
        log_out_of_order(store, &run.id, &series()).await;
        let logged = whole_series(store, &run.id, 42).await;

        store
            .db
            .execute_unprepared("DELETE FROM metric_blocks")
            .await
            .unwrap();
        rollup::backfill(&store.db).await.unwrap();

        assert_eq!(count_blocks(store, &run.id).await, BLOCKS);
        let rebuilt = whole_series(store, &run.id, 42).await;
        let bits = |points: &[MetricPoint]| -> Vec<(i64, u64)> {
            points
                .iter()
                .map(|point| (point.step, point.value.to_bits()))
                .collect()
        };
        assert_eq!(bits(&rebuilt), bits(&logged));
    })
    .await;
}

#[tokio::test]
async fn deleted_run_takes_its_summaries() {
    on_each_backend(async |store: &Store| {
        let kept = store.create_run(new_run("kept")).await.unwrap();
        let deleted = store.create_run(new_run("deleted")).await.unwrap();
        for run in [&kept, &deleted] {
            log_out_of_order(store, &run.id, &series()).await;
        }

        let backend = store.db.get_database_backend();
        let sql = format!("DELETE FROM runs WHERE id = '{}'", deleted.id);
        store
            .db
            .execute_raw(Statement::from_string(backend, sql))
            .await
            .unwrap();

        assert_eq!(count_blocks(store, &deleted.id).await, 0);
        assert_eq!(count_blocks(store, &kept.id).await, BLOCKS);
        let points = whole_series(store, &kept.id, 42).await;
        check_buckets(store, &kept.id, &points, |block| block).await;
    })
    .await;
}

#[tokio::test]
async fn sparse_series_reads_the_rows() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("sparse")).await.unwrap();
        let values: Vec<NewMetric> = (0..20_000)
            .map(|index| value(index * BLOCK_STEPS * 3, (index % 97) as f64))
            .collect();
        store.log_metrics(&run.id, &values).await.unwrap();

        // 20,000 blocks, one per value, are more than a read of 4 points may take.
        let points = whole_series(store, &run.id, 4).await;

        assert_eq!(points.first().map(|point| point.step), Some(0));
        assert_eq!(
            points.last().map(|point| point.step),
            Some(19_999 * BLOCK_STEPS * 3)
        );
        check_buckets(store, &run.id, &points, |_| 0).await;
    })
    .await;
}

#[tokio::test]
async fn rusqlite_upsert_matches_sea_orm_upsert() {
    let dir = tempfile::tempdir().expect("create temporary directory");
    let store = Store::open_sqlite(dir.path()).await.unwrap();
    let by_sea_orm = store.create_run(new_run("sea-orm")).await.unwrap();
    let by_rusqlite = store.create_run(new_run("rusqlite")).await.unwrap();
    let values = series();

    for chunk in values.chunks(700).rev() {
        rollup::upsert_blocks(
            &store.db,
            chunk.iter().map(|value| (by_sea_orm.id.as_str(), value)),
        )
        .await
        .unwrap();
    }
    let path = dir.path().join(crate::store::SQLITE_FILE_NAME);
    let connection = rusqlite::Connection::open(path).unwrap();
    for chunk in values.chunks(700).rev() {
        let pairs = chunk.iter().map(|value| (by_rusqlite.id.as_str(), value));
        rollup::upsert_blocks_sqlite(&connection, pairs).unwrap();
    }

    let expected = rollup::read_blocks(&store.db, &by_sea_orm.id, "loss", 100)
        .await
        .unwrap();
    let written = rollup::read_blocks(&store.db, &by_rusqlite.id, "loss", 100)
        .await
        .unwrap();
    assert_eq!(written.len(), BLOCKS as usize);
    assert_eq!(written, expected);
}
