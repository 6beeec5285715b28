//! The SQL of the run conditions that only the MLflow protocol uses: params and tags tested
//! for presence, dataset inputs, MLflow's trash and artifact URIs.

use super::TextMatch;
use super::sql::text_condition;
use crate::store::entity::{project, run};
use crate::store::mlflow::LifecycleStage;
use crate::store::mlflow::entity::{dataset_input, run_state};
use sea_orm::sea_query::{
    BinOper, CaseStatement, Expr, IntoColumnRef, IntoTableRef, Query, SelectStatement,
};
use sea_orm::{DbBackend, ExprTrait};
use serde::Serialize;

/// Input tag in which the MLflow client records what a dataset was used for, such as
/// `training`.
const CONTEXT_TAG: &str = "mlflow.data.context";

/// A field of a dataset input, as MLflow's `datasets.KEY` filters name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DatasetField {
    /// The dataset name.
    Name,
    /// The digest the client computed.
    Digest,
    /// The `mlflow.data.context` tag of the input, such as `training`.
    Context,
}

/// Builds the condition that a run has (`exists`) or lacks a key in `table`.
pub(super) fn key_exists<E, C>(table: E, run_id: C, key_column: C, key: &str, exists: bool) -> Expr
where
    E: IntoTableRef,
    C: IntoColumnRef,
{
    let holders = Query::select()
        .column(run_id)
        .from(table)
        .and_where(Expr::col(key_column).eq(key))
        .to_owned();
    let id = Expr::col((run::Entity, run::Column::Id));
    if exists {
        id.in_subquery(holders)
    } else {
        id.not_in_subquery(holders)
    }
}

/// Builds the condition that one of the run's dataset inputs passes `test` on `field`, or
/// fails it when `negated`. An input without the field passes neither way.
pub(super) fn dataset(
    field: DatasetField,
    test: &TextMatch,
    negated: bool,
    backend: DbBackend,
) -> Expr {
    let column = match field {
        DatasetField::Name => Expr::col((dataset_input::Entity, dataset_input::Column::Name)),
        DatasetField::Digest => Expr::col((dataset_input::Entity, dataset_input::Column::Digest)),
        DatasetField::Context => context_tag(backend),
    };
    let mut condition = text_condition(column.clone(), test, backend, false);
    if negated {
        condition = column.is_not_null().and(condition.not());
    }
    let inputs: SelectStatement = Query::select()
        .column((dataset_input::Entity, dataset_input::Column::RunId))
        .from(dataset_input::Entity)
        .and_where(condition)
        .to_owned();
    Expr::col((run::Entity, run::Column::Id)).in_subquery(inputs)
}

/// Returns the `mlflow.data.context` tag of a dataset input, read from its JSON tags; NULL
/// when the input has none.
fn context_tag(backend: DbBackend) -> Expr {
    let sql = match backend {
        DbBackend::Postgres => {
            format!("\"mlflow_dataset_inputs\".\"tags_json\" ->> '{CONTEXT_TAG}'")
        }
        _ => {
            format!("json_extract(\"mlflow_dataset_inputs\".\"tags_json\", '$.\"{CONTEXT_TAG}\"')")
        }
    };
    Expr::cust(sql)
}

/// Builds the condition that a run is in MLflow's trash (`deleted`) or out of it.
pub(super) fn in_trash(deleted: bool) -> Expr {
    let trashed = Query::select()
        .column(run_state::Column::RunId)
        .from(run_state::Entity)
        .and_where(
            Expr::col(run_state::Column::LifecycleStage).eq(LifecycleStage::Deleted.as_str()),
        )
        .to_owned();
    let id = Expr::col((run::Entity, run::Column::Id));
    if deleted {
        id.in_subquery(trashed)
    } else {
        id.not_in_subquery(trashed)
    }
}

/// Builds a test on the artifact URI of a run, `ROOT/RUN_ID/artifacts`, with the ROOT of its
/// project taken from `roots`. The URI of a run whose project has no root is NULL, which no
/// test matches.
pub(super) fn artifact_uri(
    roots: &[(String, String)],
    test: &TextMatch,
    backend: DbBackend,
) -> Expr {
    if roots.is_empty() {
        return Expr::val(1).eq(0);
    }
    let project_name = Expr::col((project::Entity, project::Column::Name));
    let run_id = Expr::col((run::Entity, run::Column::Id));
    let mut uri = CaseStatement::new();
    for (project, root) in roots {
        let prefix = format!("{}/", root.trim_end_matches('/'));
        let text = Expr::val(prefix)
            .binary(BinOper::Custom("||"), run_id.clone())
            .binary(BinOper::Custom("||"), Expr::val("/artifacts"));
        uri = uri.case(project_name.clone().eq(project.as_str()), text);
    }
    text_condition(uri.into(), test, backend, false)
}
