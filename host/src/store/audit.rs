//! The append-only audit log of the model registry: entries written inside the transaction of
//! the change they describe, and queries over them.

use super::entity::audit_entry;
use super::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Store, StoreError};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::Value;

/// Actor of the entries that runledger writes for decisions it makes itself, such as a
/// promotion completing after the last policy allowed it.
pub const SYSTEM_ACTOR: &str = "runledger";

/// Kind of change an audit entry records. [`AuditAction::as_str`] is the text stored in
/// `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A model was registered.
    ModelCreated,
    /// A model's description or name changed.
    ModelUpdated,
    /// A model was deleted with its versions, aliases and promotions.
    ModelDeleted,
    /// A model tag was set.
    ModelTagSet,
    /// A model tag was deleted.
    ModelTagDeleted,
    /// A model version was created.
    VersionCreated,
    /// A model version's description changed.
    VersionUpdated,
    /// A model version was deleted.
    VersionDeleted,
    /// A model version tag was set.
    VersionTagSet,
    /// A model version tag was deleted.
    VersionTagDeleted,
    /// The validators attached to a model were replaced.
    ValidatorsSet,
    /// The policies attached to an alias were replaced.
    PoliciesSet,
    /// The result of a validator call was recorded.
    ValidationRecorded,
    /// A promotion was requested.
    PromotionRequested,
    /// A pending promotion was replaced by a newer request for the same alias.
    PromotionSuperseded,
    /// One policy decided on a promotion.
    PolicyDecided,
    /// An approval of a promotion was recorded.
    ApprovalRecorded,
    /// Every policy allowed a promotion.
    PromotionCompleted,
    /// A policy denied a promotion.
    PromotionDenied,
    /// A promotion waits for approvals.
    PromotionPending,
    /// An alias moved to another version, or was set for the first time.
    AliasMoved,
    /// An alias was removed, by request or with the version it pointed at.
    AliasRemoved,
}

impl AuditAction {
    /// Returns the text stored in the `action` column, such as `alias.moved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ModelCreated => "model.created",
            Self::ModelUpdated => "model.updated",
            Self::ModelDeleted => "model.deleted",
            Self::ModelTagSet => "model.tag_set",
            Self::ModelTagDeleted => "model.tag_deleted",
            Self::VersionCreated => "version.created",
            Self::VersionUpdated => "version.updated",
            Self::VersionDeleted => "version.deleted",
            Self::VersionTagSet => "version.tag_set",
            Self::VersionTagDeleted => "version.tag_deleted",
            Self::ValidatorsSet => "validators.set",
            Self::PoliciesSet => "policies.set",
            Self::ValidationRecorded => "validation.recorded",
            Self::PromotionRequested => "promotion.requested",
            Self::PromotionSuperseded => "promotion.superseded",
            Self::PolicyDecided => "policy.decided",
            Self::ApprovalRecorded => "approval.recorded",
            Self::PromotionCompleted => "promotion.completed",
            Self::PromotionDenied => "promotion.denied",
            Self::PromotionPending => "promotion.pending",
            Self::AliasMoved => "alias.moved",
            Self::AliasRemoved => "alias.removed",
        }
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Filter of [`Store::audit_log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Entries that name this model.
    pub model: String,
    /// Only entries about this version number, when set.
    pub version: Option<i64>,
    /// Only entries after this `seq`, to continue from the last entry of a previous page.
    pub after_seq: Option<i64>,
    /// At most this many entries; 0 means the default page size. Capped at the maximum page
    /// size.
    pub limit: u64,
}

/// An audit entry about to be written. The actor and time come from [`append`].
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// What happened.
    pub action: AuditAction,
    /// Name of the model concerned, if any.
    pub model: Option<String>,
    /// Version number concerned, if any.
    pub version: Option<i64>,
    /// Alias concerned, if any.
    pub alias: Option<String>,
    /// Promotion concerned, if any.
    pub promotion_id: Option<i64>,
    /// Details for an auditor.
    pub detail: Value,
}

impl Entry {
    /// Starts an entry about `model` with an empty detail.
    pub(super) fn new(action: AuditAction, model: &str) -> Self {
        Self {
            model: Some(model.to_owned()),
            ..Self::without_model(action)
        }
    }

    /// Starts an entry that names no model, with an empty detail.
    pub(super) fn without_model(action: AuditAction) -> Self {
        Self {
            action,
            model: None,
            version: None,
            alias: None,
            promotion_id: None,
            detail: Value::Object(serde_json::Map::new()),
        }
    }

    /// Sets the version number.
    pub(super) fn version(mut self, version: i64) -> Self {
        self.version = Some(version);
        self
    }

    /// Sets the alias.
    pub(super) fn alias(mut self, alias: &str) -> Self {
        self.alias = Some(alias.to_owned());
        self
    }

    /// Sets the promotion.
    pub(super) fn promotion(mut self, promotion_id: i64) -> Self {
        self.promotion_id = Some(promotion_id);
        self
    }

    /// Sets the detail.
    pub(super) fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Appends `entry` on `db`, which should be the transaction of the change it records, so the
/// entry and the change commit or roll back together.
pub(super) async fn append(
    db: &impl ConnectionTrait,
    actor: &str,
    at: i64,
    entry: Entry,
) -> Result<audit_entry::Model, StoreError> {
    let row = audit_entry::ActiveModel {
        at: Set(at),
        actor: Set(actor.to_owned()),
        action: Set(entry.action.as_str().to_owned()),
        model: Set(entry.model),
        version: Set(entry.version),
        alias: Set(entry.alias),
        promotion_id: Set(entry.promotion_id),
        detail: Set(entry.detail),
        ..Default::default()
    };
    Ok(audit_entry::Entity::insert(row)
        .exec_with_returning(db)
        .await?)
}

impl Store {
    /// Lists the audit entries of a model, oldest first.
    ///
    /// Entries name a model by the name it had at the time, so after a rename the entries
    /// from before it are found under the old name. The rename itself is recorded under both.
    pub async fn audit_log(
        &self,
        query: &AuditQuery,
    ) -> Result<Vec<audit_entry::Model>, StoreError> {
        let mut select = audit_entry::Entity::find()
            .filter(audit_entry::Column::Model.eq(&query.model))
            .order_by_asc(audit_entry::Column::Seq)
            .limit(page_size(query.limit));
        if let Some(version) = query.version {
            select = select.filter(audit_entry::Column::Version.eq(version));
        }
        if let Some(after) = query.after_seq {
            select = select.filter(audit_entry::Column::Seq.gt(after));
        }
        Ok(select.all(&self.db).await?)
    }
}

/// Turns a requested page size into the one used: the default for 0, at most the maximum.
pub(super) fn page_size(limit: u64) -> u64 {
    match limit {
        0 => DEFAULT_PAGE_SIZE,
        limit => limit.min(MAX_PAGE_SIZE),
    }
}
