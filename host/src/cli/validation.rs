//! Printing the checks of metric validators, shared by `run`, `runs` and `models`.

use super::runs::time;
use crate::gates::{CheckView, ValidationRecord};

/// Exit status when a blocking check failed or a validator could not judge the run, so that a
/// CI job can stop on it.
pub(crate) const EXIT_BLOCKED: u8 = 3;

/// Checks of a list of validations, counted by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Checks that passed.
    pub(crate) passed: usize,
    /// Failed blocking checks, plus one per validator that could not judge the run.
    pub(crate) blocking: usize,
    /// Failed warning checks.
    pub(crate) warnings: usize,
}

impl Tally {
    /// Counts the checks of `records`.
    pub(crate) fn of(records: &[ValidationRecord]) -> Self {
        let mut tally = Self::default();
        for record in records {
            if record.error.is_some() && record.checks.iter().all(|check| check.passed) {
                tally.blocking += 1;
            }
            for check in &record.checks {
                match verdict(check) {
                    Verdict::Pass => tally.passed += 1,
                    Verdict::Fail => tally.blocking += 1,
                    Verdict::Warn => tally.warnings += 1,
                }
            }
        }
        tally
    }
}

/// The outcome of one check as printed, which shows a failed warning check apart from a failed
/// blocking one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail,
    Warn,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Warn => "WARN",
        }
    }
}

fn verdict(check: &CheckView) -> Verdict {
    match (check.passed, check.severity.as_str()) {
        (true, _) => Verdict::Pass,
        (false, "warning") => Verdict::Warn,
        (false, _) => Verdict::Fail,
    }
}

/// Prints each validation with its checks under a `validations` heading; prints nothing for
/// an empty list.
pub(crate) fn print_validations(records: &[ValidationRecord]) {
    if records.is_empty() {
        return;
    }
    println!("validations");
    for record in records {
        println!(
            "  {}  ({} validation {}, {} UTC)",
            record.plugin,
            record.trigger,
            record.id,
            time(record.created_at)
        );
        if let Some(error) = &record.error {
            println!("    ERROR  the validator could not judge the run: {error}");
        }
        for check in &record.checks {
            println!(
                "    {}  {:<8}  {}: {}",
                verdict(check).label(),
                check.severity,
                check.name,
                check.message
            );
        }
    }
}

/// Prints one line with the count of checks and whether a blocking check failed.
pub(crate) fn print_tally(tally: Tally) {
    let verdict = if tally.blocking > 0 {
        "blocked"
    } else {
        "passed"
    };
    println!(
        "validation {verdict}: {} passed, {} blocking failed, {} warnings",
        tally.passed, tally.blocking, tally.warnings
    );
}
