//! Benchmark of the web UI's load times: the dev build of `runledger serve` on SQLite with
//! 10,000 runs and one run with a 1,000,000-point metric series, all seeded through the ingest
//! API, and Debian's Chromium driven by `tests/browser/load-times.mjs`. It prints the time from
//! navigation start to the page's `data-ready` marker for the runs page and for the page of the
//! long-series run: one cold load (fresh browser context) and ten warm loads each.
//!
//! Run it with `cargo xtask bench ui` (which installs Chromium and playwright-core and builds
//! the binary first).

use anyhow::{Context as _, Result, ensure};
use runledger_tests::web_ui::{
    LOAD_RUNS, LONG_SERIES_POINTS, LoadFixture, check_browser_setup, run_node,
};
use serde_json::Value;
use std::time::Instant;

/// Warm loads measured per page.
const WARM_LOADS: usize = 10;

/// Maximum time from navigation start to `data-ready` that the browser tests accept.
const TARGET_MS: f64 = 1000.0;

fn main() -> Result<()> {
    let started = Instant::now();
    check_browser_setup()?;
    let fixture = LoadFixture::start()?;
    println!(
        "ui benchmark: runledger serve (dev build, SQLite) at {}, {} cores; seeded {LOAD_RUNS} \
         runs and a {LONG_SERIES_POINTS}-point series in {:.1} s",
        fixture.server.url(),
        std::thread::available_parallelism()?.get(),
        fixture.seeding.as_secs_f64()
    );

    let mut env = fixture.env();
    env.push(("RUNLEDGER_UI_WARM_LOADS".into(), WARM_LOADS.to_string()));
    let output = run_node(&["load-times.mjs".to_owned()], &env)?;
    ensure!(
        output.status.success(),
        "node load-times.mjs failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let figures: Value = serde_json::from_slice(&output.stdout)
        .context("node load-times.mjs printed no JSON figures")?;

    println!(
        "browser: Chromium {}",
        figures["browser"].as_str().unwrap_or("?")
    );
    print_table(&figures)?;
    println!("whole benchmark: {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Prints one row per page: cold load, warm median, p90 and maximum, and the verdict.
fn print_table(figures: &Value) -> Result<()> {
    println!(
        "{:<34} {:>9} {:>12} {:>9} {:>9}  verdict (target < {TARGET_MS:.0} ms)",
        "page", "cold ms", "warm median", "warm p90", "warm max"
    );
    let pages = [
        ("runs page, 10,001 runs", "runs"),
        ("run page, 1,000,000-point series", "run"),
    ];
    for (label, key) in pages {
        let page = &figures[key];
        let cold = page["cold"].as_f64().context("cold load time")?;
        let mut warm: Vec<f64> = page["warm"]
            .as_array()
            .context("warm load times")?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        warm.sort_by(f64::total_cmp);
        let max = warm.last().copied().context("no warm load")?;
        let met = cold < TARGET_MS && max < TARGET_MS;
        println!(
            "{label:<34} {cold:>9.0} {:>12.0} {:>9.0} {max:>9.0}  {}",
            percentile(&warm, 0.5),
            percentile(&warm, 0.9),
            if met { "met" } else { "NOT met" }
        );
    }
    Ok(())
}

/// Returns the value at `fraction` of sorted `values` (nearest rank).
fn percentile(values: &[f64], fraction: f64) -> f64 {
    let rank = (fraction * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}
