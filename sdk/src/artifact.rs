use crate::bindings::runledger::plugin::{artifacts, types};
use crate::{Error, Result};
use std::io;

/// Bytes buffered by [`Output`] before they cross to the host, and the largest chunk [`Input`]
/// requests. The host serves at most 1 MiB per read, so larger values gain nothing.
const CHUNK_BYTES: usize = 1 << 20;

/// A reference to an immutable, content-addressed artifact.
///
/// ```no_run
/// # fn run(context: runledger_sdk::StepContext) {
/// let first: &runledger_sdk::ArtifactRef = &context.inputs()[0];
/// assert_eq!(first.digest.len(), 64);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRef {
    /// Name of the artifact within the step, such as `model`.
    pub name: String,
    /// Lowercase hex SHA-256 of the content.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type, such as `text/csv`.
    pub media_type: String,
}

impl ArtifactRef {
    pub(crate) fn from_raw(raw: types::ArtifactRef) -> Self {
        Self {
            name: raw.name,
            digest: raw.digest,
            size: raw.size,
            media_type: raw.media_type,
        }
    }
}

/// A readable input artifact.
///
/// ```no_run
/// use std::io::{BufRead, BufReader};
/// # fn run(context: runledger_sdk::StepContext) -> runledger_sdk::Result<()> {
/// let input = context.open_input("table")?;
/// for line in BufReader::new(input).lines() {
///     let line = line?;
/// }
/// # Ok(()) }
/// ```
pub struct Input {
    handle: artifacts::InputArtifact,
    pending: Vec<u8>,
    offset: usize,
    ended: bool,
}

impl Input {
    pub(crate) fn new(handle: artifacts::InputArtifact) -> Self {
        Self {
            handle,
            pending: Vec::new(),
            offset: 0,
            ended: false,
        }
    }

    /// Describes the artifact: name, digest, size and media type.
    ///
    /// ```no_run
    /// # fn run(context: runledger_sdk::StepContext) -> runledger_sdk::Result<()> {
    /// let size = context.open_input("table")?.describe().size;
    /// # Ok(()) }
    /// ```
    pub fn describe(&self) -> ArtifactRef {
        ArtifactRef::from_raw(self.handle.describe())
    }

    fn refill(&mut self, wanted: usize) -> io::Result<()> {
        let request = wanted.clamp(64 * 1024, CHUNK_BYTES) as u32;
        let chunk = self
            .handle
            .read(request)
            .map_err(|error| io::Error::other(Error::from_raw(error)))?;
        self.ended = chunk.is_empty();
        self.pending = chunk;
        self.offset = 0;
        Ok(())
    }
}

impl io::Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.offset == self.pending.len() && !self.ended {
            self.refill(buf.len())?;
        }
        let available = &self.pending[self.offset..];
        let count = available.len().min(buf.len());
        buf[..count].copy_from_slice(&available[..count]);
        self.offset += count;
        Ok(count)
    }
}

/// A writable output artifact. Call [`Output::finish`] to keep it: an output dropped unfinished
/// is discarded by the host.
///
/// ```no_run
/// use std::io::Write;
/// # fn run(context: runledger_sdk::StepContext) -> runledger_sdk::Result<()> {
/// let mut output = context.create_output("table", "text/csv")?;
/// writeln!(output, "x,y")?;
/// let reference = output.finish()?;
/// runledger_sdk::log::info(format!("wrote {}", reference.digest));
/// # Ok(()) }
/// ```
pub struct Output {
    handle: artifacts::OutputArtifact,
    buffer: Vec<u8>,
}

impl Output {
    pub(crate) fn new(handle: artifacts::OutputArtifact) -> Self {
        Self {
            handle,
            buffer: Vec::with_capacity(CHUNK_BYTES),
        }
    }

    fn send_buffer(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let result = self.handle.write(&self.buffer).map_err(Error::from_raw);
        self.buffer.clear();
        result
    }

    /// Completes the artifact and returns its reference.
    ///
    /// Fails with [`Error::LimitExceeded`] when the last buffered bytes pass the output size
    /// limit, with [`Error::InvalidState`] when an earlier write failed, and with [`Error::Io`]
    /// when the host cannot store the content.
    ///
    /// ```no_run
    /// # fn run(context: runledger_sdk::StepContext) -> runledger_sdk::Result<()> {
    /// let output = context.create_output("empty", "text/plain")?;
    /// let reference = output.finish()?;
    /// assert_eq!(reference.size, 0);
    /// # Ok(()) }
    /// ```
    pub fn finish(mut self) -> Result<ArtifactRef> {
        self.send_buffer()?;
        let raw = self.handle.finish().map_err(Error::from_raw)?;
        Ok(ArtifactRef::from_raw(raw))
    }
}

impl io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buffer.len() + buf.len() > CHUNK_BYTES {
            self.send_buffer().map_err(io::Error::other)?;
        }
        if buf.len() >= CHUNK_BYTES {
            let count = buf.len().min(CHUNK_BYTES);
            self.handle
                .write(&buf[..count])
                .map_err(|error| io::Error::other(Error::from_raw(error)))?;
            return Ok(count);
        }
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer().map_err(io::Error::other)
    }
}
