//! Records the wasmtime version from Cargo.lock, so runs and cache keys name the exact runtime,
//! and embeds the web UI: every source file under `ui/` plus the chosen files of the npm
//! libraries in `ui/node_modules`, which `cargo xtask setup` installs. On x86-64 Linux with
//! glibc 2.36 or newer the executable is linked with packed relative relocations, and with its
//! start-up functions first when `cargo xtask` has recorded them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Files of `ui/node_modules` that the UI loads, by the path they are served under below
/// `/ui/`. Each library ships an ES module and a minified script that sets a global.
const VENDOR_FILES: &[(&str, &str)] = &[
    ("vendor/uplot.esm.js", "uplot/dist/uPlot.esm.js"),
    ("vendor/uplot.min.js", "uplot/dist/uPlot.iife.min.js"),
    ("vendor/uplot.min.css", "uplot/dist/uPlot.min.css"),
    ("vendor/uplot.LICENSE.txt", "uplot/LICENSE"),
    ("vendor/dagre.esm.js", "@dagrejs/dagre/dist/dagre.esm.js"),
    ("vendor/dagre.min.js", "@dagrejs/dagre/dist/dagre.min.js"),
    ("vendor/dagre.LICENSE.txt", "@dagrejs/dagre/LICENSE"),
];

/// Files under `ui/` that describe the npm install and are not served.
const NOT_SERVED: &[&str] = &["package.json", "package-lock.json"];

/// Oldest glibc that applies packed relative relocations, as (major, minor).
const RELR_GLIBC: (u32, u32) = (2, 36);

fn main() {
    record_wasmtime_version();
    embed_ui();
    pack_relative_relocations();
    order_startup_functions();
}

/// File of start-up function names that `cargo xtask bench` records in the profile's output
/// directory (such as `target/debug`) by running the built server under callgrind.
const STARTUP_ORDER_FILE: &str = "startup-order.txt";

/// Links the functions named in the recorded start-up list first, side by side. The kernel maps
/// 64 KiB of code around every page that faults in. A start runs a few thousand functions, so
/// scattered over the executable they keep about 20 MiB of its code resident, and gathered
/// they fill about 4 MiB. Names missing from the build are skipped, so a list recorded from an
/// older build only orders less.
///
/// `--symbol-ordering-file` is an option of LLVM's lld, which Rust uses to link for
/// `x86_64-unknown-linux-gnu`, so the list is passed for that target alone.
fn order_startup_functions() {
    let Some(profile_dir) = profile_dir() else {
        return;
    };
    let list = profile_dir.join(STARTUP_ORDER_FILE);
    if !list.is_file() {
        create_empty_list(&list);
    }
    println!("cargo::rerun-if-changed={}", list.display());
    let target = std::env::var("TARGET").unwrap_or_default();
    let recorded = std::fs::metadata(&list).is_ok_and(|metadata| metadata.len() > 0);
    if target == "x86_64-unknown-linux-gnu" && recorded {
        println!(
            "cargo::rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo::rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Creates an empty list dated 1970, so that cargo can watch it. Cargo reruns a build script at
/// every build while a file it watches is missing, and once more when the file is newer than
/// the script's last run, which a file created now would be.
fn create_empty_list(list: &Path) {
    let Ok(file) = std::fs::File::create(list) else {
        return;
    };
    let _ = file.set_modified(std::time::UNIX_EPOCH);
}

/// Returns the profile's output directory, three levels above `OUT_DIR`
/// (`target/debug/build/runledger-HASH/out`).
fn profile_dir() -> Option<PathBuf> {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR")?);
    Some(out_dir.ancestors().nth(3)?.to_owned())
}

/// Links the `runledger` executable with packed relative relocations (`DT_RELR`). A
/// position-independent executable carries one 24-byte entry per pointer in its read-only data,
/// about 2 MiB here. The dynamic loader reads that whole table at every start, so it stays
/// resident. Packed, the table takes about 22 KiB.
///
/// GNU ld documents the option for x86-64 only, and the executable it writes requires glibc's
/// `GLIBC_ABI_DT_RELR` version, which glibc 2.36 introduced. So the option is set only for a
/// native x86-64 build on a machine whose glibc is that new; elsewhere the usual table stays.
fn pack_relative_relocations() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    let native = target == "x86_64-unknown-linux-gnu" && target == host;
    if native && glibc_version().is_some_and(|version| version >= RELR_GLIBC) {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Returns the build machine's glibc version from `getconf GNU_LIBC_VERSION`, which prints a
/// line such as `glibc 2.36`.
fn glibc_version() -> Option<(u32, u32)> {
    let output = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let (major, rest) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    let minor = rest.split('.').next()?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Returns the directory of this package, as cargo passes it to the running script. The value
/// compiled into the script would be wrong when cargo reuses the compiled script for a copy of
/// the repository at another path that shares the target directory.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .expect("cargo sets CARGO_MANIFEST_DIR for build scripts")
}

fn record_wasmtime_version() {
    let lock_path = manifest_dir().join("../Cargo.lock");
    println!("cargo::rerun-if-changed={}", lock_path.display());
    let lock = std::fs::read_to_string(&lock_path).unwrap_or_default();
    let version = lock
        .split("[[package]]")
        .find(|entry| entry.contains("\nname = \"wasmtime\"\n"))
        .and_then(|entry| {
            entry
                .lines()
                .find_map(|line| line.strip_prefix("version = "))
        })
        .map(|quoted| quoted.trim_matches('"').to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo::rustc-env=RUNLEDGER_WASMTIME_VERSION={version}");
}

/// Writes `ui_assets.rs` to `OUT_DIR`: a table of `(served path, include_bytes!(file))` and
/// the list of vendor files that were missing. A missing `node_modules` leaves the vendor files
/// out, so the build succeeds and the UI shows a notice to run `cargo xtask setup`.
fn embed_ui() {
    let ui_dir = manifest_dir().join("ui");
    // A directory here makes cargo rerun the script when any file below it changes or appears.
    println!("cargo::rerun-if-changed={}", ui_dir.display());

    let mut assets = Vec::new();
    collect_sources(&ui_dir, &ui_dir, &mut assets);
    let mut missing = Vec::new();
    let modules = ui_dir.join("node_modules");
    for (served, source) in VENDOR_FILES {
        let file = modules.join(source);
        if file.is_file() {
            assets.push(((*served).to_owned(), file));
        } else {
            missing.push(*served);
        }
    }
    assets.sort();

    let mut code = String::from("/// Embedded UI files by path below `/ui/`.\n");
    code.push_str("pub(crate) static ASSETS: &[(&str, &[u8])] = &[\n");
    for (served, file) in &assets {
        let _ = writeln!(
            code,
            "    ({served:?}, include_bytes!({:?})),",
            file.display()
        );
    }
    code.push_str("];\n/// Vendor files that were missing from `ui/node_modules` at build time.\n");
    let _ = writeln!(
        code,
        "pub(crate) static MISSING_VENDOR_FILES: &[&str] = &{missing:?};"
    );

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out_dir.join("ui_assets.rs"), code).expect("write ui_assets.rs");
}

/// Adds every file below `dir` except `node_modules`, hidden files and the npm manifests.
fn collect_sources(root: &Path, dir: &Path, assets: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            collect_sources(root, &path, assets);
            continue;
        }
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        let served = relative.to_string_lossy().replace('\\', "/");
        if !NOT_SERVED.contains(&served.as_str()) {
            assets.push((served, path));
        }
    }
}
