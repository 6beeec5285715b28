//! The WIT world of each plugin kind: which imports a component of that kind may have, and its
//! pre-instantiated form.

use super::bindings::StepExecutorPre;
use super::bindings::policy::PolicyPre;
use super::bindings::validator::MetricValidatorPre;
use super::error::RuntimeError;
use super::manifest::PluginKind;
use super::state::CallState;
use wasmtime::component::{Component, Linker};

/// A component pre-instantiated against its kind's world.
pub(crate) enum WorldPre {
    /// A `step-executor`.
    Step(StepExecutorPre<CallState>),
    /// A `metric-validator`.
    Validator(MetricValidatorPre<CallState>),
    /// A `policy`.
    Policy(PolicyPre<CallState>),
}

/// Returns the `runledger:plugin` interfaces the world of `kind` imports, directly or through
/// the types its interfaces use, or `None` for a kind without a world. Every world may also
/// import WASI 0.2.
fn allowed_interfaces(kind: PluginKind) -> Option<&'static [&'static str]> {
    match kind {
        PluginKind::StepExecutor => Some(&["types", "logging", "metrics", "artifacts"]),
        PluginKind::MetricValidator => Some(&["types", "logging", "governance-types", "run-data"]),
        PluginKind::Policy => Some(&["types", "logging", "governance-types"]),
        PluginKind::StorageBackend => None,
    }
}

/// Checks that `imports` stay within the world of `kind`. The runtime's one linker defines the
/// imports of every world, so without this a policy could call `artifacts` or `run-data`.
fn check_imports(plugin: &str, kind: PluginKind, imports: &[String]) -> Result<(), RuntimeError> {
    let allowed = allowed_interfaces(kind).unwrap_or_default();
    let forbidden = imports.iter().find(|import| {
        if import.starts_with("wasi:") {
            return false;
        }
        let unversioned = import.split('@').next().unwrap_or_default();
        let interface = unversioned.strip_prefix("runledger:plugin/");
        !interface.is_some_and(|interface| allowed.contains(&interface))
    });
    let Some(import) = forbidden else {
        return Ok(());
    };
    let allowed: Vec<String> = allowed
        .iter()
        .map(|interface| format!("`runledger:plugin/{interface}`"))
        .collect();
    Err(RuntimeError::ForbiddenImport {
        plugin: plugin.to_owned(),
        world: kind.world().to_owned(),
        import: import.clone(),
        allowed: allowed.join(", "),
    })
}

/// Checks the component's imports against the world of `kind`, then pre-instantiates it,
/// which fails when an export of the world is missing or mistyped.
pub(crate) fn prepare(
    linker: &Linker<CallState>,
    component: &Component,
    plugin: &str,
    kind: PluginKind,
    imports: &[String],
) -> Result<WorldPre, RuntimeError> {
    let unsupported = || RuntimeError::UnsupportedKind {
        plugin: plugin.to_owned(),
        kind: kind.world().to_owned(),
    };
    if allowed_interfaces(kind).is_none() {
        return Err(unsupported());
    }
    check_imports(plugin, kind, imports)?;

    let world_error = |error: wasmtime::Error| RuntimeError::WorldMismatch {
        plugin: plugin.to_owned(),
        world: kind.world().to_owned(),
        message: format!("{error:#}"),
    };
    let instance_pre = linker.instantiate_pre(component).map_err(world_error)?;
    let pre = match kind {
        PluginKind::StepExecutor => {
            WorldPre::Step(StepExecutorPre::new(instance_pre).map_err(world_error)?)
        }
        PluginKind::MetricValidator => {
            WorldPre::Validator(MetricValidatorPre::new(instance_pre).map_err(world_error)?)
        }
        PluginKind::Policy => WorldPre::Policy(PolicyPre::new(instance_pre).map_err(world_error)?),
        PluginKind::StorageBackend => return Err(unsupported()),
    };
    Ok(pre)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imports(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn policy_importing_artifacts_is_rejected_naming_both() {
        let list = imports(&[
            "wasi:cli/stderr@0.2.6",
            "runledger:plugin/types@0.1.0",
            "runledger:plugin/artifacts@0.1.0",
        ]);

        let error = check_imports("p@0.1.0", PluginKind::Policy, &list)
            .unwrap_err()
            .to_string();

        assert!(
            error.contains("`runledger:plugin/artifacts@0.1.0`"),
            "{error}"
        );
        assert!(error.contains("`policy` world"), "{error}");
    }

    #[test]
    fn run_data_import_allowed_for_validators_only() {
        let list = imports(&["runledger:plugin/run-data@0.1.0"]);

        assert!(check_imports("v@0.1.0", PluginKind::MetricValidator, &list).is_ok());
        assert!(check_imports("p@0.1.0", PluginKind::Policy, &list).is_err());
        assert!(check_imports("s@0.1.0", PluginKind::StepExecutor, &list).is_err());
    }

    #[test]
    fn foreign_packages_are_rejected() {
        let list = imports(&["acme:secrets/vault@1.0.0"]);

        let error = check_imports("s@0.1.0", PluginKind::StepExecutor, &list).unwrap_err();

        assert!(error.to_string().contains("acme:secrets/vault"), "{error}");
    }
}
