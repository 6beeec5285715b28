//! Shared helpers for runledger's end-to-end tests and benchmarks: where the built plugins are,
//! a runtime shared by all tests of a binary, and artifact stores in temporary directories.
//!
//! The plugins must be built first: `cargo xtask build-plugins` (which `cargo xtask test` runs).

use runledger::engine::StoreArtifactIo;
use runledger::runtime::{
    ArtifactRef, CallReport, Plugin, PluginRegistry, Runtime, RuntimeSettings, StepCall,
};
use runledger::store::artifacts::ArtifactStore;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The repository root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits one level below the repository root")
        .to_owned()
}

/// Directory of the collected first-party plugins.
pub fn plugins_dir() -> PathBuf {
    workspace_root().join("target/plugins")
}

/// Directory of the collected test-corpus plugins.
pub fn test_plugins_dir() -> PathBuf {
    workspace_root().join("target/test-plugins")
}

/// A registry of first-party and test plugins; panics with the fix when they are not built.
pub fn registry() -> &'static PluginRegistry {
    static REGISTRY: OnceLock<PluginRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let dirs = [plugins_dir(), test_plugins_dir()];
        assert!(
            dirs.iter().all(|dir| dir.is_dir()),
            "plugins are not built: run `cargo xtask build-plugins` first"
        );
        PluginRegistry::scan(&dirs)
    })
}

/// Looks up a built plugin by `name` or `name@version`.
pub fn plugin(spec: &str) -> Arc<Plugin> {
    registry()
        .resolve(spec)
        .unwrap_or_else(|error| panic!("{error}"))
}

/// One runtime per test binary, as in the server: the pooling allocator reserves address space
/// per engine, so tests share it instead of creating one each.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let settings = RuntimeSettings {
            pool_instances: 16,
            ..RuntimeSettings::default()
        };
        Runtime::new(settings).expect("the wasm engine starts")
    })
}

/// An artifact store in a fresh temporary directory, dropped with the returned guard.
pub fn temp_store() -> (tempfile::TempDir, ArtifactStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = ArtifactStore::open(dir.path().join("artifacts")).expect("artifact store");
    (dir, store)
}

/// Stores `bytes` as an input artifact named `name`.
pub fn input(store: &ArtifactStore, name: &str, bytes: &[u8], media_type: &str) -> ArtifactRef {
    let (digest, size) = store.put_bytes(bytes).expect("store input");
    ArtifactRef {
        name: name.to_owned(),
        digest,
        size,
        media_type: media_type.to_owned(),
    }
}

/// A call with the given params, inputs and output names, deterministic, attempt 1.
pub fn step_call(
    params: serde_json::Value,
    inputs: Vec<ArtifactRef>,
    outputs: &[&str],
) -> StepCall {
    StepCall {
        run_id: "test-run".into(),
        step_name: "test-step".into(),
        attempt: 1,
        seed: 7,
        params: params.as_object().cloned().unwrap_or_default(),
        inputs,
        outputs: outputs.iter().map(|name| (*name).to_owned()).collect(),
        deterministic: true,
        timeout: None,
        cancel: None,
    }
}

/// Calls `spec` with `call`, reading and writing artifacts in `store`.
pub fn call(spec: &str, call: &StepCall, store: &ArtifactStore) -> CallReport {
    let io = Box::new(StoreArtifactIo::new(store.clone()));
    runtime()
        .call_step(&plugin(spec), call, io)
        .unwrap_or_else(|error| panic!("{spec} could not be called: {error}"))
}

/// Resident set size of this process in bytes, from /proc (Linux).
pub fn rss_bytes() -> u64 {
    proc_status_kib("VmRSS:") * 1024
}

/// Peak resident set size of this process in bytes since start or the last
/// [`reset_peak_rss`], from /proc (Linux).
pub fn peak_rss_bytes() -> u64 {
    proc_status_kib("VmHWM:") * 1024
}

/// Resets the peak RSS counter so [`peak_rss_bytes`] measures from now (Linux 4.0 and later).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}
