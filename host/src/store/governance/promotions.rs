//! Promotion requests, their approvals, and the policy decisions that complete, deny or keep
//! them pending.

use crate::store::audit::{self, AuditAction, Entry, SYSTEM_ACTOR};
use crate::store::entity::promotion::{self, PromotionStatus};
use crate::store::entity::{approval, audit_entry, model_version, registered_model};
use crate::store::registry::{
    check_alias, find_version, lock_model, lock_model_by_id, move_alias, require_model,
    version_number,
};
use crate::store::{Store, StoreError, batch, now_ms};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, SqlErr,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Fields of a promotion request, for [`Store::create_promotion`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPromotion {
    /// Name of the registered model.
    pub model: String,
    /// Number of the version to promote.
    pub version: i64,
    /// The alias to move; see [`check_alias`].
    pub alias: String,
}

/// Decision of one policy on a promotion, for [`Store::record_decisions`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDecisionRow {
    /// Plugin reference, `name@version`.
    pub plugin: String,
    /// Lowercase hex SHA-256 of the plugin component; empty when the plugin could not be
    /// loaded.
    pub plugin_digest: String,
    /// `allow`, `deny` or `pending`.
    pub decision: String,
    /// The policy's explanation.
    pub reason: String,
    /// The approvals a `pending` decision waits for. `None` for the other decisions and for
    /// decisions recorded before this field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needed: Option<StoredNeed>,
}

/// The approvals a pending policy decision still waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredNeed {
    /// How many more approvals the policy needs.
    pub count: u32,
    /// The lowest role an approver must hold.
    pub role: String,
    /// The policy's own reason, without the count and role.
    pub reason: String,
}

/// The combined outcome of every policy on a promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromotionOutcome {
    /// Every policy allowed the promotion: the alias moves.
    Completed,
    /// A policy denied the promotion.
    Denied {
        /// Why, naming the policies that denied.
        reason: String,
    },
    /// No policy denied, but some wait for approvals.
    Pending,
}

impl Store {
    /// Requests that `alias` of a model point at a version, and returns the pending request.
    ///
    /// A pending request for the same version and alias is returned as it is, without a new
    /// audit entry. A pending request for another version of the alias is superseded.
    pub async fn create_promotion(
        &self,
        actor: &str,
        new: NewPromotion,
    ) -> Result<promotion::Model, StoreError> {
        check_alias(&new.alias)?;

        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        let model = lock_model(&transaction, &new.model).await?;
        let version = find_version(&transaction, &model, new.version).await?;
        let pending = find_pending(&transaction, model.id, &new.alias).await?;
        if let Some(pending) = pending {
            if pending.version_id == version.id {
                return Ok(pending);
            }
            supersede(&transaction, actor, now, &model, pending, new.version).await?;
        }

        let row = promotion::ActiveModel {
            model_id: Set(model.id),
            version_id: Set(version.id),
            alias: Set(new.alias.clone()),
            requester: Set(actor.to_owned()),
            status: Set(PromotionStatus::Pending),
            reason: Set(None),
            created_at: Set(now),
            decided_at: Set(None),
            ..Default::default()
        };
        let promotion = promotion::Entity::insert(row)
            .exec_with_returning(&transaction)
            .await?;

        let detail = json!({ "requester": actor, "run_id": version.run_id });
        let entry = Entry::new(AuditAction::PromotionRequested, &model.name)
            .version(version.version)
            .alias(&new.alias)
            .promotion(promotion.id)
            .detail(detail);
        audit::append(&transaction, actor, now, entry).await?;
        transaction.commit().await?;
        tracing::info!(model = %model.name, version = version.version, alias = %new.alias, promotion_id = promotion.id, "promotion requested");
        Ok(promotion)
    }

    /// Returns the promotion with this id, if any.
    pub async fn get_promotion(&self, id: i64) -> Result<Option<promotion::Model>, StoreError> {
        Ok(promotion::Entity::find_by_id(id).one(&self.db).await?)
    }

    /// Returns the promotion with this id or [`StoreError::PromotionNotFound`].
    pub async fn require_promotion(&self, id: i64) -> Result<promotion::Model, StoreError> {
        require_promotion(&self.db, id).await
    }

    /// Returns the pending promotion of `alias` of a model to its version `version`, if any.
    pub async fn pending_promotion(
        &self,
        model: &str,
        version: i64,
        alias: &str,
    ) -> Result<Option<promotion::Model>, StoreError> {
        let model = require_model(&self.db, model).await?;
        let version = find_version(&self.db, &model, version).await?;
        let pending = find_pending(&self.db, model.id, alias).await?;
        Ok(pending.filter(|pending| pending.version_id == version.id))
    }

    /// Lists the promotions of a model, newest first, optionally only those with `status`.
    pub async fn list_promotions(
        &self,
        model: &str,
        status: Option<PromotionStatus>,
    ) -> Result<Vec<promotion::Model>, StoreError> {
        let model = require_model(&self.db, model).await?;
        let mut select = promotion::Entity::find()
            .filter(promotion::Column::ModelId.eq(model.id))
            .order_by_desc(promotion::Column::Id);
        if let Some(status) = status {
            select = select.filter(promotion::Column::Status.eq(status));
        }
        Ok(select.all(&self.db).await?)
    }

    /// Records an approval of a pending promotion by `actor`, who held `role`, and returns it.
    ///
    /// A second approval by the same approver returns [`StoreError::ApprovalTaken`], and a
    /// promotion that is no longer pending [`StoreError::PromotionNotPending`]. Who may approve
    /// is for the caller to decide.
    pub async fn add_approval(
        &self,
        actor: &str,
        promotion_id: i64,
        role: &str,
        comment: &str,
    ) -> Result<approval::Model, StoreError> {
        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        let (promotion, model) = lock_promotion(&transaction, promotion_id).await?;
        require_pending(&promotion)?;
        let row = approval::ActiveModel {
            promotion_id: Set(promotion_id),
            approver: Set(actor.to_owned()),
            role: Set(role.to_owned()),
            comment: Set(comment.to_owned()),
            created_at: Set(now),
            ..Default::default()
        };
        let approval = approval::Entity::insert(row)
            .exec_with_returning(&transaction)
            .await
            .map_err(|error| approval_taken_or(error, actor))?;

        let version = version_number(&transaction, promotion.version_id).await?;
        let detail = json!({ "approver": actor, "role": role, "comment": comment });
        let entry = Entry::new(AuditAction::ApprovalRecorded, &model.name)
            .version(version)
            .alias(&promotion.alias)
            .promotion(promotion_id)
            .detail(detail);
        audit::append(&transaction, actor, now, entry).await?;
        transaction.commit().await?;
        tracing::info!(model = %model.name, promotion_id, approver = %actor, "approval recorded");
        Ok(approval)
    }

    /// Returns the approvals of a promotion, oldest first.
    pub async fn approvals(&self, promotion_id: i64) -> Result<Vec<approval::Model>, StoreError> {
        Ok(approval::Entity::find()
            .filter(approval::Column::PromotionId.eq(promotion_id))
            .order_by_asc(approval::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Records the decision of every policy on a pending promotion and their combined outcome,
    /// and returns the promotion.
    ///
    /// One transaction appends a `policy.decided` entry per decision and the outcome's entry,
    /// sets the status and, on [`PromotionOutcome::Completed`], moves the alias with its
    /// `alias.moved` entry. These entries have the actor `runledger`, and their detail names
    /// `triggered_by`: who made the request or the approval that led to this evaluation. A
    /// promotion that is no longer pending returns [`StoreError::PromotionNotPending`] and
    /// nothing is written.
    pub async fn record_decisions(
        &self,
        triggered_by: &str,
        promotion_id: i64,
        decisions: &[PolicyDecisionRow],
        outcome: PromotionOutcome,
    ) -> Result<promotion::Model, StoreError> {
        let now = now_ms();
        let transaction = batch::begin_write(&self.db).await?;
        let (promotion, model) = lock_promotion(&transaction, promotion_id).await?;
        require_pending(&promotion)?;
        let version = model_version::Entity::find_by_id(promotion.version_id)
            .one(&transaction)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("version of promotion {promotion_id}")))?;
        let context = DecisionContext {
            model: &model,
            version: &version,
            promotion: &promotion,
            triggered_by,
            now,
        };
        for decision in decisions {
            audit::append(&transaction, SYSTEM_ACTOR, now, context.decided(decision)).await?;
        }

        let updated = apply_outcome(&transaction, &context, outcome).await?;
        transaction.commit().await?;
        tracing::info!(model = %model.name, promotion_id, status = %updated.status, "promotion decided");
        Ok(updated)
    }

    /// Returns the decisions of the latest [`Store::record_decisions`] call on a promotion, in
    /// the order they were recorded, read back from the audit log. Empty before the first call.
    pub async fn promotion_decisions(
        &self,
        promotion_id: i64,
    ) -> Result<Vec<PolicyDecisionRow>, StoreError> {
        let entries = audit_entry::Entity::find()
            .filter(audit_entry::Column::PromotionId.eq(promotion_id))
            .order_by_asc(audit_entry::Column::Seq)
            .all(&self.db)
            .await?;
        Ok(latest_round(&entries))
    }
}

/// The promotion being decided, for the audit entries of [`Store::record_decisions`].
struct DecisionContext<'a> {
    model: &'a registered_model::Model,
    version: &'a model_version::Model,
    promotion: &'a promotion::Model,
    triggered_by: &'a str,
    now: i64,
}

impl DecisionContext<'_> {
    /// Starts an entry about the promotion.
    fn entry(&self, action: AuditAction) -> Entry {
        Entry::new(action, &self.model.name)
            .version(self.version.version)
            .alias(&self.promotion.alias)
            .promotion(self.promotion.id)
    }

    fn decided(&self, decision: &PolicyDecisionRow) -> Entry {
        let mut detail = json!({
            "plugin": decision.plugin,
            "plugin_digest": decision.plugin_digest,
            "decision": decision.decision,
            "reason": decision.reason,
            "triggered_by": self.triggered_by,
        });
        if let Some(needed) = &decision.needed {
            detail["needed"] = json!(needed);
        }
        self.entry(AuditAction::PolicyDecided).detail(detail)
    }
}

/// Sets the promotion's status for `outcome`, moves the alias when it completed, appends the
/// outcome's entry and returns the updated promotion.
async fn apply_outcome(
    transaction: &impl ConnectionTrait,
    context: &DecisionContext<'_>,
    outcome: PromotionOutcome,
) -> Result<promotion::Model, StoreError> {
    let mut row: promotion::ActiveModel = context.promotion.clone().into();
    let entry = match outcome {
        PromotionOutcome::Pending => {
            record_pending(transaction, context).await?;
            return Ok(context.promotion.clone());
        }
        PromotionOutcome::Denied { reason } => {
            row.status = Set(PromotionStatus::Denied);
            row.reason = Set(Some(reason.clone()));
            let entry = context.entry(AuditAction::PromotionDenied);
            entry.detail(json!({ "reason": reason, "triggered_by": context.triggered_by }))
        }
        PromotionOutcome::Completed => {
            row.status = Set(PromotionStatus::Completed);
            let target = (context.promotion.alias.as_str(), context.promotion.id);
            let from = move_alias(
                transaction,
                (SYSTEM_ACTOR, context.triggered_by),
                context.now,
                context.model,
                context.version,
                target,
            )
            .await?;
            let entry = context.entry(AuditAction::PromotionCompleted);
            entry.detail(json!({
                "from": from,
                "to": context.version.version,
                "triggered_by": context.triggered_by,
            }))
        }
    };

    row.decided_at = Set(Some(context.now));
    audit::append(transaction, SYSTEM_ACTOR, context.now, entry).await?;
    Ok(row.update(transaction).await?)
}

/// Appends the `promotion.pending` entry, listing the approvers so far. The promotion's row
/// does not change.
async fn record_pending(
    transaction: &impl ConnectionTrait,
    context: &DecisionContext<'_>,
) -> Result<(), StoreError> {
    let approvals = approval::Entity::find()
        .filter(approval::Column::PromotionId.eq(context.promotion.id))
        .order_by_asc(approval::Column::Id)
        .all(transaction)
        .await?;
    let approvers: Vec<String> = approvals.into_iter().map(|a| a.approver).collect();

    let entry = context.entry(AuditAction::PromotionPending);
    let entry =
        entry.detail(json!({ "approvers": approvers, "triggered_by": context.triggered_by }));
    audit::append(transaction, SYSTEM_ACTOR, context.now, entry).await?;
    Ok(())
}

/// Marks a pending promotion as superseded by a request for version `by_version`.
async fn supersede(
    transaction: &impl ConnectionTrait,
    actor: &str,
    now: i64,
    model: &registered_model::Model,
    pending: promotion::Model,
    by_version: i64,
) -> Result<(), StoreError> {
    let reason = format!("superseded by a request for version {by_version} by {actor}");
    let old_version = version_number(transaction, pending.version_id).await?;
    let mut row: promotion::ActiveModel = pending.clone().into();
    row.status = Set(PromotionStatus::Superseded);
    row.reason = Set(Some(reason.clone()));
    row.decided_at = Set(Some(now));
    row.update(transaction).await?;

    let detail = json!({ "reason": reason, "by_version": by_version });
    let entry = Entry::new(AuditAction::PromotionSuperseded, &model.name)
        .version(old_version)
        .alias(&pending.alias)
        .promotion(pending.id)
        .detail(detail);
    audit::append(transaction, actor, now, entry).await?;
    Ok(())
}

/// Returns the pending promotion of `alias` of the model with id `model_id`, if any. Creating
/// a promotion supersedes the pending one, so there is at most one.
async fn find_pending(
    db: &impl ConnectionTrait,
    model_id: i64,
    alias: &str,
) -> Result<Option<promotion::Model>, StoreError> {
    Ok(promotion::Entity::find()
        .filter(promotion::Column::ModelId.eq(model_id))
        .filter(promotion::Column::Alias.eq(alias))
        .filter(promotion::Column::Status.eq(PromotionStatus::Pending))
        .order_by_desc(promotion::Column::Id)
        .one(db)
        .await?)
}

async fn require_promotion(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<promotion::Model, StoreError> {
    promotion::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(StoreError::PromotionNotFound { id })
}

/// Locks the model of a promotion and returns the promotion, read after the lock so its
/// status is current, with its model.
async fn lock_promotion(
    transaction: &impl ConnectionTrait,
    id: i64,
) -> Result<(promotion::Model, registered_model::Model), StoreError> {
    let unlocked = require_promotion(transaction, id).await?;
    let model = lock_model_by_id(transaction, unlocked.model_id).await?;
    let promotion = require_promotion(transaction, id).await?;
    Ok((promotion, model))
}

fn require_pending(promotion: &promotion::Model) -> Result<(), StoreError> {
    if promotion.status == PromotionStatus::Pending {
        return Ok(());
    }
    Err(StoreError::PromotionNotPending {
        id: promotion.id,
        status: promotion.status,
    })
}

fn approval_taken_or(error: DbErr, approver: &str) -> StoreError {
    match error.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::ApprovalTaken {
            approver: approver.to_owned(),
        },
        _ => StoreError::Database(error),
    }
}

/// Picks the `policy.decided` entries after the last outcome entry but one, which are the
/// decisions of the latest round. Rounds on one promotion never interleave, because each runs
/// under the model's lock.
fn latest_round(entries: &[audit_entry::Model]) -> Vec<PolicyDecisionRow> {
    let is_outcome = |entry: &audit_entry::Model| {
        [
            AuditAction::PromotionCompleted,
            AuditAction::PromotionDenied,
            AuditAction::PromotionPending,
        ]
        .iter()
        .any(|action| entry.action == action.as_str())
    };
    let outcomes: Vec<usize> = (0..entries.len())
        .filter(|&i| is_outcome(&entries[i]))
        .collect();
    let Some(&end) = outcomes.last() else {
        return Vec::new();
    };
    let start = outcomes.iter().rev().nth(1).map_or(0, |&i| i + 1);

    entries[start..end]
        .iter()
        .filter(|entry| entry.action == AuditAction::PolicyDecided.as_str())
        .filter_map(|entry| serde_json::from_value(entry.detail.clone()).ok())
        .collect()
}
