//! `POST runs/search`: MLflow's filter and order_by translated into the store's typed run
//! search, paged with the store's keyset page tokens.
//!
//! Deleted runs are filtered after the query, so a page may need several queries. Every run
//! a query returns is either on the page or skipped, so the cursor after the last query is
//! the position where the next page starts.

use super::error::{MlflowError, MlflowResult};
use super::filter::{self, Clause, Entity, Literal, Operator, SortOrder};
use super::proto::{artifact_location, experiment_id};
use super::request::{MlflowRequest, lenient_i64, string_list};
use super::runs::{ViewType, experiment_for_search, parse_view_type};
use super::view::{RunBody, RunHead, run_json};
use crate::server::state::AppState;
use crate::store::mlflow::{Experiment, LifecycleStage};
use crate::store::{
    CompareOp, Comparison, Cursor, MAX_PAGE_SIZE, RunSearch, RunSummary, SortKey, SortTerm,
    TextAttribute, TextMatch, TimeAttribute,
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

    let mut conditions = vec![Comparison::Text {
        attribute: TextAttribute::Project,
        test: TextMatch::In(experiments.keys().cloned().collect()),
    }];
    for clause in filter::parse_filter(request.filter.as_deref().unwrap_or(""))? {
        conditions.extend(translate(&clause)?);
    }
    let order = request
        .order_by
        .iter()
        .map(|text| filter::parse_order_by(text).and_then(|order| sort_key(&order)))
        .collect::<MlflowResult<Vec<_>>>()?;
    let mut search = RunSearch::new(conditions, order, MAX_PAGE_SIZE);
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
    let (found, more) = collect(&state, &mut search, view, limit).await?;
    let runs = run_messages(&state, &found, &experiments).await?;
    let mut body = json!({ "runs": runs });
    if more && let Some(cursor) = &search.after {
        body["next_page_token"] = json!(cursor.to_token(&search));
    }
    Ok(Json(body))
}

/// Reads pages until `limit` runs in `view` are found or none are left. Returns the runs
/// with their stages, and whether more runs may follow.
async fn collect(
    state: &AppState,
    search: &mut RunSearch,
    view: ViewType,
    limit: usize,
) -> MlflowResult<(Vec<(RunSummary, LifecycleStage)>, bool)> {
    let mut found = Vec::new();
    loop {
        let remaining = (limit - found.len()) as u64;
        search.page_size = remaining.min(MAX_PAGE_SIZE);
        let page = state.store().search_runs(search).await?;
        let ids: Vec<String> = page.runs.iter().map(|run| run.id.clone()).collect();
        let stages = state.store().mlflow_deleted_runs(&ids).await?;
        for run in page.runs {
            let stage = stages
                .get(&run.id)
                .copied()
                .unwrap_or(LifecycleStage::Active);
            if view.includes(stage) {
                found.push((run, stage));
            }
        }
        let Some(next) = page.next else {
            return Ok((found, false));
        };
        search.after = Some(next);
        if found.len() >= limit {
            return Ok((found, true));
        }
    }
}

/// Builds the `Run` messages of a page, reading metrics and inputs for all runs at once.
async fn run_messages(
    state: &AppState,
    found: &[(RunSummary, LifecycleStage)],
    experiments: &HashMap<String, Experiment>,
) -> MlflowResult<Vec<Value>> {
    let ids: Vec<String> = found.iter().map(|(run, _)| run.id.clone()).collect();
    let mut metrics = state.store().mlflow_latest_metrics(&ids).await?;
    let mut inputs = state.store().mlflow_dataset_inputs(&ids).await?;
    let mut messages = Vec::with_capacity(found.len());
    for (run, stage) in found {
        let Some(experiment) = experiments.get(&run.project) else {
            continue;
        };
        let head = RunHead::of_summary(
            run,
            experiment_id(&experiment.project),
            artifact_location(experiment),
            *stage,
        );
        let body = RunBody {
            params: run.params.clone(),
            tags: run.tags.clone(),
            metrics: metrics.remove(&run.id).unwrap_or_default(),
            inputs: inputs.remove(&run.id).unwrap_or_default(),
        };
        messages.push(run_json(&head, &body));
    }
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
            Err(error) if error.code == super::MlflowCode::ResourceDoesNotExist => {}
            Err(error) => return Err(error),
        }
    }
    Ok(experiments)
}

/// Translates one MLflow comparison into the store's conditions, all of which must hold.
fn translate(clause: &Clause) -> MlflowResult<Vec<Comparison>> {
    match clause.entity {
        Entity::Metric => Ok(vec![Comparison::Metric {
            key: clause.key.clone(),
            op: numeric_operator(clause)?,
            value: number(clause)?,
        }]),
        Entity::Param => text_tests(clause, |test| Comparison::Param {
            key: clause.key.clone(),
            test,
        }),
        Entity::Tag => text_tests(clause, |test| Comparison::Tag {
            key: clause.key.clone(),
            test,
        }),
        Entity::Attribute => attribute(clause),
        Entity::Dataset => Err(MlflowError::invalid(format!(
            "filtering on datasets.{} is not supported by this server; filter on metrics, \
             params, tags or attributes",
            clause.key
        ))),
    }
}

fn attribute(clause: &Clause) -> MlflowResult<Vec<Comparison>> {
    let text =
        |attribute: TextAttribute| text_tests(clause, |test| Comparison::Text { attribute, test });
    let time = |attribute: TimeAttribute| -> MlflowResult<Vec<Comparison>> {
        Ok(vec![Comparison::Time {
            attribute,
            op: numeric_operator(clause)?,
            value: number(clause)? as i64,
        }])
    };
    match clause.key.as_str() {
        "run_id" => text(TextAttribute::RunId),
        "run_name" => text(TextAttribute::Name),
        "user_id" => text(TextAttribute::User),
        "status" => status(clause),
        "start_time" | "created" => time(TimeAttribute::StartedAt),
        "end_time" => time(TimeAttribute::EndedAt),
        other => Err(MlflowError::invalid(format!(
            "invalid attribute key '{other}': filter on run_id, run_name, user_id, status, \
             start_time or end_time"
        ))),
    }
}

/// Translates a status comparison, whose MLflow names map to one or two run statuses.
fn status(clause: &Clause) -> MlflowResult<Vec<Comparison>> {
    let names: Vec<String> = match &clause.value {
        Literal::Text(name) => vec![name.clone()],
        Literal::List(names) => names.clone(),
        Literal::Number(_) => {
            return Err(MlflowError::invalid(
                "status is compared with a quoted status name",
            ));
        }
    };
    let mut statuses = Vec::new();
    for name in &names {
        for status in super::proto::parse_status(name)? {
            statuses.push(status.to_string());
        }
    }
    let attribute = TextAttribute::Status;
    match clause.operator {
        Operator::Eq | Operator::In => Ok(vec![Comparison::Text {
            attribute,
            test: TextMatch::In(statuses),
        }]),
        Operator::Ne | Operator::NotIn => Ok(statuses
            .into_iter()
            .map(|status| Comparison::Text {
                attribute,
                test: TextMatch::Ne(status),
            })
            .collect()),
        _ => Err(MlflowError::invalid(
            "status is compared with =, !=, IN or NOT IN",
        )),
    }
}

/// Translates a text comparison. `NOT IN` becomes one `!=` per value.
fn text_tests(
    clause: &Clause,
    condition: impl Fn(TextMatch) -> Comparison,
) -> MlflowResult<Vec<Comparison>> {
    let text = || match &clause.value {
        Literal::Text(text) => Ok(text.clone()),
        _ => Err(MlflowError::invalid(format!(
            "the value compared with '{}' must be a quoted string",
            clause.key
        ))),
    };
    let list = || match &clause.value {
        Literal::List(items) => Ok(items.clone()),
        _ => Err(MlflowError::invalid(
            "IN takes a parenthesized list of strings",
        )),
    };
    let tests = match clause.operator {
        Operator::Eq => vec![TextMatch::Eq(text()?)],
        Operator::Ne => vec![TextMatch::Ne(text()?)],
        Operator::Like => vec![TextMatch::Like(text()?)],
        Operator::ILike => vec![TextMatch::ILike(text()?)],
        Operator::In => vec![TextMatch::In(list()?)],
        Operator::NotIn => list()?.into_iter().map(TextMatch::Ne).collect(),
        _ => {
            return Err(MlflowError::invalid(format!(
                "'{}' is compared as text: use =, !=, LIKE, ILIKE, IN or NOT IN",
                clause.key
            )));
        }
    };
    Ok(tests.into_iter().map(condition).collect())
}

fn numeric_operator(clause: &Clause) -> MlflowResult<CompareOp> {
    match clause.operator {
        Operator::Eq => Ok(CompareOp::Eq),
        Operator::Ne => Ok(CompareOp::Ne),
        Operator::Lt => Ok(CompareOp::Lt),
        Operator::Le => Ok(CompareOp::Le),
        Operator::Gt => Ok(CompareOp::Gt),
        Operator::Ge => Ok(CompareOp::Ge),
        _ => Err(MlflowError::invalid(format!(
            "'{}' is compared as a number: use =, !=, <, <=, > or >=",
            clause.key
        ))),
    }
}

fn number(clause: &Clause) -> MlflowResult<f64> {
    match clause.value {
        Literal::Number(value) => Ok(value),
        _ => Err(MlflowError::invalid(format!(
            "the value compared with '{}' must be a number",
            clause.key
        ))),
    }
}

fn sort_key(order: &SortOrder) -> MlflowResult<SortKey> {
    let term = match order.entity {
        Entity::Metric => SortTerm::Metric(order.key.clone()),
        Entity::Param => SortTerm::Param(order.key.clone()),
        Entity::Tag => SortTerm::Tag(order.key.clone()),
        Entity::Attribute => match order.key.as_str() {
            "start_time" | "created" => SortTerm::Time(TimeAttribute::StartedAt),
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
            return Err(MlflowError::invalid(
                "ordering by datasets is not supported by this server",
            ));
        }
    };
    Ok(SortKey {
        term,
        descending: order.descending,
    })
}
