//! Creates the model registry (models, versions, tags, aliases), the governance tables
//! (validator and policy attachments, validations, promotions, approvals) and the append-only
//! audit log.
//!
//! The audit log has no foreign keys, so its entries outlive the models they name, and
//! triggers on both databases reject every `UPDATE` and `DELETE` of it.

use super::{cascade, index};
use sea_orm_migration::sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

/// Message of the error raised by the triggers that keep `audit_log` append-only.
const APPEND_ONLY: &str = "audit_log is append-only: its entries cannot be changed or deleted";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_models(manager).await?;
        create_versions(manager).await?;
        let model = (RegisteredModels::Table, RegisteredModels::Id);
        create_key_values(manager, ModelTags::Table, KeyValue::ModelId, model).await?;
        let version = (ModelVersions::Table, ModelVersions::Id);
        create_key_values(
            manager,
            ModelVersionTags::Table,
            KeyValue::VersionId,
            version,
        )
        .await?;
        create_aliases(manager).await?;
        create_attachments(manager).await?;
        create_validations(manager).await?;
        create_promotions(manager).await?;
        create_audit_log(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_append_only_triggers(manager).await?;
        for table in [
            AuditLog::Table.into_iden(),
            Approvals::Table.into_iden(),
            Promotions::Table.into_iden(),
            ValidationChecks::Table.into_iden(),
            Validations::Table.into_iden(),
            AliasPolicies::Table.into_iden(),
            ModelValidators::Table.into_iden(),
            ModelAliases::Table.into_iden(),
            ModelVersionTags::Table.into_iden(),
            ModelTags::Table.into_iden(),
            ModelVersions::Table.into_iden(),
            RegisteredModels::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Runs {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum RegisteredModels {
    Table,
    Id,
    Name,
    Description,
    CreatedBy,
    LastVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum ModelVersions {
    Table,
    Id,
    ModelId,
    Version,
    RunId,
    ArtifactName,
    ArtifactDigest,
    Source,
    Description,
    Status,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

/// Columns shared by `model_tags` and `model_version_tags`.
#[derive(DeriveIden, Clone, Copy)]
enum KeyValue {
    ModelId,
    VersionId,
    Key,
    Value,
}

#[derive(DeriveIden, Clone, Copy)]
enum ModelTags {
    Table,
}

#[derive(DeriveIden, Clone, Copy)]
enum ModelVersionTags {
    Table,
}

#[derive(DeriveIden, Clone, Copy)]
enum ModelAliases {
    Table,
    ModelId,
    Alias,
    VersionId,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum ModelValidators {
    Table,
    ModelId,
    Position,
    Plugin,
    Config,
}

#[derive(DeriveIden, Clone, Copy)]
enum AliasPolicies {
    Table,
    ModelId,
    Alias,
    Position,
    Plugin,
    Config,
}

#[derive(DeriveIden, Clone, Copy)]
enum Validations {
    Table,
    Id,
    RunId,
    ModelVersionId,
    Trigger,
    Plugin,
    PluginDigest,
    Config,
    Error,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum ValidationChecks {
    Table,
    ValidationId,
    Position,
    Name,
    Passed,
    Severity,
    Message,
}

#[derive(DeriveIden, Clone, Copy)]
enum Promotions {
    Table,
    Id,
    ModelId,
    VersionId,
    Alias,
    Requester,
    Status,
    Reason,
    CreatedAt,
    DecidedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Approvals {
    Table,
    Id,
    PromotionId,
    Approver,
    Role,
    Comment,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum AuditLog {
    Table,
    Seq,
    At,
    Actor,
    Action,
    Model,
    Version,
    Alias,
    PromotionId,
    Detail,
}

async fn create_models(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(RegisteredModels::Table)
        .col(big_pk_auto(RegisteredModels::Id))
        .col(string_uniq(RegisteredModels::Name))
        .col(text(RegisteredModels::Description))
        .col(string(RegisteredModels::CreatedBy))
        .col(big_integer(RegisteredModels::LastVersion).default(0))
        .col(big_integer(RegisteredModels::CreatedAt))
        .col(big_integer(RegisteredModels::UpdatedAt))
        .to_owned();
    manager.create_table(table).await
}

async fn create_versions(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(ModelVersions::Table)
        .col(big_pk_auto(ModelVersions::Id))
        .col(big_integer(ModelVersions::ModelId))
        .col(big_integer(ModelVersions::Version))
        .col(string_null(ModelVersions::RunId))
        .col(string(ModelVersions::ArtifactName))
        .col(string(ModelVersions::ArtifactDigest))
        .col(text(ModelVersions::Source))
        .col(text(ModelVersions::Description))
        .col(string(ModelVersions::Status))
        .col(string(ModelVersions::CreatedBy))
        .col(big_integer(ModelVersions::CreatedAt))
        .col(big_integer(ModelVersions::UpdatedAt))
        .foreign_key(&mut cascade(
            ModelVersions::ModelId,
            RegisteredModels::Table,
            RegisteredModels::Id,
        ))
        .foreign_key(&mut set_null(ModelVersions::RunId, Runs::Table, Runs::Id))
        .to_owned();
    manager.create_table(table).await?;

    let unique = [ModelVersions::ModelId, ModelVersions::Version];
    manager
        .create_index(index(ModelVersions::Table, &unique).unique().to_owned())
        .await?;
    manager
        .create_index(index(ModelVersions::Table, &[ModelVersions::RunId]))
        .await
}

/// Creates `model_tags` or `model_version_tags`: text values keyed by owner row and name.
async fn create_key_values<T, P, K>(
    manager: &SchemaManager<'_>,
    table: T,
    owner: KeyValue,
    (owner_table, owner_key): (P, K),
) -> Result<(), DbErr>
where
    T: IntoTableRef,
    P: IntoTableRef,
    K: IntoIden,
{
    let statement = Table::create()
        .table(table)
        .col(big_integer(owner))
        .col(string(KeyValue::Key))
        .col(text(KeyValue::Value))
        .primary_key(Index::create().col(owner).col(KeyValue::Key))
        .foreign_key(&mut cascade(owner, owner_table, owner_key))
        .to_owned();
    manager.create_table(statement).await
}

async fn create_aliases(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(ModelAliases::Table)
        .col(big_integer(ModelAliases::ModelId))
        .col(string(ModelAliases::Alias))
        .col(big_integer(ModelAliases::VersionId))
        .col(big_integer(ModelAliases::UpdatedAt))
        .primary_key(
            Index::create()
                .col(ModelAliases::ModelId)
                .col(ModelAliases::Alias),
        )
        .foreign_key(&mut cascade(
            ModelAliases::ModelId,
            RegisteredModels::Table,
            RegisteredModels::Id,
        ))
        .foreign_key(&mut cascade(
            ModelAliases::VersionId,
            ModelVersions::Table,
            ModelVersions::Id,
        ))
        .to_owned();
    manager.create_table(table).await?;
    manager
        .create_index(index(ModelAliases::Table, &[ModelAliases::VersionId]))
        .await
}

/// Creates `model_validators` and `alias_policies`, the ordered plugin lists of a model and of
/// an alias.
async fn create_attachments(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let validators = Table::create()
        .table(ModelValidators::Table)
        .col(big_integer(ModelValidators::ModelId))
        .col(integer(ModelValidators::Position))
        .col(string(ModelValidators::Plugin))
        .col(json(ModelValidators::Config))
        .primary_key(
            Index::create()
                .col(ModelValidators::ModelId)
                .col(ModelValidators::Position),
        )
        .foreign_key(&mut cascade(
            ModelValidators::ModelId,
            RegisteredModels::Table,
            RegisteredModels::Id,
        ))
        .to_owned();
    manager.create_table(validators).await?;

    let policies = Table::create()
        .table(AliasPolicies::Table)
        .col(big_integer(AliasPolicies::ModelId))
        .col(string(AliasPolicies::Alias))
        .col(integer(AliasPolicies::Position))
        .col(string(AliasPolicies::Plugin))
        .col(json(AliasPolicies::Config))
        .primary_key(
            Index::create()
                .col(AliasPolicies::ModelId)
                .col(AliasPolicies::Alias)
                .col(AliasPolicies::Position),
        )
        .foreign_key(&mut cascade(
            AliasPolicies::ModelId,
            RegisteredModels::Table,
            RegisteredModels::Id,
        ))
        .to_owned();
    manager.create_table(policies).await
}

async fn create_validations(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let validations = Table::create()
        .table(Validations::Table)
        .col(big_pk_auto(Validations::Id))
        .col(string(Validations::RunId))
        .col(big_integer_null(Validations::ModelVersionId))
        .col(string(Validations::Trigger))
        .col(string(Validations::Plugin))
        .col(string(Validations::PluginDigest))
        .col(json(Validations::Config))
        .col(text_null(Validations::Error))
        .col(big_integer(Validations::CreatedAt))
        .foreign_key(&mut cascade(Validations::RunId, Runs::Table, Runs::Id))
        .foreign_key(&mut set_null(
            Validations::ModelVersionId,
            ModelVersions::Table,
            ModelVersions::Id,
        ))
        .to_owned();
    manager.create_table(validations).await?;
    manager
        .create_index(index(Validations::Table, &[Validations::RunId]))
        .await?;
    manager
        .create_index(index(Validations::Table, &[Validations::ModelVersionId]))
        .await?;

    let checks = Table::create()
        .table(ValidationChecks::Table)
        .col(big_integer(ValidationChecks::ValidationId))
        .col(integer(ValidationChecks::Position))
        .col(text(ValidationChecks::Name))
        .col(boolean(ValidationChecks::Passed))
        .col(string(ValidationChecks::Severity))
        .col(text(ValidationChecks::Message))
        .primary_key(
            Index::create()
                .col(ValidationChecks::ValidationId)
                .col(ValidationChecks::Position),
        )
        .foreign_key(&mut cascade(
            ValidationChecks::ValidationId,
            Validations::Table,
            Validations::Id,
        ))
        .to_owned();
    manager.create_table(checks).await
}

async fn create_promotions(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let promotions = Table::create()
        .table(Promotions::Table)
        .col(big_pk_auto(Promotions::Id))
        .col(big_integer(Promotions::ModelId))
        .col(big_integer(Promotions::VersionId))
        .col(string(Promotions::Alias))
        .col(string(Promotions::Requester))
        .col(string(Promotions::Status))
        .col(text_null(Promotions::Reason))
        .col(big_integer(Promotions::CreatedAt))
        .col(big_integer_null(Promotions::DecidedAt))
        .foreign_key(&mut cascade(
            Promotions::ModelId,
            RegisteredModels::Table,
            RegisteredModels::Id,
        ))
        .foreign_key(&mut cascade(
            Promotions::VersionId,
            ModelVersions::Table,
            ModelVersions::Id,
        ))
        .to_owned();
    manager.create_table(promotions).await?;
    let lookup = [Promotions::ModelId, Promotions::Alias, Promotions::Status];
    manager
        .create_index(index(Promotions::Table, &lookup))
        .await?;
    manager
        .create_index(index(Promotions::Table, &[Promotions::VersionId]))
        .await?;

    let approvals = Table::create()
        .table(Approvals::Table)
        .col(big_pk_auto(Approvals::Id))
        .col(big_integer(Approvals::PromotionId))
        .col(string(Approvals::Approver))
        .col(string(Approvals::Role))
        .col(text(Approvals::Comment))
        .col(big_integer(Approvals::CreatedAt))
        .foreign_key(&mut cascade(
            Approvals::PromotionId,
            Promotions::Table,
            Promotions::Id,
        ))
        .to_owned();
    manager.create_table(approvals).await?;
    let unique = [Approvals::PromotionId, Approvals::Approver];
    manager
        .create_index(index(Approvals::Table, &unique).unique().to_owned())
        .await
}

async fn create_audit_log(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let table = Table::create()
        .table(AuditLog::Table)
        .col(big_pk_auto(AuditLog::Seq))
        .col(big_integer(AuditLog::At))
        .col(string(AuditLog::Actor))
        .col(string(AuditLog::Action))
        .col(string_null(AuditLog::Model))
        .col(big_integer_null(AuditLog::Version))
        .col(string_null(AuditLog::Alias))
        .col(big_integer_null(AuditLog::PromotionId))
        .col(json(AuditLog::Detail))
        .to_owned();
    manager.create_table(table).await?;

    // Listings read one model's entries, or one version's, in `seq` order.
    manager
        .create_index(index(AuditLog::Table, &[AuditLog::Model, AuditLog::Seq]))
        .await?;
    let by_version = [AuditLog::Model, AuditLog::Version, AuditLog::Seq];
    manager
        .create_index(index(AuditLog::Table, &by_version))
        .await?;
    create_append_only_triggers(manager).await
}

/// Creates the triggers that reject changes to `audit_log`. PostgreSQL also gets one for
/// `TRUNCATE`, which skips row triggers.
async fn create_append_only_triggers(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let statements = match manager.get_database_backend() {
        DbBackend::Postgres => vec![
            format!(
                "CREATE FUNCTION audit_log_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     RAISE EXCEPTION '{APPEND_ONLY} (% rejected)', TG_OP;
                 END
                 $$"
            ),
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
             FOR EACH ROW EXECUTE FUNCTION audit_log_reject_change()"
                .to_owned(),
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
             FOR EACH STATEMENT EXECUTE FUNCTION audit_log_reject_change()"
                .to_owned(),
        ],
        _ => ["UPDATE", "DELETE"]
            .into_iter()
            .map(|operation| {
                format!(
                    "CREATE TRIGGER audit_log_no_{} BEFORE {operation} ON audit_log
                     BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY} ({operation} rejected)'); END",
                    operation.to_lowercase()
                )
            })
            .collect(),
    };
    let connection = manager.get_connection();
    for statement in statements {
        connection.execute_unprepared(&statement).await?;
    }
    Ok(())
}

/// Drops what [`create_append_only_triggers`] created, so `audit_log` can be dropped.
async fn drop_append_only_triggers(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let statements: &[&str] = match manager.get_database_backend() {
        DbBackend::Postgres => &[
            "DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log",
            "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
            "DROP FUNCTION IF EXISTS audit_log_reject_change()",
        ],
        _ => &[
            "DROP TRIGGER IF EXISTS audit_log_no_delete",
            "DROP TRIGGER IF EXISTS audit_log_no_update",
        ],
    };
    let connection = manager.get_connection();
    for statement in statements {
        connection.execute_unprepared(statement).await?;
    }
    Ok(())
}

/// Creates a foreign key like [`cascade`](super::cascade) that clears `column` when the parent
/// row is deleted.
fn set_null<C, P, K>(column: C, parent_table: P, parent_column: K) -> ForeignKeyCreateStatement
where
    C: IntoIden,
    P: IntoTableRef,
    K: IntoIden,
{
    super::reference(column, parent_table, parent_column)
        .on_delete(ForeignKeyAction::SetNull)
        .to_owned()
}
