//! Deciding from the checks recorded for a model version.

/// The parts of a recorded check this policy reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckView<'a> {
    /// The validator that made the check, as `name@version`.
    pub validator: &'a str,
    /// The check's name.
    pub name: &'a str,
    /// Whether the run passed it.
    pub passed: bool,
    /// Whether a failure blocks promotion.
    pub blocking: bool,
    /// The check's message.
    pub message: &'a str,
}

/// The version under promotion, named in messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Subject<'a> {
    /// The registered model.
    pub model: &'a str,
    /// The version under promotion.
    pub version: u64,
    /// The run behind the version.
    pub run_id: &'a str,
}

/// Returns the reason to deny the promotion, or `None` to allow it. Failed warning checks
/// never deny; failed blocking checks always do, listed in the order given.
pub fn deny_reason(
    checks: &[CheckView],
    require_checks: bool,
    subject: &Subject,
) -> Option<String> {
    if checks.is_empty() {
        return require_checks.then(|| no_checks_reason(subject));
    }

    let failures: Vec<String> = checks
        .iter()
        .filter(|check| check.blocking && !check.passed)
        .map(|check| {
            format!(
                "`{}` from {}: {}",
                check.name, check.validator, check.message
            )
        })
        .collect();
    if failures.is_empty() {
        return None;
    }
    let count = failures.len();
    let noun = if count == 1 { "check" } else { "checks" };
    Some(format!(
        "{count} blocking {noun} failed for version {} of model `{}` (run {}): {}",
        subject.version,
        subject.model,
        subject.run_id,
        failures.join("; ")
    ))
}

fn no_checks_reason(subject: &Subject) -> String {
    format!(
        "no validation checks are recorded for version {} of model `{}` (run {}); attach \
         validators to the model so that its versions are validated, or set `require-checks` \
         to false",
        subject.version, subject.model, subject.run_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: Subject<'static> = Subject {
        model: "wine-quality",
        version: 3,
        run_id: "run-7",
    };

    fn check<'a>(validator: &'a str, name: &'a str, passed: bool, blocking: bool) -> CheckView<'a> {
        CheckView {
            validator,
            name,
            passed,
            blocking,
            message: "measured",
        }
    }

    #[test]
    fn denies_failed_blocking_checks_in_order() {
        let checks = [
            check("metric-threshold@0.1.0", "test_rmse <= 0.75", false, true),
            check("metric-threshold@0.1.0", "test_r2 >= 0.25", true, true),
            check("finite-metrics@0.1.0", "loss", false, false),
            check("finite-metrics@0.1.0", "train_loss", false, true),
        ];
        let reason = deny_reason(&checks, true, &SUBJECT).unwrap();
        assert_eq!(
            reason,
            "2 blocking checks failed for version 3 of model `wine-quality` (run run-7): \
             `test_rmse <= 0.75` from metric-threshold@0.1.0: measured; `train_loss` from \
             finite-metrics@0.1.0: measured"
        );
    }

    #[test]
    fn allows_when_only_warnings_fail() {
        let checks = [
            check("metric-threshold@0.1.0", "test_rmse <= 0.75", true, true),
            check("finite-metrics@0.1.0", "loss", false, false),
        ];
        assert_eq!(deny_reason(&checks, true, &SUBJECT), None);
    }

    #[test]
    fn no_checks_follow_require_checks() {
        let reason = deny_reason(&[], true, &SUBJECT).unwrap();
        assert!(
            reason.starts_with("no validation checks are recorded for version 3"),
            "{reason}"
        );
        assert!(reason.contains("`require-checks`"), "{reason}");

        assert_eq!(deny_reason(&[], false, &SUBJECT), None);
    }

    #[test]
    fn single_failure_is_singular() {
        let checks = [check("v@1.0.0", "c", false, true)];
        let reason = deny_reason(&checks, false, &SUBJECT).unwrap();
        assert!(reason.starts_with("1 blocking check failed"), "{reason}");
    }
}
