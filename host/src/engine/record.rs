//! Recording a new run before it executes.

use super::plan::{Plan, PlannedInput};
use super::{Engine, EngineError, RunOptions, environment};
use crate::store::{
    DEFAULT_PROJECT, Direction, NewPlugin, NewRun, NewStepRun, PluginRef, RunOwner, StepStatus,
};
use serde_json::Value;

pub(super) async fn create_run(
    engine: &Engine,
    plan: &Plan,
    options: &RunOptions,
) -> Result<String, EngineError> {
    let store = engine.store();
    let project = plan
        .definition
        .project
        .as_deref()
        .unwrap_or(DEFAULT_PROJECT);
    let pipeline = store
        .ensure_pipeline(project, &plan.definition.name, &plan.text)
        .await?;
    let run = store
        .create_run(NewRun {
            project: project.to_owned(),
            pipeline_id: Some(pipeline.id),
            name: plan.definition.name.clone(),
            source: options.source,
            user_name: options.user.clone(),
            seed: Some(options.seed as i64),
            owner: Some(RunOwner {
                pid: std::process::id(),
                hostname: environment::hostname(),
            }),
        })
        .await?;
    store
        .log_params(&run.id, &param_strings(&plan.params))
        .await?;
    store.set_tags(&run.id, &options.tags).await?;
    let plugins = record_plugins(engine, plan).await?;
    let mut snapshot = environment::snapshot(options.pipeline_dir.as_deref(), plugins);
    snapshot
        .extra
        .insert("deterministic".into(), options.deterministic.into());
    snapshot
        .extra
        .insert("cache".into(), options.use_cache.into());
    store.put_environment(&run.id, &snapshot).await?;
    import_inputs(engine, &run.id, plan).await?;
    create_step_runs(engine, &run.id, plan).await?;
    tracing::info!(run_id = %run.id, pipeline = %plan.definition.name, "run recorded");
    Ok(run.id)
}

/// Params as the text the store keeps: strings as they are, other values as JSON.
pub(crate) fn param_strings(params: &serde_json::Map<String, Value>) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (key.clone(), text)
        })
        .collect()
}

async fn record_plugins(engine: &Engine, plan: &Plan) -> Result<Vec<PluginRef>, EngineError> {
    let mut refs: Vec<PluginRef> = Vec::new();
    for step in &plan.steps {
        let Some(plugin) = &step.plugin else {
            continue;
        };
        if refs.iter().any(|r| r.digest == plugin.digest) {
            continue;
        }
        let manifest_path = plugin.dir.join(crate::runtime::MANIFEST_FILE);
        let manifest_text = std::fs::read_to_string(&manifest_path).unwrap_or_default();
        engine
            .store()
            .upsert_plugin(NewPlugin {
                digest: plugin.digest.clone(),
                name: plugin.manifest.name.clone(),
                version: plugin.manifest.version.clone(),
                kind: plugin.manifest.kind.world().to_owned(),
                manifest_text,
            })
            .await?;
        refs.push(plugin_ref(plugin));
    }
    Ok(refs)
}

pub(crate) fn plugin_ref(plugin: &crate::runtime::Plugin) -> PluginRef {
    PluginRef {
        name: plugin.manifest.name.clone(),
        version: plugin.manifest.version.clone(),
        digest: plugin.digest.clone(),
    }
}

async fn import_inputs(engine: &Engine, run_id: &str, plan: &Plan) -> Result<(), EngineError> {
    let store = engine.store();
    for (name, input) in &plan.inputs {
        let (digest, size, media_type, dataset_uri) = match input {
            PlannedInput::File { path, media_type } => {
                let artifacts = engine.artifacts().clone();
                let source = path.clone();
                let (digest, size) =
                    tokio::task::spawn_blocking(move || artifacts.import_file(&source))
                        .await
                        .map_err(|error| {
                            EngineError::Other(format!("input import failed: {error}"))
                        })??;
                let uri = path.canonicalize().unwrap_or_else(|_| path.clone());
                (
                    digest,
                    size,
                    media_type.clone(),
                    Some(uri.display().to_string()),
                )
            }
            PlannedInput::Stored { digest, media_type } => {
                let size = engine.artifacts().size_of(digest)?;
                (digest.clone(), size, media_type.clone(), None)
            }
        };
        store.record_artifact(&digest, size, &media_type).await?;
        if let Some(uri) = dataset_uri {
            store.record_dataset(&digest, name, &uri).await?;
        }
        store
            .link_artifact(run_id, None, name, &digest, Direction::Input)
            .await?;
    }
    Ok(())
}

/// Records a pending step run per step, and the external steps with their step tokens.
async fn create_step_runs(engine: &Engine, run_id: &str, plan: &Plan) -> Result<(), EngineError> {
    let steps = plan
        .steps
        .iter()
        .map(|step| NewStepRun {
            run_id: run_id.to_owned(),
            name: step.name.clone(),
            plugin: step.plugin.as_deref().map(plugin_ref),
            executor: step.executor.as_str().to_owned(),
            status: StepStatus::Pending,
            params: Value::Object(step.params.clone()),
            cache_key: None,
            cached_from: None,
        })
        .collect();
    let ids = engine.store().create_step_runs(steps).await?;

    let external = plan
        .steps
        .iter()
        .zip(ids)
        .filter(|(step, _)| step.is_external())
        .map(|(step, id)| (step.name.clone(), id, step.outputs.clone()))
        .collect();
    super::external::issue_tokens(engine, run_id, external).await
}
