//! Plugins the host has seen, identified by the digest of their component.

use super::artifact_records::check_digest;
use super::entity::plugin;
use super::{Store, StoreError, batch, now_ms};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, EntityTrait, QueryOrder};

/// A plugin to record with [`Store::upsert_plugin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPlugin {
    /// Lowercase hex SHA-256 of the component bytes.
    pub digest: String,
    /// Name from `plugin.toml`.
    pub name: String,
    /// Version from `plugin.toml`.
    pub version: String,
    /// Plugin kind, such as `step-executor`.
    pub kind: String,
    /// The `plugin.toml` text.
    pub manifest_text: String,
}

impl Store {
    /// Records a plugin and returns the stored row. For a digest already recorded it replaces
    /// name, version, kind and manifest, and keeps `first_seen`.
    pub async fn upsert_plugin(&self, new: NewPlugin) -> Result<plugin::Model, StoreError> {
        check_digest(&new.digest)?;
        let digest = new.digest.clone();
        let row = plugin::ActiveModel {
            digest: Set(new.digest),
            name: Set(new.name),
            version: Set(new.version),
            kind: Set(new.kind),
            manifest_text: Set(new.manifest_text),
            first_seen: Set(now_ms()),
        };
        let upsert = OnConflict::column(plugin::Column::Digest)
            .update_columns([
                plugin::Column::Name,
                plugin::Column::Version,
                plugin::Column::Kind,
                plugin::Column::ManifestText,
            ])
            .to_owned();
        plugin::Entity::insert(row)
            .on_conflict(upsert)
            .exec_without_returning(&self.db)
            .await?;

        let stored = self.get_plugin(&digest).await?;
        stored.ok_or_else(|| batch::missing_after_insert(&format!("plugin {digest}")).into())
    }

    /// Returns the plugin with this digest, if recorded.
    pub async fn get_plugin(&self, digest: &str) -> Result<Option<plugin::Model>, StoreError> {
        Ok(plugin::Entity::find_by_id(digest).one(&self.db).await?)
    }

    /// Lists recorded plugins by name, then version, then first sighting.
    pub async fn list_plugins(&self) -> Result<Vec<plugin::Model>, StoreError> {
        Ok(plugin::Entity::find()
            .order_by_asc(plugin::Column::Name)
            .order_by_asc(plugin::Column::Version)
            .order_by_asc(plugin::Column::FirstSeen)
            .all(&self.db)
            .await?)
    }
}
