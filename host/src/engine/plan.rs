//! Turns a parsed definition into an executable plan, finding every problem before any step
//! runs: unknown plugins, inputs and outputs (with the nearest name), cycles, params that break a
//! plugin's schema, missing input files and duplicate step names.
//!
//! A plugin step takes its input and output names from the plugin's manifest. An external step
//! has no plugin: its definition declares its outputs, and it names its inputs freely.
//!
//! Each entry of `validate:` must name a metric-validator plugin whose config schema accepts
//! the entry's `config`.

use super::definition::{
    DefinitionError, PipelineDefinition, Problem, StepExecutor, StepSpec, ValidatorSpec,
    parse_timeout,
};
use crate::runtime::{Plugin, PluginKind, PluginRegistry};
use crate::store::artifacts::ArtifactStore;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The source of a step input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A pipeline input, by name.
    PipelineInput(String),
    /// An output of an upstream step.
    StepOutput {
        /// Index of the step in [`Plan::steps`].
        step: usize,
        /// The output's name.
        output: String,
    },
}

/// A pipeline input as resolved before the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedInput {
    /// A file to import into the artifact store.
    File {
        /// Absolute or base-relative path.
        path: PathBuf,
        /// Media type to record.
        media_type: String,
    },
    /// An artifact already stored.
    Stored {
        /// Its SHA-256.
        digest: String,
        /// Media type to record.
        media_type: String,
    },
}

/// A step ready to schedule.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    /// Step name.
    pub name: String,
    /// The kind of executor that runs the step.
    pub executor: StepExecutor,
    /// The resolved plugin; `None` for an external step.
    pub plugin: Option<Arc<Plugin>>,
    /// Params after pipeline-param substitution. A plugin step's params are valid for the
    /// plugin's schema; an external step's are passed to its client unchecked.
    pub params: Map<String, Value>,
    /// Input name to its source.
    pub inputs: BTreeMap<String, Source>,
    /// Output names the plugin declares, or the definition for an external step.
    pub outputs: Vec<String>,
    /// Indexes of the steps this one waits for.
    pub upstream: BTreeSet<usize>,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// Wall-clock limit per attempt.
    pub timeout: Option<Duration>,
    /// Whether cached outputs may be reused; always false for an external step.
    pub cache: bool,
}

impl PlannedStep {
    /// Checks whether a client outside the sandbox executes the step and reports its outputs.
    pub fn is_external(&self) -> bool {
        self.executor == StepExecutor::External
    }
}

/// The declared interface of a step: its plugin, or the outputs of an external step.
enum Interface {
    /// A step-executor plugin, whose manifest declares the inputs and outputs.
    Plugin(Arc<Plugin>),
    /// An external step with these output names.
    External(Vec<String>),
}

impl Interface {
    fn plugin(&self) -> Option<&Arc<Plugin>> {
        match self {
            Self::Plugin(plugin) => Some(plugin),
            Self::External(_) => None,
        }
    }

    fn output_names(&self) -> Vec<&str> {
        match self {
            Self::Plugin(plugin) => plugin
                .manifest
                .outputs
                .iter()
                .map(|o| o.name.as_str())
                .collect(),
            Self::External(outputs) => outputs.iter().map(String::as_str).collect(),
        }
    }

    /// Returns the declared media type of an output; external steps declare none.
    fn output_media_type(&self, name: &str) -> Option<String> {
        let plugin = self.plugin()?;
        let declared = plugin.manifest.outputs.iter().find(|o| o.name == name)?;
        declared.media_type.clone()
    }

    /// Names the executor in messages: the plugin's `NAME@VERSION`, or `external`.
    fn describe(&self) -> String {
        match self {
            Self::Plugin(plugin) => plugin.id(),
            Self::External(_) => "external".to_owned(),
        }
    }
}

/// A validated pipeline, ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The definition as parsed.
    pub definition: PipelineDefinition,
    /// The YAML text, recorded with the run.
    pub text: String,
    /// SHA-256 of the text.
    pub digest: String,
    /// Pipeline params after overrides.
    pub params: Map<String, Value>,
    /// Pipeline inputs by name.
    pub inputs: BTreeMap<String, PlannedInput>,
    /// Steps in definition order.
    pub steps: Vec<PlannedStep>,
    /// Metric validators to run after the run succeeds, in definition order.
    pub validators: Vec<PlannedValidator>,
}

/// A metric validator of the `validate:` list, resolved and with a config its schema accepts.
#[derive(Debug, Clone)]
pub struct PlannedValidator {
    /// The resolved metric-validator plugin.
    pub plugin: Arc<Plugin>,
    /// The configuration passed to the plugin.
    pub config: Value,
}

/// The registry, paths, overrides and stores a plan needs besides the definition.
pub struct PlanContext<'a> {
    /// Plugins available.
    pub registry: &'a PluginRegistry,
    /// Directory that relative input paths start from.
    pub base_dir: &'a Path,
    /// `--param NAME=VALUE` overrides of pipeline params.
    pub overrides: &'a Map<String, Value>,
    /// The artifact store, to check inputs given by digest.
    pub artifacts: &'a ArtifactStore,
    /// Inputs pinned to stored digests whatever the definition contains, as when reproducing
    /// a recorded run.
    pub pinned_inputs: &'a BTreeMap<String, String>,
}

/// Builds a plan, or returns every problem found.
pub fn plan(text: &str, origin: &str, context: &PlanContext<'_>) -> Result<Plan, DefinitionError> {
    let definition = PipelineDefinition::parse(text, origin)?;
    let mut problems = Vec::new();
    let params = resolve_pipeline_params(&definition, context.overrides, &mut problems);
    let inputs = resolve_inputs(&definition, context, &mut problems);
    let steps = resolve_steps(&definition, &params, context.registry, &mut problems);
    let validators = resolve_validators(&definition.validate, context.registry, &mut problems);
    if problems.is_empty() {
        check_cycles(&steps, &mut problems);
    }
    if !problems.is_empty() {
        return Err(DefinitionError {
            origin: origin.to_owned(),
            problems,
        });
    }
    Ok(Plan {
        digest: super::sha256_hex(text.as_bytes()),
        text: text.to_owned(),
        definition,
        params,
        inputs,
        steps,
        validators,
    })
}

fn problem(problems: &mut Vec<Problem>, place: impl Into<String>, message: impl Into<String>) {
    problems.push(Problem {
        place: place.into(),
        message: message.into(),
    });
}

/// ` (did you mean `x`?)` for the nearest candidate within edit distance 3, else nothing.
pub(crate) fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    candidates
        .into_iter()
        .map(|candidate| (strsim::levenshtein(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= 3)
        .min()
        .map(|(_, candidate)| format!(" (did you mean `{candidate}`?)"))
        .unwrap_or_default()
}

fn resolve_pipeline_params(
    definition: &PipelineDefinition,
    overrides: &Map<String, Value>,
    problems: &mut Vec<Problem>,
) -> Map<String, Value> {
    let mut params = definition.params.clone();
    for (name, value) in overrides {
        if !params.contains_key(name) {
            let known = definition.params.keys().map(String::as_str);
            let hint = nearest(name, known);
            let defined: Vec<&str> = definition.params.keys().map(String::as_str).collect();
            problem(
                problems,
                format!("--param {name}"),
                format!(
                    "`{name}` is not a pipeline param{hint}; the pipeline defines: [{}]",
                    defined.join(", ")
                ),
            );
            continue;
        }
        params.insert(name.clone(), value.clone());
    }
    params
}

fn resolve_inputs(
    definition: &PipelineDefinition,
    context: &PlanContext<'_>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, PlannedInput> {
    let mut inputs = BTreeMap::new();
    for (name, spec) in &definition.inputs {
        let place = format!("/inputs/{name}");
        let media_type = spec
            .media_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into());
        let pinned = context.pinned_inputs.get(name).or(spec.digest.as_ref());
        if let Some(digest) = pinned {
            if !context.artifacts.contains(digest) {
                let message = if context.pinned_inputs.contains_key(name) {
                    format!(
                        "the recorded input `{name}` (digest {digest}) is no longer in the \
                         artifact store, so the run cannot be re-executed with the same data"
                    )
                } else {
                    format!(
                        "no artifact with digest {digest} is stored; run the pipeline that \
                         produces it or give a file path"
                    )
                };
                problem(problems, place, message);
                continue;
            }
            let digest = digest.clone();
            inputs.insert(name.clone(), PlannedInput::Stored { digest, media_type });
        } else if let Some(path) = &spec.path {
            let full = context.base_dir.join(path);
            if let Err(message) = check_input_file(&full) {
                problem(problems, place, message);
                continue;
            }
            inputs.insert(
                name.clone(),
                PlannedInput::File {
                    path: full,
                    media_type,
                },
            );
        }
    }
    inputs
}

/// Checks that an input path is a regular file this process can open for reading.
fn check_input_file(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "input file {shown} does not exist; fix the path (relative to the pipeline file)"
            ));
        }
        Err(error) => return Err(format!("cannot read input file {shown}: {error}")),
    };
    if !meta.is_file() {
        return Err(format!(
            "input {shown} is not a regular file; give the path of a file"
        ));
    }
    std::fs::File::open(path)
        .map(|_| ())
        .map_err(|error| format!("cannot read input file {shown}: {error}"))
}

fn resolve_steps(
    definition: &PipelineDefinition,
    params: &Map<String, Value>,
    registry: &PluginRegistry,
    problems: &mut Vec<Problem>,
) -> Vec<PlannedStep> {
    let mut index_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, step) in definition.steps.iter().enumerate() {
        if step.name == "inputs" {
            problem(
                problems,
                format!("/steps/{index}/name"),
                "a step cannot be named `inputs`: `inputs.NAME` refers to pipeline inputs; \
                 rename the step",
            );
        }
        if let Some(first) = index_of.insert(step.name.as_str(), index) {
            index_of.insert(step.name.as_str(), first);
            problem(
                problems,
                format!("/steps/{index}/name"),
                format!(
                    "duplicate step name `{}` (first used by step {first}); rename one",
                    step.name
                ),
            );
        }
    }
    let interfaces: Vec<Option<Interface>> = definition
        .steps
        .iter()
        .enumerate()
        .map(|(index, step)| resolve_interface(index, step, registry, problems))
        .collect();
    let resolver = StepResolver {
        definition,
        params,
        index_of: &index_of,
        interfaces: &interfaces,
    };
    definition
        .steps
        .iter()
        .enumerate()
        .filter_map(|(index, _)| resolver.resolve(index, problems))
        .collect()
}

fn resolve_interface(
    index: usize,
    step: &StepSpec,
    registry: &PluginRegistry,
    problems: &mut Vec<Problem>,
) -> Option<Interface> {
    match step.executor {
        StepExecutor::External => Some(external_interface(index, step, problems)),
        StepExecutor::Wasm => {
            resolve_plugin(index, step, registry, problems).map(Interface::Plugin)
        }
    }
}

/// Checks the fields that an external step does not take and returns its interface.
fn external_interface(index: usize, step: &StepSpec, problems: &mut Vec<Problem>) -> Interface {
    let place = |field: &str| format!("/steps/{index}/{field} (step {})", step.name);
    if let Some(plugin) = &step.plugin {
        problem(
            problems,
            place("plugin"),
            format!(
                "an external step runs no plugin, but `plugin: {plugin}` is given; remove \
                 `plugin`, or remove `executor: external` to run the plugin in the sandbox"
            ),
        );
    }
    if step.retries > 0 {
        problem(
            problems,
            place("retries"),
            "an external step is not retried, since its client reports it once; remove \
             `retries`",
        );
    }
    Interface::External(step.outputs.clone())
}

fn resolve_plugin(
    index: usize,
    step: &StepSpec,
    registry: &PluginRegistry,
    problems: &mut Vec<Problem>,
) -> Option<Arc<Plugin>> {
    let place = format!("/steps/{index}/plugin (step {})", step.name);
    let Some(spec) = &step.plugin else {
        problem(
            problems,
            place,
            "the step names no plugin; add `plugin: NAME`, or `executor: external` for work \
             that a client reports over the API",
        );
        return None;
    };
    if !step.outputs.is_empty() {
        problem(
            problems,
            format!("/steps/{index}/outputs (step {})", step.name),
            "only an external step declares `outputs`; a plugin declares its outputs in its \
             plugin.toml, so remove `outputs`",
        );
    }
    match registry.resolve(spec) {
        Ok(plugin) if plugin.manifest.kind == PluginKind::StepExecutor => Some(plugin),
        Ok(plugin) => {
            let kind = plugin.manifest.kind.world();
            problem(
                problems,
                place,
                format!("plugin {} is a {kind}, not a step-executor", plugin.id()),
            );
            None
        }
        Err(error) => {
            problem(problems, place, error.to_string());
            None
        }
    }
}

/// Resolves each `validate:` entry to a metric-validator plugin and checks its config against
/// the plugin's config schema.
fn resolve_validators(
    specs: &[ValidatorSpec],
    registry: &PluginRegistry,
    problems: &mut Vec<Problem>,
) -> Vec<PlannedValidator> {
    specs
        .iter()
        .enumerate()
        .filter_map(|(index, spec)| resolve_validator(index, spec, registry, problems))
        .collect()
}

fn resolve_validator(
    index: usize,
    spec: &ValidatorSpec,
    registry: &PluginRegistry,
    problems: &mut Vec<Problem>,
) -> Option<PlannedValidator> {
    let place = |suffix: &str| format!("/validate/{index}/{suffix} (validator {})", spec.plugin);
    let plugin = match registry.resolve(&spec.plugin) {
        Ok(plugin) => plugin,
        Err(error) => {
            problem(problems, place("plugin"), error.to_string());
            return None;
        }
    };
    if plugin.manifest.kind != PluginKind::MetricValidator {
        let kind = plugin.manifest.kind.world();
        let message = format!(
            "plugin {} is a {kind}, not a metric-validator; `validate:` takes only \
             metric-validator plugins",
            plugin.id()
        );
        problem(problems, place("plugin"), message);
        return None;
    }
    let Err(invalid) = plugin.validate_config(&spec.config) else {
        return Some(PlannedValidator {
            plugin,
            config: spec.config.clone(),
        });
    };
    for violation in invalid.violations {
        let path = violation.path.trim_start_matches('/');
        let message = format!(
            "{} (rule `{}` of plugin {}'s config schema)",
            violation.message,
            violation.rule,
            plugin.id()
        );
        problem(
            problems,
            place(format!("config/{path}").trim_end_matches('/')),
            message,
        );
    }
    None
}

struct StepResolver<'a> {
    definition: &'a PipelineDefinition,
    params: &'a Map<String, Value>,
    index_of: &'a BTreeMap<&'a str, usize>,
    interfaces: &'a [Option<Interface>],
}

impl StepResolver<'_> {
    /// Formats a JSON pointer into step `index`, followed by the step's name so the reader need
    /// not count steps: `/steps/1/params/alpha (step train)`.
    fn place(&self, index: usize, suffix: &str) -> String {
        let name = &self.definition.steps[index].name;
        format!("/steps/{index}/{suffix} (step {name})")
    }

    fn resolve(&self, index: usize, problems: &mut Vec<Problem>) -> Option<PlannedStep> {
        let spec = &self.definition.steps[index];
        let interface = self.interfaces[index].as_ref()?;
        let before = problems.len();
        let inputs = self.resolve_wiring(index, interface, problems);
        let params = self.resolve_params(index, interface.plugin(), problems);
        let timeout = spec.timeout.as_deref().and_then(|text| {
            let parsed = parse_timeout(text);
            if parsed.is_none() {
                problem(
                    problems,
                    self.place(index, "timeout"),
                    format!("invalid timeout `{text}`: use a number with ms, s, m or h"),
                );
            }
            parsed
        });
        if problems.len() > before {
            return None;
        }
        let upstream = inputs
            .values()
            .filter_map(|source| match source {
                Source::StepOutput { step, .. } => Some(*step),
                Source::PipelineInput(_) => None,
            })
            .collect();
        let external = spec.executor == StepExecutor::External;
        Some(PlannedStep {
            name: spec.name.clone(),
            executor: spec.executor,
            outputs: interface
                .output_names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            plugin: interface.plugin().cloned(),
            params,
            inputs,
            upstream,
            retries: spec.retries,
            timeout,
            // An external step's outputs come from its client, so no earlier run can supply them.
            cache: spec.cache && !external,
        })
    }

    fn resolve_wiring(
        &self,
        index: usize,
        interface: &Interface,
        problems: &mut Vec<Problem>,
    ) -> BTreeMap<String, Source> {
        match interface {
            Interface::Plugin(plugin) => self.resolve_plugin_wiring(index, plugin, problems),
            Interface::External(_) => self.resolve_external_wiring(index, problems),
        }
    }

    /// Resolves the sources of an external step, whose input names are its own choice.
    fn resolve_external_wiring(
        &self,
        index: usize,
        problems: &mut Vec<Problem>,
    ) -> BTreeMap<String, Source> {
        let spec = &self.definition.steps[index];
        let mut inputs = BTreeMap::new();
        for (name, source) in &spec.inputs {
            let place = self.place(index, &format!("inputs/{name}"));
            if let Some(resolved) = self.resolve_source(source, &place, problems) {
                inputs.insert(name.clone(), resolved);
            }
        }
        inputs
    }

    fn resolve_plugin_wiring(
        &self,
        index: usize,
        plugin: &Plugin,
        problems: &mut Vec<Problem>,
    ) -> BTreeMap<String, Source> {
        let spec = &self.definition.steps[index];
        let declared: Vec<&str> = plugin
            .manifest
            .inputs
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        let mut inputs = BTreeMap::new();
        for (name, source) in &spec.inputs {
            let place = self.place(index, &format!("inputs/{name}"));
            if !declared.contains(&name.as_str()) {
                let hint = nearest(name, declared.iter().copied());
                problem(
                    problems,
                    place,
                    format!(
                        "plugin {} has no input `{name}`{hint}; its inputs are [{}]",
                        plugin.id(),
                        declared.join(", ")
                    ),
                );
                continue;
            }
            if let Some(resolved) = self.resolve_source(source, &place, problems) {
                let wanted = plugin.manifest.inputs.iter().find(|i| &i.name == name);
                let wanted = wanted.and_then(|i| i.media_type.as_deref());
                if let (Some(wanted), Some(given)) = (wanted, self.media_type_of(&resolved))
                    && !media_types_match(wanted, &given)
                {
                    let message = format!(
                        "`{source}` is {given}, but input `{name}` of plugin {} expects {wanted}",
                        plugin.id()
                    );
                    problem(problems, place, message);
                    continue;
                }
                inputs.insert(name.clone(), resolved);
            }
        }
        for input in &plugin.manifest.inputs {
            if !input.optional && !spec.inputs.contains_key(&input.name) {
                problem(
                    problems,
                    self.place(index, "inputs"),
                    format!(
                        "required input `{}` of plugin {} is not wired; add `{}: STEP.OUTPUT` or `inputs.NAME`",
                        input.name,
                        plugin.id(),
                        input.name
                    ),
                );
            }
        }
        inputs
    }

    /// Returns the declared media type of a source: the pipeline input's `media-type`, or the upstream
    /// plugin's declared output type.
    fn media_type_of(&self, source: &Source) -> Option<String> {
        match source {
            Source::PipelineInput(name) => self.definition.inputs.get(name)?.media_type.clone(),
            Source::StepOutput { step, output } => {
                self.interfaces[*step].as_ref()?.output_media_type(output)
            }
        }
    }

    fn resolve_source(
        &self,
        source: &str,
        place: &str,
        problems: &mut Vec<Problem>,
    ) -> Option<Source> {
        let (left, right) = source.split_once('.')?;
        if left == "inputs" {
            if self.definition.inputs.contains_key(right) {
                return Some(Source::PipelineInput(right.to_owned()));
            }
            let names = self.definition.inputs.keys().map(String::as_str);
            let hint = nearest(right, names.clone());
            let known: Vec<&str> = names.collect();
            problem(
                problems,
                place,
                format!(
                    "unknown pipeline input `{right}`{hint}; the pipeline has inputs [{}]",
                    known.join(", ")
                ),
            );
            return None;
        }
        let Some(&step) = self.index_of.get(left) else {
            let hint = nearest(left, self.index_of.keys().copied());
            problem(
                problems,
                place,
                format!("unknown upstream step `{left}` in `{source}`{hint}"),
            );
            return None;
        };
        let interface = self.interfaces[step].as_ref()?;
        let outputs = interface.output_names();
        if !outputs.contains(&right) {
            let hint = nearest(right, outputs.iter().copied());
            problem(
                problems,
                place,
                format!(
                    "step `{left}` ({}) has no output `{right}`{hint}; its outputs are [{}]",
                    interface.describe(),
                    outputs.join(", ")
                ),
            );
            return None;
        }
        Some(Source::StepOutput {
            step,
            output: right.to_owned(),
        })
    }

    /// Substitutes pipeline params into the step's params and checks them against the
    /// plugin's schema. An external step has no plugin, so its params are not checked.
    fn resolve_params(
        &self,
        index: usize,
        plugin: Option<&Arc<Plugin>>,
        problems: &mut Vec<Problem>,
    ) -> Map<String, Value> {
        let spec = &self.definition.steps[index];
        let mut resolved = Map::new();
        for (name, value) in &spec.params {
            let place = self.place(index, &format!("params/{name}"));
            match substitute(value, self.params) {
                Ok(value) => {
                    resolved.insert(name.clone(), integral_floats_as_integers(value));
                }
                Err(message) => problem(problems, place, message),
            }
        }
        let Some(plugin) = plugin else {
            return resolved;
        };
        if let Err(invalid) = plugin.validate_params(&Value::Object(resolved.clone())) {
            for violation in invalid.violations {
                let path = violation.path.trim_start_matches('/');
                let place = self.place(index, format!("params/{path}").trim_end_matches('/'));
                problem(
                    problems,
                    place,
                    format!(
                        "{} (rule `{}` of plugin {}'s params schema)",
                        violation.message,
                        violation.rule,
                        plugin.id()
                    ),
                );
            }
        }
        resolved
    }
}

/// Checks whether a produced media type satisfies an expected one. `*` matches anything and
/// `type/*` anything of that type. Parameters such as `; charset=utf-8` are ignored.
fn media_types_match(expected: &str, given: &str) -> bool {
    let essence = |text: &str| {
        text.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    let (expected, given) = (essence(expected), essence(given));
    if expected == "*/*" || expected == "*" || given == "application/octet-stream" {
        return true;
    }
    match expected.strip_suffix("/*") {
        Some(kind) => given.split('/').next() == Some(kind),
        None => expected == given,
    }
}

/// Turns floats without a fraction (`1e3`, `5.0`) into integers. JSON Schema counts them as
/// integers, so a plugin's schema accepts them, and a plugin that reads an integer then gets one.
fn integral_floats_as_integers(value: Value) -> Value {
    match value {
        Value::Number(number) => match number.as_f64() {
            Some(float) if number.is_f64() && float.fract() == 0.0 && float.abs() < 9.0e15 => {
                Value::from(float as i64)
            }
            _ => Value::Number(number),
        },
        Value::Array(items) => items.into_iter().map(integral_floats_as_integers).collect(),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, item)| (key, integral_floats_as_integers(item)))
                .collect(),
        ),
        other => other,
    }
}

/// Replaces a whole-string `${params.NAME}` with the pipeline param, keeping its JSON type.
fn substitute(value: &Value, params: &Map<String, Value>) -> Result<Value, String> {
    match value {
        Value::String(text) => substitute_text(text, params),
        Value::Array(items) => items
            .iter()
            .map(|item| substitute(item, params))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(key, item)| substitute(item, params).map(|v| (key.clone(), v)))
            .collect::<Result<Map<_, _>, _>>()
            .map(Value::Object),
        _ => Ok(value.clone()),
    }
}

/// Substitutes `${params.NAME}` references in a string. A string that is one reference takes
/// the param's value and JSON type; references inside longer text are replaced by the value's
/// text (a string as it is, anything else as JSON).
fn substitute_text(text: &str, params: &Map<String, Value>) -> Result<Value, String> {
    let mut output = String::new();
    let mut rest = text;
    let mut whole = None;
    while let Some(start) = rest.find("${") {
        let Some(length) = rest[start..].find('}') else {
            return Err(format!(
                "`{text}` has an unclosed `${{`; write `${{params.NAME}}`"
            ));
        };
        let reference = rest[start + 2..start + length].trim();
        let Some(name) = reference.strip_prefix("params.") else {
            return Err(format!(
                "`{text}` refers to `{reference}`; only `${{params.NAME}}` is supported"
            ));
        };
        let value = params.get(name).ok_or_else(|| {
            let hint = nearest(name, params.keys().map(String::as_str));
            format!("`{text}` refers to unknown pipeline param `{name}`{hint}")
        })?;
        if start == 0 && start + length + 1 == rest.len() && output.is_empty() {
            whole = Some(value.clone());
        }
        output.push_str(&rest[..start]);
        match value {
            Value::String(inner) => output.push_str(inner),
            other => output.push_str(&other.to_string()),
        }
        rest = &rest[start + length + 1..];
    }
    output.push_str(rest);
    Ok(whole.unwrap_or(Value::String(output)))
}

/// Reports a cycle as `a -> b -> a`.
fn check_cycles(steps: &[PlannedStep], problems: &mut Vec<Problem>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        index: usize,
        steps: &[PlannedStep],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[index] = Mark::Active;
        path.push(index);
        for &next in &steps[index].upstream {
            match marks[next] {
                Mark::Active => {
                    let start = path.iter().position(|&i| i == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(next, steps, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[index] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; steps.len()];
    for index in 0..steps.len() {
        if marks[index] != Mark::New {
            continue;
        }
        if let Some(mut cycle) = visit(index, steps, &mut marks, &mut Vec::new()) {
            cycle.reverse();
            let names: Vec<&str> = cycle.iter().map(|&i| steps[i].name.as_str()).collect();
            problem(
                problems,
                "/steps",
                format!(
                    "the steps form a cycle: {}; a step can only consume outputs of steps before it in the flow",
                    names.join(" -> ")
                ),
            );
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> Map<String, Value> {
        json!({ "alpha": 0.5, "who": "wine" })
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn whole_reference_keeps_type() {
        assert_eq!(
            substitute_text("${params.alpha}", &params()),
            Ok(json!(0.5))
        );
        assert_eq!(
            substitute_text("${ params.alpha }", &params()),
            Ok(json!(0.5))
        );
    }

    #[test]
    fn embedded_references_become_text() {
        let value = substitute_text("hello ${params.who}, alpha ${params.alpha}", &params());

        assert_eq!(value, Ok(json!("hello wine, alpha 0.5")));
    }

    #[test]
    fn unknown_or_unclosed_reference_is_rejected() {
        let unknown = substitute_text("x${params.alpah}", &params()).unwrap_err();
        let unclosed = substitute_text("${params.alpha", &params()).unwrap_err();

        assert!(unknown.contains("did you mean `alpha`"), "{unknown}");
        assert!(unclosed.contains("unclosed"), "{unclosed}");
    }

    #[test]
    fn integral_floats_become_integers() {
        let value = integral_floats_as_integers(json!({ "seed": 1e3, "alpha": 0.5 }));

        assert_eq!(value, json!({ "seed": 1000, "alpha": 0.5 }));
    }
}
