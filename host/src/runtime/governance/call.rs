//! `Runtime::call_validator` and `Runtime::call_policy`: a fresh store per call with the
//! plugin's limits, deterministic clocks and randomness, no scratch directory and no artifacts.

use super::convert;
use super::{Check, Decision, GovernanceReport, PromotionRequest, RunData, RunSummary};
use crate::runtime::call::{self, CallSetup, Finished, RawFailure, Sandbox};
use crate::runtime::io::{ArtifactIo, ArtifactRef, InputSource, OutputSink};
use crate::runtime::manifest::PluginKind;
use crate::runtime::registry::Plugin;
use crate::runtime::worlds::WorldPre;
use crate::runtime::{Runtime, RuntimeError, Wasm};

/// Seed of WASI randomness in validator and policy calls. The value is fixed, so the same input
/// always gets the same result.
const GOVERNANCE_SEED: u64 = 0x5eed_90fe_2a4c_e001;

/// The artifact I/O of calls whose world has no `artifacts` import: the import check at load
/// keeps these from ever being used, and they fail if they are.
struct NoArtifacts;

impl ArtifactIo for NoArtifacts {
    fn open_input(&mut self, artifact: &ArtifactRef) -> std::io::Result<Box<dyn InputSource>> {
        Err(std::io::Error::other(format!(
            "no artifacts in this call (asked for `{}`)",
            artifact.name
        )))
    }

    fn create_output(
        &mut self,
        name: &str,
        _media_type: &str,
    ) -> std::io::Result<Box<dyn OutputSink>> {
        Err(std::io::Error::other(format!(
            "no artifacts in this call (asked to create `{name}`)"
        )))
    }
}

fn sandbox(run_data: Option<Box<dyn RunData>>) -> Sandbox {
    Sandbox {
        seed: GOVERNANCE_SEED,
        deterministic: true,
        cancel: None,
        io: Box::new(NoArtifacts),
        inputs: Vec::new(),
        outputs: Vec::new(),
        run_data,
    }
}

fn into_report<T>(finished: Finished<T>) -> GovernanceReport<T> {
    GovernanceReport {
        outcome: finished.outcome,
        logs: finished.logs,
        usage: finished.usage,
    }
}

impl Runtime {
    /// Validates `config` against the plugin's config schema, checks that the plugin is a
    /// metric validator, then calls its `validate` in a fresh store with the plugin's limits.
    ///
    /// Returns `Err` when the plugin cannot be called at all: wrong kind, invalid
    /// configuration, or a component that does not load or does not implement its world. A call
    /// that starts always yields a report. Its outcome is `Err` when the plugin returned an
    /// error value, trapped, ran out of fuel, time or memory, or returned more than
    /// [`MAX_CHECKS`](super::MAX_CHECKS) checks. Blocks the current thread for the duration of
    /// the call, so async callers run it in `tokio::task::spawn_blocking`.
    pub fn call_validator(
        &self,
        plugin: &Plugin,
        run: &RunSummary,
        config: &serde_json::Value,
        data: Box<dyn RunData>,
    ) -> Result<GovernanceReport<Vec<Check>>, RuntimeError> {
        Self::require_kind(plugin, PluginKind::MetricValidator)?;
        plugin.validate_config(config)?;
        let prepared = self.prepared(plugin)?;
        let WorldPre::Validator(pre) = &prepared.pre else {
            return Err(self.kind_error(plugin, PluginKind::MetricValidator));
        };
        let wasm = self.wasm()?;
        let setup = self.governance_setup(wasm, plugin);
        let config_json = config.to_string();

        let finished = self.counted(wasm, || {
            call::run_sandboxed(setup, sandbox(Some(data)), |store| {
                let bindings = pre
                    .instantiate(&mut *store)
                    .map_err(RawFailure::Instantiate)?;
                let result = bindings
                    .runledger_plugin_validator()
                    .call_validate(&mut *store, &convert::run_to_wit(run), &config_json)
                    .map_err(RawFailure::Trap)?;
                Ok(result
                    .map_err(call::guest_error)
                    .and_then(convert::checks_from_wit))
            })
        });
        Ok(into_report(finished))
    }

    /// Validates `config` against the plugin's config schema, checks that the plugin is a
    /// policy, then calls its `decide` in a fresh store with the plugin's limits.
    ///
    /// Errors and the report's outcome as for [`Runtime::call_validator`]. The decision comes
    /// back as the plugin returned it, with its reason capped. The caller checks that it is well
    /// formed (a pending decision's count and role).
    pub fn call_policy(
        &self,
        plugin: &Plugin,
        request: &PromotionRequest,
        config: &serde_json::Value,
    ) -> Result<GovernanceReport<Decision>, RuntimeError> {
        Self::require_kind(plugin, PluginKind::Policy)?;
        plugin.validate_config(config)?;
        let prepared = self.prepared(plugin)?;
        let WorldPre::Policy(pre) = &prepared.pre else {
            return Err(self.kind_error(plugin, PluginKind::Policy));
        };
        let wasm = self.wasm()?;
        let setup = self.governance_setup(wasm, plugin);
        let config_json = config.to_string();

        let finished = self.counted(wasm, || {
            call::run_sandboxed(setup, sandbox(None), |store| {
                let bindings = pre
                    .instantiate(&mut *store)
                    .map_err(RawFailure::Instantiate)?;
                let result = bindings
                    .runledger_plugin_promotion_policy()
                    .call_decide(&mut *store, &convert::request_to_wit(request), &config_json)
                    .map_err(RawFailure::Trap)?;
                Ok(result
                    .map(convert::decision_from_wit)
                    .map_err(call::guest_error))
            })
        });
        Ok(into_report(finished))
    }

    fn governance_setup<'a>(&self, wasm: &'a Wasm, plugin: &Plugin) -> CallSetup<'a> {
        CallSetup {
            engine: &wasm.engine,
            limits: self.effective_limits(plugin, None),
            scratch_dir: None,
        }
    }

    fn kind_error(&self, plugin: &Plugin, expected: PluginKind) -> RuntimeError {
        RuntimeError::WrongKind {
            plugin: plugin.id(),
            kind: plugin.manifest.kind.world().to_owned(),
            expected: expected.world().to_owned(),
        }
    }
}
