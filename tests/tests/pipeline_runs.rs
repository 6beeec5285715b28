//! Pipeline runs through the `runledger` binary: the record of a successful run, lineage, the
//! step cache, a failing step, definitions rejected before anything runs, killed and cancelled
//! runs, and reproduction. Every scenario runs once on SQLite and once on a fresh PostgreSQL
//! database, each test in its own data directory.
//!
//! Needs `cargo xtask build-plugins`, `cargo build -p runledger` and PostgreSQL at
//! 127.0.0.1:5432 trusting user `postgres`; run with
//! `cargo test -p runledger-tests --test pipeline_runs`.

use runledger_tests::{
    Backend, Cli, TEST_USER, parse_json, plugins_dir, sha256_file, test_plugins_dir, workspace_root,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Defines a `_sqlite` and a `_postgres` test for each scenario function.
macro_rules! on_both_backends {
    ($($scenario:ident => $sqlite:ident, $postgres:ident;)*) => {
        $(
            #[test]
            fn $sqlite() {
                $scenario(Backend::Sqlite);
            }

            #[test]
            fn $postgres() {
                $scenario(Backend::Postgres);
            }
        )*
    };
}

on_both_backends! {
    wine_run_record => wine_record_sqlite, wine_record_postgres;
    lineage_closure => lineage_closure_sqlite, lineage_closure_postgres;
    step_cache => step_cache_sqlite, step_cache_postgres;
    malformed_csv => malformed_csv_sqlite, malformed_csv_postgres;
    rejected_definitions => rejected_definitions_sqlite, rejected_definitions_postgres;
    killed_run => killed_run_sqlite, killed_run_postgres;
    sigint_cancel => sigint_cancels_sqlite, sigint_cancels_postgres;
    reproduce_run => reproduce_identical_sqlite, reproduce_identical_postgres;
}

/// Steps of the wine-quality example, in definition order.
const WINE_STEPS: [&str; 5] = ["ingest", "split", "standardize", "train", "evaluate"];

/// Resource metrics the engine records for every executed step, as `STEP/NAME`.
const RESOURCE_METRICS: [&str; 3] = ["wall_time_ms", "fuel", "peak_memory_bytes"];

/// How often the tests poll a `runledger run` running in the background.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long a background run may take to start its step. Generous, because the tests share a
/// few cores with each other and with builds.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `runledger run` may take to exit after SIGINT.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// 1. the record of a successful run

fn wine_run_record(backend: Backend) {
    let cli = Cli::new(backend);
    let started = now_ms();

    let override_and_tags = [
        "--param",
        "alpha=0.2",
        "--tag",
        "team=forecasting",
        "--tag",
        "purpose=e2e",
    ];
    let summary = run_wine(&cli, &override_and_tags);

    let finished = now_ms();
    assert_eq!(summary["status"], "succeeded", "status in the run summary");
    let run_id = text(&summary, "/run_id");
    let detail = show_run(&cli, run_id);
    check_run_identity(&detail, started, finished);
    check_params_and_tags(&detail);
    check_environment(&detail);
    check_step_records(&detail, 0.2);
    check_metrics(&detail);
    check_artifact_files(&cli, &detail);
    check_step_logs(&cli, run_id);
}

fn check_run_identity(detail: &Value, command_started: i64, command_finished: i64) {
    let run = &detail["run"];
    assert_eq!(run["status"], "succeeded", "recorded run status");
    assert_eq!(run["error"], Value::Null, "a succeeded run has no error");
    assert_eq!(
        run["name"], "wine-quality",
        "a run is named after its pipeline"
    );
    assert_eq!(run["user_name"], TEST_USER, "the user is taken from $USER");
    assert_eq!(
        run["source"], "cli",
        "source of a run started by `runledger run`"
    );

    let pipeline = &detail["pipeline"];
    let yaml = std::fs::read_to_string(wine_pipeline()).expect("read the wine pipeline");
    assert_eq!(pipeline["name"], "wine-quality", "recorded pipeline name");
    assert_eq!(
        pipeline["definition_digest"],
        sha256_file(&wine_pipeline()).as_str(),
        "the definition digest is the SHA-256 of the YAML file"
    );
    assert_eq!(
        pipeline["definition_text"],
        yaml.as_str(),
        "the YAML text is recorded verbatim"
    );

    let created = run["created_at"].as_i64().expect("created_at is set");
    let started = run["started_at"].as_i64().expect("started_at is set");
    let ended = run["ended_at"].as_i64().expect("ended_at is set");
    assert!(
        command_started <= created,
        "created at {created}, before the command started"
    );
    assert!(
        created <= started,
        "started at {started}, before it was created at {created}"
    );
    assert!(
        started <= ended,
        "ended at {ended}, before it started at {started}"
    );
    assert!(
        ended <= command_finished,
        "ended at {ended}, after the command exited"
    );
}

fn check_params_and_tags(detail: &Value) {
    let params = &detail["params"];
    assert_eq!(params["seed"], "42", "seed keeps the pipeline's default");
    assert_eq!(params["alpha"], "0.2", "alpha is overridden by --param");
    assert_eq!(
        params.as_object().map(|params| params.len()),
        Some(2),
        "only the pipeline's two params are recorded: {params}"
    );
    assert_eq!(
        detail["tags"],
        json!({ "team": "forecasting", "purpose": "e2e" }),
        "tags are the --tag arguments"
    );
}

fn check_environment(detail: &Value) {
    let environment = &detail["environment"];
    assert_eq!(
        environment["runledger_version"],
        env!("CARGO_PKG_VERSION"),
        "runledger version (the workspace version this test crate shares)"
    );
    assert_eq!(
        environment["wasmtime_version"],
        locked_version("wasmtime").as_str(),
        "wasmtime version as locked in Cargo.lock"
    );
    assert_eq!(environment["os"], std::env::consts::OS, "operating system");
    assert_eq!(
        environment["arch"],
        std::env::consts::ARCH,
        "CPU architecture"
    );
    assert_eq!(
        environment["git"]["commit"],
        git_head().as_str(),
        "git commit of the repository that contains the pipeline file"
    );

    let plugins = environment["plugins"]
        .as_array()
        .expect("plugins is an array");
    assert_eq!(
        plugins.len(),
        WINE_STEPS.len(),
        "one plugin entry per plugin used: {plugins:?}"
    );
    for expected in wine_steps(0.2) {
        let name = expected.plugin;
        let entry = plugins
            .iter()
            .find(|plugin| plugin["name"] == name)
            .unwrap_or_else(|| panic!("no environment entry for plugin {name}: {plugins:?}"));
        assert_eq!(entry["version"], "0.1.0", "version of plugin {name}");
        assert_eq!(
            entry["digest"],
            plugin_digest(name).as_str(),
            "digest of plugin {name} is the SHA-256 of its component"
        );
    }
}

fn check_step_records(detail: &Value, alpha: f64) {
    let csv_digest = sha256_file(&wine_csv());
    for expected in wine_steps(alpha) {
        let name = expected.name;
        let step = step_record(detail, name);
        let record = &step["step_run"];
        assert_eq!(record["status"], "succeeded", "status of step {name}");
        assert_eq!(record["attempts"], 1, "attempts of step {name}");
        assert_eq!(record["error"], Value::Null, "error of step {name}");
        assert_eq!(
            record["cached_from"],
            Value::Null,
            "step {name} ran, so nothing was reused"
        );
        assert!(record["ended_at"].is_i64(), "step {name} has an end time");
        assert_eq!(
            record["plugin_name"], expected.plugin,
            "plugin of step {name}"
        );
        assert_eq!(
            record["plugin_version"], "0.1.0",
            "plugin version of step {name}"
        );
        assert_eq!(
            record["plugin_digest"],
            plugin_digest(expected.plugin).as_str(),
            "plugin digest of step {name}"
        );
        assert_eq!(
            record["params_json"], expected.params,
            "resolved params of step {name}"
        );

        let inputs = linked_digests(&step["inputs"]);
        let input_names: BTreeSet<&str> = expected.inputs.iter().map(|(input, _)| *input).collect();
        assert_eq!(key_set(&inputs), input_names, "input names of step {name}");
        for (input, source) in expected.inputs {
            let digest = match source.split_once('.') {
                Some(("inputs", _)) => csv_digest.clone(),
                Some((upstream, output)) => {
                    linked_digests(&step_record(detail, upstream)["outputs"])[output].clone()
                }
                None => unreachable!("sources are `inputs.NAME` or `STEP.OUTPUT`"),
            };
            assert_eq!(
                inputs[*input], digest,
                "input {input} of step {name} is {source}"
            );
        }

        let outputs = linked_digests(&step["outputs"]);
        let output_names: BTreeSet<&str> = expected.outputs.iter().copied().collect();
        assert_eq!(
            key_set(&outputs),
            output_names,
            "output names of step {name}"
        );
        for (output, digest) in &outputs {
            assert!(
                is_sha256(digest),
                "output {output} of step {name} has digest {digest}"
            );
        }
    }
}

fn check_metrics(detail: &Value) {
    let rmse = latest_metric(detail, "test_rmse");
    assert!(
        (0.55..0.75).contains(&rmse),
        "test_rmse {rmse} is outside 0.55..0.75"
    );
    let r2 = latest_metric(detail, "test_r2");
    assert!(r2 > 0.25, "test_r2 {r2} is not above 0.25");
    for step in WINE_STEPS {
        for resource in RESOURCE_METRICS {
            let key = format!("{step}/{resource}");
            let value = latest_metric(detail, &key);
            assert!(
                value > 0.0,
                "metric {key} is {value}, expected a positive amount"
            );
        }
    }
}

/// Checks that every artifact file is named after its SHA-256 and that each recorded artifact is
/// stored once.
fn check_artifact_files(cli: &Cli, detail: &Value) {
    let stored = stored_artifacts(cli);
    for (digest, path) in &stored {
        let actual = sha256_file(path);
        assert_eq!(
            &actual,
            digest,
            "content of {} hashes to its name",
            path.display()
        );
    }

    let links = detail["artifacts"]
        .as_array()
        .expect("artifacts is an array");
    let recorded: BTreeSet<&str> = links
        .iter()
        .map(|linked| text(linked, "/link/digest"))
        .collect();
    assert_eq!(
        recorded.len(),
        11,
        "the wine CSV and 10 step outputs are recorded"
    );
    assert_eq!(
        stored.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        recorded,
        "the artifact directory holds exactly the recorded artifacts, one file each"
    );
    for linked in links {
        let digest = text(linked, "/link/digest");
        let size = std::fs::metadata(&stored[digest])
            .expect("artifact file")
            .len();
        assert_eq!(linked["size"], size, "recorded size of artifact {digest}");
    }

    let temporary = cli.data_dir().join("artifacts/tmp");
    let leftovers = std::fs::read_dir(&temporary).map_or(0, |entries| entries.count());
    assert_eq!(
        leftovers,
        0,
        "no temporary files are left in {}",
        temporary.display()
    );
}

fn check_step_logs(cli: &Cli, run_id: &str) {
    let args = ["runs", "logs", run_id, "--json"];
    let output = cli.output(&args);
    assert!(
        output.status.success(),
        "runs logs failed: {}",
        stderr_of(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| parse_json(line.as_bytes(), &args))
        .collect();
    for step in WINE_STEPS {
        let count = lines.iter().filter(|line| line["step"] == step).count();
        assert!(count > 0, "runs logs has no line of step {step}:\n{stdout}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. lineage

fn lineage_closure(backend: Backend) {
    let cli = Cli::new(backend);
    let summary = run_wine(&cli, &[]);
    let run_id = text(&summary, "/run_id");
    let step_runs: BTreeMap<&str, &str> = WINE_STEPS
        .iter()
        .map(|step| (*step, text(summary_step(&summary, step), "/step_run_id")))
        .collect();
    let model = summary_outputs(summary_step(&summary, "train"))["model"].clone();
    let plot = summary_outputs(summary_step(&summary, "evaluate"))["plot"].clone();
    let dataset = sha256_file(&wine_csv());

    let upstream = lineage(&cli, &[&model, "--upstream"]);
    let nodes = node_set(&upstream);
    assert!(
        nodes.contains(&node("dataset", &dataset)),
        "upstream of the model reaches the CSV as a dataset node: {nodes:?}"
    );
    for step in ["ingest", "split", "standardize", "train"] {
        assert!(
            nodes.contains(&node("step_run", step_runs[step])),
            "upstream of the model contains the step run of {step}: {nodes:?}"
        );
    }
    assert!(
        !nodes.contains(&node("step_run", step_runs["evaluate"])),
        "evaluate consumes the model, so it is not upstream of it: {nodes:?}"
    );
    for edge in upstream["edges"].as_array().expect("edges is an array") {
        assert_eq!(
            edge["run_id"], run_id,
            "every edge was recorded by the run: {edge}"
        );
    }

    let plot_nodes = node_set(&lineage(&cli, &[&plot, "--upstream"]));
    for step in WINE_STEPS {
        assert!(
            plot_nodes.contains(&node("step_run", step_runs[step])),
            "upstream of the evaluation plot contains every step run, {step} included"
        );
    }

    let downstream = node_set(&lineage(&cli, &[&dataset, "--downstream"]));
    assert!(
        downstream.contains(&node("artifact", &model)),
        "downstream of the dataset reaches the model: {downstream:?}"
    );
    assert!(
        downstream.contains(&node("artifact", &plot)),
        "downstream of the dataset reaches the evaluation plot: {downstream:?}"
    );

    let direct = lineage(&cli, &[&model, "--upstream", "--depth", "1"]);
    let expected = BTreeSet::from([
        node("artifact", &model),
        node("step_run", step_runs["train"]),
    ]);
    assert_eq!(
        node_set(&direct),
        expected,
        "depth 1 upstream of the model is the model and the step run that produced it"
    );
    assert_eq!(
        edge_set(&direct),
        BTreeSet::from([(
            node("step_run", step_runs["train"]),
            node("artifact", &model)
        )]),
        "depth 1 upstream of the model has only the edge from its step run"
    );

    let first_step = lineage(&cli, &[&dataset, "--downstream", "--depth", "1"]);
    let expected = BTreeSet::from([
        node("dataset", &dataset),
        node("step_run", step_runs["ingest"]),
    ]);
    assert_eq!(
        node_set(&first_step),
        expected,
        "depth 1 downstream of the dataset is the dataset and the step run that read it"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. the step cache

fn step_cache(backend: Backend) {
    let cli = Cli::new(backend);
    let first = run_wine(&cli, &[]);
    let first_detail = show_run(&cli, text(&first, "/run_id"));

    let second = run_wine(&cli, &[]);
    let second_detail = show_run(&cli, text(&second, "/run_id"));
    for step in WINE_STEPS {
        let original = summary_step(&first, step);
        let again = summary_step(&second, step);
        assert_eq!(
            again["status"], "cached",
            "step {step} of an identical second run"
        );
        assert_eq!(
            again["cached_from"], original["step_run_id"],
            "step {step} reuses the first run's step run"
        );
        assert_eq!(
            summary_outputs(again),
            summary_outputs(original),
            "step {step} has the first run's output digests"
        );
        let record = &step_record(&second_detail, step)["step_run"];
        assert_eq!(
            record["status"], "cached",
            "recorded status of cached step {step}"
        );
        assert_eq!(
            record["cached_from"], original["step_run_id"],
            "recorded source of cached step {step}"
        );
    }
    assert_eq!(
        latest_metric(&second_detail, "test_rmse"),
        latest_metric(&first_detail, "test_rmse"),
        "the cached run reports the first run's test_rmse"
    );

    let changed = run_wine(&cli, &["--param", "alpha=0.5"]);
    for step in ["ingest", "split", "standardize"] {
        let summary = summary_step(&changed, step);
        assert_eq!(
            summary["status"], "cached",
            "step {step} does not depend on alpha"
        );
        assert!(
            summary["cached_from"].is_string(),
            "cached step {step} names its source"
        );
    }
    for step in ["train", "evaluate"] {
        let summary = summary_step(&changed, step);
        assert_eq!(
            summary["status"], "succeeded",
            "step {step} re-executes for a new alpha"
        );
        assert_eq!(
            summary["attempts"], 1,
            "attempts of re-executed step {step}"
        );
        assert_eq!(
            summary["cached_from"],
            Value::Null,
            "re-executed step {step} reused nothing"
        );
    }
    assert_ne!(
        summary_outputs(summary_step(&changed, "train"))["model"],
        summary_outputs(summary_step(&first, "train"))["model"],
        "a different alpha trains a different model"
    );

    let uncached = run_wine(&cli, &["--no-cache"]);
    for step in WINE_STEPS {
        let summary = summary_step(&uncached, step);
        assert_eq!(
            summary["status"], "succeeded",
            "step {step} executes under --no-cache"
        );
        assert_eq!(
            summary["cached_from"],
            Value::Null,
            "step {step} reused nothing"
        );
        assert_eq!(
            summary_outputs(summary),
            summary_outputs(summary_step(&first, step)),
            "step {step} is deterministic, so re-executing it gives the first run's digests"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. a failing step

/// A CSV whose line 4 has two fields where the header has three.
const MALFORMED_CSV: &str = "a,b,c\n1,2,3\n4,5,6\n7,8\n10,11,12\n";

/// The malformed CSV feeds ingest and then split, and hello depends on neither.
const MALFORMED_PIPELINE: &str = "\
name: malformed-csv
inputs:
  table: { path: malformed.csv, media-type: text/csv }
steps:
  - name: ingest
    plugin: csv-ingest@0.1.0
    inputs: { source: inputs.table }
  - name: split
    plugin: split@0.1.0
    inputs: { table: ingest.table, schema: ingest.schema }
  - name: hello
    plugin: hello@0.1.0
    params: { name: x }
";

fn malformed_csv(backend: Backend) {
    let cli = Cli::new(backend);
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("malformed.csv"), MALFORMED_CSV).expect("write CSV");
    let pipeline = write_file(dir.path(), "pipeline.yaml", MALFORMED_PIPELINE);

    let output = cli.output(&["run", path_text(&pipeline), "--json"]);

    assert_eq!(
        output.status.code(),
        Some(1),
        "exit status: {}",
        stderr_of(&output)
    );
    let summary = parse_json(&output.stdout, &["run"]);
    assert_eq!(summary["status"], "failed", "status in the run summary");
    let detail = show_run(&cli, text(&summary, "/run_id"));

    let ingest = &step_record(&detail, "ingest")["step_run"];
    assert_eq!(ingest["status"], "failed", "status of ingest");
    let ingest_error = text(ingest, "/error");
    assert!(
        ingest_error.contains("line 4"),
        "ingest error names the bad line: {ingest_error}"
    );

    let split = &step_record(&detail, "split")["step_run"];
    assert_eq!(
        split["status"], "skipped",
        "split depends on the failed ingest"
    );
    assert_eq!(split["attempts"], 0, "a skipped step makes no attempt");
    let split_error = text(split, "/error");
    assert!(
        split_error.contains("`ingest`"),
        "split names the step it waited for: {split_error}"
    );

    let hello = step_record(&detail, "hello");
    assert_eq!(
        hello["step_run"]["status"], "succeeded",
        "hello does not depend on ingest"
    );
    let greeting = &linked_digests(&hello["outputs"])["greeting"];
    let content = std::fs::read_to_string(artifact_path(&cli, greeting)).expect("greeting file");
    assert_eq!(content, "hello, x\n", "recorded greeting output of hello");

    assert_eq!(detail["run"]["status"], "failed", "recorded run status");
    let run_error = text(&detail, "/run/error");
    assert!(
        run_error.contains("step `ingest`"),
        "run error names the failed step: {run_error}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. definitions rejected before anything runs

/// A pipeline that must be rejected with exit status 2, and text its error must contain.
struct Rejected {
    file: &'static str,
    yaml: &'static str,
    expected: &'static [&'static str],
}

const REJECTED: &[Rejected] = &[
    Rejected {
        file: "cycle.yaml",
        yaml: "\
name: cycle
steps:
  - name: a
    plugin: copy@0.1.0
    inputs: { source: b.copy }
  - name: b
    plugin: copy@0.1.0
    inputs: { source: a.copy }
",
        expected: &["cycle: a -> b -> a"],
    },
    Rejected {
        file: "unknown-plugin.yaml",
        yaml: "\
name: unknown-plugin
steps:
  - name: greet
    plugin: helo@0.1.0
    params: { name: x }
",
        expected: &[
            "/steps/0/plugin",
            "`helo@0.1.0` not found",
            "did you mean `hello`",
        ],
    },
    Rejected {
        file: "unknown-output.yaml",
        yaml: "\
name: unknown-output
inputs:
  table: { path: valid.csv, media-type: text/csv }
steps:
  - name: ingest
    plugin: csv-ingest@0.1.0
    inputs: { source: inputs.table }
  - name: split
    plugin: split@0.1.0
    inputs: { table: ingest.tabel }
",
        expected: &[
            "/steps/1/inputs/table",
            "no output `tabel`",
            "did you mean `table`",
        ],
    },
    Rejected {
        file: "duplicate-step.yaml",
        yaml: "\
name: duplicate-step
steps:
  - name: greet
    plugin: hello@0.1.0
    params: { name: x }
  - name: greet
    plugin: hello@0.1.0
    params: { name: y }
",
        expected: &["/steps/1/name", "duplicate step name `greet`"],
    },
    Rejected {
        file: "missing-input.yaml",
        yaml: "\
name: missing-input
inputs:
  table: { path: missing.csv, media-type: text/csv }
steps:
  - name: ingest
    plugin: csv-ingest@0.1.0
    inputs: { source: inputs.table }
",
        expected: &["/inputs/table", "missing.csv does not exist"],
    },
    Rejected {
        file: "invalid-params.yaml",
        yaml: "\
name: invalid-params
inputs:
  table: { path: valid.csv, media-type: text/csv }
steps:
  - name: ingest
    plugin: csv-ingest@0.1.0
    inputs: { source: inputs.table }
  - name: holdout
    plugin: split@0.1.0
    inputs: { table: ingest.table }
    params: { test-fraction: 1.5 }
",
        // NOTE: the error places the step by its index (`/steps/1`), not by its name `holdout`.
        expected: &[
            "/steps/1/params/test-fraction",
            "split@0.1.0's params schema",
        ],
    },
];

fn rejected_definitions(backend: Backend) {
    let cli = Cli::new(backend);
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("valid.csv"), "a,b\n1,2\n3,4\n").expect("write CSV");

    for case in REJECTED {
        let file = case.file;
        let pipeline = write_file(dir.path(), file, case.yaml);

        let output = cli.output(&["run", path_text(&pipeline)]);

        let stderr = stderr_of(&output);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{file}: exit status, stderr: {stderr}"
        );
        for fragment in case.expected {
            assert!(
                stderr.contains(fragment),
                "{file}: error lacks `{fragment}`: {stderr}"
            );
        }
    }

    let runs = cli.json(&["runs", "list", "--json"]);
    assert_eq!(runs, json!([]), "rejected definitions record no run");
    let stored = stored_artifacts(&cli);
    assert!(
        stored.is_empty(),
        "rejected definitions store no artifact: {stored:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 6 and 7. killed and cancelled runs

/// A pipeline whose one step spins until it is stopped or its 60 s timeout passes.
const SPIN_PIPELINE: &str = "\
name: spin
steps:
  - name: spin
    plugin: spin-forever@0.1.0
    timeout: 60s
";

/// The built spin-forever manifest with a 10-minute wall-clock limit instead of 2 s. A step's
/// `timeout` can only tighten its plugin's limit, so under the built manifest the step would
/// time out about 2 s after it starts, and a slow poll could miss the running state.
const SPIN_MANIFEST: &str = r#"name = "spin-forever"
version = "0.1.0"
kind = "step-executor"
description = "Loops forever without returning. This copy allows calls of up to 10 minutes"

[limits]
memory-mib = 32
timeout-ms = 600000
fuel = 1000000000000
"#;

/// The spin pipeline, its plugin under [`SPIN_MANIFEST`], and files for the process output.
struct SpinSetup {
    dir: tempfile::TempDir,
}

impl SpinSetup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let plugin = dir.path().join("plugins/spin-forever@0.1.0");
        std::fs::create_dir_all(&plugin).expect("create plugin directory");
        let component = test_plugins_dir().join("spin-forever@0.1.0/plugin.wasm");
        std::fs::copy(&component, plugin.join("plugin.wasm")).expect("copy spin-forever");
        write_file(&plugin, "plugin.toml", SPIN_MANIFEST);
        write_file(dir.path(), "pipeline.yaml", SPIN_PIPELINE);
        Self { dir }
    }

    /// Creates a [`Cli`] whose plugin directories provide spin-forever only under
    /// [`SPIN_MANIFEST`].
    fn cli(&self, backend: Backend) -> Cli {
        Cli::new(backend).with_plugin_dirs(vec![self.dir.path().join("plugins"), plugins_dir()])
    }

    /// Starts `runledger run` in the background, its stdout and stderr going to files.
    fn start(&self, cli: &Cli) -> RunProcess {
        let pipeline = self.dir.path().join("pipeline.yaml");
        let stdout = File::create(self.stdout_path()).expect("stdout file");
        let stderr = File::create(self.stderr_path()).expect("stderr file");
        let child = cli
            .command(&["run", path_text(&pipeline), "--json"])
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start runledger run");
        RunProcess { child }
    }

    fn stdout_path(&self) -> PathBuf {
        self.dir.path().join("stdout")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr")
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// Polls until the run's step is running and returns the run id.
    fn wait_until_step_runs(&self, cli: &Cli, process: &mut RunProcess) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = process.child.try_wait().expect("poll runledger run") {
                panic!(
                    "runledger run exited with {status} before its step ran: {}",
                    self.stderr()
                );
            }
            if let Some(run_id) = running_run(cli) {
                let detail = show_run(cli, &run_id);
                if step_record(&detail, "spin")["step_run"]["status"] == "running" {
                    return run_id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the step was not running after {START_TIMEOUT:?}"
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// A background `runledger run`, killed on drop if still running so a failed test leaves no
/// spinning process behind.
struct RunProcess {
    child: Child,
}

impl RunProcess {
    /// Waits for the process to exit and panics after `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll runledger run") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "runledger run did not exit within {limit:?}"
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for RunProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Returns the id of a run that `runs list` shows as running, if any.
fn running_run(cli: &Cli) -> Option<String> {
    let runs = cli.json(&["runs", "list", "--json"]);
    let runs = runs.as_array().expect("runs list prints an array");
    let running = runs.iter().find(|run| run["status"] == "running")?;
    Some(text(running, "/id").to_owned())
}

fn killed_run(backend: Backend) {
    let setup = SpinSetup::new();
    let cli = setup.cli(backend);
    let mut process = setup.start(&cli);
    let run_id = setup.wait_until_step_runs(&cli, &mut process);
    let pid = process.child.id();

    // std's Child::kill sends SIGKILL on Unix, so the process cannot record anything more.
    process.child.kill().expect("send SIGKILL");
    process.wait(EXIT_TIMEOUT);
    let output = cli.output(&["runs", "show", &run_id, "--json"]);

    let stderr = stderr_of(&output);
    assert!(
        output.status.success(),
        "runs show after the kill failed: {stderr}"
    );
    assert!(
        stderr.contains(&run_id),
        "the next command reports the run it marked: {stderr}"
    );
    let detail = parse_json(&output.stdout, &["runs", "show"]);
    assert_eq!(
        detail["run"]["status"], "interrupted",
        "status of the killed run"
    );
    assert!(
        detail["run"]["ended_at"].is_i64(),
        "an interrupted run gets an end time"
    );
    let error = text(&detail, "/run/error");
    assert!(
        error.contains(&pid.to_string()),
        "the error names the dead process {pid}: {error}"
    );
    let step = &step_record(&detail, "spin")["step_run"];
    assert_eq!(
        step["status"], "cancelled",
        "the step left running by the killed process"
    );
    assert!(
        step["ended_at"].is_i64(),
        "the step of an interrupted run gets an end time"
    );
}

fn sigint_cancel(backend: Backend) {
    let setup = SpinSetup::new();
    let cli = setup.cli(backend);
    let mut process = setup.start(&cli);
    let run_id = setup.wait_until_step_runs(&cli, &mut process);

    send_sigint(process.child.id());
    let status = process.wait(EXIT_TIMEOUT);

    assert_eq!(
        status.code(),
        Some(130),
        "exit status after SIGINT: {}",
        setup.stderr()
    );
    let stdout = std::fs::read(setup.stdout_path()).expect("read stdout");
    let summary = parse_json(&stdout, &["run"]);
    assert_eq!(summary["status"], "cancelled", "status in the run summary");
    let detail = show_run(&cli, &run_id);
    assert_eq!(detail["run"]["status"], "cancelled", "recorded run status");
    assert!(
        detail["run"]["ended_at"].is_i64(),
        "a cancelled run gets an end time"
    );
    let step = &step_record(&detail, "spin")["step_run"];
    assert_eq!(
        step["status"], "cancelled",
        "recorded status of the spinning step"
    );
    assert!(
        step["ended_at"].is_i64(),
        "the cancelled step gets an end time"
    );
}

fn send_sigint(pid: u32) {
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("start kill");
    assert!(status.success(), "kill -INT {pid} failed with {status}");
}

// ---------------------------------------------------------------------------------------------
// 8. reproduction

fn reproduce_run(backend: Backend) {
    let cli = Cli::new(backend);
    let first = run_wine(&cli, &[]);
    let first_id = text(&first, "/run_id");

    let output = cli.output(&["reproduce", first_id, "--json"]);

    assert_eq!(
        output.status.code(),
        Some(0),
        "reproduce exit status: {}",
        stderr_of(&output)
    );
    let report = parse_json(&output.stdout, &["reproduce"]);
    assert_eq!(report["original_run"], first_id, "the run reproduced");
    assert_eq!(
        report["status"], "succeeded",
        "status of the reproduction run"
    );
    assert_eq!(
        report["identical"], true,
        "the reproduction is identical overall"
    );

    let artifacts = report["artifacts"]
        .as_array()
        .expect("artifacts is an array");
    assert_eq!(
        artifacts.len(),
        10,
        "every output of the run is compared: {artifacts:?}"
    );
    let compared: BTreeSet<(&str, &str)> = artifacts
        .iter()
        .map(|artifact| (text(artifact, "/step"), text(artifact, "/artifact")))
        .collect();
    let expected: BTreeSet<(&str, &str)> = wine_steps(0.1)
        .iter()
        .flat_map(|step| step.outputs.iter().map(|output| (step.name, *output)))
        .collect();
    assert_eq!(
        compared, expected,
        "the compared artifacts are the steps' outputs"
    );
    for artifact in artifacts {
        let name = format!(
            "{}.{}",
            text(artifact, "/step"),
            text(artifact, "/artifact")
        );
        assert_eq!(artifact["identical"], true, "{name} is reported identical");
        assert_eq!(
            artifact["reproduced"], artifact["original"],
            "digests of {name}"
        );
    }

    let reproduced_id = text(&report, "/reproduced_run");
    assert_ne!(
        reproduced_id, first_id,
        "the reproduction is recorded as a new run"
    );
    let detail = show_run(&cli, reproduced_id);
    assert_eq!(
        detail["tags"]["reproduces"], first_id,
        "the new run is tagged with its source"
    );
    for step in WINE_STEPS {
        let status = &step_record(&detail, step)["step_run"]["status"];
        assert_eq!(
            status, "succeeded",
            "step {step} is re-executed, not taken from the cache"
        );
    }
}

#[test]
fn reproduce_repairs_tampered_artifact_sqlite() {
    let cli = Cli::new(Backend::Sqlite);
    let first = run_wine(&cli, &[]);
    let first_id = text(&first, "/run_id");
    let model = summary_outputs(summary_step(&first, "train"))["model"].clone();
    let stored = artifact_path(&cli, &model);
    std::fs::write(&stored, b"{\"weights\": []}").expect("tamper with the stored model");

    let output = cli.output(&["reproduce", first_id, "--json"]);

    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let report = parse_json(&output.stdout, &["reproduce"]);
    assert_eq!(
        report["identical"], true,
        "the re-executed outputs match the records"
    );
    let entry = report["artifacts"]
        .as_array()
        .expect("artifacts is an array")
        .iter()
        .find(|artifact| artifact["artifact"] == "model")
        .expect("the model is compared");
    let state = entry["stored_copy"].as_str().unwrap_or_default();
    assert!(
        state.starts_with("corrupt"),
        "the damaged copy is reported: {state}"
    );
    assert_eq!(
        sha256_file(&stored),
        model,
        "the reproduction rewrote the damaged copy with the verified bytes"
    );
}

// ---------------------------------------------------------------------------------------------
// the wine-quality example

/// What the record of one wine-quality step must show.
struct ExpectedStep {
    name: &'static str,
    plugin: &'static str,
    params: Value,
    /// Input name to its source: `inputs.NAME` or `STEP.OUTPUT`.
    inputs: &'static [(&'static str, &'static str)],
    outputs: &'static [&'static str],
}

/// Returns the expected steps of examples/wine-quality/pipeline.yaml when its param `alpha` has
/// this value.
fn wine_steps(alpha: f64) -> Vec<ExpectedStep> {
    vec![
        ExpectedStep {
            name: "ingest",
            plugin: "csv-ingest",
            params: json!({}),
            inputs: &[("source", "inputs.wine")],
            outputs: &["table", "schema"],
        },
        ExpectedStep {
            name: "split",
            plugin: "split",
            params: json!({ "test-fraction": 0.2, "seed": 42 }),
            inputs: &[("table", "ingest.table"), ("schema", "ingest.schema")],
            outputs: &["train", "test"],
        },
        ExpectedStep {
            name: "standardize",
            plugin: "standardize",
            params: json!({ "target": "quality" }),
            inputs: &[("train", "split.train"), ("test", "split.test")],
            outputs: &["train", "test", "scaler"],
        },
        ExpectedStep {
            name: "train",
            plugin: "linreg",
            params: json!({
                "target": "quality",
                "alpha": alpha,
                "learning-rate": 0.05,
                "epochs": 500,
                "seed": 42,
            }),
            inputs: &[("train", "standardize.train")],
            outputs: &["model"],
        },
        ExpectedStep {
            name: "evaluate",
            plugin: "regress-eval",
            params: json!({}),
            inputs: &[("model", "train.model"), ("test", "standardize.test")],
            outputs: &["metrics", "plot"],
        },
    ]
}

fn wine_pipeline() -> PathBuf {
    workspace_root().join("examples/wine-quality/pipeline.yaml")
}

fn wine_csv() -> PathBuf {
    workspace_root().join("examples/wine-quality/data/winequality-red.csv")
}

/// Runs the wine-quality example with `extra` arguments to `run` and returns the summary that
/// `--json` prints. The run must succeed.
fn run_wine(cli: &Cli, extra: &[&str]) -> Value {
    let pipeline = wine_pipeline();
    let mut args = vec!["run", path_text(&pipeline), "--json"];
    args.extend_from_slice(extra);
    cli.json(&args)
}

/// Computes the SHA-256 of the component of first-party plugin `name`, version 0.1.0.
fn plugin_digest(name: &str) -> String {
    sha256_file(&plugins_dir().join(format!("{name}@0.1.0/plugin.wasm")))
}

// ---------------------------------------------------------------------------------------------
// reading the JSON records

fn show_run(cli: &Cli, run_id: &str) -> Value {
    cli.json(&["runs", "show", run_id, "--json"])
}

/// Returns the string at JSON pointer `pointer` and panics when it is missing or not a string.
fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

/// Finds the step named `name` in a `runs show --json` record.
fn step_record<'a>(detail: &'a Value, name: &str) -> &'a Value {
    let steps = detail["steps"].as_array().expect("steps is an array");
    steps
        .iter()
        .find(|step| step["step_run"]["name"] == name)
        .unwrap_or_else(|| panic!("the run record has no step `{name}`"))
}

/// Finds the step named `name` in a `run --json` summary.
fn summary_step<'a>(summary: &'a Value, name: &str) -> &'a Value {
    let steps = summary["steps"].as_array().expect("steps is an array");
    steps
        .iter()
        .find(|step| step["name"] == name)
        .unwrap_or_else(|| panic!("the run summary has no step `{name}`"))
}

/// Maps the name of each linked artifact, as in a step record's `inputs` or `outputs`, to its
/// digest.
fn linked_digests(links: &Value) -> BTreeMap<String, String> {
    let links = links.as_array().expect("linked artifacts are an array");
    links
        .iter()
        .map(|linked| {
            let name = text(linked, "/link/name").to_owned();
            (name, text(linked, "/link/digest").to_owned())
        })
        .collect()
}

/// Maps each output name of a step in a `run --json` summary to its digest.
fn summary_outputs(step: &Value) -> BTreeMap<String, String> {
    let outputs = step["outputs"].as_array().expect("outputs is an array");
    outputs
        .iter()
        .map(|output| {
            (
                text(output, "/name").to_owned(),
                text(output, "/digest").to_owned(),
            )
        })
        .collect()
}

fn key_set(map: &BTreeMap<String, String>) -> BTreeSet<&str> {
    map.keys().map(String::as_str).collect()
}

/// Returns the latest value of metric `key` in a `runs show --json` record.
fn latest_metric(detail: &Value, key: &str) -> f64 {
    let metrics = detail["latest_metrics"]
        .as_array()
        .expect("latest_metrics is an array");
    metrics
        .iter()
        .find(|point| point["key"] == key)
        .and_then(|point| point["value"].as_f64())
        .unwrap_or_else(|| panic!("the run has no metric {key}"))
}

/// Runs `runledger lineage ARGS --format json`.
fn lineage(cli: &Cli, args: &[&str]) -> Value {
    let mut full = vec!["lineage"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--format", "json"]);
    cli.json(&full)
}

/// A lineage node as (kind, id).
type NodeKey = (String, String);

fn node(kind: &str, id: &str) -> NodeKey {
    (kind.to_owned(), id.to_owned())
}

fn node_set(graph: &Value) -> BTreeSet<NodeKey> {
    let nodes = graph["nodes"].as_array().expect("nodes is an array");
    nodes
        .iter()
        .map(|entry| node(text(entry, "/kind"), text(entry, "/id")))
        .collect()
}

fn edge_set(graph: &Value) -> BTreeSet<(NodeKey, NodeKey)> {
    let edges = graph["edges"].as_array().expect("edges is an array");
    edges
        .iter()
        .map(|edge| {
            let source = node(text(edge, "/source/kind"), text(edge, "/source/id"));
            (
                source,
                node(text(edge, "/target/kind"), text(edge, "/target/id")),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// files, processes and the repository

/// Lists the artifact files under the data directory by name, where `artifacts/AB/CDEF...` is
/// named `ABCDEF...`. The `tmp` directory of unfinished writes is skipped.
fn stored_artifacts(cli: &Cli) -> BTreeMap<String, PathBuf> {
    let root = cli.data_dir().join("artifacts");
    let mut files = BTreeMap::new();
    let Ok(prefixes) = std::fs::read_dir(&root) else {
        return files;
    };
    for prefix in prefixes {
        let prefix = prefix.expect("artifact directory entry").path();
        let prefix_name = file_name(&prefix);
        if prefix_name == "tmp" {
            continue;
        }
        for file in std::fs::read_dir(&prefix).expect("artifact prefix directory") {
            let path = file.expect("artifact file entry").path();
            files.insert(format!("{prefix_name}{}", file_name(&path)), path);
        }
    }
    files
}

/// Returns the path of the stored artifact with this digest.
fn artifact_path(cli: &Cli, digest: &str) -> PathBuf {
    let (prefix, rest) = digest.split_at(2);
    cli.data_dir().join("artifacts").join(prefix).join(rest)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("directory entries have a name")
        .to_string_lossy()
        .into_owned()
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap_or_else(|error| panic!("write {name}: {error}"));
    path
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(elapsed.as_millis()).expect("milliseconds fit in i64")
}

/// Returns the commit checked out in this repository.
fn git_head() -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(workspace_root())
        .args(["rev-parse", "HEAD"])
        .output()
        .expect("start git");
    assert!(
        output.status.success(),
        "git rev-parse HEAD failed: {}",
        stderr_of(&output)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Returns the version of crate `name` locked in the workspace's Cargo.lock.
fn locked_version(name: &str) -> String {
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock")).expect("Cargo.lock");
    let name_line = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    lines
        .find(|line| *line == name_line)
        .and_then(|_| lines.next())
        .and_then(|line| line.strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("Cargo.lock has no version of {name}"))
        .to_owned()
}
