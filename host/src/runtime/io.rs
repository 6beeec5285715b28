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

/// Where a call's artifacts come from and go to.
pub trait ArtifactIo: Send {
    /// Opens an input for reading. The reader should fail its last read when the content does
    /// not match `artifact.digest`.
    fn open_input(&mut self, artifact: &ArtifactRef) -> io::Result<Box<dyn Read + Send>>;

    /// Starts a new output artifact.
    fn create_output(&mut self, name: &str, media_type: &str) -> io::Result<Box<dyn OutputSink>>;
}

/// An output artifact being written.
pub trait OutputSink: Write + Send {
    /// Stores the content and returns its SHA-256 (lowercase hex) and size. A sink dropped
    /// without `commit` stores nothing.
    fn commit(self: Box<Self>) -> io::Result<(String, u64)>;
}
