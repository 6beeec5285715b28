//! Reads of a whole metric series from its block summaries (see [`rollup`]), which cost in
//! proportion to the number of blocks rather than the number of values.
//!
//! The blocks are split, in step order, into buckets of equal block count, and each bucket
//! keeps its minimum and maximum, plus the first and last point of the series, as the other
//! downsampling paths do.

use super::MetricSeries;
use super::rollup::{self, BlockSummary, SummaryPoint};
use crate::store::{MetricPoint, StoreError};
use sea_orm::ConnectionTrait;

/// Blocks a read may take per bucket before the summaries stop paying off. A series with
/// steps far apart has about one value per block, so its summaries are no shorter than the
/// series and the caller reads the rows instead.
const BLOCKS_PER_BUCKET: u64 = 4;

/// Blocks a read may always take, so that a request for few points, such as one that only
/// wants the point count, still uses the summaries of a series of up to about 4,000,000 steps.
const MIN_BLOCK_LIMIT: u64 = 16_384;

/// Outcome of reading a whole series from its summaries.
#[derive(Debug)]
pub(super) enum WholeSeries {
    /// The series downsampled from the summaries.
    Downsampled(MetricSeries),
    /// The series must be read from its rows: it fits `max_points` whole, it has fewer blocks
    /// than buckets requested or too many, or it has none, as a series with no point has.
    Unusable,
}

/// Reads the summaries of metric `key` of a run and downsamples the series to at most
/// `max_points` points (at least 4) when they allow it.
pub(super) async fn read_whole_series(
    db: &impl ConnectionTrait,
    run_id: &str,
    key: &str,
    max_points: u64,
) -> Result<WholeSeries, StoreError> {
    let buckets = (max_points.saturating_sub(2) / 2).max(1);
    let limit = (buckets * BLOCKS_PER_BUCKET).max(MIN_BLOCK_LIMIT);
    let blocks = rollup::read_blocks(db, run_id, key, limit + 1).await?;
    if blocks.is_empty() || blocks.len() as u64 > limit {
        return Ok(WholeSeries::Unusable);
    }

    let total: i64 = blocks.iter().map(|block| block.count).sum();
    let total = u64::try_from(total).unwrap_or_default();
    if total <= max_points || (blocks.len() as u64) < buckets {
        return Ok(WholeSeries::Unusable);
    }
    Ok(WholeSeries::Downsampled(MetricSeries {
        total_points: total,
        points: bucket_points(blocks, buckets, key),
        downsampled: true,
    }))
}

/// Merges `blocks`, in block order, into `buckets` buckets of consecutive blocks and returns
/// the series' first point, each bucket's minimum and maximum, and the series' last point, in
/// step order.
fn bucket_points(blocks: Vec<BlockSummary>, buckets: u64, key: &str) -> Vec<MetricPoint> {
    let merged = merge_into_buckets(blocks, buckets);
    let mut kept: Vec<SummaryPoint> = Vec::with_capacity(merged.len() * 2 + 2);
    if let (Some(first), Some(last)) = (merged.first(), merged.last()) {
        kept.push(first.first.clone());
        kept.push(last.last.clone());
    }
    for bucket in merged {
        kept.extend(bucket.min);
        kept.push(bucket.max);
    }

    kept.sort_by_key(|point| (point.step, point.timestamp_ms));
    kept.dedup();
    kept.into_iter()
        .map(|point| metric_point(point, key))
        .collect()
}

/// Merges `blocks` into `buckets` groups of consecutive blocks, the group sizes differing by
/// at most one.
fn merge_into_buckets(blocks: Vec<BlockSummary>, buckets: u64) -> Vec<BlockSummary> {
    let count = blocks.len() as u128;
    let buckets = u128::from(buckets.max(1));
    let mut merged: Vec<(u128, BlockSummary)> = Vec::new();
    for (index, block) in blocks.into_iter().enumerate() {
        let bucket = index as u128 * buckets / count;
        match merged.last_mut() {
            Some((number, held)) if *number == bucket => held.merge(block),
            _ => merged.push((bucket, block)),
        }
    }
    merged.into_iter().map(|(_, summary)| summary).collect()
}

fn metric_point(point: SummaryPoint, key: &str) -> MetricPoint {
    MetricPoint {
        key: key.to_owned(),
        // A NULL value is a NaN, as in table `metrics`.
        value: point.value.unwrap_or(f64::NAN),
        step: point.step,
        timestamp_ms: point.timestamp_ms,
        step_run_id: point.step_run_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: i64, value: f64) -> SummaryPoint {
        SummaryPoint {
            value: Some(value),
            step,
            timestamp_ms: step,
            step_run_id: None,
        }
    }

    /// A block of two values, `low` at its first step and `high` at its last.
    fn block(number: i64, low: f64, high: f64) -> BlockSummary {
        let start = number * rollup::BLOCK_STEPS;
        let end = start + rollup::BLOCK_STEPS - 1;
        BlockSummary {
            block: number,
            count: 2,
            min: Some(point(start, low)),
            max: point(end, high),
            first: point(start, low),
            last: point(end, high),
        }
    }

    #[test]
    fn buckets_group_consecutive_blocks() {
        let blocks: Vec<BlockSummary> = (0..10).map(|number| block(number, 0.0, 1.0)).collect();

        let merged = merge_into_buckets(blocks, 4);

        let counts: Vec<i64> = merged.iter().map(|bucket| bucket.count).collect();
        assert_eq!(counts, [6, 4, 6, 4]);
        let starts: Vec<i64> = merged.iter().map(|bucket| bucket.block).collect();
        assert_eq!(starts, [0, 3, 5, 8]);
    }

    #[test]
    fn bucket_points_keep_extremes_and_ends() {
        let mut blocks: Vec<BlockSummary> = (0..8).map(|number| block(number, 0.0, 1.0)).collect();
        blocks[5] = block(5, -7.0, 9.0);

        let points = bucket_points(blocks, 2, "loss");

        let values: Vec<f64> = points.iter().map(|point| point.value).collect();
        assert_eq!(values, [0.0, 1.0, -7.0, 9.0, 1.0]);
        assert_eq!(points.first().map(|point| point.step), Some(0));
        assert_eq!(
            points.last().map(|point| point.step),
            Some(8 * rollup::BLOCK_STEPS - 1)
        );
    }
}
