//! The artifact I/O a caller supplies to the runtime. The runtime reads inputs and writes outputs
//! only through these traits, so it stays independent of where bytes are stored.

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// A reference to an immutable, content-addressed artifact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArtifactRef {
    /// Name the step gives the artifact, such as `model`.
    pub name: String,
    /// Lowercase hex SHA-256 of the content.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type, such as `text/csv`.
    pub media_type: String,
}

/// The source of a call's input artifacts and the destination of its outputs.
pub trait ArtifactIo: Send {
    /// Opens an input for reading. The reader should fail its last read when the content does
    /// not match `artifact.digest`.
    fn open_input(&mut self, artifact: &ArtifactRef) -> io::Result<Box<dyn InputSource>>;

    /// Starts a new output artifact.
    fn create_output(&mut self, name: &str, media_type: &str) -> io::Result<Box<dyn OutputSink>>;
}

/// An input artifact being read, in chunks.
pub trait InputSource: Send {
    /// Reads up to `max` bytes; an empty chunk means the end.
    fn read_chunk(&mut self, max: usize) -> io::Result<Vec<u8>>;
}

/// Adapts any reader to [`InputSource`].
pub struct ReadSource<R>(pub R);

impl<R: Read + Send> InputSource for ReadSource<R> {
    fn read_chunk(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut chunk = vec![0; max];
        let mut filled = 0;
        while filled < max {
            match self.0.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(count) => filled += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        chunk.truncate(filled);
        Ok(chunk)
    }
}

/// An output artifact being written.
pub trait OutputSink: Write + Send {
    /// Appends an owned chunk; sinks that hand chunks to another thread avoid a copy.
    fn write_chunk(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        self.write_all(&chunk)
    }

    /// Stores the content and returns its SHA-256 (lowercase hex) and size. A sink dropped
    /// without `commit` stores nothing.
    fn commit(self: Box<Self>) -> io::Result<(String, u64)>;
}
