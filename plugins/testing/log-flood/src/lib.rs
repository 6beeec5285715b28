//! Test plugin that writes log lines without end, through the host's `logging` import or, with
//! param `channel` = `"stdout"`, through `println!`, until the host stops the step.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p log-flood` in `plugins/`.
use runledger_sdk::{Executor, Result, StepContext, export_executor, log};

/// Destination of the flood lines.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum Channel {
    /// The step's log, through `runledger_sdk::log::info`.
    #[default]
    Log,
    /// The component's WASI stdout.
    Stdout,
}

#[derive(serde::Deserialize)]
struct Params {
    #[serde(default)]
    channel: Channel,
}

struct LogFlood;

impl Executor for LogFlood {
    fn execute(context: StepContext) -> Result<()> {
        let params: Params = context.params()?;
        match params.channel {
            Channel::Log => flood_log(),
            Channel::Stdout => flood_stdout(),
        }
    }
}

fn flood_log() -> ! {
    let mut line: u64 = 0;
    loop {
        log::info(format!("flood line {line}"));
        line = line.wrapping_add(1);
    }
}

fn flood_stdout() -> ! {
    let mut line: u64 = 0;
    loop {
        println!("flood line {line}");
        line = line.wrapping_add(1);
    }
}

export_executor!(LogFlood);
