//! `POST logged-models/search`: logged models of experiments that match a filter, in the
//! requested order, a page at a time.
//!
//! The filter uses MLflow's search grammar over `attributes` (`name`, `model_id`,
//! `model_type`, `status`, `source_run_id`, `creation_timestamp`, `last_updated_timestamp`),
//! `metrics`, `params` and `tags`. As on MLflow 3.17's server, a metric comparison matches a
//! model when any of its values for the key matches, and a `datasets` list limits metric
//! comparisons to values measured on those datasets. Ordering by a metric uses its latest
//! value. Values missing on a model sort last either way. Ties are broken by newest creation,
//! then by model id.
//!
//! NOTE: the search reads every active model of the experiments and filters them in memory,
//! so its cost grows with the number of models in those experiments.

use super::error::{MlflowError, MlflowResult};
use super::filter::{Clause, Entity, Operator, number_matches, parse_filter, text_matches};
use super::logged_models::{model_json, search_experiments};
use super::request::{MlflowRequest, lenient_i64, string_list};
use crate::server::state::AppState;
use crate::store::mlflow::LoggedModel;
use crate::store::mlflow::entity::logged_model_metric;
use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::cmp::Ordering;
use std::collections::HashMap;

/// Models a page holds when the request names no page size, as in MLflow 3.17.
const DEFAULT_PAGE_SIZE: i64 = 100;

#[derive(Debug, Deserialize)]
pub(super) struct SearchLoggedModels {
    #[serde(default, deserialize_with = "string_list")]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    #[serde(default)]
    datasets: Vec<DatasetMessage>,
    #[serde(default, deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    #[serde(default)]
    order_by: Vec<OrderByMessage>,
    page_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub(super) struct DatasetMessage {
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub(super) struct OrderByMessage {
    field_name: Option<String>,
    ascending: Option<bool>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

/// A dataset that metric values must have been measured on.
#[derive(Debug, Clone)]
struct DatasetFilter {
    name: String,
    digest: Option<String>,
}

impl DatasetFilter {
    fn matches(&self, metric: &logged_model_metric::Model) -> bool {
        metric.dataset_name.as_deref() == Some(self.name.as_str())
            && self
                .digest
                .as_ref()
                .is_none_or(|digest| metric.dataset_digest.as_ref() == Some(digest))
    }
}

/// The value one `order_by` entry sorts by.
#[derive(Debug, Clone)]
enum SortField {
    /// An attribute, by its canonical name.
    Attribute(&'static str),
    /// The latest value of a metric, optionally on one dataset.
    Metric {
        key: String,
        dataset: Option<DatasetFilter>,
    },
}

#[derive(Debug, Clone)]
struct SortKey {
    field: SortField,
    ascending: bool,
}

/// A value compared by sorting; `None` sorts last in both directions.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum SortValue {
    Number(f64),
    Text(String),
}

/// The offset of the next page, with a fingerprint of the query it continues.
#[derive(Debug, Serialize, Deserialize)]
struct PageToken {
    offset: usize,
    query: String,
}

/// `POST logged-models/search`.
pub(super) async fn search(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<SearchLoggedModels>,
) -> MlflowResult<Json<Value>> {
    if request.experiment_ids.is_empty() {
        return Err(MlflowError::invalid(
            "missing value for required parameter 'experiment_ids': name at least one experiment",
        ));
    }
    let clauses = parse_filter(request.filter.as_deref().unwrap_or(""))?;
    clauses.iter().try_for_each(check_clause)?;
    let datasets = dataset_filters(&request.datasets)?;
    let sort_keys = request
        .order_by
        .iter()
        .map(sort_key)
        .collect::<MlflowResult<Vec<_>>>()?;
    let page_size = page_size(request.max_results)?;
    let fingerprint = fingerprint(&request);
    let offset = decode_token(request.page_token.as_deref(), &fingerprint)?;

    let experiments = search_experiments(&state, &request.experiment_ids).await?;
    let project_ids: Vec<i64> = experiments.iter().map(|(_, project)| *project).collect();
    let mut models = state.store().mlflow_logged_models_of(&project_ids).await?;
    models.retain(|model| matches(model, &clauses, &datasets));
    models.sort_by(|a, b| compare(a, b, &sort_keys));

    let experiment_ids: HashMap<i64, String> = experiments
        .into_iter()
        .map(|(id, project)| (project, id))
        .collect();
    let end = offset.saturating_add(page_size).min(models.len());
    let page: Vec<Value> = models
        .get(offset.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|model| {
            let experiment_id = experiment_ids.get(&model.model.project_id);
            model_json(model, experiment_id.map_or("", String::as_str))
        })
        .collect();
    let mut body = json!({ "models": page });
    if end < models.len() {
        body["next_page_token"] = json!(encode_token(end, &fingerprint));
    }
    Ok(Json(body))
}

/// The kind of value a filter key compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Number,
    Text,
}

/// Returns the canonical name and kind of an attribute a filter or `order_by` may name.
fn attribute(key: &str) -> Option<(&'static str, ValueKind)> {
    let found = match key {
        "name" => ("name", ValueKind::Text),
        "model_id" => ("model_id", ValueKind::Text),
        "model_type" => ("model_type", ValueKind::Text),
        "status" => ("status", ValueKind::Text),
        "source_run_id" => ("source_run_id", ValueKind::Text),
        "creation_timestamp" | "creation_time" | "creation_timestamp_ms" => {
            ("creation_timestamp", ValueKind::Number)
        }
        "last_updated_timestamp" | "last_updated_time" | "last_updated_timestamp_ms" => {
            ("last_updated_timestamp", ValueKind::Number)
        }
        _ => return None,
    };
    Some(found)
}

/// Rejects a clause with an unknown key, or an operator or value that does not fit its kind.
fn check_clause(clause: &Clause) -> MlflowResult<()> {
    let kind = match clause.entity {
        Entity::Metric => ValueKind::Number,
        Entity::Param | Entity::Tag => ValueKind::Text,
        Entity::Attribute => attribute(&clause.key)
            .map(|(_, kind)| kind)
            .ok_or_else(|| {
                MlflowError::invalid(format!(
                    "invalid logged model search key '{}': use name, model_id, model_type, status, \
                 source_run_id, creation_timestamp, last_updated_timestamp, metrics.KEY, \
                 params.KEY or tags.KEY",
                    clause.key
                ))
            })?,
        Entity::Dataset => {
            return Err(MlflowError::invalid(
                "logged model filters cannot name datasets; pass them in the 'datasets' field",
            ));
        }
    };
    let allowed = match kind {
        ValueKind::Number => matches!(
            clause.operator,
            Operator::Eq | Operator::Ne | Operator::Lt | Operator::Le | Operator::Gt | Operator::Ge
        ),
        ValueKind::Text => matches!(
            clause.operator,
            Operator::Eq
                | Operator::Ne
                | Operator::Like
                | Operator::ILike
                | Operator::In
                | Operator::NotIn
        ),
    };
    if !allowed {
        return Err(MlflowError::invalid(format!(
            "invalid comparison operator for '{}': numbers take =, !=, <, <=, > or >=, and text \
             takes =, !=, LIKE, ILIKE, IN or NOT IN",
            clause.key
        )));
    }
    // Evaluating the clause on a sample value reports a value of the wrong type.
    match kind {
        ValueKind::Number => number_matches(0.0, clause).map(drop),
        ValueKind::Text => text_matches("", clause).map(drop),
    }
}

fn dataset_filters(messages: &[DatasetMessage]) -> MlflowResult<Vec<DatasetFilter>> {
    messages
        .iter()
        .map(|message| {
            let name = message.dataset_name.clone().filter(|name| !name.is_empty());
            let name = name.ok_or_else(|| {
                MlflowError::invalid("`dataset_name` in the `datasets` clause must be specified")
            })?;
            Ok(DatasetFilter {
                name,
                digest: message
                    .dataset_digest
                    .clone()
                    .filter(|digest| !digest.is_empty()),
            })
        })
        .collect()
}

fn sort_key(message: &OrderByMessage) -> MlflowResult<SortKey> {
    let field_name = message.field_name.clone().unwrap_or_default();
    let field_name = field_name.trim();
    if field_name.is_empty() {
        return Err(MlflowError::invalid(
            "`field_name` in the `order_by` clause must be specified",
        ));
    }
    let dataset_name = message.dataset_name.clone().filter(|name| !name.is_empty());
    let dataset_digest = message
        .dataset_digest
        .clone()
        .filter(|digest| !digest.is_empty());
    if dataset_digest.is_some() && dataset_name.is_none() {
        return Err(MlflowError::invalid(
            "`dataset_digest` can only be specified if `dataset_name` is also specified",
        ));
    }
    let field =
        match field_name.split_once('.') {
            Some(("metrics", key)) => SortField::Metric {
                key: key.trim_matches('`').to_owned(),
                dataset: dataset_name.map(|name| DatasetFilter {
                    name,
                    digest: dataset_digest,
                }),
            },
            Some((entity, _)) => {
                return Err(MlflowError::invalid(format!(
                    "invalid order by field name '{field_name}': only attributes and \
                 `metrics.<name>` are allowed, not '{entity}'"
                )));
            }
            None => SortField::Attribute(attribute(field_name).map(|(name, _)| name).ok_or_else(
                || MlflowError::invalid(format!("invalid order by field name '{field_name}'")),
            )?),
        };
    Ok(SortKey {
        field,
        ascending: message.ascending.unwrap_or(true),
    })
}

fn page_size(requested: Option<i64>) -> MlflowResult<usize> {
    match requested {
        None | Some(0) => Ok(DEFAULT_PAGE_SIZE as usize),
        Some(size) if size < 0 => Err(MlflowError::invalid(format!(
            "invalid value {size} for parameter 'max_results': give a positive number"
        ))),
        Some(size) => Ok(usize::try_from(size).unwrap_or(usize::MAX)),
    }
}

/// Returns whether a model passes every clause and the dataset filter.
fn matches(model: &LoggedModel, clauses: &[Clause], datasets: &[DatasetFilter]) -> bool {
    let on_datasets = |metric: &logged_model_metric::Model| {
        datasets.is_empty() || datasets.iter().any(|dataset| dataset.matches(metric))
    };
    let has_metric_clause = clauses.iter().any(|clause| clause.entity == Entity::Metric);
    if !datasets.is_empty() && !has_metric_clause && !model.metrics.iter().any(on_datasets) {
        return false;
    }
    clauses.iter().all(|clause| match clause.entity {
        Entity::Metric => model.metrics.iter().any(|metric| {
            metric.key == clause.key
                && on_datasets(metric)
                && metric
                    .value
                    .is_some_and(|value| number_matches(value, clause).unwrap_or(false))
        }),
        Entity::Param => text_clause(model.params.get(&clause.key), clause),
        Entity::Tag => text_clause(model.tags.get(&clause.key), clause),
        _ => match attribute_value(model, &clause.key) {
            Some(SortValue::Number(value)) => number_matches(value, clause).unwrap_or(false),
            Some(SortValue::Text(text)) => text_matches(&text, clause).unwrap_or(false),
            None => false,
        },
    })
}

/// Tests a param or tag; a model without the key matches no comparison, as in SQL.
fn text_clause(value: Option<&String>, clause: &Clause) -> bool {
    value.is_some_and(|value| text_matches(value, clause).unwrap_or(false))
}

/// Returns an attribute of a model as filters and sorting see it: statuses by the names of
/// MLflow's `LoggedModelStatus` entity (`PENDING`, `READY`, `FAILED`).
fn attribute_value(model: &LoggedModel, key: &str) -> Option<SortValue> {
    let row = &model.model;
    let text = |value: &str| Some(SortValue::Text(value.to_owned()));
    match attribute(key)?.0 {
        "name" => text(&row.name),
        "model_id" => text(&row.id),
        "model_type" => row.model_type.as_deref().and_then(text),
        "source_run_id" => row.source_run_id.as_deref().and_then(text),
        "status" => text(&model.status().as_str().to_ascii_uppercase()),
        "creation_timestamp" => Some(SortValue::Number(row.created_at as f64)),
        _ => Some(SortValue::Number(row.updated_at as f64)),
    }
}

/// Returns the latest value of a metric, by timestamp and then step, on the dataset if one
/// is named.
fn latest_metric(model: &LoggedModel, key: &str, dataset: Option<&DatasetFilter>) -> Option<f64> {
    model
        .metrics
        .iter()
        .filter(|metric| metric.key == key && dataset.is_none_or(|dataset| dataset.matches(metric)))
        .max_by_key(|metric| (metric.timestamp_ms, metric.step))
        .map(|metric| metric.value.unwrap_or(f64::NAN))
}

fn sort_value(model: &LoggedModel, field: &SortField) -> Option<SortValue> {
    match field {
        SortField::Attribute(name) => attribute_value(model, name),
        SortField::Metric { key, dataset } => {
            latest_metric(model, key, dataset.as_ref()).map(SortValue::Number)
        }
    }
}

/// Orders two models by the sort keys, then newest first, then by model id.
fn compare(a: &LoggedModel, b: &LoggedModel, keys: &[SortKey]) -> Ordering {
    for key in keys {
        let ordering = match (sort_value(a, &key.field), sort_value(b, &key.field)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(left), Some(right)) => {
                let ordering = compare_values(&left, &right);
                if key.ascending {
                    ordering
                } else {
                    ordering.reverse()
                }
            }
        };
        if ordering.is_ne() {
            return ordering;
        }
    }
    let named = |name: &str| {
        keys.iter()
            .any(|key| matches!(key.field, SortField::Attribute(field) if field == name))
    };
    let mut ordering = Ordering::Equal;
    if !named("creation_timestamp") {
        ordering = b.model.created_at.cmp(&a.model.created_at);
    }
    if ordering.is_eq() && !named("model_id") {
        ordering = a.model.id.cmp(&b.model.id);
    }
    ordering
}

fn compare_values(left: &SortValue, right: &SortValue) -> Ordering {
    match (left, right) {
        (SortValue::Number(left), SortValue::Number(right)) => left.total_cmp(right),
        (SortValue::Text(left), SortValue::Text(right)) => left.cmp(right),
        _ => Ordering::Equal,
    }
}

/// Hashes what selects and orders the models, so a page token only continues its own query.
fn fingerprint(request: &SearchLoggedModels) -> String {
    let query = json!({
        "experiment_ids": request.experiment_ids,
        "filter": request.filter.clone().unwrap_or_default(),
        "datasets": request.datasets,
        "order_by": request.order_by,
    });
    let digest = Sha256::digest(query.to_string().as_bytes());
    digest
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn encode_token(offset: usize, query: &str) -> String {
    let token = PageToken {
        offset,
        query: query.to_owned(),
    };
    URL_SAFE_NO_PAD.encode(json!(token).to_string())
}

/// Decodes a page token; no token is offset 0.
fn decode_token(token: Option<&str>, query: &str) -> MlflowResult<usize> {
    let Some(token) = token.filter(|text| !text.is_empty()) else {
        return Ok(0);
    };
    let invalid = |problem: &str| {
        MlflowError::invalid(format!(
            "invalid page_token '{token}': {problem}; pass the next_page_token of the previous \
             page unchanged, with the same experiment_ids, filter, datasets and order_by"
        ))
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid("it is not a token this server issued"))?;
    let decoded: PageToken = serde_json::from_slice(&bytes)
        .map_err(|_| invalid("it is not a token this server issued"))?;
    if decoded.query != query {
        return Err(invalid("it belongs to another query"));
    }
    Ok(decoded.offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_token_continues_only_its_query() {
        let token = encode_token(5, "abc");
        assert_eq!(decode_token(Some(&token), "abc").unwrap(), 5);
        assert!(decode_token(Some(&token), "abd").is_err());
        assert!(decode_token(Some("not-a-token"), "abc").is_err());
        assert_eq!(decode_token(None, "abc").unwrap(), 0);
    }

    #[test]
    fn filter_keys_are_checked_before_searching() {
        let check = |filter: &str| {
            parse_filter(filter)
                .unwrap()
                .iter()
                .try_for_each(check_clause)
        };
        assert!(check("name = 'a' AND metrics.acc > 0.5 AND tags.t LIKE 'x%'").is_ok());
        assert!(check("creation_time > 5").is_ok());
        assert!(check("size = 'a'").is_err());
        assert!(check("metrics.acc LIKE 'a'").is_err());
        assert!(check("name > 3").is_err());
        assert!(check("datasets.name = 'a'").is_err());
    }

    #[test]
    fn order_by_rejects_params_and_lone_digests() {
        let order = |field: &str, digest: Option<&str>| OrderByMessage {
            field_name: Some(field.to_owned()),
            ascending: None,
            dataset_name: None,
            dataset_digest: digest.map(str::to_owned),
        };
        assert!(sort_key(&order("metrics.acc", None)).is_ok());
        assert!(sort_key(&order("creation_time", None)).is_ok());
        assert!(sort_key(&order("params.lr", None)).is_err());
        assert!(sort_key(&order("size", None)).is_err());
        assert!(sort_key(&order("metrics.acc", Some("abc"))).is_err());
    }
}
