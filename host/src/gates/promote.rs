//! Promotions: requests to move an alias, approvals, and the policy decisions on them.

use super::validate::find_plugin;
use super::views::{
    ApprovalView, DecisionKind, NeededApprovals, PolicyDecisionView, PromotionStatus, PromotionView,
};
use super::{Actor, GateError, Gates, Role, SelfApprovalKind, summary};
use crate::runtime::{
    Approval, Check, Decision, PluginKind, PluginRegistry, PromotionRequest, RecordedCheck,
    RunSummary, Severity,
};
use crate::store::entity::promotion::PromotionStatus as StoredStatus;
use crate::store::entity::validation::ValidationTrigger;
use crate::store::entity::{approval, model_version, promotion, registered_model};
use crate::store::{
    Attachment, NewPromotion, PolicyDecisionRow, PromotionOutcome, StoreError, StoredNeed,
    check_alias,
};
use sea_orm::EntityTrait;

/// Longest approval comment, in characters. Comments reach every policy call and every read of
/// the audit log, so an unbounded one could exhaust a policy's memory and make audits slow.
pub const MAX_COMMENT_CHARS: usize = 2_000;

/// The decision of one attached policy, after the host's checks.
struct Evaluated {
    plugin: String,
    digest: String,
    decision: Decision,
}

impl Gates {
    /// Requests that `alias` of `model` point at `version`, then calls every policy attached to
    /// the alias, in attachment order.
    ///
    /// With no policy attached the promotion completes at once. Otherwise any deny denies it,
    /// else any pending leaves it waiting for approvals, else it completes and the alias moves.
    /// A pending promotion of the same version and alias is evaluated again rather than
    /// duplicated, and one of another version is superseded.
    pub async fn request_promotion(
        &self,
        registry: &PluginRegistry,
        actor: &Actor,
        model: &str,
        version: u64,
        alias: &str,
    ) -> Result<PromotionView, GateError> {
        check_alias(alias)?;
        let (_, found) = self
            .store
            .require_model_version(model, stored_version(version)?)
            .await?;
        let new = NewPromotion {
            model: model.to_owned(),
            version: found.version,
            alias: alias.to_owned(),
        };
        let promotion = self.store.create_promotion(&actor.name, new).await?;
        tracing::info!(model, version, alias, actor = %actor.name, promotion_id = promotion.id,
            "promotion requested");
        self.evaluate(registry, actor, model, &found, promotion)
            .await
    }

    /// Approves the pending promotion of `version` of `model` to `alias` as `actor`, then calls
    /// the alias's policies again with the approvals so far.
    ///
    /// Fails with [`GateError::InvalidInput`] for a comment longer than [`MAX_COMMENT_CHARS`],
    /// [`GateError::RoleTooLow`] below role approver, [`GateError::SelfApproval`]
    /// for the requester or the run's author, [`GateError::DuplicateApproval`] for a second
    /// approval by one approver and [`GateError::NoPendingPromotion`] when nothing waits.
    pub async fn approve(
        &self,
        registry: &PluginRegistry,
        actor: &Actor,
        model: &str,
        version: u64,
        alias: &str,
        comment: &str,
    ) -> Result<PromotionView, GateError> {
        if comment.chars().count() > MAX_COMMENT_CHARS {
            let shown: String = comment.chars().take(40).collect();
            return Err(GateError::invalid(
                "comment",
                &format!("{shown}…"),
                format!("an approval comment holds at most {MAX_COMMENT_CHARS} characters"),
            ));
        }
        if actor.role < Role::Approver {
            return Err(GateError::RoleTooLow {
                actor: actor.name.clone(),
                role: actor.role,
                needed: Role::Approver,
                action: "approving a promotion",
            });
        }
        let (_, found) = self
            .store
            .require_model_version(model, stored_version(version)?)
            .await?;
        let no_pending = || GateError::NoPendingPromotion {
            model: model.to_owned(),
            version,
            alias: alias.to_owned(),
        };
        let promotion = self
            .store
            .pending_promotion(model, found.version, alias)
            .await?
            .ok_or_else(no_pending)?;

        self.check_approver(actor, &promotion, &found, model, version)
            .await?;
        self.store
            .add_approval(&actor.name, promotion.id, actor.role.as_str(), comment)
            .await
            .map_err(|error| match error {
                StoreError::ApprovalTaken { .. } => duplicate(actor, model, version, alias),
                other => other.into(),
            })?;
        tracing::info!(model, version, alias, actor = %actor.name, promotion_id = promotion.id,
            "approval recorded");
        self.evaluate(registry, actor, model, &found, promotion)
            .await
    }

    /// Lists the promotions of a model, newest first, optionally only those in `status`, each
    /// with the decisions of its latest evaluation and, while pending, the approvals still
    /// needed.
    pub async fn promotions(
        &self,
        model: &str,
        status: Option<PromotionStatus>,
    ) -> Result<Vec<PromotionView>, GateError> {
        self.store.require_model(model).await?;
        let stored = self
            .store
            .list_promotions(model, status.map(stored_status))
            .await?;
        let mut views = Vec::with_capacity(stored.len());
        for promotion in stored {
            let version = self.version_number(model, promotion.version_id).await?;
            let approvals = self.store.approvals(promotion.id).await?;
            let rows = self.store.promotion_decisions(promotion.id).await?;
            let needed = pending_needs(&promotion, &rows);
            let decisions = rows.into_iter().map(stored_decision_view).collect();
            views.push(promotion_view(
                model, version, promotion, approvals, decisions, needed,
            ));
        }
        Ok(views)
    }

    /// Returns a promotion by id with its approvals and the decisions of its latest evaluation.
    /// Fails with [`StoreError::PromotionNotFound`] for an unknown id.
    pub async fn promotion(&self, id: i64) -> Result<PromotionView, GateError> {
        let promotion = self.store.require_promotion(id).await?;
        let model = registered_model::Entity::find_by_id(promotion.model_id)
            .one(self.store.connection())
            .await
            .map_err(StoreError::from)?
            .map(|model| model.name)
            .unwrap_or_default();
        let version = self.version_number(&model, promotion.version_id).await?;
        let approvals = self.store.approvals(promotion.id).await?;
        let rows = self.store.promotion_decisions(promotion.id).await?;
        let needed = pending_needs(&promotion, &rows);
        let decisions = rows.into_iter().map(stored_decision_view).collect();
        Ok(promotion_view(
            &model, version, promotion, approvals, decisions, needed,
        ))
    }

    /// Removes `alias` of `model`. Fails with [`StoreError::AliasNotFound`] when the model has
    /// no such alias.
    pub async fn remove_alias(
        &self,
        actor: &Actor,
        model: &str,
        alias: &str,
    ) -> Result<(), GateError> {
        self.store.require_model(model).await?;
        if !self.store.remove_alias(&actor.name, model, alias).await? {
            return Err(StoreError::AliasNotFound {
                model: model.to_owned(),
                alias: alias.to_owned(),
            }
            .into());
        }
        tracing::info!(model, alias, actor = %actor.name, "alias removed");
        Ok(())
    }

    /// Fails unless `actor` may approve: not the requester, not the run's author, and not an
    /// approver of this promotion already.
    async fn check_approver(
        &self,
        actor: &Actor,
        promotion: &promotion::Model,
        found: &model_version::Model,
        model: &str,
        version: u64,
    ) -> Result<(), GateError> {
        let reject = |kind| GateError::SelfApproval {
            approver: actor.name.clone(),
            kind,
            model: model.to_owned(),
            version,
            alias: promotion.alias.clone(),
        };
        if promotion.requester == actor.name {
            return Err(reject(SelfApprovalKind::Requester));
        }
        if let Some(run_id) = &found.run_id {
            let run = self.store.get_run(run_id).await?;
            if run.is_some_and(|run| run.user_name == actor.name) {
                return Err(reject(SelfApprovalKind::RunAuthor));
            }
        }
        let approvals = self.store.approvals(promotion.id).await?;
        if approvals.iter().any(|given| given.approver == actor.name) {
            return Err(duplicate(actor, model, version, &promotion.alias));
        }
        Ok(())
    }

    /// Calls every policy of the promotion's alias, records the decisions and the outcome, and
    /// returns the updated promotion.
    async fn evaluate(
        &self,
        registry: &PluginRegistry,
        actor: &Actor,
        model: &str,
        found: &model_version::Model,
        promotion: promotion::Model,
    ) -> Result<PromotionView, GateError> {
        let version = u64::try_from(found.version).unwrap_or_default();
        let policies = self.store.alias_policies(model, &promotion.alias).await?;
        let approvals = self.store.approvals(promotion.id).await?;
        let mut evaluated = Vec::with_capacity(policies.len());
        if !policies.is_empty() {
            let request = self
                .promotion_request(model, found, &promotion, &approvals)
                .await?;
            for policy in &policies {
                evaluated.push(self.decide(registry, policy, &request).await?);
            }
        }

        let rows: Vec<PolicyDecisionRow> = evaluated.iter().map(decision_row).collect();
        let outcome = combine(&evaluated);
        let updated = self
            .store
            .record_decisions(&actor.name, promotion.id, &rows, outcome)
            .await?;
        log_outcome(model, version, &updated);

        let needed = needed_approvals(&evaluated);
        let decisions = evaluated.into_iter().map(decision_view).collect();
        Ok(promotion_view(
            model, version, updated, approvals, decisions, needed,
        ))
    }

    /// Builds the request that policies receive for a promotion.
    async fn promotion_request(
        &self,
        model: &str,
        found: &model_version::Model,
        promotion: &promotion::Model,
        approvals: &[approval::Model],
    ) -> Result<PromotionRequest, GateError> {
        let (run, validations) = match &found.run_id {
            Some(run_id) => (
                summary::run_summary(&self.store, run_id).await?,
                self.recorded_checks(run_id, found.id).await?,
            ),
            None => (RunSummary::default(), Vec::new()),
        };
        Ok(PromotionRequest {
            model: model.to_owned(),
            version: u64::try_from(found.version).unwrap_or_default(),
            alias: promotion.alias.clone(),
            requester: promotion.requester.clone(),
            run,
            validations,
            lineage: summary::lineage_summary(&self.store, &found.artifact_digest).await?,
            approvals: approvals
                .iter()
                .map(|given| Approval {
                    approver: given.approver.clone(),
                    role: given.role.clone(),
                    approved_at_ms: given.created_at,
                    comment: given.comment.clone(),
                })
                .collect(),
        })
    }

    /// Lists the checks of the run's pipeline validations and of those made for this version.
    ///
    /// Checks that gate a promotion come from the pipeline or the model's validators.
    /// Validations someone ran by hand are shown with the run but left out here. Otherwise one
    /// ad hoc check with a mistake in its configuration would block every version of the run.
    async fn recorded_checks(
        &self,
        run_id: &str,
        version_id: i64,
    ) -> Result<Vec<RecordedCheck>, GateError> {
        let stored = self.store.run_validations(run_id).await?;
        let checks = stored
            .into_iter()
            .filter(|record| record.trigger != ValidationTrigger::Manual)
            .filter(|record| record.model_version_id.is_none_or(|id| id == version_id))
            .flat_map(|record| {
                let (validator, digest) = (record.plugin, record.plugin_digest);
                record.checks.into_iter().map(move |check| RecordedCheck {
                    validator: validator.clone(),
                    validator_digest: digest.clone(),
                    check: Check {
                        name: check.name,
                        passed: check.passed,
                        severity: parse_severity(&check.severity),
                        message: check.message,
                    },
                })
            })
            .collect();
        Ok(checks)
    }

    /// Asks one policy. Any failure to get a well-formed decision becomes a deny naming the
    /// plugin and the cause.
    async fn decide(
        &self,
        registry: &PluginRegistry,
        policy: &Attachment,
        request: &PromotionRequest,
    ) -> Result<Evaluated, GateError> {
        let plugin = match find_plugin(registry, PluginKind::Policy, &policy.plugin) {
            Ok(plugin) => plugin,
            Err(cause) => {
                let reason = format!(
                    "policy {} is not available, so the promotion is denied: {cause}",
                    policy.plugin
                );
                return Ok(denied(&policy.plugin, "", reason));
            }
        };
        let (id, digest) = (plugin.id(), plugin.digest.clone());

        let runtime = self.runtime.clone();
        let (request, config) = (request.clone(), policy.config.clone());
        let report =
            tokio::task::spawn_blocking(move || runtime.call_policy(&plugin, &request, &config))
                .await
                .map_err(|error| GateError::Host(format!("policy call thread failed: {error}")))?;

        let checked = report
            .map_err(|error| error.to_string())
            .and_then(|report| report.outcome.map_err(|error| error.to_string()))
            .and_then(check_decision);
        Ok(match checked {
            Ok(decision) => Evaluated {
                plugin: id,
                digest,
                decision,
            },
            Err(cause) => {
                let reason = format!(
                    "policy {id} (digest {digest}) failed, so the promotion is denied: {cause}"
                );
                denied(&id, &digest, reason)
            }
        })
    }

    async fn version_number(&self, model: &str, version_id: i64) -> Result<u64, GateError> {
        let found = self.store.model_version_by_id(version_id).await?;
        let number = found.map_or(0, |version| version.version);
        if number == 0 {
            tracing::warn!(model, version_id, "promotion names a version that is gone");
        }
        Ok(u64::try_from(number).unwrap_or_default())
    }
}

/// Rejects malformed decisions: pending with a count of 0 or an unknown role, and a deny
/// without a reason.
fn check_decision(decision: Decision) -> Result<Decision, String> {
    match &decision {
        Decision::Pending { count: 0, .. } => {
            Err("it returned pending with a count of 0 approvals".to_owned())
        }
        Decision::Pending { role, .. } if role.parse::<Role>().is_err() => Err(format!(
            "it returned pending with the unknown role `{role}`; expected viewer, editor, \
             approver or admin"
        )),
        Decision::Deny { reason } if reason.trim().is_empty() => {
            Err("it returned a deny without a reason".to_owned())
        }
        _ => Ok(decision),
    }
}

fn denied(plugin: &str, digest: &str, reason: String) -> Evaluated {
    tracing::warn!(plugin, digest, reason = %reason, "policy failed, promotion denied");
    Evaluated {
        plugin: plugin.to_owned(),
        digest: digest.to_owned(),
        decision: Decision::Deny { reason },
    }
}

/// Any deny denies, else any pending waits, else the promotion completes.
fn combine(evaluated: &[Evaluated]) -> PromotionOutcome {
    let denials: Vec<String> = evaluated
        .iter()
        .filter_map(|one| match &one.decision {
            Decision::Deny { reason } if reason.contains(&one.plugin) => Some(reason.clone()),
            Decision::Deny { reason } => Some(format!("{}: {reason}", one.plugin)),
            _ => None,
        })
        .collect();
    if !denials.is_empty() {
        return PromotionOutcome::Denied {
            reason: denials.join("; "),
        };
    }
    let waiting = evaluated
        .iter()
        .any(|one| matches!(one.decision, Decision::Pending { .. }));
    if waiting {
        PromotionOutcome::Pending
    } else {
        PromotionOutcome::Completed
    }
}

fn decision_row(evaluated: &Evaluated) -> PolicyDecisionRow {
    let view = decision_parts(&evaluated.decision);
    let needed = match &evaluated.decision {
        Decision::Pending {
            count,
            role,
            reason,
        } => Some(StoredNeed {
            count: *count,
            role: role.clone(),
            reason: reason.clone(),
        }),
        _ => None,
    };
    PolicyDecisionRow {
        plugin: evaluated.plugin.clone(),
        plugin_digest: evaluated.digest.clone(),
        decision: view.0.to_owned(),
        reason: view.1,
        needed,
    }
}

/// Returns the approvals a pending promotion still needs, from its stored decisions; empty once
/// it is decided.
fn pending_needs(promotion: &promotion::Model, rows: &[PolicyDecisionRow]) -> Vec<NeededApprovals> {
    if promotion.status == StoredStatus::Pending {
        stored_needed(rows)
    } else {
        Vec::new()
    }
}

/// Lists the approvals still needed according to the stored decisions of a promotion.
fn stored_needed(rows: &[PolicyDecisionRow]) -> Vec<NeededApprovals> {
    rows.iter()
        .filter_map(|row| {
            let needed = row.needed.as_ref()?;
            Some(NeededApprovals {
                plugin: row.plugin.clone(),
                count: needed.count,
                role: needed.role.clone(),
                reason: needed.reason.clone(),
            })
        })
        .collect()
}

/// Returns the decision's name as stored and its reason as shown.
fn decision_parts(decision: &Decision) -> (&'static str, String) {
    match decision {
        Decision::Allow => ("allow", String::new()),
        Decision::Deny { reason } => ("deny", reason.clone()),
        Decision::Pending {
            count,
            role,
            reason,
        } => (
            "pending",
            format!("needs {count} more approval(s) by role {role} or higher: {reason}"),
        ),
    }
}

fn decision_view(evaluated: Evaluated) -> PolicyDecisionView {
    let (name, reason) = decision_parts(&evaluated.decision);
    let decision = match name {
        "allow" => DecisionKind::Allow,
        "deny" => DecisionKind::Deny,
        _ => DecisionKind::Pending,
    };
    PolicyDecisionView {
        plugin: evaluated.plugin,
        digest: evaluated.digest,
        decision,
        reason,
    }
}

fn stored_decision_view(row: PolicyDecisionRow) -> PolicyDecisionView {
    let decision = match row.decision.as_str() {
        "allow" => DecisionKind::Allow,
        "pending" => DecisionKind::Pending,
        _ => DecisionKind::Deny,
    };
    PolicyDecisionView {
        plugin: row.plugin,
        digest: row.plugin_digest,
        decision,
        reason: row.reason,
    }
}

fn promotion_view(
    model: &str,
    version: u64,
    promotion: promotion::Model,
    approvals: Vec<approval::Model>,
    decisions: Vec<PolicyDecisionView>,
    needed: Vec<NeededApprovals>,
) -> PromotionView {
    PromotionView {
        id: promotion.id,
        model: model.to_owned(),
        version,
        alias: promotion.alias,
        requester: promotion.requester,
        status: view_status(promotion.status),
        decisions,
        needed,
        approvals: approvals
            .into_iter()
            .map(|given| ApprovalView {
                approver: given.approver,
                role: given.role,
                comment: given.comment,
                created_at: given.created_at,
            })
            .collect(),
        reason: promotion.reason,
        created_at: promotion.created_at,
        decided_at: promotion.decided_at,
    }
}

/// Lists the approvals each waiting policy still needs.
fn needed_approvals(evaluated: &[Evaluated]) -> Vec<NeededApprovals> {
    evaluated
        .iter()
        .filter_map(|one| match &one.decision {
            Decision::Pending {
                count,
                role,
                reason,
            } => Some(NeededApprovals {
                plugin: one.plugin.clone(),
                count: *count,
                role: role.clone(),
                reason: reason.clone(),
            }),
            _ => None,
        })
        .collect()
}

fn log_outcome(model: &str, version: u64, promotion: &promotion::Model) {
    let status = promotion.status.to_string();
    match promotion.status {
        StoredStatus::Denied => tracing::info!(model, version, alias = %promotion.alias,
            promotion_id = promotion.id, status, reason = promotion.reason.as_deref().unwrap_or(""),
            "promotion denied"),
        _ => tracing::info!(model, version, alias = %promotion.alias,
            promotion_id = promotion.id, status, "promotion decided"),
    }
}

fn duplicate(actor: &Actor, model: &str, version: u64, alias: &str) -> GateError {
    GateError::DuplicateApproval {
        approver: actor.name.clone(),
        model: model.to_owned(),
        version,
        alias: alias.to_owned(),
    }
}

fn parse_severity(text: &str) -> Severity {
    match text {
        "warning" => Severity::Warning,
        _ => Severity::Blocking,
    }
}

fn view_status(status: StoredStatus) -> PromotionStatus {
    match status {
        StoredStatus::Pending => PromotionStatus::Pending,
        StoredStatus::Completed => PromotionStatus::Completed,
        StoredStatus::Denied => PromotionStatus::Denied,
        StoredStatus::Superseded => PromotionStatus::Superseded,
    }
}

fn stored_status(status: PromotionStatus) -> StoredStatus {
    match status {
        PromotionStatus::Pending => StoredStatus::Pending,
        PromotionStatus::Completed => StoredStatus::Completed,
        PromotionStatus::Denied => StoredStatus::Denied,
        PromotionStatus::Superseded => StoredStatus::Superseded,
    }
}

/// Converts a version number to the store's column type.
pub(super) fn stored_version(version: u64) -> Result<i64, GateError> {
    i64::try_from(version)
        .map_err(|_| GateError::invalid("version", &version.to_string(), "it is too large"))
}
