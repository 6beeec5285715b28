//! Browser tests of the web UI that `runledger serve` serves, in Debian's Chromium driven by
//! playwright-core from the `node --test` scripts in `tests/browser`.
//!
//! `ui_scenarios` records two wine-quality runs with different `alpha` through the real CLI. It
//! registers a model whose `production` promotion waits for one more approval and whose
//! `canary` promotion waits for two. Then it creates tokens of an admin, an approver and a
//! viewer, and starts `runledger serve` with access control on. The scripts then check the
//! runs table, the run page and the errors for unknown run ids. They also check the comparison
//! of the two runs, approving the promotion through the token form, and the pages shown without
//! a token or with a viewer's token.
//!
//! Each scenario saves a full-page screenshot in `target/ui-screenshots/`. Load times with
//! 10,000 runs and a 1,000,000-point series are measured by `cargo xtask bench ui`, not here.
//!
//! Needs `cargo xtask setup` (Chromium and playwright-core), `cargo xtask build-plugins` and
//! `cargo build -p runledger --bin runledger`; run with
//! `cargo test -p runledger-tests --test web_ui -- --nocapture` to see node's report.

use runledger_tests::server::ServerProcess;
use runledger_tests::web_ui::{check_browser_setup, create_token, run_node, screenshot_dir};
use runledger_tests::{Backend, Cli, parse_json, workspace_root};
use serde_json::Value;
use std::process::Output;

/// The registered model of the scenarios.
const MODEL: &str = "wine-quality";

/// `alpha` of the two wine runs: the example's default and a stronger regularization.
const ALPHAS: [&str; 2] = ["0.1", "0.5"];

/// Exit status of `models promote` and `models approve` while a promotion waits for approvals.
const EXIT_PENDING: i32 = 4;

/// Maximum time one browser test may take before node cancels it, in milliseconds. The
/// scenarios wait at most 20 s for any one page, so this only stops a hung browser.
const NODE_TEST_TIMEOUT_MS: u32 = 300_000;

#[test]
fn ui_scenarios() {
    check_browser_setup().unwrap_or_else(|error| panic!("{error}"));
    let cli = Cli::new(Backend::Sqlite);
    let run_ids: Vec<String> = ALPHAS.iter().map(|alpha| run_wine(&cli, alpha)).collect();
    let promotions = prepare_model(&cli, &run_ids[0]);
    let tokens = [
        ("ADMIN", create_token(&cli, "root", "admin")),
        ("APPROVER", create_token(&cli, "bob", "approver")),
        ("VIEWER", create_token(&cli, "carol", "viewer")),
    ];
    let server = ServerProcess::start(&cli, &[]);

    let mut env = base_env(&server);
    for (role, token) in tokens {
        env.push((
            format!("RUNLEDGER_UI_{role}_TOKEN"),
            token.unwrap_or_else(|e| panic!("{e}")),
        ));
    }
    env.push(("RUNLEDGER_UI_RUN_IDS".into(), run_ids.join(",")));
    env.push(("RUNLEDGER_UI_MODEL".into(), MODEL.into()));
    env.push((
        "RUNLEDGER_UI_PENDING_PROMOTION".into(),
        promotions.production.to_string(),
    ));
    env.push((
        "RUNLEDGER_UI_VIEWER_PROMOTION".into(),
        promotions.canary.to_string(),
    ));

    let files = scenario_files();
    let output = node_tests(&files, &env);
    assert_node_passed(&output, &server);
}

// ---------------------------------------------------------------------------------------------
// The wine fixture
// ---------------------------------------------------------------------------------------------

/// Runs the wine example with `alpha` through the CLI and returns the run id.
fn run_wine(cli: &Cli, alpha: &str) -> String {
    let pipeline = workspace_root().join("examples/wine-quality/pipeline.yaml");
    let pipeline = pipeline.to_str().expect("UTF-8 repository path");
    let param = format!("alpha={alpha}");
    let args = ["run", pipeline, "--param", &param, "--json"];
    let output = cli.output(&args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "runledger run with alpha {alpha} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = parse_json(&output.stdout, &args);
    summary["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run_id in {summary}"))
        .to_owned()
}

/// Ids of the promotions the scenarios see pending.
struct Promotions {
    /// Version 1 to `production`, waiting for one more approval by an approver.
    production: i64,
    /// Version 1 to `canary`, waiting for two approvals that no scenario gives.
    canary: i64,
}

/// Registers version 1 of [`MODEL`] from `run_id`, requires two approvals for `production`
/// and `canary`, requests both promotions as the run's author, and approves `production` once
/// as alice.
fn prepare_model(cli: &Cli, run_id: &str) -> Promotions {
    cli.json(&["models", "create", MODEL, "--json"]);
    let args = [
        "models",
        "register",
        MODEL,
        "--run",
        run_id,
        "--artifact",
        "train.model",
    ];
    let version = cli.json(&[&args[..], &["--json"]].concat());
    assert_eq!(version["version"], 1, "{version}");
    let approvals = r#"{"count": 2, "role": "approver"}"#;
    for alias in ["production", "canary"] {
        cli.json(&[
            "models",
            "policies",
            MODEL,
            "--alias",
            alias,
            "--plugin",
            "required-approvals",
            "--config",
            approvals,
            "--json",
        ]);
    }

    let production = promotion(cli, "promote", "production", None);
    let canary = promotion(cli, "promote", "canary", None);
    let approved = promotion(cli, "approve", "production", Some("alice"));
    assert_eq!(approved["id"], production["id"], "{approved}");
    let id = |promotion: &Value| {
        promotion["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("no promotion id in {promotion}"))
    };
    Promotions {
        production: id(&production),
        canary: id(&canary),
    }
}

/// Runs `models promote|approve MODEL 1 --alias ALIAS --json`, as `user` when given, expects
/// the promotion to stay pending, and returns it.
fn promotion(cli: &Cli, action: &str, alias: &str, user: Option<&str>) -> Value {
    let args = ["models", action, MODEL, "1", "--alias", alias, "--json"];
    let mut command = cli.command(&args);
    if let Some(user) = user {
        command.env("USER", user);
    }
    let output = command.output().expect("runledger starts");
    assert_eq!(
        output.status.code(),
        Some(EXIT_PENDING),
        "runledger {} should leave the promotion pending; stdout: {} stderr: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let promotion = parse_json(&output.stdout, &args);
    assert_eq!(promotion["status"], "pending", "{promotion}");
    promotion
}

// ---------------------------------------------------------------------------------------------
// Node
// ---------------------------------------------------------------------------------------------

/// Environment every script needs: the server's URL and the screenshot directory.
fn base_env(server: &ServerProcess) -> Vec<(String, String)> {
    let screenshots = screenshot_dir();
    std::fs::create_dir_all(&screenshots).expect("create target/ui-screenshots");
    vec![
        ("RUNLEDGER_UI_BASE_URL".into(), server.url()),
        (
            "RUNLEDGER_UI_SCREENSHOT_DIR".into(),
            screenshots.display().to_string(),
        ),
    ]
}

/// Returns the scenario scripts: every `*.test.mjs` in `tests/browser` but the load-time one,
/// which needs a server of its own.
fn scenario_files() -> Vec<String> {
    let dir = runledger_tests::web_ui::browser_dir();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.test.mjs in {}", dir.display());
    files
}

/// Runs `node --test` over `files`, one file at a time.
fn node_tests(files: &[String], env: &[(String, String)]) -> Output {
    let mut args: Vec<String> = ["--test", "--test-concurrency=1", "--test-reporter=spec"]
        .map(str::to_owned)
        .to_vec();
    args.push(format!("--test-timeout={NODE_TEST_TIMEOUT_MS}"));
    args.extend(files.iter().cloned());
    run_node(&args, env).unwrap_or_else(|error| panic!("{error:#}"))
}

/// Prints node's report when every browser test passed, and fails with it and the server's
/// log otherwise.
fn assert_node_passed(output: &Output, server: &ServerProcess) {
    if output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
        return;
    }
    panic!(
        "browser tests failed ({}); screenshots are in {}.\nnode stdout:\n{}\nnode stderr:\n{}\n\
         server log (last 4000 bytes):\n{}",
        output.status,
        screenshot_dir().display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        tail(&server.log(), 4000)
    );
}

fn tail(text: &str, bytes: usize) -> &str {
    let mut start = text.len().saturating_sub(bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
