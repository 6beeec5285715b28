//! Pipeline execution: definitions, scheduling, caching and recording of runs.

mod artifact_io;

pub use artifact_io::StoreArtifactIo;
