//! The runtime's artifact I/O backed by the content-addressed artifact store.

use crate::runtime::{ArtifactIo, ArtifactRef, OutputSink};
use crate::store::artifacts::{ArtifactStore, ArtifactWriter};
use std::io::{self, Read, Write};

/// Reads inputs from and writes outputs to an [`ArtifactStore`].
#[derive(Debug, Clone)]
pub struct StoreArtifactIo {
    store: ArtifactStore,
}

impl StoreArtifactIo {
    /// Wraps the store.
    pub fn new(store: ArtifactStore) -> Self {
        Self { store }
    }
}

impl ArtifactIo for StoreArtifactIo {
    fn open_input(&mut self, artifact: &ArtifactRef) -> io::Result<Box<dyn Read + Send>> {
        let reader = self
            .store
            .open_reader(&artifact.digest)
            .map_err(io::Error::other)?;
        Ok(Box::new(reader))
    }

    fn create_output(&mut self, _name: &str, _media_type: &str) -> io::Result<Box<dyn OutputSink>> {
        let writer = self.store.create_writer().map_err(io::Error::other)?;
        Ok(Box::new(StoreSink(writer)))
    }
}

struct StoreSink(ArtifactWriter);

impl Write for StoreSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl OutputSink for StoreSink {
    fn commit(self: Box<Self>) -> io::Result<(String, u64)> {
        self.0.commit().map_err(io::Error::other)
    }
}
