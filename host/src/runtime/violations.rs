//! Limits and capabilities a call ran into, recorded as they happen so that the error the call
//! ends with can name them even when the guest saw only a generic failure.

use std::fmt;
use std::sync::{Arc, Mutex};

/// A limit the host enforces on a call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "limit", rename_all = "kebab-case")]
pub enum Limit {
    /// Linear memory, in bytes.
    Memory {
        /// The limit in bytes.
        bytes: u64,
    },
    /// Instruction budget.
    Fuel {
        /// The budget.
        budget: u64,
    },
    /// Wall-clock time.
    Timeout {
        /// The limit in milliseconds.
        millis: u64,
    },
    /// WebAssembly stack depth.
    Stack {
        /// The stack size in bytes.
        bytes: usize,
    },
    /// Lines or bytes written through the logging import.
    Log {
        /// The line limit.
        lines: usize,
        /// The byte limit.
        bytes: usize,
    },
    /// Bytes written to stdout and stderr.
    Stdio {
        /// The byte limit.
        bytes: usize,
    },
    /// Size of one output artifact.
    OutputSize {
        /// The output's name.
        name: String,
        /// The limit in bytes.
        bytes: u64,
    },
    /// Metric points logged by one call.
    MetricPoints {
        /// The point limit.
        points: usize,
    },
    /// Checks returned by one validator call.
    Checks {
        /// The check limit.
        checks: usize,
        /// How many the validator returned.
        returned: usize,
    },
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory { bytes } => write!(f, "memory limit of {} exceeded", mib(*bytes)),
            Self::Fuel { budget } => write!(f, "fuel budget of {budget} instructions exhausted"),
            Self::Timeout { millis } => write!(f, "wall-clock timeout of {millis} ms exceeded"),
            Self::Stack { bytes } => write!(f, "stack limit of {bytes} bytes exceeded"),
            Self::Log { lines, bytes } => write!(
                f,
                "log limit exceeded: at most {lines} lines or {} per call",
                mib(*bytes as u64)
            ),
            Self::Stdio { bytes } => write!(
                f,
                "stdout and stderr limit of {} per call exceeded",
                mib(*bytes as u64)
            ),
            Self::OutputSize { name, bytes } => {
                write!(
                    f,
                    "output `{name}` exceeds its size limit of {}",
                    mib(*bytes)
                )
            }
            Self::MetricPoints { points } => {
                write!(f, "metric limit of {points} points per call exceeded")
            }
            Self::Checks { checks, returned } => write!(
                f,
                "check limit exceeded: the validator returned {returned} checks, more than \
                 the {checks} allowed per call"
            ),
        }
    }
}

fn mib(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// A host capability the sandbox withholds unless the manifest asks and the operator grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Host files and directories.
    Filesystem,
    /// Environment variables.
    Environment,
    /// Network sockets.
    Network,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Filesystem => "filesystem",
            Self::Environment => "environment variables",
            Self::Network => "network",
        })
    }
}

/// Something a call ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Violation {
    Limit(Limit),
    Denied {
        capability: Capability,
        detail: String,
    },
}

/// Violations of one call, shared with callbacks (socket checks, stdio streams) that have no
/// access to the store.
#[derive(Debug, Clone, Default)]
pub(crate) struct ViolationLog(Arc<Mutex<Vec<Violation>>>);

impl ViolationLog {
    pub(crate) fn record(&self, violation: Violation) {
        let mut list = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        if !list.contains(&violation) {
            list.push(violation);
        }
    }

    pub(crate) fn take(&self) -> Vec<Violation> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|poison| poison.into_inner()))
    }
}
