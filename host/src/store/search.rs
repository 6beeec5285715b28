//! Run search: a typed filter, sort keys and keyset pagination.
//!
//! [`Store::search_runs`] runs one SQL query that filters, sorts and limits the runs, then reads
//! the params, tags and latest metrics of the whole page in three batched queries. The filter
//! and sort keys are the typed form of the filter language that the HTTP API parses, so every
//! interface that searches runs shares this code.
//!
//! Pages are keyset-based: a [`Cursor`] contains the sort values and id of the last run of a
//! page, and the next page starts strictly after it. Runs inserted meanwhile therefore never
//! shift a page boundary, so a walk through all pages lists each earlier run once.

mod mlflow;
mod sql;

pub use mlflow::DatasetField;
pub(crate) use sql::text_condition;

use super::entity::run::{RunSource, RunStatus};
use super::entity::{latest_metric, run_param, run_tag};
use super::{Store, StoreError, batch};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};

/// Runs per page when the caller names no page size.
pub const DEFAULT_PAGE_SIZE: u64 = 100;

/// Largest page. It bounds the `IN` lists of the batched reads and the memory of one response.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// A numeric comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A test on a text value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TextMatch {
    /// Equal to the text.
    Eq(String),
    /// Different from the text.
    Ne(String),
    /// Matches a SQL `LIKE` pattern, case-sensitively: `%` is any text, `_` one character and
    /// `\` escapes the next character.
    Like(String),
    /// Matches a `LIKE` pattern ignoring case. On SQLite only ASCII letters fold.
    ILike(String),
    /// Equal to one of the texts.
    In(Vec<String>),
}

/// A text attribute of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TextAttribute {
    /// The run id.
    RunId,
    /// The display name.
    Name,
    /// The status, as its snake_case name.
    Status,
    /// The interface that started the run.
    Source,
    /// The user or token name that started the run.
    User,
    /// The pipeline name; external runs have none.
    Pipeline,
    /// The project name.
    Project,
}

impl TextAttribute {
    /// Every text attribute.
    pub const ALL: [Self; 7] = [
        Self::RunId,
        Self::Name,
        Self::Status,
        Self::Source,
        Self::User,
        Self::Pipeline,
        Self::Project,
    ];

    /// Returns the attribute's name in the filter language.
    pub fn name(self) -> &'static str {
        match self {
            Self::RunId => "run_id",
            Self::Name => "name",
            Self::Status => "status",
            Self::Source => "source",
            Self::User => "user",
            Self::Pipeline => "pipeline",
            Self::Project => "project",
        }
    }
}

/// A time attribute of a run, in milliseconds: since the Unix epoch, or for `Duration` a
/// length of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TimeAttribute {
    /// Creation time.
    CreatedAt,
    /// Time the run entered `running`; `None` before.
    StartedAt,
    /// Time the run ended; `None` before.
    EndedAt,
    /// Time from start to end; `None` until the run has both.
    Duration,
}

impl TimeAttribute {
    /// Every time attribute.
    pub const ALL: [Self; 4] = [
        Self::CreatedAt,
        Self::StartedAt,
        Self::EndedAt,
        Self::Duration,
    ];

    /// Returns the attribute's name in the filter language.
    pub fn name(self) -> &'static str {
        match self {
            Self::CreatedAt => "created_at",
            Self::StartedAt => "started_at",
            Self::EndedAt => "ended_at",
            Self::Duration => "duration",
        }
    }
}

/// One condition of a search. A run matches a search when it meets every condition.
///
/// A condition on a metric, param or tag never matches a run that lacks that key, `!=`
/// included, and neither does one on a NaN metric value or on the pipeline of an external run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Comparison {
    /// The latest value of metric `key` compared with `value`.
    Metric {
        /// Metric name.
        key: String,
        /// The operator.
        op: CompareOp,
        /// The value to compare with.
        value: f64,
    },
    /// Param `key` tested as text.
    Param {
        /// Param name.
        key: String,
        /// The test.
        test: TextMatch,
    },
    /// Tag `key` tested as text.
    Tag {
        /// Tag name.
        key: String,
        /// The test.
        test: TextMatch,
    },
    /// A text attribute tested as text.
    Text {
        /// The attribute.
        attribute: TextAttribute,
        /// The test.
        test: TextMatch,
    },
    /// A time attribute compared with a time in milliseconds since the Unix epoch.
    Time {
        /// The attribute.
        attribute: TimeAttribute,
        /// The operator.
        op: CompareOp,
        /// The time to compare with.
        value: i64,
    },
    /// Whether the run has param `key` (`exists`) or lacks it (`!exists`).
    ParamExists {
        /// Param name.
        key: String,
        /// True to require the param, false to require its absence.
        exists: bool,
    },
    /// Whether the run has tag `key` (`exists`) or lacks it (`!exists`).
    TagExists {
        /// Tag name.
        key: String,
        /// True to require the tag, false to require its absence.
        exists: bool,
    },
    /// A field of the datasets that the run declared as inputs over the MLflow protocol. The
    /// run matches when one of its datasets passes the test, `!=` included.
    Dataset {
        /// The dataset field.
        field: DatasetField,
        /// The test.
        test: TextMatch,
        /// True when a dataset passes by failing the test, as `NOT IN` needs.
        negated: bool,
    },
    /// The run belongs to one of the projects with these ids. PostgreSQL can start from the
    /// runs' `(project_id, ...)` indexes with this test, not with a test of the project name.
    ProjectIn(Vec<i64>),
    /// Whether the run is in MLflow's trash (true) or not (false).
    InTrash(bool),
    /// The artifact URI that MLflow reports for the run, `ROOT/RUN_ID/artifacts`, tested as
    /// text. ROOT is the artifact location of the run's project.
    ArtifactUri {
        /// Artifact location of each project, by project name. Runs of other projects never
        /// match.
        roots: Vec<(String, String)>,
        /// The test.
        test: TextMatch,
    },
}

/// Direction of the run id that orders runs which tie on every sort key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum TieOrder {
    /// The direction of the last sort key.
    #[default]
    LastKey,
    /// Ascending whatever the sort keys, as MLflow's server orders runs.
    Ascending,
}

/// The value a sort key orders runs by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SortTerm {
    /// The latest value of a metric.
    Metric(String),
    /// A param's text.
    Param(String),
    /// A tag's text.
    Tag(String),
    /// A text attribute.
    Text(TextAttribute),
    /// A time attribute.
    Time(TimeAttribute),
}

impl SortTerm {
    /// Returns whether some runs have no value for the term. Those sort after every run that
    /// has one, in both directions.
    fn is_nullable(&self) -> bool {
        match self {
            Self::Metric(_) | Self::Param(_) | Self::Tag(_) => true,
            Self::Text(attribute) => *attribute == TextAttribute::Pipeline,
            Self::Time(attribute) => *attribute != TimeAttribute::CreatedAt,
        }
    }

    fn value_kind(&self) -> ValueKind {
        match self {
            Self::Metric(_) => ValueKind::Real,
            Self::Param(_) | Self::Tag(_) | Self::Text(_) => ValueKind::Text,
            Self::Time(_) => ValueKind::Integer,
        }
    }
}

/// A sort key: a term and a direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SortKey {
    /// The value to sort by.
    pub term: SortTerm,
    /// Largest first when true.
    pub descending: bool,
}

/// A search for runs, one page at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSearch {
    /// Conditions that every run of the result meets.
    pub filter: Vec<Comparison>,
    /// Sort keys, most significant first. Empty means newest first. Runs that tie on every key
    /// are ordered by id, in the direction that `ties` names.
    pub order_by: Vec<SortKey>,
    /// Direction of the id among runs that tie on every sort key.
    pub ties: TieOrder,
    /// Runs per page, from 1 to [`MAX_PAGE_SIZE`].
    pub page_size: u64,
    /// Position of the last run of the previous page, which this page starts after. `None`
    /// for the first page.
    pub after: Option<Cursor>,
}

impl RunSearch {
    /// Creates a search for the first page of runs meeting `filter`, in `order_by` order.
    pub fn new(filter: Vec<Comparison>, order_by: Vec<SortKey>, page_size: u64) -> Self {
        Self {
            filter,
            order_by,
            ties: TieOrder::LastKey,
            page_size,
            after: None,
        }
    }

    /// Returns the sort keys the query uses: `order_by`, or newest first when it is empty.
    fn sort_keys(&self) -> Vec<SortKey> {
        if !self.order_by.is_empty() {
            return self.order_by.clone();
        }
        vec![SortKey {
            term: SortTerm::Time(TimeAttribute::CreatedAt),
            descending: true,
        }]
    }

    /// Returns a short hash of the filter and sort keys, so a page token is only accepted by
    /// the search that issued it.
    fn fingerprint(&self) -> String {
        let keys = self.sort_keys();
        let text = match self.ties {
            // Tokens of searches that order ties by the last key keep their earlier form.
            TieOrder::LastKey => serde_json::to_string(&(&self.filter, &keys)),
            TieOrder::Ascending => serde_json::to_string(&(&self.filter, &keys, self.ties)),
        }
        .unwrap_or_default();
        let digest = Sha256::digest(text.as_bytes());
        hex::encode(&digest[..8])
    }
}

/// A run as listed by a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Run id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Project name.
    pub project: String,
    /// Pipeline name; `None` for external runs.
    pub pipeline: Option<String>,
    /// Lifecycle state.
    pub status: RunStatus,
    /// The interface that started the run.
    pub source: RunSource,
    /// User or token name that started the run.
    pub user_name: String,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Time the run entered `running`, in milliseconds since the Unix epoch.
    pub started_at: Option<i64>,
    /// Time the run ended, in milliseconds since the Unix epoch.
    pub ended_at: Option<i64>,
    /// Reason the run failed, was cancelled or was interrupted.
    pub error: Option<String>,
    /// Params by key.
    pub params: BTreeMap<String, String>,
    /// Tags by key.
    pub tags: BTreeMap<String, String>,
    /// Latest value of every metric, by key; NaN for a NaN value.
    pub metrics: BTreeMap<String, f64>,
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    /// The runs, in sort order.
    pub runs: Vec<RunSummary>,
    /// Position of the last run of this page, which the next page starts after; `None` on
    /// the last page.
    pub next: Option<Cursor>,
}

/// The kind of value a sort term has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Real,
    Integer,
    Text,
}

/// A sort value of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum SortValue {
    /// A metric value. Tokens carry it as text, because JSON has no infinities.
    #[serde(rename = "r", with = "real_as_text")]
    Real(f64),
    /// A time.
    #[serde(rename = "i")]
    Integer(i64),
    /// A text.
    #[serde(rename = "t")]
    Text(String),
}

impl SortValue {
    fn kind(&self) -> ValueKind {
        match self {
            Self::Real(_) => ValueKind::Real,
            Self::Integer(_) => ValueKind::Integer,
            Self::Text(_) => ValueKind::Text,
        }
    }
}

mod real_as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The position of a run in a search's order: its sort values and its id.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    values: Vec<Option<SortValue>>,
    run_id: String,
}

/// Contents of a page token, before base64url encoding.
#[derive(Serialize, Deserialize)]
struct TokenBody {
    /// Fingerprint of the search that issued the token.
    q: String,
    /// Sort values of the last run of the page.
    v: Vec<Option<SortValue>>,
    /// Id of the last run of the page.
    id: String,
}

/// Reason a page token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageTokenError {
    /// The token does not decode.
    #[error(
        "`{0}` is not a page token of this server; pass the next_page_token of the previous \
         page unchanged, or leave the token out for the first page"
    )]
    Malformed(String),
    /// The token was issued for another filter or order.
    #[error(
        "the token belongs to a listing with a different filter or order_by; repeat the filter \
         and order_by of the first page, or leave the token out to start again"
    )]
    OtherSearch,
}

impl Cursor {
    /// Encodes the cursor as an opaque page token tied to `search`'s filter and order.
    pub fn to_token(&self, search: &RunSearch) -> String {
        let body = TokenBody {
            q: search.fingerprint(),
            v: self.values.clone(),
            id: self.run_id.clone(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a page token that [`Cursor::to_token`] made for a search with the same filter
    /// and order as `search`.
    pub fn from_token(token: &str, search: &RunSearch) -> Result<Self, PageTokenError> {
        let malformed = || PageTokenError::Malformed(shorten(token));
        let json = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| malformed())?;
        let body: TokenBody = serde_json::from_slice(&json).map_err(|_| malformed())?;
        if body.q != search.fingerprint() {
            return Err(PageTokenError::OtherSearch);
        }

        let keys = search.sort_keys();
        if body.v.len() != keys.len() || uuid::Uuid::parse_str(&body.id).is_err() {
            return Err(malformed());
        }
        for (value, key) in body.v.iter().zip(&keys) {
            let fits = match value {
                // PostgreSQL rejects text with NUL, which no stored value contains.
                Some(SortValue::Text(text)) if text.contains('\0') => false,
                Some(value) => value.kind() == key.term.value_kind(),
                None => key.term.is_nullable(),
            };
            if !fits {
                return Err(malformed());
            }
        }
        Ok(Self {
            values: body.v,
            run_id: body.id,
        })
    }
}

/// Cuts a rejected token for an error message, since a client may send anything.
fn shorten(token: &str) -> String {
    match token.char_indices().nth(40) {
        Some((end, _)) => format!("{}...", &token[..end]),
        None => token.to_owned(),
    }
}

impl Store {
    /// Returns one page of the runs meeting `search`'s filter, in its order, each with its
    /// params, tags and latest metrics.
    ///
    /// The page is read in one snapshot. `page_size` is clamped to 1..=[`MAX_PAGE_SIZE`].
    #[tracing::instrument(name = "runledger.store.search_runs", skip_all)]
    pub async fn search_runs(&self, search: &RunSearch) -> Result<RunPage, StoreError> {
        let page_size = search.page_size.clamp(1, MAX_PAGE_SIZE);
        let keys = search.sort_keys();
        let query = sql::page_query(search, &keys, page_size + 1, self.backend());

        let transaction = batch::begin_read(&self.db).await?;
        let rows = transaction.query_all(&query).await?;
        let mut runs = Vec::with_capacity(rows.len());
        let mut sort_values = Vec::with_capacity(rows.len());
        for row in &rows {
            runs.push(sql::read_summary(row)?);
            sort_values.push(sql::read_sort_values(row, &keys)?);
        }

        let next = if runs.len() as u64 > page_size {
            runs.truncate(page_size as usize);
            sort_values.truncate(page_size as usize);
            let last = runs.last().map(|run| run.id.clone()).unwrap_or_default();
            let values = sort_values.pop().unwrap_or_default();
            Some(Cursor {
                values,
                run_id: last,
            })
        } else {
            None
        };

        fill_details(&transaction, &mut runs).await?;
        transaction.commit().await?;
        Ok(RunPage { runs, next })
    }
}

/// Reads the params, tags and latest metrics of `runs` in one query per table.
async fn fill_details(
    db: &impl ConnectionTrait,
    runs: &mut [RunSummary],
) -> Result<(), StoreError> {
    if runs.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = runs.iter().map(|run| run.id.clone()).collect();
    let position: HashMap<String, usize> = ids
        .iter()
        .enumerate()
        .map(|(index, id)| (id.clone(), index))
        .collect();

    let params = run_param::Entity::find()
        .filter(run_param::Column::RunId.is_in(ids.clone()))
        .all(db)
        .await?;
    for row in params {
        runs[position[&row.run_id]]
            .params
            .insert(row.key, row.value);
    }

    let tags = run_tag::Entity::find()
        .filter(run_tag::Column::RunId.is_in(ids.clone()))
        .all(db)
        .await?;
    for row in tags {
        runs[position[&row.run_id]].tags.insert(row.key, row.value);
    }

    let metrics = latest_metric::Entity::find()
        .filter(latest_metric::Column::RunId.is_in(ids))
        .all(db)
        .await?;
    for row in metrics {
        let value = row.value.unwrap_or(f64::NAN);
        runs[position[&row.run_id]].metrics.insert(row.key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(order_by: Vec<SortKey>) -> RunSearch {
        let filter = vec![Comparison::Metric {
            key: "rmse".into(),
            op: CompareOp::Lt,
            value: 0.7,
        }];
        RunSearch::new(filter, order_by, 10)
    }

    fn metric_order() -> Vec<SortKey> {
        vec![SortKey {
            term: SortTerm::Metric("rmse".into()),
            descending: false,
        }]
    }

    #[test]
    fn token_round_trips_infinite_and_missing_values() {
        let search = search(metric_order());
        let id = "01900000-0000-7000-8000-000000000000".to_owned();
        for value in [Some(SortValue::Real(f64::INFINITY)), None] {
            let cursor = Cursor {
                values: vec![value],
                run_id: id.clone(),
            };

            let decoded = Cursor::from_token(&cursor.to_token(&search), &search);

            assert_eq!(decoded, Ok(cursor));
        }
    }

    #[test]
    fn token_of_other_order_is_rejected() {
        let first = search(metric_order());
        let other = search(Vec::new());
        let cursor = Cursor {
            values: vec![Some(SortValue::Real(0.5))],
            run_id: "01900000-0000-7000-8000-000000000000".into(),
        };

        let decoded = Cursor::from_token(&cursor.to_token(&first), &other);

        assert_eq!(decoded, Err(PageTokenError::OtherSearch));
    }

    #[test]
    fn garbage_token_is_malformed() {
        let search = search(Vec::new());

        for token in ["", "!!!", "eyJ4IjoxfQ", &"A".repeat(300)] {
            let decoded = Cursor::from_token(token, &search);

            assert!(
                matches!(decoded, Err(PageTokenError::Malformed(_))),
                "{token}: {decoded:?}"
            );
        }
    }

    #[test]
    fn token_with_value_of_wrong_kind_is_malformed() {
        let search = search(Vec::new());
        let cursor = Cursor {
            values: vec![Some(SortValue::Text("yesterday".into()))],
            run_id: "01900000-0000-7000-8000-000000000000".into(),
        };

        let decoded = Cursor::from_token(&cursor.to_token(&search), &search);

        assert!(matches!(decoded, Err(PageTokenError::Malformed(_))));
    }
}
