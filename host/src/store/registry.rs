//! The model registry: registered models, their numbered versions, tags and aliases.
//!
//! Every change writes its audit entries in the transaction of the change. Changes to one
//! model are serialised by locking the model's row (`SELECT ... FOR UPDATE` on PostgreSQL; on
//! SQLite every write transaction takes the database write lock), so version numbers, alias
//! moves and promotion states never race.

mod aliases;
mod names;
mod versions;

pub use names::{check_alias, check_model_name, check_tag_key};
pub use versions::{NewModelVersion, VersionPage, VersionQuery};

pub(super) use aliases::move_alias;
pub(super) use versions::{find_version, version_number};

use super::audit::{self, AuditAction, Entry};
use super::entity::{model_tag, registered_model};
use super::{Store, StoreError, batch, now_ms};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm::sea_query::{Expr, Func, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    ExprTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
};
use serde_json::json;
use std::collections::BTreeMap;

/// Fields of a new registered model, for [`Store::create_model`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewModel {
    /// Unique name; see [`check_model_name`].
    pub name: String,
    /// Free-text description.
    pub description: String,
    /// Initial tags; keys follow [`check_tag_key`].
    pub tags: BTreeMap<String, String>,
}

/// Changes to a registered model, for [`Store::update_model`]. Fields left `None` stay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelChange {
    /// New description.
    pub description: Option<String>,
    /// New unique name; see [`check_model_name`].
    pub new_name: Option<String>,
}

/// Filter and page of [`Store::list_models`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelQuery {
    /// Only models whose name starts with this text, compared case-sensitively.
    pub name_prefix: Option<String>,
    /// At most this many models; 0 means the default page size. Capped at the maximum page
    /// size.
    pub limit: u64,
    /// `next_page_token` of the previous page; `None` for the first page.
    pub page_token: Option<String>,
}

/// One page of registered models, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPage {
    /// The models of this page.
    pub models: Vec<registered_model::Model>,
    /// Token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

impl Store {
    /// Registers a model with its tags. A name that another model has returns
    /// [`StoreError::ModelNameTaken`].
    pub async fn create_model(
        &self,
        actor: &str,
        new: NewModel,
    ) -> Result<registered_model::Model, StoreError> {
        check_model_name(&new.name)?;
        for key in new.tags.keys() {
            check_tag_key(key)?;
        }

        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        if find_model(&transaction, &new.name).await?.is_some() {
            return Err(StoreError::ModelNameTaken { name: new.name });
        }
        let row = registered_model::ActiveModel {
            name: Set(new.name.clone()),
            description: Set(new.description.clone()),
            created_by: Set(actor.to_owned()),
            last_version: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        // Two concurrent creations both pass the check above on PostgreSQL; the unique index
        // then rejects the second.
        let model = registered_model::Entity::insert(row)
            .exec_with_returning(&transaction)
            .await
            .map_err(|error| name_taken_or(error, &new.name))?;
        for (key, value) in &new.tags {
            upsert_model_tag(&transaction, model.id, key, value).await?;
        }

        let detail = json!({ "description": new.description, "tags": new.tags });
        let entry = Entry::new(AuditAction::ModelCreated, &model.name).detail(detail);
        audit::append(&transaction, actor, now, entry).await?;
        transaction.commit().await?;
        tracing::info!(model = %model.name, actor = %actor, "model registered");
        Ok(model)
    }

    /// Returns the registered model called `name`, if any.
    pub async fn get_model(
        &self,
        name: &str,
    ) -> Result<Option<registered_model::Model>, StoreError> {
        find_model(&self.db, name).await
    }

    /// Returns the registered model called `name` or [`StoreError::ModelNotFound`].
    pub async fn require_model(&self, name: &str) -> Result<registered_model::Model, StoreError> {
        require_model(&self.db, name).await
    }

    /// Lists registered models by name, one page at a time.
    pub async fn list_models(&self, query: &ModelQuery) -> Result<ModelPage, StoreError> {
        let size = audit::page_size(query.limit);
        let mut select = registered_model::Entity::find()
            .order_by_asc(registered_model::Column::Name)
            .limit(size + 1);
        if let Some(prefix) = query.name_prefix.as_deref().filter(|p| !p.is_empty()) {
            // `LIKE` treats `_` in names as a wildcard and ignores case on SQLite, so the
            // prefix is compared as a substring instead.
            let length = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
            let head = Func::cust("substr")
                .arg(Expr::col(registered_model::Column::Name))
                .arg(1)
                .arg(length);
            select = select.filter(Expr::expr(head).eq(prefix));
        }
        if let Some(token) = &query.page_token {
            let after = decode_page_token(token, MODEL_TOKEN_PREFIX)?;
            select = select.filter(registered_model::Column::Name.gt(after));
        }

        let mut models = select.all(&self.db).await?;
        let next_page_token = cut_page(&mut models, size)
            .map(|last| encode_page_token(MODEL_TOKEN_PREFIX, &last.name));
        Ok(ModelPage {
            models,
            next_page_token,
        })
    }

    /// Changes a model's description or name and returns the model. A rename is recorded in
    /// the audit log under the old and the new name, so both histories show it.
    pub async fn update_model(
        &self,
        actor: &str,
        name: &str,
        change: ModelChange,
    ) -> Result<registered_model::Model, StoreError> {
        if let Some(new_name) = &change.new_name {
            check_model_name(new_name)?;
        }

        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        let current = lock_model(&transaction, name).await?;
        let mut detail = serde_json::Map::new();
        let mut row: registered_model::ActiveModel = current.clone().into();
        if let Some(description) = change.description.filter(|d| *d != current.description) {
            detail.insert(
                "description".into(),
                json!({ "from": current.description, "to": description }),
            );
            row.description = Set(description);
        }
        if let Some(new_name) = change.new_name.filter(|n| *n != current.name) {
            if find_model(&transaction, &new_name).await?.is_some() {
                return Err(StoreError::ModelNameTaken { name: new_name });
            }
            detail.insert(
                "name".into(),
                json!({ "from": current.name, "to": new_name }),
            );
            row.name = Set(new_name);
        }
        if detail.is_empty() {
            return Ok(current);
        }

        row.updated_at = Set(now);
        let updated = row
            .update(&transaction)
            .await
            .map_err(|error| name_taken_or(error, name))?;
        let mut names = vec![updated.name.clone()];
        if updated.name != current.name {
            names.push(current.name.clone());
        }
        for model_name in names {
            let detail = serde_json::Value::Object(detail.clone());
            let entry = Entry::new(AuditAction::ModelUpdated, &model_name).detail(detail);
            audit::append(&transaction, actor, now, entry).await?;
        }
        transaction.commit().await?;
        tracing::info!(model = %updated.name, actor = %actor, "model updated");
        Ok(updated)
    }

    /// Deletes a model with its versions, tags, aliases, attachments, promotions and approvals.
    /// Its audit entries stay, and validations of its versions stay with their runs.
    pub async fn delete_model(&self, actor: &str, name: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        let model = lock_model(&transaction, name).await?;
        let aliases = aliases::model_aliases(&transaction, model.id).await?;
        registered_model::Entity::delete_by_id(model.id)
            .exec(&transaction)
            .await?;

        let detail = json!({
            "last_version": model.last_version,
            "aliases": aliases.into_iter().collect::<BTreeMap<_, _>>(),
        });
        let entry = Entry::new(AuditAction::ModelDeleted, &model.name).detail(detail);
        audit::append(&transaction, actor, now, entry).await?;
        transaction.commit().await?;
        tracing::info!(model = %model.name, actor = %actor, "model deleted");
        Ok(())
    }

    /// Returns the tags of a model by key.
    pub async fn model_tags(&self, model_id: i64) -> Result<BTreeMap<String, String>, StoreError> {
        let tags = model_tag::Entity::find()
            .filter(model_tag::Column::ModelId.eq(model_id))
            .all(&self.db)
            .await?;
        Ok(tags.into_iter().map(|tag| (tag.key, tag.value)).collect())
    }

    /// Sets a tag of a model, replacing any value it had.
    pub async fn set_model_tag(
        &self,
        actor: &str,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        check_tag_key(key)?;

        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        let model = lock_model(&transaction, name).await?;
        let previous = model_tag::Entity::find_by_id((model.id, key.to_owned()))
            .one(&transaction)
            .await?
            .map(|tag| tag.value);
        upsert_model_tag(&transaction, model.id, key, value).await?;
        touch_model(&transaction, model.id, now).await?;

        let detail = json!({ "key": key, "value": value, "previous": previous });
        let entry = Entry::new(AuditAction::ModelTagSet, &model.name).detail(detail);
        audit::append(&transaction, actor, now, entry).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes a tag of a model. Returns whether the tag existed; deleting a missing tag
    /// changes nothing and writes no audit entry.
    pub async fn delete_model_tag(
        &self,
        actor: &str,
        name: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        let model = lock_model(&transaction, name).await?;
        let Some(tag) = model_tag::Entity::find_by_id((model.id, key.to_owned()))
            .one(&transaction)
            .await?
        else {
            return Ok(false);
        };
        model_tag::Entity::delete_by_id((model.id, key.to_owned()))
            .exec(&transaction)
            .await?;
        touch_model(&transaction, model.id, now).await?;

        let detail = json!({ "key": key, "previous": tag.value });
        let entry = Entry::new(AuditAction::ModelTagDeleted, &model.name).detail(detail);
        audit::append(&transaction, actor, now, entry).await?;
        transaction.commit().await?;
        Ok(true)
    }
}

/// Returns the registered model called `name`, if any.
pub(super) async fn find_model(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<registered_model::Model>, StoreError> {
    Ok(registered_model::Entity::find()
        .filter(registered_model::Column::Name.eq(name))
        .one(db)
        .await?)
}

/// Returns the registered model called `name` or [`StoreError::ModelNotFound`].
pub(super) async fn require_model(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<registered_model::Model, StoreError> {
    find_model(db, name)
        .await?
        .ok_or_else(|| StoreError::ModelNotFound {
            name: name.to_owned(),
        })
}

/// Returns the model called `name` and locks its row until `transaction` ends, so changes to
/// one model run one at a time. On SQLite the write transaction holds the lock already.
pub(super) async fn lock_model(
    transaction: &impl ConnectionTrait,
    name: &str,
) -> Result<registered_model::Model, StoreError> {
    registered_model::Entity::find()
        .filter(registered_model::Column::Name.eq(name))
        .lock_exclusive()
        .one(transaction)
        .await?
        .ok_or_else(|| StoreError::ModelNotFound {
            name: name.to_owned(),
        })
}

/// Locks the row of the model with id `model_id`, like [`lock_model`].
pub(super) async fn lock_model_by_id(
    transaction: &impl ConnectionTrait,
    model_id: i64,
) -> Result<registered_model::Model, StoreError> {
    let model = registered_model::Entity::find_by_id(model_id)
        .lock_exclusive()
        .one(transaction)
        .await?;
    model
        .ok_or_else(|| DbErr::RecordNotFound(format!("registered model with id {model_id}")).into())
}

/// Sets `updated_at` of a model to `now`.
pub(super) async fn touch_model(
    db: &impl ConnectionTrait,
    model_id: i64,
    now: i64,
) -> Result<(), StoreError> {
    registered_model::Entity::update_many()
        .col_expr(registered_model::Column::UpdatedAt, Expr::value(now))
        .filter(registered_model::Column::Id.eq(model_id))
        .exec(db)
        .await?;
    Ok(())
}

async fn upsert_model_tag(
    db: &impl ConnectionTrait,
    model_id: i64,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    let row = model_tag::ActiveModel {
        model_id: Set(model_id),
        key: Set(key.to_owned()),
        value: Set(value.to_owned()),
    };
    let conflict = OnConflict::columns([model_tag::Column::ModelId, model_tag::Column::Key])
        .update_column(model_tag::Column::Value)
        .to_owned();
    model_tag::Entity::insert(row)
        .on_conflict(conflict)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Maps a unique violation on the model name to [`StoreError::ModelNameTaken`].
fn name_taken_or(error: DbErr, name: &str) -> StoreError {
    match error.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::ModelNameTaken {
            name: name.to_owned(),
        },
        _ => StoreError::Database(error),
    }
}

/// Prefix of the page tokens of [`Store::list_models`], so a token of another listing is
/// rejected rather than misread.
const MODEL_TOKEN_PREFIX: &str = "model:";

/// Encodes the position after `last` as an opaque page token.
pub(super) fn encode_page_token(prefix: &str, last: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{prefix}{last}"))
}

/// Decodes a token of [`encode_page_token`] made with `prefix` into the position it contains.
pub(super) fn decode_page_token(token: &str, prefix: &str) -> Result<String, StoreError> {
    let shown: String = token.chars().take(64).collect();
    let invalid = || StoreError::InvalidPageToken(shown.clone());
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix(prefix)
        .filter(|rest| !rest.contains('\0'))
        .map(str::to_owned)
        .ok_or_else(invalid)
}

/// Cuts a page fetched with one row more than `size` back to `size` rows, returning the last
/// kept row when another page follows.
pub(super) fn cut_page<T>(rows: &mut Vec<T>, size: u64) -> Option<&T> {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if rows.len() <= size {
        return None;
    }
    rows.truncate(size);
    rows.last()
}
