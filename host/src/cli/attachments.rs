//! `--plugin P [--config JSON] ...` arguments and `--file` lists that name validators or
//! policies with their configurations.

use crate::gates::ValidatorSpec;
use anyhow::{Context as _, Result, bail};
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use serde_json::Value;
use std::path::Path;

/// Plugins given as `--plugin P [--config JSON]`, repeated. Each `--config` belongs to the
/// `--plugin` right before it; a plugin without one gets `{}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PluginArgs {
    /// The plugins with their configurations, in the order given.
    pub(crate) specs: Vec<ValidatorSpec>,
}

const PLUGIN: &str = "plugin";
const CONFIG: &str = "config";

impl Args for PluginArgs {
    fn augment_args(command: Command) -> Command {
        command
            .arg(
                Arg::new(PLUGIN)
                    .long(PLUGIN)
                    .value_name("NAME[@VERSION]")
                    .action(ArgAction::Append)
                    .help("A plugin to attach; repeat for several, in the order they run"),
            )
            .arg(
                Arg::new(CONFIG)
                    .long(CONFIG)
                    .value_name("JSON")
                    .action(ArgAction::Append)
                    .value_parser(parse_config)
                    .help(
                        "Configuration (a JSON object) of the --plugin given just before it \
                         [default: {}]",
                    ),
            )
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

impl FromArgMatches for PluginArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let plugins = indexed::<String>(matches, PLUGIN);
        let configs = indexed::<Value>(matches, CONFIG);
        pair(plugins, configs)
            .map(|specs| Self { specs })
            .map_err(|message| clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, message))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// Returns the values of a repeated argument with their positions on the command line.
fn indexed<T: Clone + Send + Sync + 'static>(matches: &ArgMatches, id: &str) -> Vec<(usize, T)> {
    let (Some(indices), Some(values)) = (matches.indices_of(id), matches.get_many::<T>(id)) else {
        return Vec::new();
    };
    indices.zip(values.cloned()).collect()
}

/// Attaches each config to the plugin given right before it.
fn pair(
    plugins: Vec<(usize, String)>,
    configs: Vec<(usize, Value)>,
) -> Result<Vec<ValidatorSpec>, String> {
    let mut specs: Vec<(usize, ValidatorSpec, bool)> = plugins
        .into_iter()
        .map(|(index, plugin)| {
            let config = Value::Object(Default::default());
            (index, ValidatorSpec { plugin, config }, false)
        })
        .collect();
    for (index, config) in configs {
        let Some(owner) = specs.iter_mut().rev().find(|(at, _, _)| *at < index) else {
            return Err(format!(
                "--config {config} comes before any --plugin; give --plugin NAME first, then \
                 its --config"
            ));
        };
        if owner.2 {
            return Err(format!(
                "--plugin {} has two --config values; give one JSON object per plugin",
                owner.1.plugin
            ));
        }
        owner.1.config = config;
        owner.2 = true;
    }
    Ok(specs.into_iter().map(|(_, spec, _)| spec).collect())
}

/// Parses a `--config` value, which must be a JSON object.
fn parse_config(text: &str) -> Result<Value, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|error| format!("invalid JSON: {error}"))?;
    if !value.is_object() {
        return Err(format!(
            "`{text}` is not a JSON object; give the configuration as {{\"key\": value}}"
        ));
    }
    Ok(value)
}

/// Reads a YAML or JSON file that lists `{plugin, config}` entries.
pub(crate) fn read_spec_file(path: &Path) -> Result<Vec<ValidatorSpec>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let specs: Vec<ValidatorSpec> = serde_yaml_ng::from_str(&text).with_context(|| {
        format!(
            "invalid {}: expected a list of entries such as `- plugin: NAME@VERSION` with an \
             optional `config:` mapping",
            path.display()
        )
    })?;
    if specs.is_empty() {
        bail!(
            "{} lists no plugins: list at least one `- plugin: NAME@VERSION` entry, or remove \
             every attachment with --clear",
            path.display()
        );
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(args: &[&str]) -> Result<PluginArgs, clap::Error> {
        let command = PluginArgs::augment_args(Command::new("test"));
        let matches =
            command.try_get_matches_from(std::iter::once("test").chain(args.iter().copied()))?;
        PluginArgs::from_arg_matches(&matches)
    }

    #[test]
    fn rejects_empty_spec_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.yaml");
        std::fs::write(&path, "[]\n").unwrap();

        let error = read_spec_file(&path).unwrap_err().to_string();

        assert!(error.contains("lists no plugins"), "{error}");
        assert!(error.contains("--clear"), "{error}");
    }

    #[test]
    fn pairs_config_with_plugin_before_it() {
        let parsed = parse(&[
            "--plugin",
            "a",
            "--plugin",
            "b",
            "--config",
            r#"{"count": 2}"#,
        ])
        .unwrap();

        assert_eq!(parsed.specs.len(), 2);
        assert_eq!(parsed.specs[0].plugin, "a");
        assert_eq!(parsed.specs[0].config, json!({}));
        assert_eq!(parsed.specs[1].plugin, "b");
        assert_eq!(parsed.specs[1].config, json!({ "count": 2 }));
    }

    #[test]
    fn rejects_config_without_plugin() {
        let error = parse(&["--config", "{}", "--plugin", "a"]).unwrap_err();

        assert!(error.to_string().contains("before any --plugin"), "{error}");
    }

    #[test]
    fn rejects_two_configs_for_one_plugin() {
        let error = parse(&["--plugin", "a", "--config", "{}", "--config", "{}"]).unwrap_err();

        assert!(error.to_string().contains("two --config"), "{error}");
    }

    #[test]
    fn rejects_config_that_is_not_object() {
        let error = parse(&["--plugin", "a", "--config", "[1]"]).unwrap_err();

        assert!(error.to_string().contains("not a JSON object"), "{error}");
    }
}
