//! Registered model and model version search in SQL, for MLflow's `registered-models/search`
//! and `model-versions/search`: typed conditions, sort keys and offset pages.

use crate::store::entity::{
    model_alias, model_tag, model_version, model_version_tag, registered_model,
};
use crate::store::search::text_condition;
use crate::store::{CompareOp, Store, StoreError, TextMatch, batch};
use sea_orm::sea_query::{Expr, Order, Query, SelectStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, ExprTrait, FromQueryResult, Iterable,
    QueryFilter,
};
use std::collections::{BTreeMap, HashMap};

/// Column alias of the model name in version rows.
const MODEL_NAME: &str = "model_name";

/// A condition of a registry search.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryCondition {
    /// The registered model's name tested as text.
    Name(TextMatch),
    /// The run id of a version tested as text; versions without a run never match.
    RunId(TextMatch),
    /// The source of a version tested as text.
    Source(TextMatch),
    /// The number of a version compared with a number.
    VersionNumber(CompareOp, i64),
    /// Tag `key` of the model, or of the version in a version search, tested as text.
    Tag {
        /// Tag name.
        key: String,
        /// The test.
        test: TextMatch,
        /// Whether an item without the tag matches, as MLflow's prompt filters need.
        missing_matches: bool,
    },
}

/// A value registry items are ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryKey {
    /// The registered model's name.
    Name,
    /// The version number; in a model search, no order.
    VersionNumber,
    /// The creation time.
    CreationTime,
    /// The last update time.
    LastUpdateTime,
}

/// One page of a registry search.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrySearch {
    /// Conditions that every item of the result meets. In a model search, conditions on
    /// versions (run id, source and number) match no model.
    pub conditions: Vec<RegistryCondition>,
    /// Sort keys with their direction (true for descending), most significant first.
    pub order: Vec<(RegistryKey, bool)>,
    /// Items to skip.
    pub offset: u64,
    /// Maximum number of items to return.
    pub limit: u64,
}

/// A model version found by a search, with its model's name, tags and aliases.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundVersion {
    /// Name of the registered model.
    pub model: String,
    /// The version.
    pub version: model_version::Model,
    /// Tags of the version, by key.
    pub tags: BTreeMap<String, String>,
    /// Aliases of the model that point at this version.
    pub aliases: Vec<String>,
}

impl Store {
    /// Returns the names of the registered models that meet `search`, in its order.
    pub async fn mlflow_search_models(
        &self,
        search: &RegistrySearch,
    ) -> Result<Vec<String>, StoreError> {
        let query = page_query(search, Scope::Models, self.backend());
        let rows = self.db.query_all(&query).await?;
        let mut names = Vec::with_capacity(rows.len());
        for row in rows {
            names.push(row.try_get::<String>("", "name")?);
        }
        Ok(names)
    }

    /// Returns the model versions that meet `search`, in its order, with their tags and
    /// aliases read in one query each.
    pub async fn mlflow_search_versions(
        &self,
        search: &RegistrySearch,
    ) -> Result<Vec<FoundVersion>, StoreError> {
        let query = page_query(search, Scope::Versions, self.backend());
        let transaction = batch::begin_read(&self.db).await?;
        let rows = transaction.query_all(&query).await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            found.push(FoundVersion {
                model: row.try_get("", MODEL_NAME)?,
                version: model_version::Model::from_query_result(&row, "")?,
                tags: BTreeMap::new(),
                aliases: Vec::new(),
            });
        }
        fill_version_details(&transaction, &mut found).await?;
        transaction.commit().await?;
        Ok(found)
    }
}

/// The kind of item a registry search lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Models,
    Versions,
}

fn page_query(search: &RegistrySearch, scope: Scope, backend: DbBackend) -> SelectStatement {
    let mut query = Query::select();
    query.from(registered_model::Entity);
    match scope {
        Scope::Models => {
            query.column((registered_model::Entity, registered_model::Column::Name));
        }
        Scope::Versions => {
            for column in model_version::Column::iter() {
                query.column((model_version::Entity, column));
            }
            query
                .expr_as(
                    Expr::col((registered_model::Entity, registered_model::Column::Name)),
                    sea_orm::sea_query::Alias::new(MODEL_NAME),
                )
                .inner_join(
                    model_version::Entity,
                    Expr::col((model_version::Entity, model_version::Column::ModelId))
                        .equals((registered_model::Entity, registered_model::Column::Id)),
                );
        }
    }
    for condition in &search.conditions {
        query.and_where(condition_expr(condition, scope, backend));
    }
    for (key, descending) in &search.order {
        let order = if *descending { Order::Desc } else { Order::Asc };
        if let Some(expr) = key_expr(*key, scope) {
            query.order_by_expr(expr, order);
        }
    }
    query.limit(search.limit).offset(search.offset);
    query
}

fn condition_expr(condition: &RegistryCondition, scope: Scope, backend: DbBackend) -> Expr {
    let version_column = |column: model_version::Column| Expr::col((model_version::Entity, column));
    match (condition, scope) {
        (RegistryCondition::Name(test), _) => {
            let name = Expr::col((registered_model::Entity, registered_model::Column::Name));
            text_condition(name, test, backend, false)
        }
        (
            RegistryCondition::Tag {
                key,
                test,
                missing_matches,
            },
            _,
        ) => tag_condition(scope, key, test, *missing_matches, backend),
        (_, Scope::Models) => Expr::val(1).eq(0),
        (RegistryCondition::RunId(test), Scope::Versions) => text_condition(
            version_column(model_version::Column::RunId),
            test,
            backend,
            false,
        ),
        (RegistryCondition::Source(test), Scope::Versions) => text_condition(
            version_column(model_version::Column::Source),
            test,
            backend,
            false,
        ),
        (RegistryCondition::VersionNumber(op, value), Scope::Versions) => {
            compare(version_column(model_version::Column::Version), *op, *value)
        }
    }
}

/// Builds a tag test: the item has the tag with a passing value, or, with `missing_matches`,
/// lacks the tag.
fn tag_condition(
    scope: Scope,
    key: &str,
    test: &TextMatch,
    missing_matches: bool,
    backend: DbBackend,
) -> Expr {
    let (id, holders, value) = match scope {
        Scope::Models => (
            Expr::col((registered_model::Entity, registered_model::Column::Id)),
            Query::select()
                .column((model_tag::Entity, model_tag::Column::ModelId))
                .from(model_tag::Entity)
                .and_where(Expr::col((model_tag::Entity, model_tag::Column::Key)).eq(key))
                .to_owned(),
            Expr::col((model_tag::Entity, model_tag::Column::Value)),
        ),
        Scope::Versions => (
            Expr::col((model_version::Entity, model_version::Column::Id)),
            Query::select()
                .column((
                    model_version_tag::Entity,
                    model_version_tag::Column::VersionId,
                ))
                .from(model_version_tag::Entity)
                .and_where(
                    Expr::col((model_version_tag::Entity, model_version_tag::Column::Key)).eq(key),
                )
                .to_owned(),
            Expr::col((model_version_tag::Entity, model_version_tag::Column::Value)),
        ),
    };
    let passing = holders
        .clone()
        .and_where(text_condition(value, test, backend, false))
        .to_owned();
    let matched = id.clone().in_subquery(passing);
    if missing_matches {
        matched.or(id.not_in_subquery(holders))
    } else {
        matched
    }
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

/// Returns the expression of a sort key, or `None` for a key that does not apply to `scope`.
fn key_expr(key: RegistryKey, scope: Scope) -> Option<Expr> {
    let model = |column: registered_model::Column| Expr::col((registered_model::Entity, column));
    let version = |column: model_version::Column| Expr::col((model_version::Entity, column));
    match (key, scope) {
        (RegistryKey::Name, _) => Some(model(registered_model::Column::Name)),
        (RegistryKey::VersionNumber, Scope::Models) => None,
        (RegistryKey::VersionNumber, Scope::Versions) => {
            Some(version(model_version::Column::Version))
        }
        (RegistryKey::CreationTime, Scope::Models) => {
            Some(model(registered_model::Column::CreatedAt))
        }
        (RegistryKey::CreationTime, Scope::Versions) => {
            Some(version(model_version::Column::CreatedAt))
        }
        (RegistryKey::LastUpdateTime, Scope::Models) => {
            Some(model(registered_model::Column::UpdatedAt))
        }
        (RegistryKey::LastUpdateTime, Scope::Versions) => {
            Some(version(model_version::Column::UpdatedAt))
        }
    }
}

/// Reads the tags and aliases of the found versions, one query for each.
async fn fill_version_details(
    db: &impl ConnectionTrait,
    found: &mut [FoundVersion],
) -> Result<(), StoreError> {
    let position: HashMap<i64, usize> = found
        .iter()
        .enumerate()
        .map(|(index, item)| (item.version.id, index))
        .collect();
    let ids: Vec<i64> = position.keys().copied().collect();
    for chunk in ids.chunks(batch::rows_per_statement(1)) {
        let tags = model_version_tag::Entity::find()
            .filter(model_version_tag::Column::VersionId.is_in(chunk.iter().copied()))
            .all(db)
            .await?;
        for tag in tags {
            found[position[&tag.version_id]]
                .tags
                .insert(tag.key, tag.value);
        }
        let aliases = model_alias::Entity::find()
            .filter(model_alias::Column::VersionId.is_in(chunk.iter().copied()))
            .all(db)
            .await?;
        for alias in aliases {
            found[position[&alias.version_id]].aliases.push(alias.alias);
        }
    }
    for item in found.iter_mut() {
        item.aliases.sort();
    }
    Ok(())
}
