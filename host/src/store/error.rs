//! The error type of the store.

use super::entity::promotion::PromotionStatus;
use super::entity::run::{RunSource, RunStatus};
use super::entity::run_artifact::Direction;
use super::entity::step_run::StepStatus;
use sea_orm::DbErr;
use std::path::PathBuf;

/// Errors of [`Store`](super::Store) operations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or opened.
    #[error(
        "cannot connect to database {url}: {source}; check that the server runs and that the \
         URL, user and database name are right"
    )]
    Connect {
        /// The URL with any password replaced by `***`.
        url: String,
        /// The driver's error.
        source: DbErr,
    },
    /// No connection to a SQLite file opened within the busy timeout, because another process
    /// kept the file locked.
    #[error(
        "cannot open SQLite database {url}: the file stayed locked for {seconds} s, most likely \
         by another process in a long write transaction or in exclusive locking mode (such as \
         a sqlite3 shell); end that transaction or stop that process, then retry"
    )]
    SqliteLocked {
        /// The URL of the SQLite file.
        url: String,
        /// How long the connection waited.
        seconds: u64,
        /// The driver's error.
        source: DbErr,
    },
    /// The SQLite file could not be put in WAL mode, usually because another process kept it
    /// locked for the whole busy timeout.
    #[error(
        "cannot turn on WAL mode for database {url}: {source}; if another runledger process \
         has the file open, wait for it to finish or stop it, then retry"
    )]
    WalMode {
        /// The URL of the SQLite file.
        url: String,
        /// The driver's error.
        source: DbErr,
    },
    /// Applying the schema migrations failed.
    #[error(
        "applying database migrations failed: {0}; if the database was migrated by a newer \
         runledger, upgrade this one"
    )]
    Migrate(DbErr),
    /// A query failed.
    #[error("database query failed: {0}")]
    Database(#[from] DbErr),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The filesystem error.
        source: std::io::Error,
    },
    /// No run has this id.
    #[error("run `{0}` not found")]
    RunNotFound(String),
    /// No step run has this id.
    #[error("step run `{0}` not found")]
    StepRunNotFound(String),
    /// A step run was named together with a run it does not belong to.
    #[error("step run `{step_run_id}` does not belong to run {run_id}")]
    StepRunNotInRun {
        /// The step run.
        step_run_id: String,
        /// The run it was named with.
        run_id: String,
    },
    /// A param was logged again with a different value.
    #[error(
        "param `{key}` of run {run_id} is already `{old}` and cannot change to `{new}`: params \
         are immutable, so log the new value under another key or start a new run"
    )]
    ParamConflict {
        /// The run.
        run_id: String,
        /// The param name.
        key: String,
        /// The value already stored.
        old: String,
        /// The value that was rejected.
        new: String,
    },
    /// A status change would move a finished run or step back.
    #[error(
        "run {run_id} already ended as {status}; it cannot change status again, so start a new \
         run to execute it again"
    )]
    RunAlreadyEnded {
        /// The run.
        run_id: String,
        /// Its final status.
        status: RunStatus,
    },
    /// A step run was to be completed with a status that is not final.
    #[error(
        "step run `{step_run_id}` cannot complete as {status}: a completed step must be \
         succeeded, failed, skipped, cached or cancelled"
    )]
    StepStatusNotFinal {
        /// The step run.
        step_run_id: String,
        /// The status that was rejected.
        status: StepStatus,
    },
    /// A digest is not a lowercase hex SHA-256.
    #[error("invalid digest `{0}`: expected 64 lowercase hex characters (SHA-256)")]
    InvalidDigest(String),
    /// An artifact was linked before its metadata was recorded.
    #[error("artifact {0} is not recorded; record its metadata with `record_artifact` first")]
    ArtifactNotRecorded(String),
    /// The same digest was recorded with two sizes, so one of the two is wrong.
    #[error(
        "artifact {digest} is recorded with size {recorded} bytes, not {rejected}; content with the \
         same SHA-256 cannot differ in size, so check the digest computation"
    )]
    ArtifactSizeMismatch {
        /// The digest.
        digest: String,
        /// The size already recorded.
        recorded: i64,
        /// The size that was rejected.
        rejected: i64,
    },
    /// A name of a run or step was bound to one artifact and then to another.
    #[error(
        "{direction} `{name}` of {owner} is already artifact {existing}, not {digest}; recorded \
         inputs and outputs are immutable, so use another name"
    )]
    ArtifactLinkConflict {
        /// `run RUN` or `step run STEP of run RUN`.
        owner: String,
        /// Whether the name is an input or an output.
        direction: Direction,
        /// The name.
        name: String,
        /// The digest already linked.
        existing: String,
        /// The digest that was rejected.
        digest: String,
    },
    /// A stored JSON document does not have the expected shape.
    #[error("stored {document} is not valid: {source}")]
    InvalidJson {
        /// Name of the document, such as `environment snapshot of run ...`.
        document: String,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// A token name is already used by another token, valid or revoked.
    #[error(
        "a token named `{0}` already exists; choose another name, or revoke the old token and \
         create one under a new name"
    )]
    TokenNameTaken(String),
    /// No valid token has this name.
    #[error("no valid token is named `{0}`; `runledger tokens list` shows the names")]
    TokenNotFound(String),
    /// The operating system's random number generator failed.
    #[error("cannot read random bytes from the operating system: {0}")]
    Random(String),
    /// A write named a run that has already ended.
    #[error(
        "run {run_id} already ended as {status} and accepts no more writes; record further \
         results in a new run"
    )]
    RunEnded {
        /// The run.
        run_id: String,
        /// Its final status.
        status: RunStatus,
    },
    /// A write that MLflow's protocol sends named a run in MLflow's trash.
    #[error(
        "run {0} is deleted; restore it (POST /api/2.0/mlflow/runs/restore) before writing to it"
    )]
    RunDeleted(String),
    /// A write that only runs executed elsewhere accept named a run that runledger executes.
    #[error(
        "run {run_id} came from the {origin} and runledger executes it; only external runs \
         accept steps, artifacts, an environment and a finish from clients"
    )]
    RunNotExternal {
        /// The run.
        run_id: String,
        /// Origin of the run.
        origin: RunSource,
    },
    /// A new step run was given a name that another step run of its run has.
    #[error("run {run_id} already has a step named `{name}`; give each step of a run its own name")]
    StepNameTaken {
        /// The run.
        run_id: String,
        /// The step name.
        name: String,
    },
    /// A status change that the step run lifecycle does not allow.
    #[error(
        "step run `{step_run_id}` is {from} and cannot become {to}: a pending step can become \
         running, skipped, cancelled or failed, a running step succeeded, failed or cancelled, \
         and an ended step cannot change"
    )]
    StepTransition {
        /// The step run.
        step_run_id: String,
        /// Its current status.
        from: StepStatus,
        /// The status that was rejected.
        to: StepStatus,
    },
    /// An OpenLineage event's `runId` is the id of a run that was not created from OpenLineage
    /// events.
    #[error(
        "OpenLineage runId {0} is already the id of a runledger run that was not reported by \
         OpenLineage; send the events of this run with a new runId"
    )]
    OpenLineageRunIdTaken(String),
    /// No registered model has this name.
    #[error("model `{name}` not found; model names are case-sensitive")]
    ModelNotFound {
        /// The name.
        name: String,
    },
    /// Another registered model already has this name.
    #[error("a model named `{name}` already exists; choose another name")]
    ModelNameTaken {
        /// The name.
        name: String,
    },
    /// The model has no version with this number.
    #[error("model `{model}` has no version {version}")]
    ModelVersionNotFound {
        /// The model name.
        model: String,
        /// The version number.
        version: i64,
    },
    /// No promotion request has this id.
    #[error("promotion {id} not found")]
    PromotionNotFound {
        /// The promotion id.
        id: i64,
    },
    /// A promotion that has been decided was to be approved or decided again.
    #[error(
        "promotion {id} is {status}, not pending; request the promotion again to start a new \
         decision"
    )]
    PromotionNotPending {
        /// The promotion id.
        id: i64,
        /// Its current status.
        status: PromotionStatus,
    },
    /// The approver has already approved this promotion.
    #[error("`{approver}` has already approved this promotion; each approver counts once")]
    ApprovalTaken {
        /// The approver.
        approver: String,
    },
    /// The model has no alias with this name.
    #[error("model `{model}` has no alias `{alias}`")]
    AliasNotFound {
        /// The model name.
        model: String,
        /// The alias.
        alias: String,
    },
    /// A model name, alias or tag key breaks the naming rule.
    #[error("invalid {what} `{value}`: {rule}")]
    InvalidName {
        /// Kind of name: `model name`, `alias` or `tag key`.
        what: &'static str,
        /// The rejected name.
        value: String,
        /// The rule the name must follow.
        rule: &'static str,
    },
    /// A page token of a registry listing does not decode.
    #[error(
        "`{0}` is not a page token of this listing; pass the next_page_token of the previous \
         page unchanged, or leave the token out for the first page"
    )]
    InvalidPageToken(String),
}
