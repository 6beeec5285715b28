//! Test plugin that waits `millis` milliseconds by sleeping (blocked in the host) or by
//! busy-waiting on `std::time::Instant`, then logs how much time it saw pass.
//!
//! Build it with `cargo xtask build-plugins`.
use runledger_sdk::{Executor, Result, StepContext, export_executor, metrics};
use std::time::{Duration, Instant};

#[derive(serde::Deserialize)]
struct Params {
    #[serde(default)]
    millis: u64,
    #[serde(default)]
    mode: Option<String>,
}

struct Sleeper;

impl Executor for Sleeper {
    fn execute(context: StepContext) -> Result<()> {
        let params: Params = context.params()?;
        let wait = Duration::from_millis(params.millis);
        let started = Instant::now();
        if params.mode.as_deref() == Some("busy-wait") {
            while started.elapsed() < wait {
                std::hint::black_box(());
            }
        } else {
            std::thread::sleep(wait);
        }
        metrics::log("observed_ms", started.elapsed().as_secs_f64() * 1000.0, 0)?;
        Ok(())
    }
}

export_executor!(Sleeper);
