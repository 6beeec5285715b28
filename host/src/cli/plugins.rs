//! `runledger plugins list` and `runledger plugins inspect`.

use crate::config::Config;
use crate::runtime::{Plugin, PluginRegistry, Runtime};
use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub(crate) enum PluginsCommand {
    /// List installed plugins: name, version, kind and digest.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one plugin: kind, world, digest, limits, capabilities and params schema. Loads the
    /// component to check it implements the world of its kind.
    Inspect {
        /// NAME (newest version) or NAME@VERSION.
        plugin: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(config: &Config, command: PluginsCommand) -> Result<ExitCode> {
    let registry = PluginRegistry::scan(&config.plugin_dirs);
    match command {
        PluginsCommand::List { json } => list(config, &registry, json),
        PluginsCommand::Inspect { plugin, json } => inspect(config, &registry, &plugin, json),
    }
}

fn list(config: &Config, registry: &PluginRegistry, json: bool) -> Result<ExitCode> {
    if json {
        let plugins: Vec<_> = registry.plugins().map(|p| summary(p)).collect();
        let problems: Vec<_> = registry
            .problems()
            .iter()
            .map(|p| json!({ "dir": p.dir, "error": p.message }))
            .collect();
        let out = json!({ "plugins": plugins, "problems": problems });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if registry.plugins().next().is_none() {
        let dirs: Vec<String> = config
            .plugin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        println!("no plugins found in {}", dirs.join(", "));
    } else {
        println!("{:<20} {:<10} {:<17} DIGEST", "NAME", "VERSION", "KIND");
    }
    for plugin in registry.plugins() {
        let manifest = &plugin.manifest;
        println!(
            "{:<20} {:<10} {:<17} {}",
            manifest.name,
            manifest.version,
            manifest.kind.world(),
            plugin.digest
        );
    }
    for problem in registry.problems() {
        eprintln!("skipped {}: {}", problem.dir.display(), problem.message);
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(plugin: &Plugin) -> serde_json::Value {
    let manifest = &plugin.manifest;
    json!({
        "name": manifest.name,
        "version": manifest.version,
        "kind": manifest.kind,
        "description": manifest.description,
        "digest": plugin.digest,
        "dir": plugin.dir,
    })
}

fn inspect(config: &Config, registry: &PluginRegistry, spec: &str, json: bool) -> Result<ExitCode> {
    let plugin = registry.resolve(spec)?;
    let runtime = Runtime::new(config.runtime_settings());
    let load = runtime.prepare(&plugin);
    let limits = runtime.effective_limits(&plugin, None);
    let manifest = &plugin.manifest;
    let mut details = summary(&plugin);
    details["world"] = json!(format!("runledger:plugin/{}@0.1.0", manifest.kind.world()));
    details["requested_limits"] = json!(manifest.limits);
    details["effective_limits"] = json!({
        "memory_bytes": limits.memory_bytes,
        "timeout_ms": limits.timeout.as_millis() as u64,
        "fuel": limits.fuel,
        "max_output_bytes": limits.max_output_bytes,
    });
    details["capabilities"] = json!(manifest.capabilities);
    details["inputs"] = json!(manifest.inputs);
    details["outputs"] = json!(manifest.outputs);
    details["params_schema"] = manifest.params_schema.clone();
    details["component"] = match &load {
        Ok(info) => json!({ "status": "ok", "exports": info.exports, "imports": info.imports }),
        Err(error) => json!({ "status": "invalid", "error": error.to_string() }),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&details)?);
    } else {
        print_inspect(&details);
    }
    Ok(if load.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_inspect(details: &serde_json::Value) {
    let field = |key: &str| details[key].as_str().unwrap_or_default().to_owned();
    println!("{}@{}", field("name"), field("version"));
    println!("  description  {}", field("description"));
    println!("  kind         {}", field("kind"));
    println!("  world        {}", field("world"));
    println!("  digest       sha256:{}", field("digest"));
    println!(
        "  directory    {}",
        details["dir"].as_str().unwrap_or_default()
    );
    let component = &details["component"];
    match component["status"].as_str() {
        Some("ok") => println!("  component    ok, implements the world"),
        _ => println!(
            "  component    INVALID: {}",
            component["error"].as_str().unwrap_or("")
        ),
    }
    let limits = &details["effective_limits"];
    println!(
        "  limits       memory {} MiB, timeout {} ms, fuel {}, output {} MiB",
        limits["memory_bytes"].as_u64().unwrap_or(0) >> 20,
        limits["timeout_ms"],
        limits["fuel"],
        limits["max_output_bytes"].as_u64().unwrap_or(0) >> 20
    );
    println!("  capabilities {}", details["capabilities"]);
    for (label, key) in [("inputs", "inputs"), ("outputs", "outputs")] {
        let names: Vec<String> = details[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|decl| decl["name"].as_str().unwrap_or("?").to_owned())
            .collect();
        println!("  {label:<12} {}", names.join(", "));
    }
    let schema = serde_json::to_string_pretty(&details["params_schema"]).unwrap_or_default();
    println!("  params schema:");
    for line in schema.lines() {
        println!("    {line}");
    }
}
