//! `registered-models/search` and `model-versions/search`: MLflow's registry filters and
//! orders, run in the database with offset page tokens, as MLflow's server pages them.
//!
//! Models filter on `name` and `tags.KEY`; versions on `name`, `run_id`, `source_path`,
//! `version_number` and `tags.KEY`. Text keys take `=`, `!=`, `LIKE`, `ILIKE`, `IN` and
//! `NOT IN`, and `version_number` the numeric comparators. A missing tag never matches,
//! except that a model or version without `mlflow.prompt.is_prompt` passes
//! `!= 'true'` and `= 'false'`, because the MLflow client adds the first to every search to
//! leave prompts out.

use super::error::{MlflowError, MlflowResult};
use super::experiments::{decode_offset, encode_offset};
use super::filter::{self, Clause, Entity, Literal, Operator};
use super::model_versions::version_json;
use super::registry::model_json;
use super::request::{MlflowRequest, lenient_i64, string_list};
use super::run_filter::{number, numeric_operator, text_tests};
use crate::gates::VersionView;
use crate::server::state::AppState;
use crate::store::mlflow::{FoundVersion, RegistryCondition, RegistryKey, RegistrySearch};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

/// Page size of a model search that names none, as on an MLflow 3.x server.
const DEFAULT_MODELS_PER_PAGE: i64 = 100;

/// Largest page of a model search, as on an MLflow 3.x server.
const MAX_MODELS_PER_PAGE: i64 = 1000;

/// Page size of a version search that names none, as on an MLflow 3.x server.
const DEFAULT_VERSIONS_PER_PAGE: i64 = 10_000;

/// Largest page of a version search, as on an MLflow 3.x server.
const MAX_VERSIONS_PER_PAGE: i64 = 200_000;

/// Tag with which the MLflow client marks registered prompts.
const IS_PROMPT_TAG: &str = "mlflow.prompt.is_prompt";

#[derive(Debug, Deserialize)]
pub(super) struct SearchRegistry {
    filter: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "string_list")]
    order_by: Vec<String>,
    page_token: Option<String>,
}

/// The kind of item a search lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    Models,
    Versions,
}

/// `GET registered-models/search`.
pub(super) async fn search_models(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<SearchRegistry>,
) -> MlflowResult<Json<Value>> {
    let page_size = page_size(&request, DEFAULT_MODELS_PER_PAGE, MAX_MODELS_PER_PAGE)?;
    let search = registry_search(&request, Listing::Models, page_size)?;
    let mut names = state.store().mlflow_search_models(&search).await?;
    let more = names.len() as u64 > page_size;
    names.truncate(page_size as usize);

    let mut page = Vec::with_capacity(names.len());
    for name in &names {
        let model = state.gates().model(name).await?;
        page.push(model_json(&state, &model).await?);
    }
    let mut body = json!({ "registered_models": page });
    if more {
        body["next_page_token"] = json!(encode_offset(search.offset as usize + names.len()));
    }
    Ok(Json(body))
}

/// `GET model-versions/search`.
pub(super) async fn search_versions(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<SearchRegistry>,
) -> MlflowResult<Json<Value>> {
    let page_size = page_size(&request, DEFAULT_VERSIONS_PER_PAGE, MAX_VERSIONS_PER_PAGE)?;
    let search = registry_search(&request, Listing::Versions, page_size)?;
    let mut found = state.store().mlflow_search_versions(&search).await?;
    let more = found.len() as u64 > page_size;
    found.truncate(page_size as usize);

    let count = found.len();
    let page: Vec<Value> = found
        .into_iter()
        .map(|item| version_json(&version_view(item)))
        .collect();
    let mut body = json!({ "model_versions": page });
    if more {
        body["next_page_token"] = json!(encode_offset(search.offset as usize + count));
    }
    Ok(Json(body))
}

fn page_size(request: &SearchRegistry, default: i64, max: i64) -> MlflowResult<u64> {
    let size = request.max_results.unwrap_or(default);
    if !(1..=max).contains(&size) {
        return Err(MlflowError::invalid(format!(
            "invalid value {size} for parameter 'max_results': give 1 to {max}"
        )));
    }
    Ok(size as u64)
}

/// Builds the store's search of one page. It reads one item more than the page, so the
/// handler can tell whether another page follows.
fn registry_search(
    request: &SearchRegistry,
    listing: Listing,
    page_size: u64,
) -> MlflowResult<RegistrySearch> {
    let mut conditions = Vec::new();
    for clause in filter::parse_filter(request.filter.as_deref().unwrap_or(""))? {
        conditions.extend(condition(&clause, listing)?);
    }
    let offset = decode_offset(request.page_token.as_deref())? as u64;
    Ok(RegistrySearch {
        conditions,
        order: order(&request.order_by, listing)?,
        offset,
        limit: page_size + 1,
    })
}

fn condition(clause: &Clause, listing: Listing) -> MlflowResult<Vec<RegistryCondition>> {
    let versions = listing == Listing::Versions;
    match (clause.entity, clause.key.as_str()) {
        (Entity::Attribute, "name") => text_tests(clause, RegistryCondition::Name),
        (Entity::Attribute, "run_id") if versions => text_tests(clause, RegistryCondition::RunId),
        (Entity::Attribute, "source_path") if versions => {
            text_tests(clause, RegistryCondition::Source)
        }
        (Entity::Attribute, "version_number") if versions => {
            let value = number(clause)?;
            if value.fract() != 0.0 {
                return Err(MlflowError::invalid(format!(
                    "invalid version_number {value}: compare with a whole number"
                )));
            }
            Ok(vec![RegistryCondition::VersionNumber(
                numeric_operator(clause)?,
                value as i64,
            )])
        }
        (Entity::Tag, key) => text_tests(clause, |test| RegistryCondition::Tag {
            key: key.to_owned(),
            missing_matches: prompt_filter_passes_untagged(key, clause),
            test,
        }),
        _ => Err(MlflowError::invalid(match listing {
            Listing::Models => format!(
                "invalid filter key '{}' for registered models: use name or tags.KEY",
                clause.key
            ),
            Listing::Versions => format!(
                "invalid filter key '{}' for model versions: use name, run_id, source_path, \
                 version_number or tags.KEY",
                clause.key
            ),
        })),
    }
}

/// Returns whether an item without the tag passes the clause: only the prompt tag compared
/// with `!= 'true'` or `= 'false'`, as on an MLflow server.
fn prompt_filter_passes_untagged(key: &str, clause: &Clause) -> bool {
    let Literal::Text(value) = &clause.value else {
        return false;
    };
    key == IS_PROMPT_TAG
        && matches!(
            (clause.operator, value.as_str()),
            (Operator::Ne, "true") | (Operator::Eq, "false")
        )
}

/// Translates `order_by` and appends MLflow's tie-breakers: the model name ascending, then,
/// for versions, the version number descending. Versions without `order_by` are newest
/// change first.
fn order(terms: &[String], listing: Listing) -> MlflowResult<Vec<(RegistryKey, bool)>> {
    let mut keys: Vec<(RegistryKey, bool)> = Vec::with_capacity(terms.len() + 3);
    if terms.is_empty() && listing == Listing::Versions {
        keys.push((RegistryKey::LastUpdateTime, true));
    }
    for text in terms {
        let term = filter::parse_order_by(text)?;
        let key = sort_key(term.entity, &term.key, listing).ok_or_else(|| {
            MlflowError::invalid(match listing {
                Listing::Models => format!(
                    "invalid order_by key '{}' for registered models: use name, \
                     creation_timestamp or last_updated_timestamp",
                    term.key
                ),
                Listing::Versions => format!(
                    "invalid order_by key '{}' for model versions: use name, version_number, \
                     creation_timestamp or last_updated_timestamp",
                    term.key
                ),
            })
        })?;
        if keys.iter().any(|(earlier, _)| *earlier == key) {
            return Err(MlflowError::invalid(format!(
                "order_by names the key of '{text}' twice; give each key once"
            )));
        }
        keys.push((key, term.descending));
    }
    if !keys.iter().any(|(key, _)| *key == RegistryKey::Name) {
        keys.push((RegistryKey::Name, false));
    }
    if listing == Listing::Versions
        && !keys
            .iter()
            .any(|(key, _)| *key == RegistryKey::VersionNumber)
    {
        keys.push((RegistryKey::VersionNumber, true));
    }
    Ok(keys)
}

/// Maps an order_by key. `timestamp` orders by the last update, as on an MLflow server.
fn sort_key(entity: Entity, key: &str, listing: Listing) -> Option<RegistryKey> {
    if entity != Entity::Attribute {
        return None;
    }
    match key {
        "name" => Some(RegistryKey::Name),
        "version_number" if listing == Listing::Versions => Some(RegistryKey::VersionNumber),
        "creation_timestamp" => Some(RegistryKey::CreationTime),
        "last_updated_timestamp" | "timestamp" => Some(RegistryKey::LastUpdateTime),
        _ => None,
    }
}

/// Builds the view of a found version. `version_json` reads no validations, so none are
/// loaded.
fn version_view(found: FoundVersion) -> VersionView {
    let version = found.version;
    VersionView {
        model: found.model,
        version: u64::try_from(version.version).unwrap_or_default(),
        run_id: version.run_id,
        artifact_name: version.artifact_name,
        artifact_digest: version.artifact_digest,
        source: version.source,
        description: version.description,
        status: version.status.to_string(),
        tags: found.tags,
        aliases: found.aliases,
        created_by: version.created_by,
        created_at: version.created_at,
        updated_at: version.updated_at,
        validations: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(filter: &str, listing: Listing) -> MlflowResult<Vec<RegistryCondition>> {
        let mut all = Vec::new();
        for clause in filter::parse_filter(filter)? {
            all.extend(condition(&clause, listing)?);
        }
        Ok(all)
    }

    #[test]
    fn untagged_items_pass_only_the_prompt_exclusion() {
        let excluded = parsed("tags.`mlflow.prompt.is_prompt` != 'true'", Listing::Models);
        assert!(matches!(
            excluded.unwrap()[0],
            RegistryCondition::Tag {
                missing_matches: true,
                ..
            }
        ));
        let other = parsed("tags.team != 'ml'", Listing::Models).unwrap();
        assert!(matches!(
            other[0],
            RegistryCondition::Tag {
                missing_matches: false,
                ..
            }
        ));
    }

    #[test]
    fn version_keys_are_rejected_for_models() {
        assert!(parsed("run_id = 'x'", Listing::Models).is_err());
        assert!(parsed("run_id = 'x'", Listing::Versions).is_ok());
        assert!(parsed("version_number > 1.5", Listing::Versions).is_err());
    }

    #[test]
    fn version_order_defaults_to_latest_change() {
        let keys = order(&[], Listing::Versions).unwrap();
        assert_eq!(
            keys,
            vec![
                (RegistryKey::LastUpdateTime, true),
                (RegistryKey::Name, false),
                (RegistryKey::VersionNumber, true)
            ]
        );
        let keys = order(&["name DESC".to_owned()], Listing::Models).unwrap();
        assert_eq!(keys, vec![(RegistryKey::Name, true)]);
        assert!(
            order(
                &["name".to_owned(), "name DESC".to_owned()],
                Listing::Models
            )
            .is_err()
        );
    }
}
