//! Benchmark of the plugin runtime: the cost of one whole call (new store, instantiate, call,
//! drop) of a step, a metric validator and a policy, first load versus load from the compile
//! cache, and artifact throughput through the read and write handles for a 1 GiB artifact with
//! the host's peak memory.
//!
//! Run it with `cargo xtask bench plugin-call` (which builds the plugins first). Give `calls`,
//! `governance`, `load` or `copy` as the first argument to run only that part.

use runledger::engine::StoreArtifactIo;
use runledger::runtime::{
    AllocatorChoice, ArtifactIo, ArtifactRef, InputSource, LoadSource, OutputSink, Runtime,
    RuntimeSettings,
};
use runledger_tests::{input, peak_rss_bytes, plugin, reset_peak_rss, rss_bytes, step_call};
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

const CALLS: usize = 20_000;
const WARMUP_CALLS: usize = 1_000;
const LOAD_REPEATS: usize = 5;
const ARTIFACT_BYTES: u64 = 1 << 30;
/// Copies measured; the median is reported, since a shared virtual disk flushes at uneven speed.
const COPY_REPEATS: usize = 3;

fn main() -> anyhow::Result<()> {
    let only = std::env::args().nth(1);
    let wanted = |part: &str| only.as_deref().is_none_or(|only| only == part);
    println!(
        "plugin-call benchmark ({} cores)",
        std::thread::available_parallelism()?.get()
    );
    if wanted("calls") {
        report_calls()?;
    }
    if wanted("governance") {
        governance::report()?;
    }
    if wanted("load") {
        let (compile, cached) = load_times()?;
        let ratio = compile.as_secs_f64() / cached.as_secs_f64();
        check(
            "cached load vs first compile",
            ratio >= 20.0,
            format!("{ratio:.0}x >= 20x"),
        );
    }
    if wanted("copy") {
        let throughput = median_artifact_copy()?;
        let mb_per_s = throughput.mb_per_s;
        check(
            "artifact copy",
            mb_per_s >= 300.0,
            format!("{mb_per_s:.0} MB/s >= 300 MB/s"),
        );
        let growth = throughput.peak_growth as f64 / f64::from(1 << 20);
        check(
            "artifact copy peak memory growth",
            growth < 64.0,
            format!("{growth:.1} MiB < 64 MiB"),
        );
    }
    Ok(())
}

fn report_calls() -> anyhow::Result<()> {
    let pooling = whole_call(AllocatorChoice::Pooling)?;
    let on_demand = whole_call(AllocatorChoice::OnDemand)?;
    print_calls("pooling", &pooling);
    print_calls("on-demand", &on_demand);
    let median = percentile(&pooling, 0.5);
    let met = median <= Duration::from_micros(25);
    check(
        "whole call median, pooling",
        met,
        format!("{median:?} <= 25us"),
    );
    Ok(())
}

pub(crate) fn check(name: &str, passed: bool, detail: String) {
    let verdict = if passed { "met" } else { "MISSED" };
    println!("target {name}: {detail} ... {verdict}");
}

fn whole_call(allocator: AllocatorChoice) -> anyhow::Result<Vec<Duration>> {
    let runtime = Runtime::new(RuntimeSettings {
        allocator,
        pool_instances: 16,
        ..RuntimeSettings::default()
    });
    let noop = plugin("noop");
    runtime.prepare(&noop)?;
    let (_dir, store) = runledger_tests::temp_store();
    let spec = step_call(json!({}), vec![], &[]);
    let mut samples = Vec::with_capacity(CALLS);
    for index in 0..WARMUP_CALLS + CALLS {
        let io = Box::new(StoreArtifactIo::new(store.clone()));
        let started = Instant::now();
        let report = runtime.call_step(&noop, &spec, io)?;
        let elapsed = started.elapsed();
        anyhow::ensure!(report.outcome.is_ok(), "noop failed: {:?}", report.outcome);
        if index >= WARMUP_CALLS {
            samples.push(elapsed);
        }
    }
    samples.sort();
    Ok(samples)
}

pub(crate) fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index]
}

fn print_calls(label: &str, samples: &[Duration]) {
    println!(
        "whole call ({label}, {CALLS} calls of noop): median {:?}, p99 {:?}",
        percentile(samples, 0.5),
        percentile(samples, 0.99)
    );
}

/// Median time to make `linreg` (a first-party plugin of typical size) ready: compiled from
/// its `.wasm`, and deserialized from a warm compile cache by a fresh runtime.
fn load_times() -> anyhow::Result<(Duration, Duration)> {
    let target = plugin("linreg");
    let mut compiled = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..LOAD_REPEATS {
        let cache = tempfile::tempdir()?;
        let settings = RuntimeSettings {
            cache_dir: Some(cache.path().to_owned()),
            allocator: AllocatorChoice::OnDemand,
            ..RuntimeSettings::default()
        };
        let first = Runtime::new(settings.clone()).prepare(&target)?;
        let second = Runtime::new(settings).prepare(&target)?;
        anyhow::ensure!(
            first.source == LoadSource::Compiled,
            "first load was not a compile"
        );
        anyhow::ensure!(
            second.source == LoadSource::DiskCache,
            "second load missed the cache"
        );
        compiled.push(first.duration);
        cached.push(second.duration);
    }
    compiled.sort();
    cached.sort();
    let (compile, hit) = (compiled[LOAD_REPEATS / 2], cached[LOAD_REPEATS / 2]);
    let size = std::fs::metadata(target.component_path())?.len();
    println!(
        "load of linreg ({} KiB component): first compile {compile:?}, from compile cache {hit:?} ({:.0}x faster)",
        size >> 10,
        compile.as_secs_f64() / hit.as_secs_f64()
    );
    Ok((compile, hit))
}

/// Runs [`COPY_REPEATS`] copies and returns the median throughput with the largest memory
/// growth of them all.
fn median_artifact_copy() -> anyhow::Result<Throughput> {
    let mut runs = Vec::new();
    for _ in 0..COPY_REPEATS {
        runs.push(artifact_copy()?);
    }
    let peak_growth = runs.iter().map(|run| run.peak_growth).max().unwrap_or(0);
    runs.sort_by(|a, b| a.mb_per_s.total_cmp(&b.mb_per_s));
    let median = runs[COPY_REPEATS / 2].mb_per_s;
    println!("artifact copy median of {COPY_REPEATS}: {median:.0} MB/s");
    Ok(Throughput {
        mb_per_s: median,
        peak_growth,
    })
}

/// Reads inputs from one store and writes outputs to another, so the copy is stored as a new
/// artifact instead of being recognised as the input's content.
struct SplitIo {
    input: StoreArtifactIo,
    output: StoreArtifactIo,
}

impl ArtifactIo for SplitIo {
    fn open_input(&mut self, artifact: &ArtifactRef) -> std::io::Result<Box<dyn InputSource>> {
        self.input.open_input(artifact)
    }

    fn create_output(
        &mut self,
        name: &str,
        media_type: &str,
    ) -> std::io::Result<Box<dyn OutputSink>> {
        self.output.create_output(name, media_type)
    }
}

struct Throughput {
    mb_per_s: f64,
    peak_growth: u64,
}

/// Copies a 1 GiB artifact through the `copy` plugin: every byte crosses the read handle into
/// the component and the write handle back out, and is hashed on both sides.
fn artifact_copy() -> anyhow::Result<Throughput> {
    let runtime = runledger_tests::runtime();
    let copy = plugin("copy");
    runtime.prepare(&copy)?;
    let (_input_dir, input_store) = runledger_tests::temp_store();
    let (_output_dir, output_store) = runledger_tests::temp_store();
    let source = write_pseudo_random(&input_store, ARTIFACT_BYTES)?;
    let spec = step_call(json!({}), vec![source.clone()], &["copy"]);
    let io = Box::new(SplitIo {
        input: StoreArtifactIo::new(input_store),
        output: StoreArtifactIo::new(output_store),
    });

    let baseline = rss_bytes();
    reset_peak_rss();
    let started = Instant::now();
    let report = runtime.call_step(&copy, &spec, io)?;
    let elapsed = started.elapsed();
    let peak = peak_rss_bytes();

    anyhow::ensure!(report.outcome.is_ok(), "copy failed: {:?}", report.outcome);
    anyhow::ensure!(
        report.outputs[0].digest == source.digest,
        "copy changed the content"
    );
    let mb_per_s = ARTIFACT_BYTES as f64 / 1e6 / elapsed.as_secs_f64();
    let peak_growth = peak.saturating_sub(baseline);
    println!(
        "artifact copy of 1 GiB through the plugin: {elapsed:?}, {mb_per_s:.0} MB/s, host peak RSS {} MiB (baseline {} MiB, growth {} MiB)",
        peak >> 20,
        baseline >> 20,
        peak_growth >> 20
    );
    Ok(Throughput {
        mb_per_s,
        peak_growth,
    })
}

fn write_pseudo_random(
    store: &runledger::store::artifacts::ArtifactStore,
    bytes: u64,
) -> anyhow::Result<runledger::runtime::ArtifactRef> {
    let mut writer = store.create_writer()?;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..bytes / block.len() as u64 {
        for chunk in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        writer.write_all(&block)?;
    }
    let (digest, size) = writer.commit()?;
    let _ = input;
    Ok(runledger::runtime::ArtifactRef {
        name: "source".into(),
        digest,
        size,
        media_type: "application/octet-stream".into(),
    })
}

/// Whole calls of a metric validator and a promotion policy: a fresh store, instantiation, the
/// summary or request crossing in, the checks or decision crossing back, and the drop.
///
/// Uses the shipped `metric-threshold` (two rules, a summary of ten metrics) and
/// `required-approvals` (count 2, two approvals) when they are built, else the test plugins
/// `validator-probe` and `policy-allow` with the same inputs.
mod governance {
    use super::{check, percentile};
    use runledger::runtime::{
        Approval, GovernanceReport, Plugin, PluginRegistry, PromotionRequest, RunData,
        RunDataError, RunSummary, Runtime, RuntimeSettings, SummaryMetric,
    };
    use serde_json::{Value, json};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const CALLS: usize = 10_000;
    const WARMUP_CALLS: usize = 500;
    /// The median a validator or policy call should stay under, so gating a promotion on a handful
    /// of plugins costs well under a millisecond.
    const TARGET: Duration = Duration::from_micros(100);

    /// Run data that has nothing: neither measured plugin reads any.
    struct NoRunData;

    impl RunData for NoRunData {
        fn metric_series(&mut self, key: &str) -> Result<Vec<SummaryMetric>, RunDataError> {
            Err(RunDataError::NotFound(format!("no metric `{key}`")))
        }

        fn alias_run(
            &mut self,
            model: &str,
            _alias: &str,
        ) -> Result<Option<RunSummary>, RunDataError> {
            Err(RunDataError::NotFound(format!("no model `{model}`")))
        }
    }

    /// Resolves the first of `specs` that is built, with its name.
    fn first_built(registry: &PluginRegistry, specs: &[&str]) -> anyhow::Result<Arc<Plugin>> {
        specs
            .iter()
            .find_map(|spec| registry.resolve(spec).ok())
            .ok_or_else(|| {
                anyhow::anyhow!("none of {specs:?} is built: run `cargo xtask build-plugins`")
            })
    }

    /// Builds a summary of ten metrics: eight the rules ignore, and the two they test.
    fn summary() -> RunSummary {
        let metric = |key: String, value: f64| SummaryMetric {
            key,
            value,
            step: 10,
        };
        let mut metrics: Vec<SummaryMetric> = (0..8)
            .map(|index| metric(format!("metric_{index}"), 0.1 * f64::from(index)))
            .collect();
        metrics.push(metric("test_rmse".into(), 0.64));
        metrics.push(metric("test_r2".into(), 0.31));
        RunSummary {
            run_id: "0193a0f0-7b7e-7c1a-9f00-000000000001".into(),
            name: "wine baseline".into(),
            pipeline: "wine-quality".into(),
            status: "succeeded".into(),
            author: "ana".into(),
            params: vec![("alpha".into(), "0.5".into())],
            metrics,
            ..RunSummary::default()
        }
    }

    fn request() -> PromotionRequest {
        let approval = |approver: &str| Approval {
            approver: approver.into(),
            role: "approver".into(),
            approved_at_ms: 1_764_806_400_000,
            comment: String::new(),
        };
        PromotionRequest {
            model: "wine-quality".into(),
            version: 3,
            alias: "production".into(),
            requester: "cy".into(),
            run: summary(),
            approvals: vec![approval("bo"), approval("di")],
            ..PromotionRequest::default()
        }
    }

    /// Times `CALLS` calls after `WARMUP_CALLS` unmeasured ones; `call` returns an error for a
    /// call that did not succeed.
    fn measure(mut call: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(CALLS);
        for index in 0..WARMUP_CALLS + CALLS {
            let started = Instant::now();
            call()?;
            let elapsed = started.elapsed();
            if index >= WARMUP_CALLS {
                samples.push(elapsed);
            }
        }
        samples.sort();
        Ok(samples)
    }

    fn succeeded<T: std::fmt::Debug>(report: GovernanceReport<T>) -> anyhow::Result<T> {
        report
            .outcome
            .map_err(|error| anyhow::anyhow!("the call failed: {error}"))
    }

    fn print_and_check(label: &str, plugin: &Plugin, samples: &[Duration]) {
        let median = percentile(samples, 0.5);
        println!(
            "whole {label} call ({CALLS} calls of {}): median {} us, p90 {} us, p99 {} us",
            plugin.id(),
            median.as_micros(),
            percentile(samples, 0.9).as_micros(),
            percentile(samples, 0.99).as_micros()
        );
        check(
            &format!("whole {label} call median, pooling"),
            median <= TARGET,
            format!("{} us <= {} us", median.as_micros(), TARGET.as_micros()),
        );
    }

    /// Measures and prints a whole validator call and a whole policy call on the pooling
    /// allocator.
    pub(crate) fn report() -> anyhow::Result<()> {
        let runtime = Runtime::new(RuntimeSettings {
            pool_instances: 16,
            ..RuntimeSettings::default()
        });
        let registry = PluginRegistry::scan(&[
            runledger_tests::plugins_dir(),
            runledger_tests::test_plugins_dir(),
        ]);

        let validator = first_built(&registry, &["metric-threshold", "validator-probe"])?;
        let config = if validator.manifest.name == "metric-threshold" {
            json!({ "rules": ["test_rmse <= 0.75", "test_r2 >= 0.25"] })
        } else {
            json!({})
        };
        runtime.prepare(&validator)?;
        let run = summary();
        let samples = measure(|| {
            let report = runtime.call_validator(&validator, &run, &config, Box::new(NoRunData))?;
            succeeded(report).map(drop)
        })?;
        print_and_check("validator", &validator, &samples);

        let policy = first_built(&registry, &["required-approvals", "policy-allow"])?;
        let config: Value = if policy.manifest.name == "required-approvals" {
            json!({ "count": 2, "role": "approver" })
        } else {
            json!({})
        };
        runtime.prepare(&policy)?;
        let request = request();
        let samples = measure(|| {
            let report = runtime.call_policy(&policy, &request, &config)?;
            let decision = succeeded(report)?;
            anyhow::ensure!(
                decision == runledger::runtime::Decision::Allow,
                "{} did not allow: {decision:?}",
                policy.id()
            );
            Ok(())
        })?;
        print_and_check("policy", &policy, &samples);
        Ok(())
    }
}
