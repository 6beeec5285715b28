//! The start-up order of the `runledger` executable's functions.
//!
//! A server that has just started maps far more of its executable than it ran. The kernel maps
//! the 64 KiB around every page of code that faults in, and the few thousand functions a start
//! runs are scattered over about 40 MiB of code. [`record`] runs `runledger serve` under
//! Valgrind's callgrind through a start, one `GET /healthz` and a stop, and writes the name of
//! every function that ran to `startup-order.txt` in the profile's output directory. The host's
//! build script passes that file to the linker, which then places those functions first, side
//! by side, so the start touches about 4 MiB of contiguous code. On a dev build this halves
//! the resident memory of an idle server, from about 29 MiB to 14 MiB.
//!
//! The names are mangled with hashes of the build's crate metadata, so the list fits only the
//! build it was recorded from: build, record, and build again with the same command.

use anyhow::{Context as _, Result, bail};
use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// File name of the list, in the profile's output directory (such as `target/debug`).
pub(crate) const ORDER_FILE: &str = "startup-order.txt";

/// Maximum wait for the server under callgrind to listen, and then to exit after SIGTERM.
const SERVER_TIMEOUT: Duration = Duration::from_secs(120);

/// Time the server stays up after its health check, so that timers of an idle server run.
const IDLE_TIME: Duration = Duration::from_secs(2);

/// Records the functions that `runledger serve` runs through a start in `profile_dir` (such as
/// `target/debug`), whose `runledger` executable must be built. Returns whether the list
/// changed, in which case the next build links the executable anew. Without Valgrind the
/// list is left as it is and a note is printed.
pub(crate) fn record(root: &Path, profile_dir: &Path) -> Result<bool> {
    if !valgrind_found() {
        eprintln!(
            "xtask: valgrind not found, so runledger keeps its default function order; install \
             it (Debian: apt-get install valgrind) to link start-up code together"
        );
        return Ok(false);
    }
    let scratch = profile_dir.join("startup-order.scratch");
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    let executable = profile_dir.join("runledger");
    let recorded = profile_start(root, &executable, &scratch);
    let functions = recorded.and_then(|profile| executed_functions(&profile));
    std::fs::remove_dir_all(&scratch).ok();
    let symbols = symbol_names(&executable)?;
    update_list(&profile_dir.join(ORDER_FILE), &functions?, &symbols)
}

fn valgrind_found() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs the server under callgrind through a start, a health check and a stop, and returns
/// the path of callgrind's profile.
fn profile_start(root: &Path, executable: &Path, scratch: &Path) -> Result<PathBuf> {
    let profile = scratch.join("callgrind.out");
    let mut child = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--demangle=no")
        .arg("--compress-strings=no")
        .arg(format!("--callgrind-out-file={}", profile.display()))
        .arg(format!(
            "--log-file={}",
            scratch.join("valgrind.log").display()
        ))
        .arg(executable)
        .arg("--data-dir")
        .arg(scratch.join("data"))
        .arg("--plugin-dir")
        .arg(root.join("target/plugins"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {} under valgrind", executable.display()))?;
    let outcome = exercise(&mut child);
    stop(&mut child)?;
    outcome?;
    Ok(profile)
}

/// Waits for the server's address, checks its health, and lets it idle.
fn exercise(child: &mut Child) -> Result<()> {
    let stderr = child
        .stderr
        .take()
        .context("the server's stderr is not piped")?;
    let address = listening_address(stderr)?;
    let mut stream = TcpStream::connect(&address)
        .with_context(|| format!("cannot connect to the server at {address}"))?;
    stream.set_read_timeout(Some(SERVER_TIMEOUT))?;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if !response.starts_with("HTTP/1.1 200") {
        bail!("GET /healthz under callgrind returned: {response}");
    }
    std::thread::sleep(IDLE_TIME);
    Ok(())
}

/// Reads the server's stderr up to the line `runledger listening on http://ADDRESS ...` and
/// returns the address. The rest of stderr is drained on a thread, so the server does not block
/// on a full pipe.
fn listening_address(stderr: impl std::io::Read + Send + 'static) -> Result<String> {
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line?;
        if let Some(rest) = line.strip_prefix("runledger listening on http://") {
            let address = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(address);
        }
        seen.push(line);
    }
    bail!(
        "runledger serve under callgrind exited before listening; its output:\n{}",
        seen.join("\n")
    )
}

/// Sends SIGTERM, so callgrind writes its profile as the server shuts down, and waits for the
/// exit.
fn stop(child: &mut Child) -> Result<()> {
    if child.try_wait()?.is_none() {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("cannot run kill")?;
    }
    let deadline = Instant::now() + SERVER_TIMEOUT;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            bail!("runledger serve under callgrind did not stop within {SERVER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Returns the mangled name of every function in a callgrind profile, as callers (`fn=`) or
/// callees (`cfn=`), sorted. Callgrind appends a quote and a number for a recursion level or a
/// caller context, which is removed. Functions without a symbol, which callgrind names by
/// their address, are left out.
fn executed_functions(profile: &Path) -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(profile)
        .with_context(|| format!("callgrind wrote no profile at {}", profile.display()))?;
    let functions: BTreeSet<String> = text
        .lines()
        .filter_map(|line| {
            line.strip_prefix("fn=")
                .or_else(|| line.strip_prefix("cfn="))
        })
        .map(|name| name.split_once('\'').map_or(name, |(plain, _)| plain))
        .filter(|name| !name.starts_with("0x") && !name.starts_with('('))
        .map(str::to_owned)
        .collect();
    if functions.is_empty() {
        bail!(
            "the callgrind profile {} names no function",
            profile.display()
        );
    }
    Ok(functions)
}

/// Returns the name of every symbol in the ELF file `executable`.
fn symbol_names(executable: &Path) -> Result<HashSet<String>> {
    use object::{Object as _, ObjectSymbol as _};

    let data = std::fs::read(executable)
        .with_context(|| format!("cannot read {}", executable.display()))?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("cannot parse {} as an executable", executable.display()))?;
    Ok(file
        .symbols()
        .filter_map(|symbol| symbol.name().ok())
        .map(str::to_owned)
        .collect())
}

/// Adds the names in `functions` to the list at `path` and writes it, one name per line, unless
/// it contains every name already. A start runs some functions only sometimes, depending on its
/// timing, so the list keeps the names of earlier starts that `symbols` (the executable's)
/// still contains. Names of code that changed drop out.
fn update_list(
    path: &Path,
    functions: &BTreeSet<String>,
    symbols: &HashSet<String>,
) -> Result<bool> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let mut listed: BTreeSet<&str> = old.lines().collect();
    if functions.iter().all(|name| listed.contains(name.as_str())) {
        return Ok(false);
    }
    listed.retain(|name| symbols.contains(*name));
    listed.extend(functions.iter().map(String::as_str));

    let mut text = String::new();
    for name in &listed {
        text.push_str(name);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "xtask: recorded {} start-up functions in {}",
        listed.len(),
        path.display()
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = "\
# callgrind format
version: 1
fn=_ZN3std2rt10lang_start17h0123456789abcdefE
3 12
cfn=main
calls=1 0
3 400
fn=main'2
4 7
cfn=0x00000000000010c0
fn=(below main)
cfn=sqlite3_open_v2
";

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn lists_callers_and_callees_without_addresses() {
        let dir = tempfile_dir("parse");
        let profile = dir.join("callgrind.out");
        std::fs::write(&profile, PROFILE).unwrap();

        let functions = executed_functions(&profile).unwrap();

        let expected = names(&[
            "_ZN3std2rt10lang_start17h0123456789abcdefE",
            "main",
            "sqlite3_open_v2",
        ]);
        assert_eq!(functions, expected);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rejects_a_profile_without_functions() {
        let dir = tempfile_dir("empty");
        let profile = dir.join("callgrind.out");
        std::fs::write(&profile, "version: 1\nfn=0x0000000000001050\n").unwrap();

        let error = executed_functions(&profile).unwrap_err();

        assert!(error.to_string().contains("names no function"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn keeps_list_with_every_name() {
        let dir = tempfile_dir("keep");
        let list = dir.join(ORDER_FILE);
        std::fs::write(&list, "a\nb\nc\n").unwrap();

        let changed = update_list(&list, &names(&["a", "c"]), &symbols(&["a", "c"])).unwrap();

        assert!(!changed);
        assert_eq!(std::fs::read_to_string(&list).unwrap(), "a\nb\nc\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn adds_new_names_and_drops_missing_symbols() {
        let dir = tempfile_dir("update");
        let list = dir.join(ORDER_FILE);
        std::fs::write(&list, "a\nb\ngone\n").unwrap();

        let changed = update_list(&list, &names(&["a", "d"]), &symbols(&["a", "b", "d"])).unwrap();

        assert!(changed);
        assert_eq!(std::fs::read_to_string(&list).unwrap(), "a\nb\nd\n");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reads_symbols_of_this_test_executable() {
        let executable = std::env::current_exe().unwrap();

        let symbols = symbol_names(&executable).unwrap();

        assert!(symbols.contains("main"), "{} symbols", symbols.len());
    }

    fn symbols(list: &[&str]) -> HashSet<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    /// Returns a new empty directory below the system's temporary directory.
    fn tempfile_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("xtask-startup-order-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
