//! The check that each server stored every metric value it acknowledged, read from its SQLite
//! database after it stopped.

use crate::load::Ingested;
use crate::servers::MlflowSetup;
use crate::{Measured, PHASES};
use anyhow::{Context as _, Result, ensure};
use runledger::store::SQLITE_FILE_NAME;
use runledger_tests::Cli;
use sea_orm::sqlx::sqlite::SqliteConnectOptions;
use sea_orm::sqlx::{Connection as _, SqliteConnection};
use std::path::Path;

/// Counts the stored values of each phase's run, per phase and server.
pub(crate) async fn count(
    cli: &Cli,
    setups: &[MlflowSetup<'_>; 2],
    ingested: &[Vec<Ingested>],
) -> Result<Vec<Vec<u64>>> {
    let databases = [
        (
            cli.data_dir().join(SQLITE_FILE_NAME),
            "SELECT count(*) FROM metrics WHERE run_id = ?1",
        ),
        (
            setups[0].database.clone(),
            "SELECT count(*) FROM metrics WHERE run_uuid = ?1",
        ),
        (
            setups[1].database.clone(),
            "SELECT count(*) FROM metrics WHERE run_uuid = ?1",
        ),
    ];
    let mut counts = Vec::new();
    for phase in ingested {
        let mut row = Vec::new();
        for ((database, query), result) in databases.iter().zip(phase) {
            row.push(count_rows(database, query, &result.run_id).await?);
        }
        counts.push(row);
    }
    Ok(counts)
}

async fn count_rows(database: &Path, query: &'static str, run_id: &str) -> Result<u64> {
    let options = SqliteConnectOptions::new()
        .filename(database)
        .read_only(true);
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("cannot open {}", database.display()))?;
    let (count,): (i64,) = sea_orm::sqlx::query_as(query)
        .bind(run_id)
        .fetch_one(&mut connection)
        .await?;
    connection.close().await?;
    Ok(u64::try_from(count)?)
}

/// Fails unless every run contains at least the values its server acknowledged, and exactly
/// those when no request failed: a failed request may still have been committed. Failed
/// requests become remarks of the report.
pub(crate) fn check(measured: &mut Measured, stored: &[Vec<u64>]) -> Result<()> {
    for ((phase, results), stored) in PHASES.iter().zip(&measured.ingested).zip(stored) {
        for ((label, result), &stored) in measured.labels.iter().zip(results).zip(stored) {
            let acknowledged = result.acknowledged_total();
            println!(
                "{:<38} {label:<26} {acknowledged:>10} acknowledged {stored:>10} stored",
                phase.label
            );
            if result.failures == 0 {
                ensure!(
                    stored == acknowledged,
                    "{label}, {}: {acknowledged} metric values acknowledged but {stored} stored",
                    phase.label
                );
            } else {
                ensure!(
                    stored >= acknowledged,
                    "{label}, {}: {acknowledged} metric values acknowledged but only {stored} \
                     stored",
                    phase.label
                );
            }
        }
    }
    for (phase, results) in PHASES.iter().zip(&measured.ingested) {
        for (label, result) in measured.labels.iter().zip(results) {
            if result.failures > 0 {
                let remark = format!(
                    "{label} failed {} of {} requests of {}",
                    result.failures, result.requests, phase.label
                );
                measured.remarks.push(remark);
            }
        }
    }
    println!("every acknowledged metric value is stored");
    Ok(())
}
