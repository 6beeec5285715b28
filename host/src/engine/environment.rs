//! The code and environment snapshot recorded with every run.

use crate::store::{EnvironmentSnapshot, GitState, PluginRef};
use std::path::Path;
use std::process::Command;

/// Version of wasmtime this build links, recorded with runs and part of every cache key.
pub const WASMTIME_VERSION: &str = env!("RUNLEDGER_WASMTIME_VERSION");

/// Version of this runledger build.
pub const RUNLEDGER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Git commit and dirty flag of the repository containing `dir`, if it is in one and git runs.
pub fn git_state(dir: &Path) -> Option<GitState> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    let status = git(&["status", "--porcelain", "--untracked-files=no"])?;
    Some(GitState {
        commit,
        dirty: !status.is_empty(),
    })
}

/// Builds the snapshot for a run of plugins `plugins` defined in a file under `pipeline_dir`.
pub fn snapshot(pipeline_dir: Option<&Path>, plugins: Vec<PluginRef>) -> EnvironmentSnapshot {
    EnvironmentSnapshot {
        git: pipeline_dir.and_then(git_state),
        runledger_version: RUNLEDGER_VERSION.to_owned(),
        wasmtime_version: Some(WASMTIME_VERSION.to_owned()),
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        plugins,
        packages: Vec::new(),
        extra: serde_json::Map::new(),
    }
}

/// Returns the user running this process: `$USER`, else `$LOGNAME`, else the account name of the
/// process's user id in /etc/passwd, else `uid N`.
pub fn current_user() -> String {
    let from_env = ["USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
    from_env.unwrap_or_else(account_name)
}

fn account_name() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(uid) = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
    else {
        return "unknown".to_owned();
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&uid))
        .and_then(|fields| fields.first().map(|name| (*name).to_owned()))
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// This machine's host name, for recognising runs left behind by a dead process.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// Checks whether a process with this id is alive on this machine.
pub fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
