use crate::runtime::bindings::runledger::plugin::artifacts::{
    self, HostInputArtifact, HostOutputArtifact,
};
use crate::runtime::bindings::runledger::plugin::types::{ArtifactRef as WitRef, Error};
use crate::runtime::io::{ArtifactRef, InputSource, OutputSink};
use crate::runtime::state::CallState;
use crate::runtime::violations::{Limit, Violation};
use wasmtime::component::Resource;

/// Largest chunk one `read` copies into the component, whatever it asks for. Big enough that
/// per-call overhead is negligible at hundreds of MB/s, small enough to bound host memory.
const MAX_CHUNK_BYTES: usize = 1 << 20;

/// An open input artifact, the host side of the WIT `input-artifact` resource.
pub struct InputHandle {
    artifact: ArtifactRef,
    reader: Box<dyn InputSource>,
}

enum OutputState {
    Open(Box<dyn OutputSink>),
    Finished,
    Failed(String),
}

/// An output artifact being written, the host side of the WIT `output-artifact` resource.
pub struct OutputHandle {
    name: String,
    media_type: String,
    written: u64,
    state: OutputState,
}

fn to_wit(artifact: &ArtifactRef) -> WitRef {
    WitRef {
        name: artifact.name.clone(),
        digest: artifact.digest.clone(),
        size: artifact.size,
        media_type: artifact.media_type.clone(),
    }
}

impl artifacts::Host for CallState {
    fn open_input(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<InputHandle>, Error>> {
        let Some(artifact) = self.inputs.iter().find(|a| a.name == name).cloned() else {
            let known: Vec<&str> = self.inputs.iter().map(|a| a.name.as_str()).collect();
            return Ok(Err(Error::NotFound(format!(
                "no input named `{name}`; this step has: [{}]",
                known.join(", ")
            ))));
        };
        let reader = match self.io.open_input(&artifact) {
            Ok(reader) => reader,
            Err(error) => {
                return Ok(Err(Error::Io(format!(
                    "cannot open input `{name}` ({}): {error}",
                    artifact.digest
                ))));
            }
        };
        let handle = self.table.push(InputHandle { artifact, reader })?;
        Ok(Ok(handle))
    }

    fn create_output(
        &mut self,
        name: String,
        media_type: String,
    ) -> wasmtime::Result<Result<Resource<OutputHandle>, Error>> {
        if !self.declared_outputs.contains(&name) {
            return Ok(Err(Error::NotFound(format!(
                "`{name}` is not a declared output of this step; declared: [{}]",
                self.declared_outputs.join(", ")
            ))));
        }
        if !self.created_outputs.insert(name.clone()) {
            return Ok(Err(Error::InvalidState(format!(
                "output `{name}` was already created in this call"
            ))));
        }
        let sink = match self.io.create_output(&name, &media_type) {
            Ok(sink) => sink,
            Err(error) => return Ok(Err(Error::Io(format!("cannot create `{name}`: {error}")))),
        };
        let handle = self.table.push(OutputHandle {
            name,
            media_type,
            written: 0,
            state: OutputState::Open(sink),
        })?;
        Ok(Ok(handle))
    }
}

impl HostInputArtifact for CallState {
    fn describe(&mut self, handle: Resource<InputHandle>) -> wasmtime::Result<WitRef> {
        Ok(to_wit(&self.table.get(&handle)?.artifact))
    }

    fn read(
        &mut self,
        handle: Resource<InputHandle>,
        max_bytes: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, Error>> {
        let input = self.table.get_mut(&handle)?;
        let wanted = (max_bytes as usize).min(MAX_CHUNK_BYTES);
        match input.reader.read_chunk(wanted) {
            Ok(chunk) => Ok(Ok(chunk)),
            Err(error) => {
                let name = &input.artifact.name;
                Ok(Err(Error::Io(format!(
                    "reading input `{name}` failed: {error}"
                ))))
            }
        }
    }

    fn drop(&mut self, handle: Resource<InputHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl HostOutputArtifact for CallState {
    fn write(
        &mut self,
        handle: Resource<OutputHandle>,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let max_bytes = self.limits.max_output_bytes;
        let output = self.output_handle(&handle)?;
        let result = output.append(bytes, max_bytes);
        if let Err(Error::LimitExceeded(_)) = &result {
            let limit = Limit::OutputSize {
                name: output.name.clone(),
                bytes: max_bytes,
            };
            self.violations.record(Violation::Limit(limit));
        }
        Ok(result)
    }

    fn finish(
        &mut self,
        handle: Resource<OutputHandle>,
    ) -> wasmtime::Result<Result<WitRef, Error>> {
        let output = self.output_handle(&handle)?;
        let result = output.commit();
        if let Ok(artifact) = &result {
            self.outputs.push(artifact.clone());
        }
        Ok(result.map(|artifact| to_wit(&artifact)))
    }

    fn drop(&mut self, handle: Resource<OutputHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl OutputHandle {
    fn append(&mut self, bytes: Vec<u8>, max_bytes: u64) -> Result<(), Error> {
        let name = self.name.clone();
        let sink = match &mut self.state {
            OutputState::Open(sink) => sink,
            OutputState::Finished => {
                return Err(Error::InvalidState(format!(
                    "output `{name}` was already finished; create outputs once and write before \
                     finishing"
                )));
            }
            OutputState::Failed(reason) => {
                return Err(Error::InvalidState(format!(
                    "output `{name}` failed earlier ({reason}) and was discarded"
                )));
            }
        };
        if self.written + bytes.len() as u64 > max_bytes {
            let limit = Limit::OutputSize {
                name,
                bytes: max_bytes,
            };
            self.state = OutputState::Failed(limit.to_string());
            return Err(Error::LimitExceeded(limit.to_string()));
        }
        let count = bytes.len() as u64;
        if let Err(error) = sink.write_chunk(bytes) {
            let message = format!("writing output `{name}` failed: {error}");
            self.state = OutputState::Failed(message.clone());
            return Err(Error::Io(message));
        }
        self.written += count;
        Ok(())
    }

    fn commit(&mut self) -> Result<ArtifactRef, Error> {
        let name = self.name.clone();
        match std::mem::replace(&mut self.state, OutputState::Finished) {
            OutputState::Open(sink) => {
                let (digest, size) = sink.commit().map_err(|error| {
                    Error::Io(format!("storing output `{name}` failed: {error}"))
                })?;
                Ok(ArtifactRef {
                    name,
                    digest,
                    size,
                    media_type: self.media_type.clone(),
                })
            }
            OutputState::Finished => Err(Error::InvalidState(format!(
                "output `{name}` was already finished"
            ))),
            OutputState::Failed(reason) => {
                self.state = OutputState::Failed(reason.clone());
                Err(Error::InvalidState(format!(
                    "output `{name}` failed earlier ({reason}) and was discarded"
                )))
            }
        }
    }
}
