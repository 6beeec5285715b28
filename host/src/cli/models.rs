//! `runledger models`: the model registry, validator and policy attachments, promotions,
//! approvals and the audit log.
//!
//! The command line works on the database directly and acts as the OS user with the admin role
//! (see [`cli_actor`]), so it trusts whoever can open the database.

use super::attachments::{PluginArgs, read_spec_file};
use super::context::{EngineContext, cli_actor, gates_of, open_engine, tokio_runtime};
use super::run::parse_key_value;
use super::runs::time;
use super::validation::{EXIT_BLOCKED, Tally, print_tally, print_validations};
use crate::config::Config;
use crate::gates::{
    AuditEntry, DecisionKind, Gates, ModelView, NewModelRequest, NewVersion, PromotionStatus,
    PromotionView, ValidatorSpec, VersionView,
};
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status of `promote` and `approve` when the promotion waits for approvals.
const EXIT_PENDING: u8 = 4;
/// Exit status of `promote` and `approve` when a policy denied the promotion.
const EXIT_DENIED: u8 = 5;

/// Versions, promotions or models fetched per page while collecting a whole list.
const PAGE_SIZE: u64 = 100;

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub(crate) enum ModelsCommand {
    /// List registered models by name.
    List {
        /// Only models whose name starts with this text.
        #[arg(long)]
        prefix: Option<String>,
        /// Maximum number of models to list.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Register a model name, which versions are then created under.
    Create {
        /// Name: ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit.
        name: String,
        /// Free-text description.
        #[arg(long, default_value = "")]
        description: String,
        /// Tag the model: KEY=VALUE; repeat for several.
        #[arg(long = "tag", value_parser = parse_key_value)]
        tags: Vec<(String, String)>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a model: tags, aliases, validators, policies per alias and versions.
    Show {
        /// Model name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a model with its versions, aliases, attachments and promotions; its audit log
    /// entries stay.
    Delete {
        /// Model name.
        name: String,
    },
    /// Set tags of a model, or delete them with --delete.
    Tag {
        /// Model name.
        name: String,
        /// Tags to set: KEY=VALUE.
        #[arg(value_parser = parse_key_value)]
        tags: Vec<(String, String)>,
        /// Tag keys to delete; repeat for several.
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Create the next version of a model from an artifact of a run, and run the model's
    /// validators on the run.
    ///
    /// Exits with status 3 when a blocking check of the run's validations failed; the version
    /// is created all the same.
    Register(RegisterArgs),
    /// List the versions of a model, newest first.
    Versions {
        /// Model name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one version with its validations.
    Version {
        /// Model name.
        name: String,
        /// Version number.
        version: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace the metric validators run on every new version of a model.
    Validators {
        /// Model name.
        name: String,
        #[command(flatten)]
        attachments: AttachmentArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace the policies that must allow every move of an alias.
    Policies {
        /// Model name.
        name: String,
        /// The alias the policies guard, such as production.
        #[arg(long)]
        alias: String,
        #[command(flatten)]
        attachments: AttachmentArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask to point an alias at a version; every policy attached to the alias decides.
    ///
    /// Exit status: 0 when the alias moved, 4 when the promotion waits for approvals, 5 when a
    /// policy denied it.
    Promote(PromotionArgs),
    /// Approve the pending promotion of a version to an alias as the OS user ($USER).
    ///
    /// The policies decide again with the approvals so far. Exit status as for promote: 0 when
    /// the alias moved, 4 when the promotion still waits for approvals, 5 when it was denied.
    Approve {
        #[command(flatten)]
        promotion: PromotionArgs,
        /// Why the approver agrees, recorded with the approval.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Remove an alias of a model.
    Unalias {
        /// Model name.
        name: String,
        /// The alias to remove.
        #[arg(long)]
        alias: String,
    },
    /// List the promotions of a model with their state, approvals and reasons.
    Promotions {
        /// Model name.
        name: String,
        /// Only promotions waiting for approvals.
        #[arg(long)]
        pending: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the audit log of a model, oldest first: every change, decision and approval.
    Audit {
        /// Model name.
        name: String,
        /// Only entries of this version.
        #[arg(long)]
        version: Option<u64>,
        /// Only entries after this sequence number.
        #[arg(long)]
        after: Option<i64>,
        /// Maximum number of entries.
        #[arg(long, default_value_t = 1000)]
        limit: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// Model name.
    name: String,
    /// The run that produced the artifact.
    #[arg(long)]
    run: String,
    /// The artifact: STEP.OUTPUT of a pipeline step (such as train.model), a run-level output
    /// name, or the digest of an artifact the run produced.
    #[arg(long)]
    artifact: String,
    /// Free-text description.
    #[arg(long, default_value = "")]
    description: String,
    /// Tag the version: KEY=VALUE; repeat for several.
    #[arg(long = "tag", value_parser = parse_key_value)]
    tags: Vec<(String, String)>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PromotionArgs {
    /// Model name.
    name: String,
    /// Version number.
    version: u64,
    /// The alias to point at the version, such as staging or production.
    #[arg(long)]
    alias: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// The new list of attachments: plugins on the command line, a file, or nothing.
#[derive(Debug, Args)]
pub(crate) struct AttachmentArgs {
    #[command(flatten)]
    plugins: PluginArgs,
    /// A YAML or JSON file with a list of `{plugin, config}` entries, in place of --plugin.
    #[arg(long, conflicts_with_all = ["plugin", "config", "clear"])]
    file: Option<PathBuf>,
    /// Remove every attachment.
    #[arg(long, conflicts_with_all = ["plugin", "config"])]
    clear: bool,
}

impl AttachmentArgs {
    /// Returns the new attachment list, and fails when no option gives one.
    fn specs(self) -> Result<Vec<ValidatorSpec>> {
        if let Some(path) = &self.file {
            return read_spec_file(path);
        }
        if self.clear {
            return Ok(Vec::new());
        }
        if self.plugins.specs.is_empty() {
            bail!(
                "give the new list with --plugin NAME[@VERSION] [--config JSON] ... or \
                 --file FILE, or remove every attachment with --clear"
            );
        }
        Ok(self.plugins.specs)
    }
}

pub(crate) fn run(config: &Config, command: ModelsCommand) -> Result<ExitCode> {
    tokio_runtime()?.block_on(async {
        let context = open_engine(config).await?;
        dispatch(&context, command).await
    })
}

async fn dispatch(context: &EngineContext, command: ModelsCommand) -> Result<ExitCode> {
    let gates = gates_of(&context.engine);
    match command {
        ModelsCommand::List {
            prefix,
            limit,
            json,
        } => list(&gates, prefix, limit, json).await,
        ModelsCommand::Create {
            name,
            description,
            tags,
            json,
        } => create(&gates, name, description, tags, json).await,
        ModelsCommand::Show { name, json } => show(&gates, &name, json).await,
        ModelsCommand::Delete { name } => {
            gates.delete_model(&cli_actor(), &name).await?;
            println!("deleted model {name}; its audit log stays");
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Tag { name, tags, delete } => tag(&gates, &name, tags, delete).await,
        ModelsCommand::Register(args) => register(context, &gates, args).await,
        ModelsCommand::Versions { name, json } => versions(&gates, &name, json).await,
        ModelsCommand::Version {
            name,
            version,
            json,
        } => {
            let view = gates.version(&name, version).await?;
            print_version_view(&view, json)
        }
        ModelsCommand::Validators {
            name,
            attachments,
            json,
        } => {
            let specs = attachments.specs()?;
            let registry = &context.registry;
            let view = gates
                .set_validators(registry, &cli_actor(), &name, specs)
                .await?;
            print_attachments(&view, json, "validators")
        }
        ModelsCommand::Policies {
            name,
            alias,
            attachments,
            json,
        } => {
            let specs = attachments.specs()?;
            let registry = &context.registry;
            let view = gates
                .set_policies(registry, &cli_actor(), &name, &alias, specs)
                .await?;
            print_attachments(&view, json, "policies")
        }
        ModelsCommand::Promote(args) => {
            let view = gates
                .request_promotion(
                    &context.registry,
                    &cli_actor(),
                    &args.name,
                    args.version,
                    &args.alias,
                )
                .await?;
            print_promotion_result(&view, args.json)
        }
        ModelsCommand::Approve { promotion, comment } => {
            let view = gates
                .approve(
                    &context.registry,
                    &cli_actor(),
                    &promotion.name,
                    promotion.version,
                    &promotion.alias,
                    &comment,
                )
                .await?;
            print_promotion_result(&view, promotion.json)
        }
        ModelsCommand::Unalias { name, alias } => {
            gates.remove_alias(&cli_actor(), &name, &alias).await?;
            println!("removed alias `{alias}` of model {name}");
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Promotions {
            name,
            pending,
            json,
        } => promotions(&gates, &name, pending, json).await,
        ModelsCommand::Audit {
            name,
            version,
            after,
            limit,
            json,
        } => audit(&gates, &name, version, after, limit, json).await,
    }
}

/// Prints `value` as pretty JSON.
fn print_json(value: &impl Serialize) -> Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}

async fn list(gates: &Gates, prefix: Option<String>, limit: u64, json: bool) -> Result<ExitCode> {
    let page = gates.list_models(prefix, limit, None).await?;
    if json {
        return print_json(&page);
    }
    println!(
        "{:<24} {:>7}  {:<28} {:<19}  DESCRIPTION",
        "NAME", "LATEST", "ALIASES", "UPDATED"
    );
    for model in &page.models {
        let latest = model
            .latest_version
            .map_or("-".to_owned(), |v| v.to_string());
        println!(
            "{:<24} {:>7}  {:<28} {:<19}  {}",
            model.name,
            latest,
            aliases_text(&model.aliases),
            time(model.updated_at),
            model.description
        );
    }
    if page.models.is_empty() {
        println!("no models match");
    }
    if page.next_page_token.is_some() {
        println!("(more models exist: raise --limit)");
    }
    Ok(ExitCode::SUCCESS)
}

/// `production=3 staging=4`, or `-` when there are none.
fn aliases_text(aliases: &BTreeMap<String, u64>) -> String {
    if aliases.is_empty() {
        return "-".to_owned();
    }
    let pairs: Vec<String> = aliases
        .iter()
        .map(|(alias, version)| format!("{alias}={version}"))
        .collect();
    pairs.join(" ")
}

async fn create(
    gates: &Gates,
    name: String,
    description: String,
    tags: Vec<(String, String)>,
    json: bool,
) -> Result<ExitCode> {
    let request = NewModelRequest {
        name,
        description,
        tags: unique_tags(tags)?,
    };
    let view = gates.create_model(&cli_actor(), request).await?;
    if json {
        return print_json(&view);
    }
    println!("registered model {}", view.name);
    Ok(ExitCode::SUCCESS)
}

/// Collects `KEY=VALUE` tags, rejecting a key given twice.
fn unique_tags(tags: Vec<(String, String)>) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for (key, value) in tags {
        if map.insert(key.clone(), value).is_some() {
            bail!("--tag {key} is given twice; give each tag key once");
        }
    }
    Ok(map)
}

async fn tag(
    gates: &Gates,
    name: &str,
    tags: Vec<(String, String)>,
    delete: Vec<String>,
) -> Result<ExitCode> {
    if tags.is_empty() && delete.is_empty() {
        bail!("give tags to set as KEY=VALUE, or keys to delete with --delete KEY");
    }
    let actor = cli_actor();
    for (key, value) in &tags {
        gates.set_model_tag(&actor, name, key, value).await?;
        println!("set tag {key}={value} of model {name}");
    }
    for key in &delete {
        gates.delete_model_tag(&actor, name, key).await?;
        println!("deleted tag {key} of model {name}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Everything `models show --json` prints: the model and all its versions.
#[derive(Serialize)]
struct ModelDetail {
    model: ModelView,
    versions: Vec<VersionView>,
}

async fn show(gates: &Gates, name: &str, json: bool) -> Result<ExitCode> {
    let model = gates.model(name).await?;
    let versions = all_versions(gates, name).await?;
    if json {
        return print_json(&ModelDetail { model, versions });
    }
    print_model(&model);
    print_specs("validators", &model.validators);
    for (alias, specs) in &model.policies {
        print_specs(&format!("policies of alias `{alias}`"), specs);
    }
    print_version_table(&versions);
    Ok(ExitCode::SUCCESS)
}

/// Collects every version of a model, newest first.
async fn all_versions(gates: &Gates, name: &str) -> Result<Vec<VersionView>> {
    let mut versions = Vec::new();
    let mut token = None;
    loop {
        let page = gates.list_versions(name, PAGE_SIZE, token).await?;
        versions.extend(page.versions);
        token = page.next_page_token;
        if token.is_none() {
            return Ok(versions);
        }
    }
}

fn print_model(model: &ModelView) {
    println!("model {}", model.name);
    if !model.description.is_empty() {
        println!("  description  {}", model.description);
    }
    println!(
        "  created      {} UTC by {}",
        time(model.created_at),
        model.created_by
    );
    println!("  updated      {} UTC", time(model.updated_at));
    for (key, value) in &model.tags {
        println!("  tag          {key}={value}");
    }
    if model.aliases.is_empty() {
        println!("  aliases      none");
    }
    for (alias, version) in &model.aliases {
        println!("  alias        {alias} -> version {version}");
    }
}

fn print_specs(title: &str, specs: &[ValidatorSpec]) {
    if specs.is_empty() {
        println!("{title}: none");
        return;
    }
    println!("{title}");
    for spec in specs {
        println!("  {:<28} {}", spec.plugin, spec.config);
    }
}

async fn versions(gates: &Gates, name: &str, json: bool) -> Result<ExitCode> {
    let versions = all_versions(gates, name).await?;
    if json {
        return print_json(&versions);
    }
    print_version_table(&versions);
    Ok(ExitCode::SUCCESS)
}

fn print_version_table(versions: &[VersionView]) {
    if versions.is_empty() {
        println!("versions: none; create one with `runledger models register`");
        return;
    }
    println!(
        "{:>7}  {:<36}  {:<16} {:<28} {:<22} {:<19}  BY",
        "VERSION", "RUN", "ARTIFACT", "ALIASES", "VALIDATION", "CREATED"
    );
    for version in versions {
        println!(
            "{:>7}  {:<36}  {:<16} {:<28} {:<22} {:<19}  {}",
            version.version,
            version.run_id.as_deref().unwrap_or("-"),
            version.artifact_name,
            if version.aliases.is_empty() {
                "-".to_owned()
            } else {
                version.aliases.join(",")
            },
            validation_text(&version.validations),
            time(version.created_at),
            version.created_by
        );
    }
}

/// Summarises validations in a table cell: `passed`, `2 blocking failed`, or `-` for none.
fn validation_text(records: &[crate::gates::ValidationRecord]) -> String {
    if records.is_empty() {
        return "-".to_owned();
    }
    let tally = Tally::of(records);
    match (tally.blocking, tally.warnings) {
        (0, 0) => "passed".to_owned(),
        (0, warnings) => format!("passed, {warnings} warnings"),
        (blocking, _) => format!("{blocking} blocking failed"),
    }
}

async fn register(context: &EngineContext, gates: &Gates, args: RegisterArgs) -> Result<ExitCode> {
    let new = NewVersion {
        model: args.name,
        run_id: args.run,
        artifact: args.artifact,
        description: args.description,
        tags: unique_tags(args.tags)?,
    };
    let view = gates
        .create_version(&context.registry, &cli_actor(), new)
        .await?;
    let code = print_version_view(&view, args.json)?;
    if !args.json {
        println!("registered {} version {}", view.model, view.version);
    }
    Ok(code)
}

/// Prints a version with its validations. Returns [`EXIT_BLOCKED`] when a blocking check of
/// them failed.
fn print_version_view(view: &VersionView, json: bool) -> Result<ExitCode> {
    let tally = Tally::of(&view.validations);
    if json {
        print_json(view)?;
    } else {
        print_version(view);
        print_validations(&view.validations);
        if !view.validations.is_empty() {
            print_tally(tally);
        }
    }
    if tally.blocking > 0 {
        return Ok(ExitCode::from(EXIT_BLOCKED));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_version(view: &VersionView) {
    println!("model {} version {}", view.model, view.version);
    println!("  run          {}", view.run_id.as_deref().unwrap_or("-"));
    println!(
        "  artifact     {} sha256:{}",
        view.artifact_name, view.artifact_digest
    );
    println!("  source       {}", view.source);
    println!("  status       {}", view.status);
    if !view.description.is_empty() {
        println!("  description  {}", view.description);
    }
    println!(
        "  created      {} UTC by {}",
        time(view.created_at),
        view.created_by
    );
    for alias in &view.aliases {
        println!("  alias        {alias}");
    }
    for (key, value) in &view.tags {
        println!("  tag          {key}={value}");
    }
}

fn print_attachments(view: &ModelView, json: bool, list_name: &str) -> Result<ExitCode> {
    if json {
        return print_json(view);
    }
    println!("updated the {list_name} of model {}", view.name);
    print_specs("validators", &view.validators);
    for (alias, specs) in &view.policies {
        print_specs(&format!("policies of alias `{alias}`"), specs);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a promotion after `promote` or `approve` and returns the exit status of its state.
fn print_promotion_result(view: &PromotionView, json: bool) -> Result<ExitCode> {
    if json {
        print_json(view)?;
    } else {
        print_promotion(view);
    }
    let code = match view.status {
        PromotionStatus::Completed => ExitCode::SUCCESS,
        PromotionStatus::Pending => ExitCode::from(EXIT_PENDING),
        PromotionStatus::Denied | PromotionStatus::Superseded => ExitCode::from(EXIT_DENIED),
    };
    Ok(code)
}

fn print_promotion(view: &PromotionView) {
    println!(
        "promotion {} of {} version {} to `{}`: {}",
        view.id,
        view.model,
        view.version,
        view.alias,
        status_text(view.status)
    );
    if view.decisions.is_empty() && view.status == PromotionStatus::Completed {
        println!("  no policy is attached to `{}`", view.alias);
    }
    for decision in &view.decisions {
        // The approvals a pending policy waits for are printed below, with its reason.
        let reason = match decision.decision {
            DecisionKind::Pending => "",
            _ => decision.reason.as_str(),
        };
        println!(
            "  {:<7}  {}{}",
            decision_text(decision.decision),
            decision.plugin,
            comment_text(reason)
        );
    }
    for approval in &view.approvals {
        println!(
            "  approved by {} ({}) at {} UTC{}",
            approval.approver,
            approval.role,
            time(approval.created_at),
            comment_text(&approval.comment)
        );
    }
    for needed in &view.needed {
        println!(
            "  needs {} more approval(s) by role {} or higher ({}): {}",
            needed.count, needed.role, needed.plugin, needed.reason
        );
    }
    // Each decision line already gives its policy's reason.
    if let Some(reason) = view.reason.as_ref().filter(|_| view.decisions.is_empty()) {
        println!("  reason: {reason}");
    }
}

fn status_text(status: PromotionStatus) -> &'static str {
    match status {
        PromotionStatus::Pending => "pending",
        PromotionStatus::Completed => "completed",
        PromotionStatus::Denied => "denied",
        PromotionStatus::Superseded => "superseded",
    }
}

fn decision_text(decision: DecisionKind) -> &'static str {
    match decision {
        DecisionKind::Allow => "allow",
        DecisionKind::Deny => "deny",
        DecisionKind::Pending => "pending",
    }
}

fn comment_text(comment: &str) -> String {
    if comment.is_empty() {
        String::new()
    } else {
        format!(": {comment}")
    }
}

async fn promotions(gates: &Gates, name: &str, pending: bool, json: bool) -> Result<ExitCode> {
    let status = pending.then_some(PromotionStatus::Pending);
    let views = gates.promotions(name, status).await?;
    if json {
        return print_json(&views);
    }
    println!(
        "{:>6}  {:>7}  {:<16} {:<11} {:<16} {:>9}  {:<19}  REASON",
        "ID", "VERSION", "ALIAS", "STATUS", "REQUESTER", "APPROVALS", "CREATED"
    );
    for view in &views {
        println!(
            "{:>6}  {:>7}  {:<16} {:<11} {:<16} {:>9}  {:<19}  {}",
            view.id,
            view.version,
            view.alias,
            status_text(view.status),
            view.requester,
            view.approvals.len(),
            time(view.created_at),
            view.reason.as_deref().unwrap_or("")
        );
    }
    if views.is_empty() {
        println!("no promotions match");
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit(
    gates: &Gates,
    name: &str,
    version: Option<u64>,
    after: Option<i64>,
    limit: u64,
    json: bool,
) -> Result<ExitCode> {
    let entries = gates.audit(name, version, after, limit).await?;
    if json {
        return print_json(&entries);
    }
    println!(
        "{:>6}  {:<19}  {:<16} {:<20} {:>7}  {:<12} DETAIL",
        "SEQ", "TIME", "ACTOR", "ACTION", "VERSION", "ALIAS"
    );
    for entry in &entries {
        print_audit_entry(entry);
    }
    if entries.is_empty() {
        println!("no audit entries match");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_audit_entry(entry: &AuditEntry) {
    let version = entry.version.map_or("-".to_owned(), |v| v.to_string());
    let detail = match &entry.detail {
        serde_json::Value::Object(map) if map.is_empty() => String::new(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    println!(
        "{:>6}  {:<19}  {:<16} {:<20} {:>7}  {:<12} {}",
        entry.seq,
        time(entry.at),
        entry.actor,
        entry.action,
        version,
        entry.alias.as_deref().unwrap_or("-"),
        detail
    );
}
