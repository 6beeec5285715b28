//! Translation of the comparisons of a run search's filter into the store's conditions, with
//! the keys and comparators that MLflow's server (3.17) accepts for each kind of key:
//!
//! - `metrics.KEY`: `=`, `!=`, `<`, `<=`, `>`, `>=` with a number.
//! - `params.KEY` and `tags.KEY`: `=`, `!=`, `LIKE`, `ILIKE`, `IN`, `NOT IN`, `IS NULL` and
//!   `IS NOT NULL`.
//! - `attributes.run_id`, `run_name` (or `` `run name` ``), `user_id`, `status` and
//!   `artifact_uri`: `=`, `!=`, `LIKE`, `ILIKE`, `IN`, `NOT IN`.
//! - `attributes.start_time` (or `created`) and `end_time`: numeric comparators.
//! - `datasets.name`, `datasets.digest` and `datasets.context`: `=`, `!=`, `LIKE`, `ILIKE`,
//!   `IN`, `NOT IN`. A run matches when one of its dataset inputs does.
//!
//! `IN` and `NOT IN` on params and tags go beyond MLflow, which rejects them there.
//!
//! NOTE: a NaN metric value matches no comparison, `!=` included, and sorts with the runs that
//! lack the metric; MLflow's server matches NaN with `!=` and sorts it before missing values.
//! `start_time` filters and sorts use the time the run started, so a queued native run, which
//! MLflow shows with its creation time, never matches a `start_time` comparison.

use super::error::{MlflowError, MlflowResult};
use super::filter::{Clause, Entity, Literal, Operator, like};
use super::proto::parse_status;
use crate::store::{CompareOp, Comparison, DatasetField, TextAttribute, TextMatch, TimeAttribute};

/// MLflow's run status names, which `status` filters compare with.
const STATUS_NAMES: [&str; 5] = ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"];

/// Returns the attribute that an alias names, as MLflow's server resolves aliases.
pub(super) fn translate_key_alias(key: &str) -> &str {
    match key {
        "created" | "Created" => "start_time",
        "run name" | "Run name" | "Run Name" => "run_name",
        other => other,
    }
}

/// Translates one MLflow comparison into the store's conditions, all of which must hold.
/// `roots` gives the artifact location of each searched project, by project name.
pub(super) fn translate(
    clause: &Clause,
    roots: &[(String, String)],
) -> MlflowResult<Vec<Comparison>> {
    match clause.entity {
        Entity::Metric => Ok(vec![Comparison::Metric {
            key: clause.key.clone(),
            op: numeric_operator(clause)?,
            value: number(clause)?,
        }]),
        Entity::Param => keyed(
            clause,
            |key, exists| Comparison::ParamExists { key, exists },
            |test| Comparison::Param {
                key: clause.key.clone(),
                test,
            },
        ),
        Entity::Tag => keyed(
            clause,
            |key, exists| Comparison::TagExists { key, exists },
            |test| Comparison::Tag {
                key: clause.key.clone(),
                test,
            },
        ),
        Entity::Attribute => attribute(clause, roots),
        Entity::Dataset => dataset(clause),
    }
}

/// Translates a param or tag comparison: a presence test, or a test of its value.
fn keyed(
    clause: &Clause,
    presence: impl Fn(String, bool) -> Comparison,
    condition: impl Fn(TextMatch) -> Comparison,
) -> MlflowResult<Vec<Comparison>> {
    match clause.operator {
        Operator::IsNull => Ok(vec![presence(clause.key.clone(), false)]),
        Operator::IsNotNull => Ok(vec![presence(clause.key.clone(), true)]),
        _ => text_tests(clause, condition),
    }
}

fn attribute(clause: &Clause, roots: &[(String, String)]) -> MlflowResult<Vec<Comparison>> {
    let text =
        |attribute: TextAttribute| text_tests(clause, |test| Comparison::Text { attribute, test });
    let time = |attribute: TimeAttribute| -> MlflowResult<Vec<Comparison>> {
        Ok(vec![Comparison::Time {
            attribute,
            op: numeric_operator(clause)?,
            value: number(clause)? as i64,
        }])
    };
    match translate_key_alias(&clause.key) {
        "run_id" => text(TextAttribute::RunId),
        "run_name" => text(TextAttribute::Name),
        "user_id" => text(TextAttribute::User),
        "status" => status(clause),
        "artifact_uri" => text_tests(clause, |test| Comparison::ArtifactUri {
            roots: roots.to_vec(),
            test,
        }),
        "start_time" => time(TimeAttribute::StartedAt),
        "end_time" => time(TimeAttribute::EndedAt),
        other => Err(MlflowError::invalid(format!(
            "invalid attribute key '{other}': filter on run_id, run_name, user_id, status, \
             artifact_uri, start_time or end_time"
        ))),
    }
}

/// Translates a `datasets.KEY` comparison. `NOT IN` keeps one condition, because a run
/// matches when one of its datasets is outside the list.
fn dataset(clause: &Clause) -> MlflowResult<Vec<Comparison>> {
    let field = match clause.key.as_str() {
        "name" => DatasetField::Name,
        "digest" => DatasetField::Digest,
        "context" => DatasetField::Context,
        other => {
            return Err(MlflowError::invalid(format!(
                "invalid dataset key '{other}': filter on datasets.name, datasets.digest or \
                 datasets.context"
            )));
        }
    };
    if clause.operator == Operator::NotIn {
        return Ok(vec![Comparison::Dataset {
            field,
            test: TextMatch::In(list(clause)?),
            negated: true,
        }]);
    }
    text_tests(clause, |test| Comparison::Dataset {
        field,
        test,
        negated: false,
    })
}

/// Translates a status comparison. MLflow's status names map to one or two run statuses, and
/// a `LIKE` pattern is matched against the names here.
fn status(clause: &Clause) -> MlflowResult<Vec<Comparison>> {
    let attribute = TextAttribute::Status;
    let names: Vec<String> = match (&clause.operator, &clause.value) {
        (Operator::Like | Operator::ILike, Literal::Text(pattern)) => {
            let ignore_case = clause.operator == Operator::ILike;
            STATUS_NAMES
                .iter()
                .filter(|name| like(name, pattern, ignore_case))
                .map(|name| (*name).to_owned())
                .collect()
        }
        (_, Literal::Text(name)) => vec![name.clone()],
        (_, Literal::List(names)) => names.clone(),
        _ => {
            return Err(MlflowError::invalid(
                "status is compared with a quoted status name, such as 'FINISHED'",
            ));
        }
    };
    let mut statuses = Vec::new();
    for name in &names {
        for status in parse_status(name)? {
            statuses.push(status.to_string());
        }
    }
    match clause.operator {
        Operator::Eq | Operator::In | Operator::Like | Operator::ILike => {
            Ok(vec![Comparison::Text {
                attribute,
                test: TextMatch::In(statuses),
            }])
        }
        Operator::Ne | Operator::NotIn => Ok(statuses
            .into_iter()
            .map(|status| Comparison::Text {
                attribute,
                test: TextMatch::Ne(status),
            })
            .collect()),
        _ => Err(MlflowError::invalid(
            "status is compared with =, !=, LIKE, ILIKE, IN or NOT IN",
        )),
    }
}

/// Translates a text comparison. `NOT IN` becomes one `!=` per value, which is the same test
/// on a key with one value.
pub(super) fn text_tests<T>(
    clause: &Clause,
    condition: impl Fn(TextMatch) -> T,
) -> MlflowResult<Vec<T>> {
    let text = || match &clause.value {
        Literal::Text(text) => Ok(text.clone()),
        _ => Err(MlflowError::invalid(format!(
            "the value compared with '{}' must be a quoted string",
            clause.key
        ))),
    };
    let tests = match clause.operator {
        Operator::Eq => vec![TextMatch::Eq(text()?)],
        Operator::Ne => vec![TextMatch::Ne(text()?)],
        Operator::Like => vec![TextMatch::Like(text()?)],
        Operator::ILike => vec![TextMatch::ILike(text()?)],
        Operator::In => vec![TextMatch::In(list(clause)?)],
        Operator::NotIn => list(clause)?.into_iter().map(TextMatch::Ne).collect(),
        _ => {
            return Err(MlflowError::invalid(format!(
                "'{}' is compared as text: use =, !=, LIKE, ILIKE, IN or NOT IN",
                clause.key
            )));
        }
    };
    Ok(tests.into_iter().map(condition).collect())
}

fn list(clause: &Clause) -> MlflowResult<Vec<String>> {
    match &clause.value {
        Literal::List(items) => Ok(items.clone()),
        _ => Err(MlflowError::invalid(format!(
            "IN on '{}' takes a parenthesized list of quoted strings",
            clause.key
        ))),
    }
}

pub(super) fn numeric_operator(clause: &Clause) -> MlflowResult<CompareOp> {
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

pub(super) fn number(clause: &Clause) -> MlflowResult<f64> {
    match clause.value {
        Literal::Number(value) => Ok(value),
        _ => Err(MlflowError::invalid(format!(
            "the value compared with '{}' must be a number",
            clause.key
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::mlflow::filter::parse_filter;

    fn conditions(filter: &str) -> MlflowResult<Vec<Comparison>> {
        let roots = vec![("p".to_owned(), "mlflow-artifacts:/1".to_owned())];
        let mut all = Vec::new();
        for clause in parse_filter(filter)? {
            all.extend(translate(&clause, &roots)?);
        }
        Ok(all)
    }

    #[test]
    fn status_like_matches_status_names() {
        let found = conditions("attributes.status LIKE 'F%'").unwrap();
        let expected = TextMatch::In(vec!["succeeded".to_owned(), "failed".to_owned()]);
        assert_eq!(
            found,
            vec![Comparison::Text {
                attribute: TextAttribute::Status,
                test: expected
            }]
        );
        let none = conditions("status ILIKE 'r%'").unwrap();
        assert_eq!(
            none,
            vec![Comparison::Text {
                attribute: TextAttribute::Status,
                test: TextMatch::In(vec!["running".to_owned()])
            }]
        );
    }

    #[test]
    fn dataset_not_in_stays_one_condition() {
        let found = conditions("datasets.name NOT IN ('a', 'b')").unwrap();
        assert_eq!(found.len(), 1);
        assert!(matches!(
            &found[0],
            Comparison::Dataset { negated: true, .. }
        ));
    }

    #[test]
    fn null_tests_apply_to_params_and_tags_only() {
        let found = conditions("params.seed IS NULL").unwrap();
        assert_eq!(
            found,
            vec![Comparison::ParamExists {
                key: "seed".to_owned(),
                exists: false
            }]
        );
        assert!(conditions("metrics.loss IS NULL").is_err());
        assert!(conditions("attributes.run_id IS NOT NULL").is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(conditions("attributes.lifecycle = 'x'").is_err());
        assert!(conditions("datasets.schema = 'x'").is_err());
    }
}
