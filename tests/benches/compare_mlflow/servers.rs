//! The servers under comparison: `runledger serve` and `mlflow server`, each with a sampler of
//! its resident memory.

use crate::memory::RssMonitor;
use anyhow::{Context as _, Result, bail};
use runledger_tests::server::ServerProcess;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Maximum wait for a server to respond to its first request. MLflow imports for several seconds.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// Maximum wait for `mlflow server` and its workers to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How an MLflow server is started.
pub(crate) struct MlflowSetup<'a> {
    /// The `mlflow` executable of the benchmark's venv.
    pub(crate) executable: &'a Path,
    /// SQLite file of the backend store.
    pub(crate) database: PathBuf,
    /// Directory the artifact proxy stores files in.
    pub(crate) artifacts: PathBuf,
    /// `--workers`, or MLflow's default when `None`.
    pub(crate) workers: Option<u32>,
    /// File that receives the server's output.
    pub(crate) log: PathBuf,
}

/// `mlflow server` in a process group of its own, so its uvicorn workers stop with it.
pub(crate) struct MlflowProcess {
    child: Child,
    base: String,
}

impl MlflowProcess {
    /// Starts `mlflow server` on a free loopback port and waits until `/health` responds.
    pub(crate) async fn start(setup: &MlflowSetup<'_>) -> Result<Self> {
        let port = free_port()?;
        let log = std::fs::File::create(&setup.log)
            .with_context(|| format!("cannot create {}", setup.log.display()))?;
        let mut command = Command::new(setup.executable);
        command
            .arg("server")
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", setup.database.display()))
            .arg("--artifacts-destination")
            .arg(&setup.artifacts)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()]);
        if let Some(workers) = setup.workers {
            command.args(["--workers", &workers.to_string()]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", setup.executable.display()))?;
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        wait_until_healthy(&server.base, &setup.log).await?;
        Ok(server)
    }

    /// Returns the base URL, such as `http://127.0.0.1:40123`.
    pub(crate) fn url(&self) -> &str {
        &self.base
    }

    /// Returns the process id of `mlflow server`, the root of its process tree.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM to the process group and waits up to [`STOP_TIMEOUT`] for the server to
    /// exit, then kills what is left of the group. MLflow's job runner processes (huey
    /// consumers) outlive SIGTERM.
    pub(crate) fn stop(mut self) -> Result<()> {
        signal_group(self.child.id(), "-TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline && self.child.try_wait()?.is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
        signal_group(self.child.id(), "-KILL");
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for MlflowProcess {
    fn drop(&mut self) {
        // Only a running server's group is signalled: after `stop` the group id may be reused.
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_group(self.child.id(), "-KILL");
            let _ = self.child.wait();
        }
    }
}

/// Sends `signal` to the process group led by `pid`, which `process_group(0)` made.
fn signal_group(pid: u32, signal: &str) {
    let group = format!("-{pid}");
    let _ = Command::new("kill").args([signal, "--", &group]).status();
}

/// Returns a loopback port that was free a moment ago. Another process may take it before the
/// server binds it, which makes the start fail rather than measure the wrong server.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

async fn wait_until_healthy(base: &str, log: &Path) -> Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        let response = client.get(format!("{base}/health")).send().await;
        if response.is_ok_and(|response| response.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let output = std::fs::read_to_string(log).unwrap_or_default();
    bail!(
        "mlflow server at {base} did not respond to /health within {START_TIMEOUT:?}; its log:\n{output}"
    )
}

/// A running server of either kind.
enum Handle {
    Runledger(ServerProcess),
    Mlflow(MlflowProcess),
}

/// A server under comparison, with the sampler of its memory.
pub(crate) struct Server {
    /// Column heading in the results.
    pub(crate) label: &'static str,
    /// The base URL.
    pub(crate) base: String,
    /// Resident memory of the server's process tree.
    pub(crate) memory: RssMonitor,
    handle: Handle,
}

impl Server {
    /// Wraps a started `runledger serve`.
    pub(crate) fn runledger(label: &'static str, process: ServerProcess) -> Self {
        Self {
            label,
            base: process.url(),
            memory: RssMonitor::start(process.pid()),
            handle: Handle::Runledger(process),
        }
    }

    /// Wraps a started `mlflow server`.
    pub(crate) fn mlflow(label: &'static str, process: MlflowProcess) -> Self {
        Self {
            label,
            base: process.url().to_owned(),
            memory: RssMonitor::start(process.pid()),
            handle: Handle::Mlflow(process),
        }
    }

    /// The URL of an MLflow REST endpoint, such as `runs/log-metric`.
    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}/api/2.0/mlflow/{path}", self.base)
    }

    /// Stops the server and its sampler.
    pub(crate) fn stop(self) -> Result<()> {
        self.memory.stop();
        match self.handle {
            Handle::Runledger(process) => {
                let status = process.stop();
                if !status.success() {
                    bail!("runledger serve exited with {status}");
                }
                Ok(())
            }
            Handle::Mlflow(process) => process.stop(),
        }
    }
}
