//! Experiment search in SQL: MLflow's experiment filter, order and offset pages over projects
//! and their MLflow lifecycle rows.
//!
//! The project `default` is MLflow's experiment `Default` with id `0`, so names and ids are
//! computed in SQL the way the MLflow routes show them.

use super::LifecycleStage;
use super::entity::{experiment, experiment_tag};
use super::experiments::{Experiment, describe};
use crate::store::entity::project;
use crate::store::search::text_condition;
use crate::store::{CompareOp, DEFAULT_PROJECT, Store, StoreError, TextMatch};
use sea_orm::sea_query::{Alias, CaseStatement, Expr, Order, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DbBackend, ExprTrait, FromQueryResult};

/// Name of the Default experiment, which is the project `default`.
const DEFAULT_EXPERIMENT_NAME: &str = "Default";

/// A condition of an experiment search.
#[derive(Debug, Clone, PartialEq)]
pub enum ExperimentCondition {
    /// The experiment name tested as text.
    Name(TextMatch),
    /// The experiment id, as text, tested as text.
    Id(TextMatch),
    /// The creation time compared with a time in milliseconds since the Unix epoch.
    CreationTime(CompareOp, i64),
    /// The last update time compared with a time in milliseconds since the Unix epoch.
    LastUpdateTime(CompareOp, i64),
    /// Tag `key` tested as text; experiments without the tag never match.
    Tag {
        /// Tag name.
        key: String,
        /// The test.
        test: TextMatch,
    },
    /// Whether the experiment has tag `key` (`exists`) or lacks it.
    TagExists {
        /// Tag name.
        key: String,
        /// True to require the tag, false to require its absence.
        exists: bool,
    },
}

/// A value experiments are ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExperimentKey {
    /// The experiment name.
    Name,
    /// The experiment id; the Default experiment's is 0.
    Id,
    /// The creation time.
    CreationTime,
    /// The last update time.
    LastUpdateTime,
}

/// One page of an experiment search.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentSearch {
    /// Conditions that every experiment of the result meets.
    pub conditions: Vec<ExperimentCondition>,
    /// Sort keys with their direction (true for descending), most significant first.
    pub order: Vec<(ExperimentKey, bool)>,
    /// The lifecycle stage to include; `None` includes both.
    pub stage: Option<LifecycleStage>,
    /// Experiments to skip.
    pub offset: u64,
    /// Maximum number of experiments to return.
    pub limit: u64,
}

impl Store {
    /// Returns the experiments that meet `search`, in its order, at most `limit` of them after
    /// skipping `offset`.
    pub async fn mlflow_search_experiments(
        &self,
        search: &ExperimentSearch,
    ) -> Result<Vec<Experiment>, StoreError> {
        let query = page_query(search, self.backend());
        let rows = self.db.query_all(&query).await?;
        let mut experiments = Vec::with_capacity(rows.len());
        for row in rows {
            let project = project::Model::from_query_result(&row, "")?;
            experiments.push(describe(&self.db, project).await?);
        }
        Ok(experiments)
    }
}

fn page_query(search: &ExperimentSearch, backend: DbBackend) -> SelectStatement {
    let mut query = Query::select();
    query
        .columns([
            (project::Entity, project::Column::Id),
            (project::Entity, project::Column::Name),
            (project::Entity, project::Column::CreatedAt),
        ])
        .from(project::Entity)
        .left_join(
            experiment::Entity,
            Expr::col((experiment::Entity, experiment::Column::ProjectId))
                .equals((project::Entity, project::Column::Id)),
        );
    if let Some(stage) = search.stage {
        query.and_where(stage_expr().eq(stage.as_str()));
    }
    for condition in &search.conditions {
        query.and_where(condition_expr(condition, backend));
    }
    for (key, descending) in &search.order {
        let order = if *descending { Order::Desc } else { Order::Asc };
        query.order_by_expr(key_expr(*key), order);
    }
    query.limit(search.limit).offset(search.offset);
    query
}

fn condition_expr(condition: &ExperimentCondition, backend: DbBackend) -> Expr {
    match condition {
        ExperimentCondition::Name(test) => text_condition(name_expr(), test, backend, false),
        ExperimentCondition::Id(test) => text_condition(id_text_expr(), test, backend, false),
        ExperimentCondition::CreationTime(op, value) => {
            compare(key_expr(ExperimentKey::CreationTime), *op, *value)
        }
        ExperimentCondition::LastUpdateTime(op, value) => {
            compare(key_expr(ExperimentKey::LastUpdateTime), *op, *value)
        }
        ExperimentCondition::Tag { key, test } => {
            let value = Expr::col((experiment_tag::Entity, experiment_tag::Column::Value));
            project_id_in(tagged(key).and_where(text_condition(value, test, backend, false)))
        }
        ExperimentCondition::TagExists { key, exists } => {
            let holders = tagged(key).to_owned();
            let id = Expr::col((project::Entity, project::Column::Id));
            if *exists {
                id.in_subquery(holders)
            } else {
                id.not_in_subquery(holders)
            }
        }
    }
}

/// `SELECT project_id FROM mlflow_experiment_tags WHERE key = KEY`.
fn tagged(key: &str) -> SelectStatement {
    Query::select()
        .column((experiment_tag::Entity, experiment_tag::Column::ProjectId))
        .from(experiment_tag::Entity)
        .and_where(Expr::col((experiment_tag::Entity, experiment_tag::Column::Key)).eq(key))
        .to_owned()
}

fn project_id_in(query: &mut SelectStatement) -> Expr {
    Expr::col((project::Entity, project::Column::Id)).in_subquery(query.to_owned())
}

fn compare(left: Expr, op: CompareOp, value: i64) -> Expr {
    match op {
        CompareOp::Eq => left.eq(value),
        CompareOp::Ne => left.ne(value),
        CompareOp::Lt => left.lt(value),
        CompareOp::Le => left.lte(value),
        CompareOp::Gt => left.gt(value),
        CompareOp::Ge => left.gte(value),
    }
}

fn is_default() -> Expr {
    Expr::col((project::Entity, project::Column::Name)).eq(DEFAULT_PROJECT)
}

/// Returns the experiment name: `Default` for the project `default`, else the project name.
fn name_expr() -> Expr {
    CaseStatement::new()
        .case(is_default(), Expr::val(DEFAULT_EXPERIMENT_NAME))
        .finally(Expr::col((project::Entity, project::Column::Name)))
        .into()
}

/// Returns the experiment id as text: `0` for the project `default`, else the project id.
fn id_text_expr() -> Expr {
    let id = Expr::col((project::Entity, project::Column::Id)).cast_as(Alias::new("TEXT"));
    CaseStatement::new()
        .case(is_default(), Expr::val("0"))
        .finally(id)
        .into()
}

/// Returns the lifecycle stage. A project without a lifecycle row is active.
fn stage_expr() -> Expr {
    Expr::col((experiment::Entity, experiment::Column::LifecycleStage))
        .if_null(LifecycleStage::Active.as_str())
}

fn key_expr(key: ExperimentKey) -> Expr {
    match key {
        ExperimentKey::Name => name_expr(),
        ExperimentKey::Id => CaseStatement::new()
            .case(is_default(), Expr::val(0i64))
            .finally(Expr::col((project::Entity, project::Column::Id)))
            .into(),
        ExperimentKey::CreationTime => Expr::col((project::Entity, project::Column::CreatedAt)),
        ExperimentKey::LastUpdateTime => {
            Expr::col((experiment::Entity, experiment::Column::LastUpdateTime))
                .if_null(Expr::col((project::Entity, project::Column::CreatedAt)))
        }
    }
}
