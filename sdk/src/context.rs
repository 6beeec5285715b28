use crate::artifact::{ArtifactRef, Input, Output};
use crate::bindings::runledger::plugin::{artifacts, types};
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Everything the host passes a step executor about the call.
///
/// ```no_run
/// # fn run(context: runledger_sdk::StepContext) -> runledger_sdk::Result<()> {
/// let seed = context.seed();
/// let alpha: f64 = context.param("alpha")?.unwrap_or(0.1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StepContext {
    run_id: String,
    step_name: String,
    attempt: u32,
    seed: u64,
    params: Map<String, Value>,
    inputs: Vec<ArtifactRef>,
    outputs: Vec<String>,
}

impl StepContext {
    pub(crate) fn from_raw(raw: types::StepContext) -> Self {
        let params = raw
            .params
            .into_iter()
            .map(|param| {
                let value = serde_json::from_str(&param.value_json)
                    .unwrap_or(Value::String(param.value_json));
                (param.name, value)
            })
            .collect();
        Self {
            run_id: raw.run_id,
            step_name: raw.step_name,
            attempt: raw.attempt,
            seed: raw.seed,
            params,
            inputs: raw.inputs.into_iter().map(ArtifactRef::from_raw).collect(),
            outputs: raw.outputs,
        }
    }

    /// Id of the pipeline run.
    ///
    /// ```no_run
    /// # fn run(context: runledger_sdk::StepContext) {
    /// runledger_sdk::log::info(format!("run {}", context.run_id()));
    /// # }
    /// ```
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Name of the step in its pipeline.
    ///
    /// ```no_run
    /// # fn run(context: runledger_sdk::StepContext) {
    /// let name = context.step_name();
    /// # }
    /// ```
    pub fn step_name(&self) -> &str {
        &self.step_name
    }

    /// Attempt number, starting at 1.
    ///
    /// ```no_run
    /// # fn run(context: runledger_sdk::StepContext) {
    /// let retried = context.attempt() > 1;
    /// # }
    /// ```
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Seed for the step's randomness, fixed per run so a re-execution repeats it.
    ///
    /// ```no_run
    /// # fn run(context: runledger_sdk::StepContext) {
    /// let mut state = context.seed();
    /// # }
    /// ```
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Deserializes all params into `T`.
    ///
    /// Fails with [`Error::InvalidParams`] naming the field serde rejected.
    ///
    /// ```no_run
    /// #[derive(serde::Deserialize)]
    /// struct Params {
    ///     epochs: u32,
    /// }
    /// # fn run(context: runledger_sdk::StepContext) -> runledger_sdk::Result<()> {
    /// let params: Params = context.params()?;
    /// # Ok(()) }
    /// ```
    pub fn params<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(Value::Object(self.params.clone()))
            .map_err(|error| Error::InvalidParams(error.to_string()))
    }

    /// Deserializes the param `name`, or returns `None` when the step has no such param.
    ///
    /// Fails with [`Error::InvalidParams`] naming the param when it does not deserialize into
    /// `T`.
    ///
    /// ```no_run
    /// # fn run(context: runledger_sdk::StepContext) -> runledger_sdk::Result<()> {
    /// let target: String = context.param("target")?.unwrap_or_else(|| "y".into());
    /// # Ok(()) }
    /// ```
    pub fn param<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let Some(value) = self.params.get(name) else {
            return Ok(None);
        };
        serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|error| Error::InvalidParams(format!("param `{name}`: {error}")))
    }

    /// The input artifacts of the step.
    ///
    /// ```no_run
    /// # fn run(context: runledger_sdk::StepContext) {
    /// for input in context.inputs() {
    ///     runledger_sdk::log::info(format!("{} is {} bytes", input.name, input.size));
    /// }
    /// # }
    /// ```
    pub fn inputs(&self) -> &[ArtifactRef] {
        &self.inputs
    }

    /// The output names the step may create.
    ///
    /// ```no_run
    /// # fn run(context: runledger_sdk::StepContext) {
    /// let writes_report = context.outputs().iter().any(|name| name == "report");
    /// # }
    /// ```
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// Opens the input artifact `name` for reading.
    ///
    /// Fails with [`Error::NotFound`] when the step has no such input, and with [`Error::Io`]
    /// when the host cannot open the stored content. Reads through the returned [`Input`] fail
    /// with an [`std::io::Error`] wrapping [`Error::Io`] when the content does not match its
    /// digest; `?` turns it back into that [`Error`].
    ///
    /// ```no_run
    /// use std::io::Read;
    /// # fn run(context: runledger_sdk::StepContext) -> runledger_sdk::Result<()> {
    /// let mut text = String::new();
    /// context.open_input("table")?.read_to_string(&mut text)?;
    /// # Ok(()) }
    /// ```
    pub fn open_input(&self, name: &str) -> Result<Input> {
        let handle = artifacts::open_input(name).map_err(Error::from_raw)?;
        Ok(Input::new(handle))
    }

    /// Creates the output artifact `name` with a media type such as `text/csv`.
    ///
    /// Fails with [`Error::NotFound`] when `name` is not a declared output of the step, with
    /// [`Error::InvalidState`] when the output was already created in this call, and with
    /// [`Error::Io`] when the host cannot store it. Writes through the returned [`Output`] fail
    /// with an [`std::io::Error`] wrapping [`Error::LimitExceeded`] once the output passes the
    /// plugin's size limit; `?` turns it back into that [`Error`].
    ///
    /// ```no_run
    /// use std::io::Write;
    /// # fn run(context: runledger_sdk::StepContext) -> runledger_sdk::Result<()> {
    /// let mut output = context.create_output("report", "application/json")?;
    /// output.write_all(b"{}")?;
    /// let reference = output.finish()?;
    /// # Ok(()) }
    /// ```
    pub fn create_output(&self, name: &str, media_type: &str) -> Result<Output> {
        let handle = artifacts::create_output(name, media_type).map_err(Error::from_raw)?;
        Ok(Output::new(handle))
    }
}
