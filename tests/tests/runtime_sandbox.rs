//! The sandbox against a corpus of misbehaving components: every call fails with an error that
//! names the limit or the withheld capability, and the host goes on serving well-behaved calls.

use runledger::engine::StoreArtifactIo;
use runledger::runtime::{COMPONENT_FILE, MANIFEST_FILE, Plugin};
use runledger::runtime::{CallError, CallReport, Capability, Limit};
use runledger_tests::{call, input, plugin, runtime, step_call, temp_store};
use serde_json::json;
use std::time::Duration;

fn run_misbehaving(spec: &str, params: serde_json::Value, outputs: &[&str]) -> CallReport {
    let (_dir, store) = temp_store();
    let report = call(spec, &step_call(params, vec![], outputs), &store);
    assert_well_behaved_call_succeeds();
    report
}

fn assert_well_behaved_call_succeeds() {
    let (_dir, store) = temp_store();
    let data = input(&store, "data", b"12345", "text/plain");
    let report = call(
        "well-behaved",
        &step_call(json!({}), vec![data], &["count"]),
        &store,
    );
    assert_eq!(
        report.outcome,
        Ok(()),
        "well-behaved plugin failed after a misbehaving one"
    );
    assert_eq!(report.outputs.len(), 1);
}

fn limit_of(report: &CallReport) -> &Limit {
    match &report.outcome {
        Err(CallError::LimitExceeded { limit }) => limit,
        other => panic!("expected a limit error, got {other:?}"),
    }
}

fn denied_capability(report: &CallReport) -> Capability {
    match &report.outcome {
        Err(CallError::CapabilityDenied { capability, .. }) => *capability,
        other => panic!("expected a denied capability, got {other:?}"),
    }
}

#[test]
fn hello_writes_greeting_metric_and_log() {
    let (_dir, store) = temp_store();
    let call_spec = step_call(json!({ "name": "wine", "times": 2 }), vec![], &["greeting"]);

    let report = call("hello", &call_spec, &store);

    assert_eq!(report.outcome, Ok(()));
    let greeting = &report.outputs[0];
    let content = store.read_to_vec(&greeting.digest).unwrap();
    assert_eq!(content, b"hello, wine\nhello, wine\n");
    assert_eq!(report.metrics[0].key, "greeting_bytes");
    assert_eq!(report.metrics[0].value, 24.0);
    assert!(
        report
            .logs
            .iter()
            .any(|line| line.message.contains("greeted wine"))
    );
    assert!(report.usage.fuel_consumed > 0);
    assert!(report.usage.peak_memory_bytes > 0);
}

/// The spin-forever component under a manifest with a small fuel budget and a long timeout.
fn fuel_limited_spinner() -> Plugin {
    let source = plugin("spin-forever");
    let dir = tempfile::tempdir()
        .unwrap()
        .keep()
        .join("fuel-burner@0.1.0");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(source.component_path(), dir.join(COMPONENT_FILE)).unwrap();
    let manifest = "name = \"fuel-burner\"\nversion = \"0.1.0\"\nkind = \"step-executor\"\n\
                    description = \"spins until its fuel runs out\"\n\
                    [limits]\nfuel = 50000000\ntimeout-ms = 60000\n";
    std::fs::write(dir.join(MANIFEST_FILE), manifest).unwrap();
    Plugin::load(&dir).unwrap()
}

#[test]
fn infinite_loop_exhausts_fuel() {
    let (_dir, store) = temp_store();
    let io = Box::new(StoreArtifactIo::new(store.clone()));
    let spec = step_call(json!({}), vec![], &[]);

    let report = runtime()
        .call_step(&fuel_limited_spinner(), &spec, io)
        .unwrap();

    assert_eq!(limit_of(&report), &Limit::Fuel { budget: 50_000_000 });
    assert!(
        report
            .outcome
            .unwrap_err()
            .to_string()
            .contains("fuel budget")
    );
    assert_well_behaved_call_succeeds();
}

#[test]
fn infinite_loop_hits_wall_clock_timeout() {
    let (_dir, store) = temp_store();
    let mut spec = step_call(json!({}), vec![], &[]);
    spec.timeout = Some(Duration::from_millis(30));

    let report = call("spin-forever", &spec, &store);

    assert_eq!(limit_of(&report), &Limit::Timeout { millis: 30 });
    assert!(report.usage.wall_time < Duration::from_secs(2));
    assert_well_behaved_call_succeeds();
}

#[test]
fn memory_growth_stops_at_limit() {
    let report = run_misbehaving("memory-hog", json!({}), &[]);

    assert_eq!(limit_of(&report), &Limit::Memory { bytes: 32 << 20 });
    let message = report.outcome.unwrap_err().to_string();
    assert!(message.contains("memory limit of 32 MiB"), "{message}");
}

#[test]
fn unbounded_recursion_hits_stack_limit() {
    let report = run_misbehaving("deep-recursion", json!({}), &[]);

    assert!(
        matches!(limit_of(&report), Limit::Stack { .. }),
        "{:?}",
        report.outcome
    );
}

#[test]
fn panic_reports_its_message() {
    let report = run_misbehaving("panics", json!({}), &[]);

    match &report.outcome {
        Err(CallError::Panic { message }) => {
            assert!(message.contains("deliberate panic"), "{message}")
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert!(report.logs.iter().any(|line| line.level == "stderr"));
}

#[test]
fn log_flood_hits_log_limit() {
    let report = run_misbehaving("log-flood", json!({ "channel": "log" }), &[]);

    assert!(
        matches!(limit_of(&report), Limit::Log { .. }),
        "{:?}",
        report.outcome
    );
    assert!(report.logs.len() <= runledger::runtime::RuntimeSettings::default().max_log_lines);
}

#[test]
fn stdout_flood_hits_stdio_limit() {
    let report = run_misbehaving("log-flood", json!({ "channel": "stdout" }), &[]);

    assert!(
        matches!(limit_of(&report), Limit::Stdio { .. }),
        "{:?}",
        report.outcome
    );
    let captured: usize = report.logs.iter().map(|line| line.message.len() + 1).sum();
    assert!(captured <= 1 << 20, "captured {captured} bytes");
}

#[test]
fn host_file_read_is_denied() {
    let report = run_misbehaving("read-host-file", json!({}), &["leak"]);

    assert_eq!(denied_capability(&report), Capability::Filesystem);
    assert!(report.outputs.is_empty());
}

#[test]
fn environment_read_is_denied() {
    let report = run_misbehaving("read-env", json!({}), &[]);

    assert_eq!(denied_capability(&report), Capability::Environment);
    let message = report.outcome.unwrap_err().to_string();
    assert!(
        message.contains("no environment variables"),
        "the plugin's own error is kept beside the denial: {message}"
    );
}

#[test]
fn network_socket_is_denied() {
    let report = run_misbehaving("open-socket", json!({}), &[]);

    assert_eq!(denied_capability(&report), Capability::Network);
    let message = report.outcome.unwrap_err().to_string();
    assert!(message.contains("TCP"), "{message}");
}

#[test]
fn oversized_output_is_rejected_and_discarded() {
    let (dir, store) = temp_store();
    let report = call(
        "big-output",
        &step_call(json!({}), vec![], &["blob"]),
        &store,
    );

    assert_eq!(
        limit_of(&report),
        &Limit::OutputSize {
            name: "blob".into(),
            bytes: 4 << 20
        }
    );
    assert!(report.outputs.is_empty());
    let stored = walk_files(&dir.path().join("artifacts"));
    assert!(stored.is_empty(), "partial output left behind: {stored:?}");
    assert_well_behaved_call_succeeds();
}

fn walk_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn artifact_handle_is_dead_after_finish_and_after_the_call() {
    let (_dir, store) = temp_store();
    let spec = step_call(json!({}), vec![], &["first"]);

    let first = call("stale-handle", &spec, &store);
    let second = call("stale-handle", &spec, &store);

    for report in [&first, &second] {
        match &report.outcome {
            Err(CallError::Plugin { kind, message }) => {
                assert_eq!(kind, "invalid-state", "{message}");
                assert!(message.contains("already finished"), "{message}");
            }
            other => panic!("expected the write after finish to fail, got {other:?}"),
        }
    }
    assert_well_behaved_call_succeeds();
}

#[test]
fn cancel_flag_stops_a_running_call() {
    let (_dir, store) = temp_store();
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut spec = step_call(json!({}), vec![], &[]);
    spec.cancel = Some(flag.clone());
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });

    let report = call("spin-forever", &spec, &store);
    setter.join().unwrap();

    assert_eq!(report.outcome, Err(CallError::Cancelled));
    assert!(
        report.usage.wall_time < Duration::from_secs(1),
        "{:?}",
        report.usage.wall_time
    );
    assert_well_behaved_call_succeeds();
}

#[test]
fn deterministic_calls_see_fixed_clock_and_seeded_randomness() {
    let (_dir, store) = temp_store();
    let spec = step_call(json!({ "name": "clock" }), vec![], &["greeting"]);

    let first = call("hello", &spec, &store);
    let second = call("hello", &spec, &store);

    assert_eq!(
        first.outputs, second.outputs,
        "same inputs must give identical outputs"
    );
}

#[test]
fn deterministic_sleep_advances_virtual_clock_at_once() {
    let (_dir, store) = temp_store();
    let spec = step_call(json!({ "millis": 15_000 }), vec![], &[]);

    let report = call("sleeper", &spec, &store);

    assert_eq!(report.outcome, Ok(()));
    assert!(
        report.usage.wall_time < Duration::from_secs(1),
        "{:?}",
        report.usage.wall_time
    );
    let observed = report
        .metrics
        .iter()
        .find(|m| m.key == "observed_ms")
        .unwrap();
    assert!(
        observed.value >= 15_000.0,
        "virtual clock saw {} ms",
        observed.value
    );
}

#[test]
fn deterministic_busy_wait_terminates() {
    let (_dir, store) = temp_store();
    let spec = step_call(json!({ "millis": 100, "mode": "busy-wait" }), vec![], &[]);

    let report = call("sleeper", &spec, &store);

    assert_eq!(report.outcome, Ok(()));
    assert!(
        report.usage.wall_time < Duration::from_secs(1),
        "{:?}",
        report.usage.wall_time
    );
}

#[test]
fn real_sleep_is_cut_at_the_timeout() {
    let (_dir, store) = temp_store();
    let mut spec = step_call(json!({ "millis": 15_000 }), vec![], &[]);
    spec.deterministic = false;
    spec.timeout = Some(Duration::from_millis(200));

    let report = call("sleeper", &spec, &store);

    assert_eq!(limit_of(&report), &Limit::Timeout { millis: 200 });
    assert!(
        report.usage.wall_time < Duration::from_secs(2),
        "{:?}",
        report.usage.wall_time
    );
}

#[test]
fn scratch_capability_grants_a_private_directory() {
    let (_dir, store) = temp_store();
    let spec = step_call(json!({}), vec![], &["echo"]);

    let report = call("scratch-user", &spec, &store);

    assert_eq!(report.outcome, Ok(()));
    let echo = store.read_to_vec(&report.outputs[0].digest).unwrap();
    assert_eq!(echo, b"written in the scratch directory");
}
