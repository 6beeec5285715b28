//! Metric series read for charts: a short series whole, a long one downsampled so that its
//! shape survives.
//!
//! Downsampling splits the series, in step order, into buckets of equal point count and keeps
//! each bucket's minimum and maximum, plus the first and last point of the series. Spikes and
//! dips therefore stay visible at any zoom, which averaging or picking every n-th point loses.
//! The rows are read in pages, so a series of millions of points never sits in memory at once.
//! On SQLite, a series many times longer than the points asked for is bucketed by SQLite itself
//! over equal step ranges, because streaming every row through the driver takes seconds.
//!
//! A whole long series of a run, with no step range or step run named, is read from the block
//! summaries kept at ingestion (see [`rollup`] and [`summaries`]) when it has at least as many
//! blocks as buckets requested. A chart of a million points then reads about 3,900 rows.

use super::entity::metric;
use super::{MetricPoint, Store, StoreError, batch, runs, steps};
use buckets::{BucketQuery, bucketed_points};
use sea_orm::DbBackend;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};
use std::ops::RangeInclusive;
use summaries::{WholeSeries, read_whole_series};

mod buckets;
pub(super) mod rollup;
mod summaries;

/// Smallest point budget: the first and last points plus one bucket's minimum and maximum.
pub const MIN_SERIES_POINTS: usize = 4;

/// Rows read per query while paging through a series; about a megabyte of rows.
const PAGE_ROWS: u64 = 10_000;

/// A metric series as [`Store::metric_series`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSeries {
    /// Points in the series within the requested steps.
    pub total_points: u64,
    /// The points returned, ordered by step, then timestamp, then insertion.
    pub points: Vec<MetricPoint>,
    /// Whether `points` is a downsampled subset of the series.
    pub downsampled: bool,
}

impl Store {
    /// Reads the values of metric `key` of a run, or of one of its step runs when
    /// `step_run_id` is set, whose steps are within `steps`, and downsamples them to at most
    /// `max_points` points when the series is longer. A `max_points` below
    /// [`MIN_SERIES_POINTS`] counts as that minimum.
    ///
    /// Every point comes from one snapshot of the database. Fails with
    /// [`StoreError::RunNotFound`], [`StoreError::StepRunNotFound`] or
    /// [`StoreError::StepRunNotInRun`] when the ids do not name a run and one of its step runs.
    pub async fn metric_series(
        &self,
        run_id: &str,
        key: &str,
        step_run_id: Option<&str>,
        steps: RangeInclusive<i64>,
        max_points: usize,
    ) -> Result<MetricSeries, StoreError> {
        check_series_ids(&self.db, run_id, step_run_id).await?;

        let transaction = batch::begin_read(&self.db).await?;
        let max_points = max_points.max(MIN_SERIES_POINTS) as u64;
        if step_run_id.is_none() && steps == (i64::MIN..=i64::MAX) {
            match read_whole_series(&transaction, run_id, key, max_points).await? {
                WholeSeries::Downsampled(series) => {
                    transaction.commit().await?;
                    return Ok(series);
                }
                // The rows are counted again rather than trusting the summaries' sum, which
                // misses rows that a process of an older build, keeping no summaries, wrote.
                WholeSeries::Unusable => {}
            }
        }

        let query = BucketQuery {
            run_id,
            key,
            step_run_id,
            steps,
            buckets: (max_points - 2) / 2,
        };
        let series = read_rows(&transaction, self.backend(), &query, max_points).await?;
        transaction.commit().await?;
        Ok(series)
    }
}

/// Fails unless `run_id` names a run and `step_run_id`, when set, one of its step runs.
async fn check_series_ids(
    db: &impl ConnectionTrait,
    run_id: &str,
    step_run_id: Option<&str>,
) -> Result<(), StoreError> {
    runs::require_run(db, run_id).await?;
    let Some(step_run_id) = step_run_id else {
        return Ok(());
    };
    let step = steps::require_step_run(db, step_run_id).await?;
    if step.run_id != run_id {
        return Err(StoreError::StepRunNotInRun {
            step_run_id: step_run_id.to_owned(),
            run_id: run_id.to_owned(),
        });
    }
    Ok(())
}

/// Reads the series from its rows, counting them first.
async fn read_rows(
    db: &impl ConnectionTrait,
    backend: DbBackend,
    query: &BucketQuery<'_>,
    max_points: u64,
) -> Result<MetricSeries, StoreError> {
    let series = series_query(
        query.run_id,
        query.key,
        query.step_run_id,
        query.steps.clone(),
    );
    let total = series.clone().count(db).await?;
    if backend == DbBackend::Sqlite && total > max_points * SQL_BUCKETING_RATIO {
        let points = bucketed_points(db, query).await?;
        return Ok(MetricSeries {
            total_points: total,
            downsampled: true,
            points: points.unwrap_or_default(),
        });
    }

    let mut sampler = Downsampler::new(total, max_points);
    read_pages(db, series, query.key, &mut sampler).await?;
    Ok(MetricSeries {
        total_points: total,
        downsampled: sampler.is_downsampling(),
        points: sampler.finish(),
    })
}

/// How many times longer than the points asked for a series on SQLite must be before SQLite
/// buckets it by step ranges (see [`buckets`]) instead of the series streaming through
/// [`Downsampler`]. Below it, streaming is fast enough and keeps equal-count buckets.
const SQL_BUCKETING_RATIO: u64 = 20;

fn series_query(
    run_id: &str,
    key: &str,
    step_run_id: Option<&str>,
    steps: RangeInclusive<i64>,
) -> Select<metric::Entity> {
    let mut query = metric::Entity::find()
        .filter(metric::Column::RunId.eq(run_id))
        .filter(metric::Column::Key.eq(key));
    if *steps.start() > i64::MIN {
        query = query.filter(metric::Column::Step.gte(*steps.start()));
    }
    if *steps.end() < i64::MAX {
        query = query.filter(metric::Column::Step.lte(*steps.end()));
    }
    if let Some(step_run_id) = step_run_id {
        query = query.filter(metric::Column::StepRunId.eq(step_run_id));
    }
    query
}

/// Columns of a row that a series point needs, in the order of [`SeriesRow`].
const SERIES_COLUMNS: [metric::Column; 5] = [
    metric::Column::Id,
    metric::Column::Step,
    metric::Column::TimestampMs,
    metric::Column::Value,
    metric::Column::StepRunId,
];

/// `(id, step, timestamp_ms, value, step_run_id)` of one row.
type SeriesRow = (i64, i64, i64, Option<f64>, Option<String>);

/// Feeds the series to `sampler` in pages ordered by step, timestamp and id. Each page starts
/// after the last row of the one before (keyset pagination), so every page is an index range
/// scan and no row is read twice. Only the columns a point needs are read, so the run id and
/// key are not decoded again for every row.
async fn read_pages(
    db: &impl ConnectionTrait,
    series: Select<metric::Entity>,
    key: &str,
    sampler: &mut Downsampler,
) -> Result<(), StoreError> {
    let mut after: Option<(i64, i64, i64)> = None;
    loop {
        let mut page = series.clone();
        if let Some(position) = after {
            page = page.filter(after_position(position));
        }
        let rows: Vec<SeriesRow> = page
            .select_only()
            .columns(SERIES_COLUMNS)
            .order_by_asc(metric::Column::Step)
            .order_by_asc(metric::Column::TimestampMs)
            .order_by_asc(metric::Column::Id)
            .limit(PAGE_ROWS)
            .into_tuple()
            .all(db)
            .await?;

        let full = rows.len() as u64 == PAGE_ROWS;
        after = rows.last().map(|row| (row.1, row.2, row.0));
        for (_, step, timestamp_ms, value, step_run_id) in rows {
            sampler.push(MetricPoint {
                key: key.to_owned(),
                // SQLite stores NaN as NULL.
                value: value.unwrap_or(f64::NAN),
                step,
                timestamp_ms,
                step_run_id,
            });
        }
        if !full {
            return Ok(());
        }
    }
}

/// `(step, timestamp_ms, id) > (step0, timestamp0, id0)`, spelled out because sea-orm has no
/// row-value comparison that both backends share.
///
/// The leading `step >= step0` is what lets the database start the page at that step in the
/// series index. Without it, SQLite treats the disjunction as a filter and scans the series from
/// its first row for every page, which made a 1,000,000-point series take seconds to read.
fn after_position((step, timestamp_ms, id): (i64, i64, i64)) -> Condition {
    let same_time_later_id = Condition::all()
        .add(metric::Column::TimestampMs.eq(timestamp_ms))
        .add(metric::Column::Id.gt(id));
    let same_step_later = Condition::all().add(metric::Column::Step.eq(step)).add(
        Condition::any()
            .add(metric::Column::TimestampMs.gt(timestamp_ms))
            .add(same_time_later_id),
    );
    let later = Condition::any()
        .add(metric::Column::Step.gt(step))
        .add(same_step_later);
    Condition::all()
        .add(metric::Column::Step.gte(step))
        .add(later)
}

/// A point with its position in the series.
#[derive(Debug, Clone)]
struct Indexed {
    index: u64,
    point: MetricPoint,
}

/// The extremes of one bucket seen so far.
#[derive(Debug)]
struct Bucket {
    number: u64,
    min: Option<Indexed>,
    max: Option<Indexed>,
    /// First NaN point, kept when the bucket has no other value.
    first_nan: Option<Indexed>,
}

impl Bucket {
    fn new(number: u64) -> Self {
        Self {
            number,
            min: None,
            max: None,
            first_nan: None,
        }
    }

    fn add(&mut self, index: u64, point: &MetricPoint) {
        let value = point.value;
        if value.is_nan() {
            if self.first_nan.is_none() {
                self.first_nan = Some(indexed(index, point));
            }
            return;
        }
        // Strict comparisons keep the first of equal values.
        if self.min.as_ref().is_none_or(|min| value < min.point.value) {
            self.min = Some(indexed(index, point));
        }
        if self.max.as_ref().is_none_or(|max| value > max.point.value) {
            self.max = Some(indexed(index, point));
        }
    }

    /// Returns the points to keep, in series order.
    fn into_points(self) -> Vec<Indexed> {
        let mut points: Vec<Indexed> = match (self.min, self.max) {
            (None, None) => self.first_nan.into_iter().collect(),
            (min, max) => min.into_iter().chain(max).collect(),
        };
        points.sort_by_key(|point| point.index);
        points
    }
}

fn indexed(index: u64, point: &MetricPoint) -> Indexed {
    Indexed {
        index,
        point: point.clone(),
    }
}

/// Min-max downsampling of a series of known length, fed one point at a time in order.
///
/// With `max_points` of at least [`MIN_SERIES_POINTS`], a series longer than `max_points` is
/// split into `(max_points - 2) / 2` buckets, so the first point, two points per bucket and the
/// last point stay within `max_points`. A shorter series is kept whole.
#[derive(Debug)]
struct Downsampler {
    total: u64,
    /// Number of buckets; 0 keeps every point.
    buckets: u64,
    seen: u64,
    current: Option<Bucket>,
    kept: Vec<Indexed>,
    last: Option<Indexed>,
}

impl Downsampler {
    fn new(total: u64, max_points: u64) -> Self {
        let buckets = if total > max_points {
            (max_points.saturating_sub(2) / 2).max(1)
        } else {
            0
        };
        Self {
            total,
            buckets,
            seen: 0,
            current: None,
            kept: Vec::new(),
            last: None,
        }
    }

    fn is_downsampling(&self) -> bool {
        self.buckets > 0
    }

    fn push(&mut self, point: MetricPoint) {
        let index = self.seen;
        self.seen += 1;
        if !self.is_downsampling() {
            self.kept.push(Indexed { index, point });
            return;
        }
        if index == 0 {
            self.kept.push(indexed(index, &point));
        }

        let number = self.bucket_of(index);
        if self
            .current
            .as_ref()
            .is_none_or(|bucket| bucket.number != number)
        {
            self.flush();
            self.current = Some(Bucket::new(number));
        }
        if let Some(bucket) = self.current.as_mut() {
            bucket.add(index, &point);
        }
        self.last = Some(Indexed { index, point });
    }

    /// Bucket of the point at `index`. Points past the length given at the start, which a
    /// consistent snapshot does not produce, join the last bucket.
    fn bucket_of(&self, index: u64) -> u64 {
        let number = u128::from(index) * u128::from(self.buckets) / u128::from(self.total.max(1));
        u64::try_from(number)
            .unwrap_or(u64::MAX)
            .min(self.buckets - 1)
    }

    /// Moves the current bucket's extremes to the kept points, skipping any already kept.
    fn flush(&mut self) {
        let Some(bucket) = self.current.take() else {
            return;
        };
        for point in bucket.into_points() {
            self.keep(point);
        }
    }

    fn keep(&mut self, point: Indexed) {
        if self.kept.last().is_none_or(|last| point.index > last.index) {
            self.kept.push(point);
        }
    }

    fn finish(mut self) -> Vec<MetricPoint> {
        self.flush();
        if let Some(last) = self.last.take() {
            self.keep(last);
        }
        self.kept.into_iter().map(|kept| kept.point).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: i64, value: f64) -> MetricPoint {
        MetricPoint {
            key: "loss".to_owned(),
            value,
            step,
            timestamp_ms: step,
            step_run_id: None,
        }
    }

    fn sample(values: &[f64], max_points: u64) -> Vec<MetricPoint> {
        let mut sampler = Downsampler::new(values.len() as u64, max_points);
        for (step, value) in values.iter().enumerate() {
            sampler.push(point(step as i64, *value));
        }
        sampler.finish()
    }

    #[test]
    fn short_series_is_kept_whole() {
        let values = [3.0, 1.0, 2.0];

        let points = sample(&values, 4);

        let steps: Vec<i64> = points.iter().map(|point| point.step).collect();
        assert_eq!(steps, [0, 1, 2]);
    }

    #[test]
    fn long_series_keeps_extremes_and_ends() {
        let mut values: Vec<f64> = (0..10_000).map(|i| f64::from(i % 100)).collect();
        values[4_321] = -50.0;
        values[7_777] = 500.0;

        let points = sample(&values, 20);

        assert!(points.len() <= 20, "{} points", points.len());
        assert_eq!(points.first().map(|point| point.step), Some(0));
        assert_eq!(points.last().map(|point| point.step), Some(9_999));
        assert!(points.iter().any(|point| point.step == 4_321));
        assert!(points.iter().any(|point| point.step == 7_777));
        assert!(points.windows(2).all(|pair| pair[0].step < pair[1].step));
    }

    #[test]
    fn nan_bucket_keeps_one_nan_point() {
        let mut values = vec![1.0; 100];
        for value in &mut values[40..60] {
            *value = f64::NAN;
        }

        let points = sample(&values, 12);

        assert!(points.len() <= 12, "{} points", points.len());
        assert!(points.iter().any(|point| point.value.is_nan()));
    }
}
