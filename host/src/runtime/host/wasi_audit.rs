//! Audited replacements for the WASI functions through which a component discovers environment
//! variables and preopened directories.
//!
//! The sandbox grants neither unless a manifest asks, so these return nothing, but they also
//! record the attempt. When the call then fails, its error names the withheld capability instead
//! of the guest's generic "file not found". Network attempts are recorded by the socket address
//! check installed in the WASI context.

use crate::runtime::state::CallState;
use crate::runtime::violations::Capability;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::cli::environment;
use wasmtime_wasi::p2::bindings::filesystem::preopens;

struct Audited;

impl HasData for Audited {
    type Data<'a> = &'a mut CallState;
}

/// Replaces the environment and preopen functions of an already populated WASI linker.
pub(crate) fn shadow_wasi_functions(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    environment::add_to_linker::<CallState, Audited>(linker, |state| state)?;
    preopens::add_to_linker::<CallState, Audited>(linker, |state| state)?;
    linker.allow_shadowing(false);
    Ok(())
}

impl environment::Host for &mut CallState {
    fn get_environment(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        self.deny(
            Capability::Environment,
            "the plugin read its environment variables",
        );
        Ok(Vec::new())
    }

    fn get_arguments(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn initial_cwd(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(None)
    }
}

impl preopens::Host for &mut CallState {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        if self.filesystem_granted {
            return preopens::Host::get_directories(&mut self.filesystem());
        }
        self.deny(
            Capability::Filesystem,
            "the plugin looked for host directories, and none are granted",
        );
        Ok(Vec::new())
    }
}
