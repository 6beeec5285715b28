//! On-disk cache of compiled components, so a restart does not recompile.
//!
//! Files are named `<component sha256>-<engine compatibility hash>.cwasm`: a new wasmtime version
//! or different compilation settings produce a different name and therefore a fresh compile.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a component came from when it was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadSource {
    /// Compiled from the `.wasm` file.
    Compiled,
    /// Deserialized from the on-disk compile cache.
    DiskCache,
}

pub(crate) struct CompileCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl CompileCache {
    pub(crate) fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        // NOTE: DefaultHasher is stable within one build of runledger, which is all the file
        // name needs; a different build at worst recompiles once.
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    /// Loads the component with `digest` from the cache, or compiles `wasm` and caches it.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        digest: &str,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, LoadSource)> {
        let Some(path) = self.path_for(digest) else {
            return Ok((Component::new(engine, wasm)?, LoadSource::Compiled));
        };
        if path.is_file() {
            match deserialize(engine, &path) {
                Ok(component) => return Ok((component, LoadSource::DiskCache)),
                Err(error) => tracing::warn!(
                    path = %path.display(),
                    cause = %error,
                    "compiled component unusable, recompiling"
                ),
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(error) = store(&component, &path) {
            tracing::warn!(path = %path.display(), cause = %error, "cannot cache compiled component");
        }
        Ok((component, LoadSource::Compiled))
    }

    fn path_for(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{digest}-{}.cwasm", self.engine_key)))
    }
}

#[expect(
    unsafe_code,
    reason = "deserializing compiled code is unsafe; the cache directory holds only files this \
              process family wrote with Component::serialize"
)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file was produced by `Component::serialize` of a compatible engine (its name
    // carries the compatibility hash and wasmtime checks the header again), and runledger's data
    // directory is not writable by plugins or untrusted users.
    unsafe { Component::deserialize_file(engine, path) }
}

fn store(component: &Component, path: &Path) -> wasmtime::Result<()> {
    let bytes = component.serialize()?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut file, &bytes)?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}
