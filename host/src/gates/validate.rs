//! Attachment checks and validator calls: judging a run and recording the checks.

use super::run_data::StoreRunData;
use super::views::{CheckView, ValidationRecord};
use super::{Actor, GateError, Gates, Trigger, ValidatorSpec, summary};
use crate::runtime::{Check, Plugin, PluginKind, PluginRegistry, RunSummary, Severity};
use crate::store::{Attachment, CheckRow, NewValidation, ValidationTrigger};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The validations one [`Gates::validate_run`] call recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ValidationOutcome {
    /// One record per validator, in the order given.
    pub records: Vec<ValidationRecord>,
    /// Failed blocking checks, counting each validator that could not judge the run as one.
    pub blocking_failures: usize,
    /// Failed warning checks.
    pub warnings: usize,
}

impl Gates {
    /// Checks attachments before they are stored: each plugin exists, is of `kind`, and its
    /// configuration passes the plugin's config schema. The first problem found is returned,
    /// naming the attachment's index, the plugin and the path into the configuration.
    pub fn check_specs(
        &self,
        registry: &PluginRegistry,
        kind: PluginKind,
        specs: &[ValidatorSpec],
    ) -> Result<(), GateError> {
        resolve_specs(registry, kind, specs).map(|_| ())
    }

    /// Runs each validator of `specs` on a run, one after another, and records each result
    /// with `trigger` and, for [`Trigger::ModelVersion`], the version's row id.
    ///
    /// A validator that is missing, cannot be loaded, traps or returns an error is recorded
    /// with that error and a failed blocking check named after it, so it blocks like a failed
    /// check. Fails with [`GateError::Store`] when the run does not exist.
    pub async fn validate_run(
        &self,
        registry: &PluginRegistry,
        actor: &Actor,
        run_id: &str,
        specs: &[ValidatorSpec],
        trigger: Trigger,
        model_version_id: Option<i64>,
    ) -> Result<ValidationOutcome, GateError> {
        let run = summary::run_summary(&self.store, run_id).await?;
        let mut ids = HashSet::new();
        for spec in specs {
            let new = self
                .judge(registry, &run, spec, trigger, model_version_id)
                .await?;
            ids.insert(self.store.record_validation(&actor.name, new).await?);
        }

        let records: Vec<ValidationRecord> = self
            .run_validations(run_id)
            .await?
            .into_iter()
            .filter(|record| ids.contains(&record.id))
            .collect();
        Ok(outcome_of(records))
    }

    /// Lists every validation recorded for a run, oldest first.
    pub async fn run_validations(&self, run_id: &str) -> Result<Vec<ValidationRecord>, GateError> {
        self.store.require_run(run_id).await?;
        let stored = self.store.run_validations(run_id).await?;
        Ok(stored.into_iter().map(validation_view).collect())
    }

    /// Calls one validator on a run and returns what to record.
    async fn judge(
        &self,
        registry: &PluginRegistry,
        run: &RunSummary,
        spec: &ValidatorSpec,
        trigger: Trigger,
        model_version_id: Option<i64>,
    ) -> Result<NewValidation, GateError> {
        let mut new = NewValidation {
            run_id: run.run_id.clone(),
            model_version_id,
            trigger: stored_trigger(trigger),
            plugin: spec.plugin.clone(),
            plugin_digest: String::new(),
            config: spec.config.clone(),
            error: None,
            checks: Vec::new(),
        };
        let plugin = match find_plugin(registry, PluginKind::MetricValidator, &spec.plugin) {
            Ok(plugin) => plugin,
            Err(cause) => return Ok(failed(new, cause)),
        };
        new.plugin = plugin.id();
        new.plugin_digest = plugin.digest.clone();

        match self.call_validator(plugin, run, &spec.config).await? {
            Ok(checks) => {
                new.checks = normalise_checks(&new.plugin, checks);
                Ok(new)
            }
            Err(cause) => Ok(failed(new, cause)),
        }
    }

    /// Calls a validator on a blocking thread. The inner `Err` is why the validator could not
    /// judge the run.
    async fn call_validator(
        &self,
        plugin: Arc<Plugin>,
        run: &RunSummary,
        config: &serde_json::Value,
    ) -> Result<Result<Vec<Check>, String>, GateError> {
        let runtime = self.runtime.clone();
        let data = StoreRunData::new(
            self.store.clone(),
            tokio::runtime::Handle::current(),
            &run.run_id,
        );
        let (run, config) = (run.clone(), config.clone());
        let call = tokio::task::spawn_blocking(move || {
            let report = runtime.call_validator(&plugin, &run, &config, Box::new(data));
            (plugin, report)
        });
        let (plugin, report) = call
            .await
            .map_err(|error| GateError::Host(format!("validator call thread failed: {error}")))?;

        let report = match report {
            Ok(report) => report,
            Err(error) => return Ok(Err(error.to_string())),
        };
        for line in &report.logs {
            tracing::debug!(plugin = %plugin.id(), level = %line.level, message = %line.message,
                "validator log");
        }
        Ok(report.outcome.map_err(|error| error.to_string()))
    }
}

/// Resolves attachments to `name@version` with their configurations, or returns the first
/// problem.
pub(super) fn resolve_specs(
    registry: &PluginRegistry,
    kind: PluginKind,
    specs: &[ValidatorSpec],
) -> Result<Vec<Attachment>, GateError> {
    let list = match kind {
        PluginKind::Policy => "policies",
        _ => "validators",
    };
    specs
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let invalid = |message: String| GateError::InvalidSpec {
                list,
                index,
                plugin: spec.plugin.clone(),
                message,
            };
            let plugin = find_plugin(registry, kind, &spec.plugin).map_err(invalid)?;
            check_config(&plugin, &spec.config).map_err(invalid)?;
            Ok(Attachment {
                plugin: plugin.id(),
                config: spec.config.clone(),
            })
        })
        .collect()
}

/// Resolves a plugin and checks its kind. The error message describes the problem.
pub(super) fn find_plugin(
    registry: &PluginRegistry,
    kind: PluginKind,
    spec: &str,
) -> Result<Arc<Plugin>, String> {
    let plugin = registry.resolve(spec).map_err(|error| error.to_string())?;
    if plugin.manifest.kind != kind {
        return Err(format!(
            "plugin {} is a {} plugin, not a {} plugin",
            plugin.id(),
            plugin.manifest.kind.world(),
            kind.world()
        ));
    }
    Ok(plugin)
}

fn check_config(plugin: &Plugin, config: &serde_json::Value) -> Result<(), String> {
    let Err(invalid) = plugin.validate_config(config) else {
        return Ok(());
    };
    let problems: Vec<String> = invalid
        .violations
        .iter()
        .map(|violation| format!("config at {}: {}", violation.path, violation.message))
        .collect();
    Err(format!(
        "{}; `runledger plugins show {}` prints the config schema",
        problems.join("; "),
        plugin.id()
    ))
}

/// Records a validator that could not judge the run as one failed blocking check.
fn failed(mut new: NewValidation, cause: String) -> NewValidation {
    tracing::warn!(plugin = %new.plugin, run_id = %new.run_id, cause = %cause,
        "validator could not judge the run");
    new.checks = vec![CheckRow {
        name: new.plugin.clone(),
        passed: false,
        severity: severity_text(Severity::Blocking).to_owned(),
        message: format!("validator {} could not judge the run: {cause}", new.plugin),
    }];
    new.error = Some(cause);
    new
}

/// Gives every check a unique, non-empty name. A check without a name becomes `check N` (its
/// position from 1), and a repeated name gets ` (N)` for its Nth use. The message notes the change.
fn normalise_checks(plugin: &str, checks: Vec<Check>) -> Vec<CheckRow> {
    let mut uses: HashMap<String, usize> = HashMap::new();
    let mut rows = Vec::with_capacity(checks.len());
    for (index, check) in checks.into_iter().enumerate() {
        let mut name = check.name.trim().to_owned();
        let mut message = check.message;
        if name.is_empty() {
            name = format!("check {}", index + 1);
            message.push_str(" (named by the host: the validator gave this check no name)");
            tracing::warn!(
                plugin,
                position = index + 1,
                "validator returned an unnamed check"
            );
        }
        let count = uses.entry(name.clone()).or_default();
        *count += 1;
        if *count > 1 {
            message.push_str(&format!(
                " (renamed by the host: the validator returned `{name}` more than once)"
            ));
            tracing::warn!(plugin, check = %name, "validator returned a check name twice");
            name = format!("{name} ({count})");
        }
        rows.push(CheckRow {
            name,
            passed: check.passed,
            severity: severity_text(check.severity).to_owned(),
            message,
        });
    }
    rows
}

fn severity_text(severity: Severity) -> &'static str {
    match severity {
        Severity::Blocking => "blocking",
        Severity::Warning => "warning",
    }
}

fn stored_trigger(trigger: Trigger) -> ValidationTrigger {
    match trigger {
        Trigger::Pipeline => ValidationTrigger::Pipeline,
        Trigger::ModelVersion => ValidationTrigger::ModelVersion,
        Trigger::Manual => ValidationTrigger::Manual,
    }
}

/// Converts a stored validation to its view.
pub(super) fn validation_view(stored: crate::store::ValidationRecord) -> ValidationRecord {
    ValidationRecord {
        id: stored.id,
        run_id: stored.run_id,
        model_version_id: stored.model_version_id,
        trigger: stored.trigger.to_string(),
        plugin: stored.plugin,
        plugin_digest: stored.plugin_digest,
        config: stored.config,
        error: stored.error,
        created_at: stored.created_at,
        checks: stored
            .checks
            .into_iter()
            .map(|check| CheckView {
                name: check.name,
                passed: check.passed,
                severity: check.severity,
                message: check.message,
            })
            .collect(),
    }
}

fn outcome_of(records: Vec<ValidationRecord>) -> ValidationOutcome {
    let failed_with = |severity: &str| {
        records
            .iter()
            .flat_map(|record| &record.checks)
            .filter(|check| !check.passed && check.severity == severity)
            .count()
    };
    ValidationOutcome {
        blocking_failures: failed_with("blocking"),
        warnings: failed_with("warning"),
        records,
    }
}
