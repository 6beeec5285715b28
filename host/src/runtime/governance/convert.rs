//! Conversions between the governance types and their WIT bindings, with the caps that keep a
//! plugin's results small enough to store.

use super::{
    Approval, Check, DatasetRef, Decision, LineageSummary, PromotionRequest, RecordedCheck,
    RunSummary, Severity, StepSummary, SummaryMetric,
};
use crate::runtime::bindings::{governance_types as wit, promotion_policy as policy, types};
use crate::runtime::error::CallError;
use crate::runtime::violations::Limit;

/// Longest check name kept, in characters. Names identify a check in lists and audit entries,
/// so a short line is enough; longer ones are cut and end with `…`.
pub const MAX_CHECK_NAME_CHARS: usize = 200;

/// Longest check message, deny reason or pending reason kept, in characters: room for a
/// paragraph that names values and offenders, small enough that a plugin cannot fill the
/// database. Longer ones are cut and end with `…`.
pub const MAX_MESSAGE_CHARS: usize = 4_000;

/// Most checks one validator call may return; a call returning more fails, because dropping
/// checks could hide a failed one.
pub const MAX_CHECKS: usize = 1_000;

/// Most points `run-data.metric-series` returns to a validator in one call, as the WIT
/// documents.
pub const MAX_SERIES_POINTS: usize = 1_000_000;

/// Cuts `text` to at most `max_chars` characters, marking a cut with a final `…`.
pub(crate) fn cap(text: String, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text,
        Some(_) => {
            let mut capped: String = text.chars().take(max_chars.saturating_sub(1)).collect();
            capped.push('…');
            capped
        }
    }
}

pub(crate) fn metric_to_wit(metric: &SummaryMetric) -> types::Metric {
    types::Metric {
        key: metric.key.clone(),
        value: metric.value,
        step: metric.step,
    }
}

fn dataset_to_wit(dataset: &DatasetRef) -> wit::DatasetRef {
    wit::DatasetRef {
        name: dataset.name.clone(),
        digest: dataset.digest.clone(),
    }
}

fn step_to_wit(step: &StepSummary) -> wit::StepSummary {
    wit::StepSummary {
        name: step.name.clone(),
        status: step.status.clone(),
        plugin_digest: step.plugin_digest.clone(),
        cached: step.cached,
    }
}

pub(crate) fn run_to_wit(run: &RunSummary) -> wit::RunSummary {
    wit::RunSummary {
        run_id: run.run_id.clone(),
        name: run.name.clone(),
        pipeline: run.pipeline.clone(),
        status: run.status.clone(),
        author: run.author.clone(),
        params: run
            .params
            .iter()
            .map(|(name, value)| types::Param {
                name: name.clone(),
                value_json: value.clone(),
            })
            .collect(),
        metrics: run.metrics.iter().map(metric_to_wit).collect(),
        tags: run
            .tags
            .iter()
            .map(|(key, value)| wit::Tag {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        steps: run.steps.iter().map(step_to_wit).collect(),
        input_datasets: run.input_datasets.iter().map(dataset_to_wit).collect(),
    }
}

fn severity_to_wit(severity: Severity) -> wit::Severity {
    match severity {
        Severity::Blocking => wit::Severity::Blocking,
        Severity::Warning => wit::Severity::Warning,
    }
}

fn check_to_wit(check: &Check) -> wit::Check {
    wit::Check {
        name: check.name.clone(),
        passed: check.passed,
        severity: severity_to_wit(check.severity),
        message: check.message.clone(),
    }
}

fn recorded_to_wit(recorded: &RecordedCheck) -> wit::RecordedCheck {
    wit::RecordedCheck {
        validator: recorded.validator.clone(),
        validator_digest: recorded.validator_digest.clone(),
        check: check_to_wit(&recorded.check),
    }
}

fn approval_to_wit(approval: &Approval) -> policy::Approval {
    policy::Approval {
        approver: approval.approver.clone(),
        role: approval.role.clone(),
        approved_at: approval.approved_at_ms,
        comment: approval.comment.clone(),
    }
}

fn lineage_to_wit(lineage: &LineageSummary) -> policy::LineageSummary {
    policy::LineageSummary {
        artifact_digest: lineage.artifact_digest.clone(),
        datasets: lineage.datasets.iter().map(dataset_to_wit).collect(),
    }
}

pub(crate) fn request_to_wit(request: &PromotionRequest) -> policy::PromotionRequest {
    policy::PromotionRequest {
        model: request.model.clone(),
        version: request.version,
        alias: request.alias.clone(),
        requester: request.requester.clone(),
        run: run_to_wit(&request.run),
        validations: request.validations.iter().map(recorded_to_wit).collect(),
        lineage: lineage_to_wit(&request.lineage),
        approvals: request.approvals.iter().map(approval_to_wit).collect(),
    }
}

/// Converts a validator's checks, capping names and messages and failing past [`MAX_CHECKS`].
pub(crate) fn checks_from_wit(checks: Vec<wit::Check>) -> Result<Vec<Check>, CallError> {
    if checks.len() > MAX_CHECKS {
        return Err(CallError::LimitExceeded {
            limit: Limit::Checks {
                checks: MAX_CHECKS,
                returned: checks.len(),
            },
        });
    }
    let checks = checks
        .into_iter()
        .map(|check| Check {
            name: cap(check.name, MAX_CHECK_NAME_CHARS),
            passed: check.passed,
            severity: match check.severity {
                wit::Severity::Blocking => Severity::Blocking,
                wit::Severity::Warning => Severity::Warning,
            },
            message: cap(check.message, MAX_MESSAGE_CHARS),
        })
        .collect();
    Ok(checks)
}

/// Converts a policy's decision, capping its reason and role.
pub(crate) fn decision_from_wit(decision: policy::Decision) -> Decision {
    match decision {
        policy::Decision::Allow => Decision::Allow,
        policy::Decision::Deny(reason) => Decision::Deny {
            reason: cap(reason, MAX_MESSAGE_CHARS),
        },
        policy::Decision::Pending(pending) => Decision::Pending {
            count: pending.count,
            role: cap(pending.role, MAX_CHECK_NAME_CHARS),
            reason: cap(pending.reason, MAX_MESSAGE_CHARS),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_keeps_short_text() {
        assert_eq!(cap("rmse".into(), 4), "rmse");
    }

    #[test]
    fn cap_cuts_on_characters_and_marks_the_cut() {
        let capped = cap("ééééé".into(), 3);

        assert_eq!(capped, "éé…");
        assert_eq!(capped.chars().count(), 3);
    }

    #[test]
    fn too_many_checks_fail_naming_the_count() {
        let check = wit::Check {
            name: "c".into(),
            passed: true,
            severity: wit::Severity::Warning,
            message: String::new(),
        };

        let error = checks_from_wit(vec![check; MAX_CHECKS + 1]).unwrap_err();

        assert_eq!(
            error,
            CallError::LimitExceeded {
                limit: Limit::Checks {
                    checks: MAX_CHECKS,
                    returned: MAX_CHECKS + 1
                }
            }
        );
    }

    #[test]
    fn decision_reason_is_capped() {
        let decision = decision_from_wit(policy::Decision::Deny("x".repeat(5_000)));

        let Decision::Deny { reason } = decision else {
            panic!("expected a deny, got {decision:?}");
        };
        assert_eq!(reason.chars().count(), MAX_MESSAGE_CHARS);
        assert!(reason.ends_with('…'));
    }
}
