use crate::runtime::bindings::runledger::plugin::logging::{self, Level};
use crate::runtime::state::{CallState, LogLine};
use crate::runtime::violations::{Limit, Violation};

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

impl logging::Host for CallState {
    fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let size = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let limits = &self.limits;
        if self.logs.len() >= limits.max_log_lines || self.log_bytes + size > limits.max_log_bytes {
            let limit = Limit::Log {
                lines: limits.max_log_lines,
                bytes: limits.max_log_bytes,
            };
            self.violations.record(Violation::Limit(limit.clone()));
            return Err(wasmtime::format_err!("{limit}"));
        }
        self.log_bytes += size;
        let line = LogLine {
            level: level_name(level).to_owned(),
            message,
            fields,
            offset_ms: self.elapsed_ms(),
        };
        self.logs.push(line);
        Ok(())
    }
}
