//! `POST runs/search`: MLflow's filter and order_by translated into the store's typed run
//! search, which filters, orders and pages the runs in one SQL query per page, with keyset
//! page tokens.
//!
//! The order follows MLflow's server: the requested keys, then `start_time` descending unless
//! a key names it, then the run id ascending. The lifecycle view is a condition of the query,
//! so deleted runs never cost a read.

use super::error::{MlflowCode, MlflowError, MlflowResult};
use super::filter::{self, Entity, SortOrder};
use super::proto::{artifact_location, experiment_id};
use super::request::{MlflowRequest, lenient_i64, string_list};
use super::run_filter::{translate, translate_key_alias};
use super::runs::{ViewType, experiment_for_search, parse_view_type};
use super::view::{RunBody, RunHead, run_json};
use crate::server::state::AppState;
use crate::store::mlflow::{Experiment, LifecycleStage};
use crate::store::{
    Comparison, Cursor, MAX_PAGE_SIZE, RunSearch, RunSummary, SortKey, SortTerm, TextAttribute,
    TextMatch, TieOrder, TimeAttribute,
};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Maximum number of runs one page returns, as on an MLflow server.
const MAX_RESULTS: i64 = 50_000;

/// Runs per page when the request names no page size, as on an MLflow server.
const DEFAULT_RESULTS: i64 = 1000;

#[derive(Debug, Deserialize)]
pub(super) struct SearchRuns {
    #[serde(default, deserialize_with = "string_list")]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    run_view_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "string_list")]
    order_by: Vec<String>,
    page_token: Option<String>,
}

/// `POST runs/search`.
pub(super) async fn search_runs(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<SearchRuns>,
) -> MlflowResult<Json<Value>> {
    let max_results = request.max_results.unwrap_or(DEFAULT_RESULTS);
    if !(1..=MAX_RESULTS).contains(&max_results) {
        return Err(MlflowError::invalid(format!(
            "invalid value {max_results} for parameter 'max_results': give 1 to {MAX_RESULTS}"
        )));
    }
    let view = parse_view_type(request.run_view_type.as_deref())?;
    let experiments = experiments_by_project(&state, &request.experiment_ids).await?;
    if experiments.is_empty() {
        return Ok(Json(json!({ "runs": [] })));
    }

    let mut search = build_search(&request, &experiments, view)?;
    if let Some(token) = request
        .page_token
        .as_deref()
        .filter(|token| !token.is_empty())
    {
        let cursor = Cursor::from_token(token, &search)
            .map_err(|error| MlflowError::invalid(format!("invalid page_token: {error}")))?;
        search.after = Some(cursor);
    }

    let limit = usize::try_from(max_results).unwrap_or(usize::MAX);
    let (found, more) = collect(&state, &mut search, limit).await?;
    let runs = run_messages(&state, &found, &experiments).await?;
    let mut body = json!({ "runs": runs });
    if more && let Some(cursor) = &search.after {
        body["next_page_token"] = json!(cursor.to_token(&search));
    }
    Ok(Json(body))
}

/// Builds the store's search: the experiments, the lifecycle view, the filter and the order.
fn build_search(
    request: &SearchRuns,
    experiments: &HashMap<String, Experiment>,
    view: ViewType,
) -> MlflowResult<RunSearch> {
    // Both tests name the same projects. PostgreSQL starts from the runs' (project_id,
    // started_at) index only with the id test, and SQLite only with the name test, which
    // makes it read the one project first.
    let project_ids = experiments
        .values()
        .map(|experiment| experiment.project.id)
        .collect();
    let mut conditions = vec![
        Comparison::ProjectIn(project_ids),
        Comparison::Text {
            attribute: TextAttribute::Project,
            test: TextMatch::In(experiments.keys().cloned().collect()),
        },
    ];
    match view {
        ViewType::ActiveOnly => conditions.push(Comparison::InTrash(false)),
        ViewType::DeletedOnly => conditions.push(Comparison::InTrash(true)),
        ViewType::All => {}
    }
    let roots: Vec<(String, String)> = experiments
        .iter()
        .map(|(project, experiment)| (project.clone(), artifact_location(experiment)))
        .collect();
    for clause in filter::parse_filter(request.filter.as_deref().unwrap_or(""))? {
        conditions.extend(translate(&clause, &roots)?);
    }

    let mut search = RunSearch::new(conditions, run_order(&request.order_by)?, MAX_PAGE_SIZE);
    search.ties = TieOrder::Ascending;
    Ok(search)
}

/// Translates `order_by` into sort keys, with MLflow's `start_time DESC` appended unless a
/// term orders by it. A key given twice is rejected, as on an MLflow server.
fn run_order(terms: &[String]) -> MlflowResult<Vec<SortKey>> {
    let mut keys: Vec<SortKey> = Vec::with_capacity(terms.len() + 1);
    for text in terms {
        let key = sort_key(&filter::parse_order_by(text)?)?;
        if keys.iter().any(|earlier| earlier.term == key.term) {
            return Err(MlflowError::invalid(format!(
                "order_by contains the key of '{text}' twice; give each key once"
            )));
        }
        keys.push(key);
    }
    let start_time = SortTerm::Time(TimeAttribute::StartedAt);
    if !keys.iter().any(|key| key.term == start_time) {
        keys.push(SortKey {
            term: start_time,
            descending: true,
        });
    }
    Ok(keys)
}

/// Reads pages until `limit` runs are found or none are left. Returns the runs and whether
/// more may follow; `search.after` is then the position after the last run returned.
async fn collect(
    state: &AppState,
    search: &mut RunSearch,
    limit: usize,
) -> MlflowResult<(Vec<RunSummary>, bool)> {
    let mut found = Vec::new();
    loop {
        let remaining = (limit - found.len()) as u64;
        search.page_size = remaining.min(MAX_PAGE_SIZE);
        let page = state.store().search_runs(search).await?;
        found.extend(page.runs);
        let Some(next) = page.next else {
            return Ok((found, false));
        };
        search.after = Some(next);
        if found.len() >= limit {
            return Ok((found, true));
        }
    }
}

/// Builds the `Run` messages of a page, reading stages, metrics and inputs for all runs at
/// once.
async fn run_messages(
    state: &AppState,
    found: &[RunSummary],
    experiments: &HashMap<String, Experiment>,
) -> MlflowResult<Vec<Value>> {
    let ids: Vec<String> = found.iter().map(|run| run.id.clone()).collect();
    let stages = state.store().mlflow_deleted_runs(&ids).await?;
    let mut metrics = state.store().mlflow_latest_metrics(&ids).await?;
    let mut inputs = state.store().mlflow_dataset_inputs(&ids).await?;
    let mut messages = Vec::with_capacity(found.len());
    for run in found {
        let Some(experiment) = experiments.get(&run.project) else {
            continue;
        };
        let stage = stages
            .get(&run.id)
            .copied()
            .unwrap_or(LifecycleStage::Active);
        let head = RunHead::of_summary(
            run,
            experiment_id(&experiment.project),
            artifact_location(experiment),
            stage,
        );
        let body = RunBody {
            params: run.params.clone(),
            tags: run.tags.clone(),
            metrics: metrics.remove(&run.id).unwrap_or_default(),
            inputs: inputs.remove(&run.id).unwrap_or_default(),
        };
        messages.push(run_json(&head, &body));
    }
    super::logged_models::add_run_models(state, &mut messages).await?;
    Ok(messages)
}

/// Resolves experiment ids to experiments by project name, skipping ids of no experiment.
async fn experiments_by_project(
    state: &AppState,
    ids: &[String],
) -> MlflowResult<HashMap<String, Experiment>> {
    let mut experiments = HashMap::new();
    for id in ids {
        match experiment_for_search(state, id).await {
            Ok(experiment) => {
                experiments.insert(experiment.project.name.clone(), experiment);
            }
            Err(error) if error.code == MlflowCode::ResourceDoesNotExist => {}
            Err(error) => return Err(error),
        }
    }
    Ok(experiments)
}

fn sort_key(order: &SortOrder) -> MlflowResult<SortKey> {
    let term = match order.entity {
        Entity::Metric => SortTerm::Metric(order.key.clone()),
        Entity::Param => SortTerm::Param(order.key.clone()),
        Entity::Tag => SortTerm::Tag(order.key.clone()),
        Entity::Attribute => match translate_key_alias(&order.key) {
            "start_time" => SortTerm::Time(TimeAttribute::StartedAt),
            "end_time" => SortTerm::Time(TimeAttribute::EndedAt),
            "run_name" => SortTerm::Text(TextAttribute::Name),
            "run_id" => SortTerm::Text(TextAttribute::RunId),
            "status" => SortTerm::Text(TextAttribute::Status),
            "user_id" => SortTerm::Text(TextAttribute::User),
            other => {
                return Err(MlflowError::invalid(format!(
                    "invalid order_by attribute '{other}': order by start_time, end_time, \
                     run_name, run_id, status or user_id"
                )));
            }
        },
        Entity::Dataset => {
            return Err(MlflowError::invalid(format!(
                "invalid order_by key 'datasets.{}': runs cannot be ordered by their datasets; \
                 order by an attribute, metric, param or tag",
                order.key
            )));
        }
    };
    Ok(SortKey {
        term,
        descending: order.descending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ends_with_start_time_descending() {
        let keys = run_order(&["metrics.loss".to_owned()]).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].term, SortTerm::Time(TimeAttribute::StartedAt));
        assert!(keys[1].descending);

        let keys = run_order(&["attributes.created ASC".to_owned()]).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(!keys[0].descending);
    }

    #[test]
    fn order_rejects_a_key_given_twice() {
        let terms = ["params.lr".to_owned(), "params.lr DESC".to_owned()];
        assert!(run_order(&terms).is_err());
    }
}
