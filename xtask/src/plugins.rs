//! Building plugins for wasm32-wasip2 and collecting them where the host looks for them.

use crate::{cargo, run};
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A plugin crate of the plugins workspace: its directory and where its component goes.
struct PluginCrate {
    dir: PathBuf,
    output_root: PathBuf,
}

/// Builds the plugins workspace in release mode and copies each component and manifest to
/// `target/plugins/NAME@VERSION/` (or `target/test-plugins/` for crates under
/// `plugins/testing/`), as `plugin.wasm` and `plugin.toml`.
pub(crate) fn build_all(root: &Path) -> Result<()> {
    let plugins_dir = root.join("plugins");
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&plugins_dir)
            .args(["build", "--release", "--target", "wasm32-wasip2"]),
    )?;

    let crates = find_crates(root)?;
    for plugin in &crates {
        collect(&plugins_dir, plugin)?;
    }
    eprintln!("xtask: collected {} plugins", crates.len());
    Ok(())
}

/// Runs the native tests of the first-party plugin crates (every crate directly under
/// `plugins/`, such as `mlkit` and `metric-threshold`), because `cargo test --workspace` at the
/// root does not reach the plugins workspace. The components of the test corpus under
/// `plugins/testing/` have no tests and are left out.
pub(crate) fn test_first_party(root: &Path) -> Result<()> {
    let plugins_dir = root.join("plugins");
    let mut command = cargo();
    command
        .current_dir(&plugins_dir)
        .args(["test", "--target", &host_target()?]);
    for dir in first_party_crates(&plugins_dir)? {
        command.args(["-p", &crate_name(&dir)?]);
    }
    run(&mut command)
}

fn first_party_crates(plugins_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(plugins_dir)
        .with_context(|| format!("cannot list {}", plugins_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Returns the target triple of this machine, from `rustc -vV`.
fn host_target() -> Result<String> {
    let output = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("cannot run `rustc -vV` to find the host target")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc -vV` printed no `host:` line")
}

fn find_crates(root: &Path) -> Result<Vec<PluginCrate>> {
    let mut crates = Vec::new();
    let groups = [
        (root.join("plugins"), root.join("target/plugins")),
        (
            root.join("plugins/testing"),
            root.join("target/test-plugins"),
        ),
    ];
    for (source, output_root) in groups {
        let mut dirs: Vec<PathBuf> = fs::read_dir(&source)
            .with_context(|| format!("cannot list {}", source.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|dir| dir.join("plugin.toml").is_file() && dir.join("Cargo.toml").is_file())
            .collect();
        dirs.sort();
        crates.extend(dirs.into_iter().map(|dir| PluginCrate {
            dir,
            output_root: output_root.clone(),
        }));
    }
    Ok(crates)
}

fn collect(plugins_dir: &Path, plugin: &PluginCrate) -> Result<()> {
    let manifest_path = plugin.dir.join("plugin.toml");
    let manifest: toml::Table = fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?
        .parse()
        .with_context(|| format!("{} is not valid TOML", manifest_path.display()))?;
    let field = |key: &str| -> Result<String> {
        match manifest.get(key).and_then(|v| v.as_str()) {
            Some(value) => Ok(value.to_owned()),
            None => bail!("{} has no string field `{key}`", manifest_path.display()),
        }
    };
    let (name, version) = (field("name")?, field("version")?);
    let crate_name = crate_name(&plugin.dir)?;
    let wasm = plugins_dir
        .join("target/wasm32-wasip2/release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")));
    let destination = plugin.output_root.join(format!("{name}@{version}"));
    fs::create_dir_all(&destination)?;
    fs::copy(&wasm, destination.join("plugin.wasm"))
        .with_context(|| format!("cannot copy {}", wasm.display()))?;
    fs::copy(&manifest_path, destination.join("plugin.toml"))?;
    Ok(())
}

fn crate_name(dir: &Path) -> Result<String> {
    let path = dir.join("Cargo.toml");
    let cargo: toml::Table = fs::read_to_string(&path)?.parse()?;
    cargo
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .with_context(|| format!("{} has no package name", path.display()))
}
