//! The model registry: models, versions created from run artifacts, tags, attachments and
//! the audit log.

use super::promote::stored_version;
use super::validate::{resolve_specs, validation_view};
use super::views::{AuditEntry, ModelList, ModelView, VersionList, VersionView};
use super::{Actor, GateError, Gates, Trigger, ValidatorSpec};
use crate::runtime::{PluginKind, PluginRegistry};
use crate::store::entity::{model_version, registered_model};
use crate::store::{
    Attachment, AuditQuery, Direction, ModelQuery, NewModel, NewModelVersion, VersionQuery,
    check_alias,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use utoipa::ToSchema;

/// A model to register, for [`Gates::create_model`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewModelRequest {
    /// Unique name: ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit.
    pub name: String,
    /// Free-text description.
    #[serde(default)]
    pub description: String,
    /// Tags by key.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Changes to a model, for [`Gates::update_model`]; fields left `None` stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelChange {
    /// The new description.
    #[serde(default)]
    pub description: Option<String>,
    /// The new name.
    #[serde(default)]
    pub new_name: Option<String>,
}

/// A version to create, for [`Gates::create_version`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVersion {
    /// The registered model.
    pub model: String,
    /// The run that produced the artifact.
    pub run_id: String,
    /// The artifact: `STEP.OUTPUT` of a pipeline step, a run-level output name, or the
    /// digest of an artifact the run produced.
    pub artifact: String,
    /// Free-text description.
    #[serde(default)]
    pub description: String,
    /// Tags by key.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Gates {
    /// Registers a model. Fails with `ModelNameTaken` when the name is in use.
    pub async fn create_model(
        &self,
        actor: &Actor,
        new: NewModelRequest,
    ) -> Result<ModelView, GateError> {
        let stored = NewModel {
            name: new.name,
            description: new.description,
            tags: new.tags,
        };
        let model = self.store.create_model(&actor.name, stored).await?;
        tracing::info!(model = %model.name, actor = %actor.name, "model registered");
        self.model_view(model).await
    }

    /// Returns a model with its tags, aliases, latest version and attachments.
    pub async fn model(&self, name: &str) -> Result<ModelView, GateError> {
        let model = self.store.require_model(name).await?;
        self.model_view(model).await
    }

    /// Lists models by name, a page at a time.
    pub async fn list_models(
        &self,
        name_prefix: Option<String>,
        limit: u64,
        page_token: Option<String>,
    ) -> Result<ModelList, GateError> {
        let query = ModelQuery {
            name_prefix,
            limit,
            page_token,
        };
        let page = self.store.list_models(&query).await?;
        let mut models = Vec::with_capacity(page.models.len());
        for model in page.models {
            models.push(self.model_view(model).await?);
        }
        Ok(ModelList {
            models,
            next_page_token: page.next_page_token,
        })
    }

    /// Changes a model's description or name.
    pub async fn update_model(
        &self,
        actor: &Actor,
        name: &str,
        change: ModelChange,
    ) -> Result<ModelView, GateError> {
        let stored = crate::store::ModelChange {
            description: change.description,
            new_name: change.new_name,
        };
        let model = self.store.update_model(&actor.name, name, stored).await?;
        self.model_view(model).await
    }

    /// Deletes a model with its versions, aliases, attachments and promotions. Its audit
    /// entries stay.
    pub async fn delete_model(&self, actor: &Actor, name: &str) -> Result<(), GateError> {
        self.store.delete_model(&actor.name, name).await?;
        tracing::info!(model = name, actor = %actor.name, "model deleted");
        Ok(())
    }

    /// Sets a tag of a model.
    pub async fn set_model_tag(
        &self,
        actor: &Actor,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<(), GateError> {
        Ok(self
            .store
            .set_model_tag(&actor.name, name, key, value)
            .await?)
    }

    /// Deletes a tag of a model.
    pub async fn delete_model_tag(
        &self,
        actor: &Actor,
        name: &str,
        key: &str,
    ) -> Result<(), GateError> {
        self.store.delete_model_tag(&actor.name, name, key).await?;
        Ok(())
    }

    /// Creates the next version of a model from an artifact of a run, then runs the model's
    /// attached validators on the run for this version. Failed checks are recorded and shown
    /// in the version's validations; they do not stop the version from being created.
    pub async fn create_version(
        &self,
        registry: &PluginRegistry,
        actor: &Actor,
        new: NewVersion,
    ) -> Result<VersionView, GateError> {
        self.store.require_model(&new.model).await?;
        self.store.require_run(&new.run_id).await?;
        let (artifact_name, digest) = self.resolve_artifact(&new.run_id, &new.artifact).await?;
        let stored = NewModelVersion {
            model: new.model.clone(),
            run_id: Some(new.run_id.clone()),
            source: format!("runs:/{}/{artifact_name}", new.run_id),
            artifact_name,
            artifact_digest: digest,
            description: new.description,
            tags: new.tags,
        };
        self.create_resolved_version(registry, actor, stored).await
    }

    /// Creates the next version of a model from an artifact that the caller has already
    /// resolved, such as a path of the MLflow protocol, then runs the model's attached
    /// validators on the version's run as [`Gates::create_version`] does.
    pub async fn create_resolved_version(
        &self,
        registry: &PluginRegistry,
        actor: &Actor,
        stored: NewModelVersion,
    ) -> Result<VersionView, GateError> {
        let model = stored.model.clone();
        let run_id = stored.run_id.clone();
        let version = self.store.create_model_version(&actor.name, stored).await?;
        tracing::info!(model = %model, version = version.version, run_id = ?run_id,
            actor = %actor.name, "model version created");

        let specs = self.attached_validators(&model).await?;
        if let (false, Some(run_id)) = (specs.is_empty(), &run_id) {
            self.validate_run(
                registry,
                actor,
                run_id,
                &specs,
                Trigger::ModelVersion,
                Some(version.id),
            )
            .await?;
        }
        self.version_view(&model, version).await
    }

    /// Returns a version with its tags, aliases and validations.
    pub async fn version(&self, model: &str, version: u64) -> Result<VersionView, GateError> {
        let (_, found) = self
            .store
            .require_model_version(model, stored_version(version)?)
            .await?;
        self.version_view(model, found).await
    }

    /// Lists the versions of a model, a page at a time.
    pub async fn list_versions(
        &self,
        model: &str,
        limit: u64,
        page_token: Option<String>,
    ) -> Result<VersionList, GateError> {
        let query = VersionQuery { limit, page_token };
        let page = self.store.list_model_versions(model, &query).await?;
        let mut versions = Vec::with_capacity(page.versions.len());
        for version in page.versions {
            versions.push(self.version_view(model, version).await?);
        }
        Ok(VersionList {
            versions,
            next_page_token: page.next_page_token,
        })
    }

    /// Changes the description of a version.
    pub async fn update_version(
        &self,
        actor: &Actor,
        model: &str,
        version: u64,
        description: &str,
    ) -> Result<VersionView, GateError> {
        let number = stored_version(version)?;
        let updated = self
            .store
            .update_model_version(&actor.name, model, number, description)
            .await?;
        self.version_view(model, updated).await
    }

    /// Deletes a version and the aliases that point at it.
    pub async fn delete_version(
        &self,
        actor: &Actor,
        model: &str,
        version: u64,
    ) -> Result<(), GateError> {
        let number = stored_version(version)?;
        self.store
            .delete_model_version(&actor.name, model, number)
            .await?;
        tracing::info!(model, version, actor = %actor.name, "model version deleted");
        Ok(())
    }

    /// Sets a tag of a version.
    pub async fn set_version_tag(
        &self,
        actor: &Actor,
        model: &str,
        version: u64,
        key: &str,
        value: &str,
    ) -> Result<(), GateError> {
        let number = stored_version(version)?;
        Ok(self
            .store
            .set_version_tag(&actor.name, model, number, key, value)
            .await?)
    }

    /// Deletes a tag of a version.
    pub async fn delete_version_tag(
        &self,
        actor: &Actor,
        model: &str,
        version: u64,
        key: &str,
    ) -> Result<(), GateError> {
        let number = stored_version(version)?;
        self.store
            .delete_version_tag(&actor.name, model, number, key)
            .await?;
        Ok(())
    }

    /// Replaces the validators run on every new version of a model, after checking each with
    /// [`Gates::check_specs`]. Plugins given by name are stored as `name@version`.
    pub async fn set_validators(
        &self,
        registry: &PluginRegistry,
        actor: &Actor,
        model: &str,
        specs: Vec<ValidatorSpec>,
    ) -> Result<ModelView, GateError> {
        let attachments = resolve_specs(registry, PluginKind::MetricValidator, &specs)?;
        self.store
            .set_model_validators(&actor.name, model, attachments)
            .await?;
        self.model(model).await
    }

    /// Replaces the policies that must allow every move of `alias`, after checking each with
    /// [`Gates::check_specs`]. Plugins given by name are stored as `name@version`.
    pub async fn set_policies(
        &self,
        registry: &PluginRegistry,
        actor: &Actor,
        model: &str,
        alias: &str,
        specs: Vec<ValidatorSpec>,
    ) -> Result<ModelView, GateError> {
        check_alias(alias)?;
        let attachments = resolve_specs(registry, PluginKind::Policy, &specs)?;
        self.store
            .set_alias_policies(&actor.name, model, alias, attachments)
            .await?;
        self.model(model).await
    }

    /// Returns audit entries of a model, oldest first: those after `after_seq`, only those of
    /// `version` when given, at most `limit`.
    pub async fn audit(
        &self,
        model: &str,
        version: Option<u64>,
        after_seq: Option<i64>,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, GateError> {
        let query = AuditQuery {
            model: model.to_owned(),
            version: version.map(stored_version).transpose()?,
            after_seq,
            limit,
        };
        let entries = self.store.audit_log(&query).await?;
        Ok(entries
            .into_iter()
            .map(|entry| AuditEntry {
                seq: entry.seq,
                at: entry.at,
                actor: entry.actor,
                action: entry.action,
                model: entry.model,
                version: entry.version,
                alias: entry.alias,
                promotion_id: entry.promotion_id,
                detail: entry.detail,
            })
            .collect())
    }

    /// Finds the output of a run that `artifact` names and returns its canonical name
    /// (`STEP.OUTPUT` or the run-level name) and digest.
    async fn resolve_artifact(
        &self,
        run_id: &str,
        artifact: &str,
    ) -> Result<(String, String), GateError> {
        let uses = self.store.run_artifact_uses(run_id, None).await?;
        let outputs: Vec<(String, String)> = uses
            .into_iter()
            .filter(|used| used.link.direction == Direction::Output)
            .map(|used| {
                let name = match used.step_name {
                    Some(step) => format!("{step}.{}", used.link.name),
                    None => used.link.name,
                };
                (name, used.link.digest)
            })
            .collect();

        let found = outputs
            .iter()
            .find(|(name, _)| name == artifact)
            .or_else(|| outputs.iter().find(|(_, digest)| digest == artifact));
        match found {
            Some(output) => Ok(output.clone()),
            None => {
                let available: BTreeSet<String> =
                    outputs.into_iter().map(|(name, _)| name).collect();
                Err(GateError::ArtifactNotFound {
                    run_id: run_id.to_owned(),
                    artifact: artifact.to_owned(),
                    available: available.into_iter().collect(),
                })
            }
        }
    }

    async fn attached_validators(&self, model: &str) -> Result<Vec<ValidatorSpec>, GateError> {
        let attachments = self.store.model_validators(model).await?;
        Ok(attachments.into_iter().map(spec_of).collect())
    }

    async fn model_view(&self, model: registered_model::Model) -> Result<ModelView, GateError> {
        let tags = self.store.model_tags(model.id).await?;
        let aliases = self
            .store
            .model_aliases(model.id)
            .await?
            .into_iter()
            .map(|(alias, version)| (alias, u64::try_from(version).unwrap_or_default()))
            .collect();
        let latest = self
            .store
            .latest_model_version(model.id)
            .await?
            .and_then(|version| u64::try_from(version.version).ok());
        let validators = self.attached_validators(&model.name).await?;
        let policies = self
            .store
            .all_alias_policies(&model.name)
            .await?
            .into_iter()
            .map(|(alias, attached)| (alias, attached.into_iter().map(spec_of).collect()))
            .collect();
        Ok(ModelView {
            name: model.name,
            description: model.description,
            tags,
            aliases,
            latest_version: latest,
            validators,
            policies,
            created_by: model.created_by,
            created_at: model.created_at,
            updated_at: model.updated_at,
        })
    }

    async fn version_view(
        &self,
        model: &str,
        version: model_version::Model,
    ) -> Result<VersionView, GateError> {
        let tags = self.store.version_tags(version.id).await?;
        let aliases = self
            .store
            .model_aliases(version.model_id)
            .await?
            .into_iter()
            .filter(|(_, number)| *number == version.version)
            .map(|(alias, _)| alias)
            .collect();
        let validations = match &version.run_id {
            Some(run_id) => self
                .store
                .run_validations(run_id)
                .await?
                .into_iter()
                .filter(|record| record.model_version_id.is_none_or(|id| id == version.id))
                .map(validation_view)
                .collect(),
            None => Vec::new(),
        };
        Ok(VersionView {
            model: model.to_owned(),
            version: u64::try_from(version.version).unwrap_or_default(),
            run_id: version.run_id,
            artifact_name: version.artifact_name,
            artifact_digest: version.artifact_digest,
            source: version.source,
            description: version.description,
            status: version.status.to_string(),
            tags,
            aliases,
            created_by: version.created_by,
            created_at: version.created_at,
            updated_at: version.updated_at,
            validations,
        })
    }
}

fn spec_of(attachment: Attachment) -> ValidatorSpec {
    ValidatorSpec {
        plugin: attachment.plugin,
        config: attachment.config,
    }
}
