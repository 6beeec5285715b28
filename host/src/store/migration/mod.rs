//! Schema migrations, one file per migration, applied in name order by [`Migrator`].
//!
//! A migration describes the schema at the time it was written, so it names tables and columns
//! through its own identifiers and never through the entities, which follow the current schema.

use sea_orm_migration::prelude::*;

mod m20261204_000001_create_core;
mod m20261204_000002_create_steps;
mod m20261204_000003_create_artifacts;
mod m20261204_000004_create_metrics;
mod m20261204_000005_create_api_tokens;
mod m20261204_000006_index_run_search;
mod m20261204_000007_create_idempotency_keys;
mod m20261204_000008_create_openlineage;
mod m20261204_000009_create_external_steps;
mod m20261204_000010_narrow_step_metric_index;
mod m20261204_000011_create_governance;
mod m20261204_000012_mlflow;
mod m20261205_000013_mlflow_logged_models;
mod m20261205_000014_index_mlflow_run_order;
mod m20261205_000015_create_metric_blocks;
mod m20261205_000016_create_metric_inbox;

/// The list of runledger's migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261204_000001_create_core::Migration),
            Box::new(m20261204_000002_create_steps::Migration),
            Box::new(m20261204_000003_create_artifacts::Migration),
            Box::new(m20261204_000004_create_metrics::Migration),
            Box::new(m20261204_000005_create_api_tokens::Migration),
            Box::new(m20261204_000006_index_run_search::Migration),
            Box::new(m20261204_000007_create_idempotency_keys::Migration),
            Box::new(m20261204_000008_create_openlineage::Migration),
            Box::new(m20261204_000009_create_external_steps::Migration),
            Box::new(m20261204_000010_narrow_step_metric_index::Migration),
            Box::new(m20261204_000011_create_governance::Migration),
            Box::new(m20261204_000012_mlflow::Migration),
            Box::new(m20261205_000013_mlflow_logged_models::Migration),
            Box::new(m20261205_000014_index_mlflow_run_order::Migration),
            Box::new(m20261205_000015_create_metric_blocks::Migration),
            Box::new(m20261205_000016_create_metric_inbox::Migration),
        ]
    }
}

/// Creates an index named `idx_TABLE_COLUMN...` over `columns` of `table`.
fn index<T, C>(table: T, columns: &[C]) -> IndexCreateStatement
where
    T: IntoTableRef + Iden + Copy,
    C: IntoIndexColumn + Iden + Copy,
{
    let mut name = format!("idx_{}", table.unquoted());
    for column in columns {
        name.push('_');
        name.push_str(column.unquoted());
    }
    named_index(&name, table, columns)
}

/// Creates an index called `name` over `columns` of `table`.
fn named_index<T, C>(name: &str, table: T, columns: &[C]) -> IndexCreateStatement
where
    T: IntoTableRef,
    C: IntoIndexColumn + Copy,
{
    // PostgreSQL truncates longer identifiers, and two truncated names could collide.
    assert!(
        name.len() <= 63,
        "index name `{name}` is longer than 63 bytes"
    );
    let mut statement = Index::create();
    statement.name(name).table(table);
    for column in columns {
        statement.col(*column);
    }
    statement.to_owned()
}

/// Creates a foreign key from `column` to `parent_table.parent_column`. The database rejects
/// deleting a parent that still has rows pointing at it.
fn reference<C, P, K>(column: C, parent_table: P, parent_column: K) -> ForeignKeyCreateStatement
where
    C: IntoIden,
    P: IntoTableRef,
    K: IntoIden,
{
    ForeignKey::create()
        .from_col(column)
        .to(parent_table, parent_column)
        .to_owned()
}

/// Creates a foreign key like [`reference`] that deletes the row together with its parent.
fn cascade<C, P, K>(column: C, parent_table: P, parent_column: K) -> ForeignKeyCreateStatement
where
    C: IntoIden,
    P: IntoTableRef,
    K: IntoIden,
{
    reference(column, parent_table, parent_column)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}
