//! Loading plugins: bad manifests, bad params, components that do not match their kind, corrupt
//! files, the compile cache, and memory after many failed calls.

use runledger::engine::StoreArtifactIo;
use runledger::runtime::{
    AllocatorChoice, COMPONENT_FILE, LoadSource, MANIFEST_FILE, Plugin, PluginRegistry, Runtime,
    RuntimeError, RuntimeSettings,
};
use runledger_tests::{call, input, plugin, rss_bytes, runtime, step_call, temp_store};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Creates `root/NAME@0.1.0/` with the given manifest and component bytes.
fn plugin_dir(root: &Path, name: &str, manifest: &str, component: &[u8]) -> PathBuf {
    let dir = root.join(format!("{name}@0.1.0"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(MANIFEST_FILE), manifest).unwrap();
    std::fs::write(dir.join(COMPONENT_FILE), component).unwrap();
    dir
}

fn manifest(name: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\nkind = \"step-executor\"\n\
         description = \"test plugin\"\n"
    )
}

fn hello_wasm() -> Vec<u8> {
    std::fs::read(plugin("hello").component_path()).unwrap()
}

#[test]
fn bad_manifests_give_one_clear_error_each() {
    let root = tempfile::tempdir().unwrap();
    let cases = [
        (
            "missing-kind",
            manifest("missing-kind").replace("kind = \"step-executor\"\n", ""),
            "missing field `kind`",
        ),
        (
            "wrong-type",
            format!("{}[limits]\nmemory-mib = \"big\"\n", manifest("wrong-type")),
            "memory-mib",
        ),
        (
            "unknown-key",
            format!("{}colour = \"red\"\n", manifest("unknown-key")),
            "colour",
        ),
        (
            "bad-schema",
            format!("{}[params-schema]\ntype = 12\n", manifest("bad-schema")),
            "params-schema",
        ),
    ];
    for (name, text, _) in &cases {
        plugin_dir(root.path(), name, text, &hello_wasm());
    }

    let registry = PluginRegistry::scan(&[root.path().to_owned()]);

    assert_eq!(registry.plugins().count(), 0);
    assert_eq!(registry.problems().len(), cases.len());
    for (name, _, expected) in &cases {
        let problem = registry
            .problems()
            .iter()
            .find(|p| p.dir.ends_with(format!("{name}@0.1.0")))
            .unwrap_or_else(|| panic!("no problem reported for {name}"));
        assert!(
            problem.message.contains(expected),
            "{name}: {}",
            problem.message
        );
        assert!(
            problem.message.contains("plugin.toml"),
            "{name}: {}",
            problem.message
        );
    }
}

#[test]
fn missing_component_is_reported() {
    let root = tempfile::tempdir().unwrap();
    let dir = plugin_dir(root.path(), "lonely", &manifest("lonely"), b"");
    std::fs::remove_file(dir.join(COMPONENT_FILE)).unwrap();

    let error = Plugin::load(&dir).unwrap_err().to_string();

    assert!(error.contains("cannot read component"), "{error}");
    assert!(error.contains("plugin.wasm"), "{error}");
}

#[test]
fn corrupt_component_is_rejected_on_load() {
    let root = tempfile::tempdir().unwrap();
    let dir = plugin_dir(
        root.path(),
        "corrupt",
        &manifest("corrupt"),
        b"\0asm garbage",
    );
    let corrupt = Plugin::load(&dir).unwrap();

    let error = runtime().prepare(&corrupt).unwrap_err();

    assert!(
        matches!(error, RuntimeError::InvalidComponent { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("not a valid WebAssembly component"),
        "{error}"
    );
}

#[test]
fn component_of_another_world_is_rejected() {
    let error = runtime().prepare(&plugin("wrong-world")).unwrap_err();

    assert!(
        matches!(error, RuntimeError::WorldMismatch { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("step-executor"), "{message}");
}

#[test]
fn params_breaking_the_schema_are_rejected_before_the_call() {
    let (_dir, store) = temp_store();
    let io = Box::new(StoreArtifactIo::new(store.clone()));
    let spec = step_call(json!({ "name": 3, "times": 0 }), vec![], &["greeting"]);

    let error = runtime()
        .call_step(&plugin("hello"), &spec, io)
        .unwrap_err();

    let RuntimeError::InvalidParams(invalid) = &error else {
        panic!("expected invalid params, got {error}");
    };
    let found: Vec<(&str, &str)> = invalid
        .violations
        .iter()
        .map(|v| (v.path.as_str(), v.rule.as_str()))
        .collect();
    assert!(found.contains(&("/name", "type")), "{error}");
    assert!(found.contains(&("/times", "minimum")), "{error}");
}

#[test]
fn missing_and_unknown_params_are_rejected() {
    let (_dir, store) = temp_store();
    let missing = step_call(json!({}), vec![], &["greeting"]);
    let unknown = step_call(
        json!({ "name": "x", "colour": "red" }),
        vec![],
        &["greeting"],
    );

    let missing_error = runtime()
        .call_step(
            &plugin("hello"),
            &missing,
            Box::new(StoreArtifactIo::new(store.clone())),
        )
        .unwrap_err()
        .to_string();
    let unknown_error = runtime()
        .call_step(
            &plugin("hello"),
            &unknown,
            Box::new(StoreArtifactIo::new(store.clone())),
        )
        .unwrap_err()
        .to_string();

    assert!(missing_error.contains("rule `required`"), "{missing_error}");
    assert!(unknown_error.contains("colour"), "{unknown_error}");
}

#[test]
fn unknown_plugin_suggests_nearest_name() {
    let error = runledger_tests::registry()
        .resolve("helo")
        .unwrap_err()
        .to_string();

    assert!(error.contains("did you mean `hello`"), "{error}");
}

#[test]
fn duplicate_name_and_version_is_reported() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    plugin_dir(first.path(), "twin", &manifest("twin"), &hello_wasm());
    plugin_dir(
        second.path(),
        "twin",
        &manifest("twin"),
        b"\0asm other bytes",
    );

    let registry = PluginRegistry::scan(&[first.path().to_owned(), second.path().to_owned()]);

    assert_eq!(registry.plugins().count(), 1);
    let kept = registry.resolve("twin@0.1.0").unwrap();
    assert!(
        kept.dir.starts_with(first.path()),
        "the first directory wins"
    );
    assert_eq!(registry.problems().len(), 1);
    assert!(
        registry.problems()[0]
            .message
            .contains("already provides twin@0.1.0")
    );
}

#[test]
fn shared_component_under_two_versions_keeps_both() {
    let root = tempfile::tempdir().unwrap();
    plugin_dir(root.path(), "same", &manifest("same"), &hello_wasm());
    let newer = manifest("same").replace("0.1.0", "0.2.0");
    let dir = root.path().join("same@0.2.0");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(MANIFEST_FILE), newer).unwrap();
    std::fs::write(dir.join(COMPONENT_FILE), hello_wasm()).unwrap();

    let registry = PluginRegistry::scan(&[root.path().to_owned()]);

    assert!(registry.resolve("same@0.1.0").is_ok());
    assert!(registry.resolve("same@0.2.0").is_ok());
    assert_eq!(registry.resolve("same").unwrap().manifest.version, "0.2.0");
    assert!(registry.problems().is_empty(), "{:?}", registry.problems());
}

#[test]
fn operator_memory_cap_below_initial_memory_names_the_limit() {
    let settings = RuntimeSettings {
        max_memory_bytes: 64 << 10,
        pool_instances: 2,
        ..RuntimeSettings::default()
    };
    let small = Runtime::new(settings);
    let (_dir, store) = temp_store();
    let io = Box::new(StoreArtifactIo::new(store.clone()));
    let spec = step_call(json!({ "name": "x" }), vec![], &["greeting"]);

    let report = small.call_step(&plugin("hello"), &spec, io).unwrap();

    let message = report.outcome.unwrap_err().to_string();
    assert!(message.contains("memory limit"), "{message}");
}

#[test]
fn compile_cache_serves_a_restarted_runtime() {
    let cache = tempfile::tempdir().unwrap();
    let settings = RuntimeSettings {
        cache_dir: Some(cache.path().to_owned()),
        allocator: AllocatorChoice::OnDemand,
        ..RuntimeSettings::default()
    };
    let hello = plugin("hello");

    let first = Runtime::new(settings.clone()).prepare(&hello).unwrap();
    let second = Runtime::new(settings).prepare(&hello).unwrap();

    assert_eq!(first.source, LoadSource::Compiled);
    assert_eq!(second.source, LoadSource::DiskCache);
    let cached: Vec<_> = std::fs::read_dir(cache.path()).unwrap().flatten().collect();
    assert_eq!(cached.len(), 1);
    let name = cached[0].file_name().to_string_lossy().into_owned();
    assert!(name.starts_with(&hello.digest), "{name}");
}

#[test]
fn corrupt_cache_entry_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let settings = RuntimeSettings {
        cache_dir: Some(cache.path().to_owned()),
        allocator: AllocatorChoice::OnDemand,
        ..RuntimeSettings::default()
    };
    let hello = plugin("hello");
    Runtime::new(settings.clone()).prepare(&hello).unwrap();
    for entry in std::fs::read_dir(cache.path()).unwrap().flatten() {
        std::fs::write(entry.path(), b"not a compiled component").unwrap();
    }

    let info = Runtime::new(settings).prepare(&hello).unwrap();

    assert_eq!(info.source, LoadSource::Compiled);
}

/// A thousand failing calls, cycling through the quick failure modes, leave the host's resident
/// memory near where it was after a warm-up round.
#[test]
fn memory_returns_to_baseline_after_many_failures() {
    let (_dir, store) = temp_store();
    let cases: [(&str, serde_json::Value, &[&str]); 8] = [
        ("memory-hog", json!({}), &[]),
        ("deep-recursion", json!({}), &[]),
        ("panics", json!({}), &[]),
        ("log-flood", json!({ "channel": "log" }), &[]),
        ("read-host-file", json!({}), &["leak"]),
        ("read-env", json!({}), &[]),
        ("open-socket", json!({}), &[]),
        ("big-output", json!({}), &["blob"]),
    ];
    let run_round = |rounds: usize| {
        for index in 0..rounds {
            let (spec, params, outputs) = &cases[index % cases.len()];
            let report = call(spec, &step_call(params.clone(), vec![], outputs), &store);
            assert!(report.outcome.is_err(), "{spec} unexpectedly succeeded");
        }
    };
    run_round(cases.len() * 4);
    let baseline = rss_bytes();

    run_round(1_000);

    let after = rss_bytes();
    let growth = after.saturating_sub(baseline);
    assert!(
        growth < 32 << 20,
        "resident memory grew by {} MiB over 1,000 failed calls ({} -> {} MiB)",
        growth >> 20,
        baseline >> 20,
        after >> 20
    );
    let data = input(&store, "data", b"ok", "text/plain");
    let report = call(
        "well-behaved",
        &step_call(json!({}), vec![data], &["count"]),
        &store,
    );
    assert_eq!(report.outcome, Ok(()));
}
