//! OpenLineage run events (spec 2-0-2): the body of `POST /api/v1/lineage`, its checks, and its
//! mapping to a runledger run.
//!
//! The event's `runId` becomes the run id and the job name the run name. `START` and `RUNNING`
//! map to `running`, `COMPLETE` to `succeeded`, `FAIL` to `failed` and `ABORT` to `cancelled`,
//! while `OTHER` (or no `eventType`) changes no status. The job namespace, the producer, the `parent`
//! run facet and the `sourceCode` and `sourceCodeLocation` job facets become run tags under
//! `openlineage.`. Inputs and outputs become named-dataset lineage nodes.

use super::error::{ApiError, FieldProblem};
use crate::store::{NamedDataset, OpenLineageEvent, RunStatus};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Prefix of the run tags that carry OpenLineage facts.
const TAG_PREFIX: &str = "openlineage.";

/// String fields of the `sourceCodeLocation` job facet and the tag suffix each becomes.
const SOURCE_LOCATION_FIELDS: [(&str, &str); 7] = [
    ("type", "type"),
    ("url", "url"),
    ("repoUrl", "repo_url"),
    ("path", "path"),
    ("version", "version"),
    ("tag", "tag"),
    ("branch", "branch"),
];

/// An OpenLineage run event as producers send it.
///
/// Fields outside the ones listed are accepted and ignored, because the specification lets
/// producers add properties and custom facets.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunEventBody {
    /// `START`, `RUNNING`, `COMPLETE`, `FAIL`, `ABORT` or `OTHER`; missing means `OTHER`.
    pub event_type: Option<String>,
    /// Time of the event, RFC 3339 (`2024-05-01T12:00:00Z`); without an offset it is UTC.
    #[schema(required = true)]
    pub event_time: Option<String>,
    /// URI of the software that sent the event.
    #[schema(required = true)]
    pub producer: Option<String>,
    /// URL of the schema version the event follows.
    #[serde(rename = "schemaURL")]
    #[schema(required = true)]
    pub schema_url: Option<String>,
    /// The run.
    #[schema(required = true)]
    pub run: Option<RunBody>,
    /// The job the run executes.
    #[schema(required = true)]
    pub job: Option<JobBody>,
    /// Datasets the run read.
    pub inputs: Option<Vec<DatasetBody>>,
    /// Datasets the run wrote.
    pub outputs: Option<Vec<DatasetBody>>,
}

/// The `run` of an event.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct RunBody {
    /// UUID of the run, the same in every event of the run.
    #[serde(rename = "runId")]
    #[schema(required = true)]
    pub run_id: Option<String>,
    /// Run facets by name, such as `parent` and `errorMessage`.
    #[schema(value_type = Option<Object>)]
    pub facets: Option<Map<String, Value>>,
}

/// The `job` of an event.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct JobBody {
    /// Namespace of the job, such as the scheduler that runs it.
    #[schema(required = true)]
    pub namespace: Option<String>,
    /// Name of the job within its namespace.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Job facets by name, such as `sourceCode` and `sourceCodeLocation`.
    #[schema(value_type = Option<Object>)]
    pub facets: Option<Map<String, Value>>,
}

/// An input or output dataset of an event.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct DatasetBody {
    /// Namespace, such as `postgres://db:5432` or `s3://bucket`.
    #[schema(required = true)]
    pub namespace: Option<String>,
    /// Name within the namespace, such as `public.orders`.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Dataset facets by name, such as `schema`.
    #[schema(value_type = Option<Object>)]
    pub facets: Option<Map<String, Value>>,
}

/// The `parent` run facet: the run that started this one.
#[derive(Debug, Default, Deserialize)]
struct ParentFacet {
    run: Option<RunBody>,
    job: Option<JobBody>,
}

/// Checks an event and maps it to the store's terms. `user_name` is the caller, recorded as
/// the user of a run the event creates. Every problem is reported at once, each with its field.
pub fn to_event(body: RunEventBody, user_name: &str) -> Result<OpenLineageEvent, ApiError> {
    let mut problems = Problems::default();
    let status = status_of(body.event_type.as_deref(), &mut problems);
    let event_time_ms = match body.event_time.as_deref() {
        Some(text) => problems.check(event_time(text), "eventTime"),
        None => {
            problems.add(
                "eventTime",
                "is missing; give the time of the event in RFC 3339",
            );
            None
        }
    };
    let producer = problems.required(body.producer.as_deref(), "producer");
    problems.required(body.schema_url.as_deref(), "schemaURL");
    let run = run_of(body.run.as_ref(), &mut problems);
    let job = job_of(body.job.as_ref(), &mut problems);
    let inputs = datasets_of(body.inputs.as_deref(), "inputs", &mut problems);
    let outputs = datasets_of(body.outputs.as_deref(), "outputs", &mut problems);
    let parent = parent_of(body.run.as_ref(), &mut problems);
    problems.into_result()?;

    let (Some(status), Some(event_time_ms), Some(producer), Some(run_id), Some((namespace, name))) =
        (status, event_time_ms, producer, run, job)
    else {
        return Err(ApiError::internal(
            "an event passed its checks without a required field",
        ));
    };
    let mut tags = job_tags(&namespace, &name, producer);
    tags.extend(parent_tags(parent.as_ref()));
    tags.extend(source_code_tags(body.job.as_ref()));
    Ok(OpenLineageEvent {
        error: error_of(status, body.run.as_ref()),
        status: status.0,
        run_id,
        event_time_ms,
        job_namespace: namespace,
        job_name: name,
        user_name: user_name.to_owned(),
        parent_run_id: parent.map(|parent| parent.run_id),
        tags,
        inputs,
        outputs,
    })
}

/// Problems found in an event, each naming its field.
#[derive(Debug, Default)]
struct Problems(Vec<FieldProblem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.0.push(FieldProblem {
            field: field.into(),
            problem: problem.into(),
        });
    }

    /// Returns the value, or records the problem under `field`.
    fn check<T>(&mut self, result: Result<T, String>, field: &str) -> Option<T> {
        result.map_err(|problem| self.add(field, problem)).ok()
    }

    /// Returns a present, non-empty text without NUL characters, or records why it is not one.
    fn required<'a>(&mut self, value: Option<&'a str>, field: &str) -> Option<&'a str> {
        match value {
            None => self.add(field, "is missing"),
            Some(text) if text.trim().is_empty() => self.add(field, "is empty"),
            Some(text) if text.contains('\0') => self.add(field, "contains a NUL character"),
            Some(text) => return Some(text),
        }
        None
    }

    fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let fields: Vec<String> = self
            .0
            .iter()
            .map(|problem| format!("`{}` {}", problem.field, problem.problem))
            .collect();
        let mut error = ApiError::invalid(format!(
            "the OpenLineage run event is not valid: {}; see the RunEvent schema of \
             OpenLineage 2-0-2",
            fields.join(", ")
        ));
        error.details = self.0;
        Err(error)
    }
}

/// A status mapped from `eventType`; the inner `None` is `OTHER`.
#[derive(Debug, Clone, Copy)]
struct MappedStatus(Option<RunStatus>);

fn status_of(event_type: Option<&str>, problems: &mut Problems) -> Option<MappedStatus> {
    let status = match event_type.unwrap_or("OTHER") {
        "START" | "RUNNING" => Some(RunStatus::Running),
        "COMPLETE" => Some(RunStatus::Succeeded),
        "FAIL" => Some(RunStatus::Failed),
        "ABORT" => Some(RunStatus::Cancelled),
        "OTHER" => None,
        other => {
            problems.add(
                "eventType",
                format!(
                    "`{}` is not an event type; use START, RUNNING, COMPLETE, FAIL, ABORT or \
                     OTHER",
                    other.escape_debug()
                ),
            );
            return None;
        }
    };
    Some(MappedStatus(status))
}

/// Parses an RFC 3339 time, or an ISO 8601 one without offset as UTC, which Python's
/// `datetime.isoformat()` produces for naive times.
fn event_time(text: &str) -> Result<i64, String> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_millis());
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|time| time.and_utc().timestamp_millis())
        .map_err(|_| {
            format!(
                "`{}` is not a date-time; use RFC 3339 such as 2024-05-01T12:00:00Z",
                text.escape_debug()
            )
        })
}

/// Returns the run id as a lowercase hyphenated UUID.
fn run_of(run: Option<&RunBody>, problems: &mut Problems) -> Option<String> {
    let Some(run) = run else {
        problems.add(
            "run",
            "is missing; runledger records RunEvents, so DatasetEvents and JobEvents are not \
             accepted",
        );
        return None;
    };
    let text = problems.required(run.run_id.as_deref(), "run.runId")?;
    problems.check(uuid_text(text), "run.runId")
}

fn uuid_text(text: &str) -> Result<String, String> {
    uuid::Uuid::parse_str(text)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| format!("`{}` is not a UUID", text.escape_debug()))
}

fn job_of(job: Option<&JobBody>, problems: &mut Problems) -> Option<(String, String)> {
    let Some(job) = job else {
        problems.add("job", "is missing; give the job's namespace and name");
        return None;
    };
    let namespace = problems.required(job.namespace.as_deref(), "job.namespace");
    let name = problems.required(job.name.as_deref(), "job.name");
    Some((namespace?.to_owned(), name?.to_owned()))
}

fn datasets_of(
    datasets: Option<&[DatasetBody]>,
    field: &str,
    problems: &mut Problems,
) -> Vec<NamedDataset> {
    let mut named = Vec::new();
    for (index, dataset) in datasets.unwrap_or_default().iter().enumerate() {
        let namespace = problems.required(
            dataset.namespace.as_deref(),
            &format!("{field}[{index}].namespace"),
        );
        let name = problems.required(dataset.name.as_deref(), &format!("{field}[{index}].name"));
        if let (Some(namespace), Some(name)) = (namespace, name) {
            named.push(NamedDataset {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                facets: dataset.facets.clone().map(Value::Object),
            });
        }
    }
    named
}

/// The parent run and job named by the `parent` run facet.
#[derive(Debug, Clone)]
struct Parent {
    run_id: String,
    job_namespace: Option<String>,
    job_name: Option<String>,
}

fn parent_of(run: Option<&RunBody>, problems: &mut Problems) -> Option<Parent> {
    let facet = run?.facets.as_ref()?.get("parent")?;
    let parent = match ParentFacet::deserialize(facet) {
        Ok(parent) => parent,
        Err(error) => {
            problems.add(
                "run.facets.parent",
                format!("is not a parent run facet: {error}"),
            );
            return None;
        }
    };
    let run = parent.run.unwrap_or_default();
    let text = problems.required(run.run_id.as_deref(), "run.facets.parent.run.runId")?;
    let run_id = problems.check(uuid_text(text), "run.facets.parent.run.runId")?;
    let job = parent.job.unwrap_or_default();
    Some(Parent {
        run_id,
        job_namespace: job.namespace.filter(|text| !text.contains('\0')),
        job_name: job.name.filter(|text| !text.contains('\0')),
    })
}

fn job_tags(namespace: &str, name: &str, producer: &str) -> Vec<(String, String)> {
    vec![
        tag("job.namespace", namespace),
        tag("job.name", name),
        tag("producer", producer),
    ]
}

fn parent_tags(parent: Option<&Parent>) -> Vec<(String, String)> {
    let Some(parent) = parent else {
        return Vec::new();
    };
    let mut tags = vec![tag("parent.run_id", &parent.run_id)];
    if let Some(namespace) = &parent.job_namespace {
        tags.push(tag("parent.job.namespace", namespace));
    }
    if let Some(name) = &parent.job_name {
        tags.push(tag("parent.job.name", name));
    }
    tags
}

/// Tags from the `sourceCode` and `sourceCodeLocation` job facets. Facets are optional
/// metadata, so a field that is not text is skipped rather than rejected.
fn source_code_tags(job: Option<&JobBody>) -> Vec<(String, String)> {
    let Some(facets) = job.and_then(|job| job.facets.as_ref()) else {
        return Vec::new();
    };
    let mut tags = Vec::new();
    if let Some(code) = facets.get("sourceCode") {
        push_text(&mut tags, code, "language", "source_code.language");
        push_text(&mut tags, code, "sourceCode", "source_code");
    }
    if let Some(location) = facets.get("sourceCodeLocation") {
        for (field, suffix) in SOURCE_LOCATION_FIELDS {
            push_text(
                &mut tags,
                location,
                field,
                &format!("source_code_location.{suffix}"),
            );
        }
    }
    tags
}

fn push_text(tags: &mut Vec<(String, String)>, facet: &Value, field: &str, suffix: &str) {
    if let Some(text) = facet.get(field).and_then(Value::as_str)
        && !text.contains('\0')
    {
        tags.push(tag(suffix, text));
    }
}

fn tag(suffix: &str, value: &str) -> (String, String) {
    (format!("{TAG_PREFIX}{suffix}"), value.to_owned())
}

/// Returns the error to record with `failed` or `cancelled`: the `errorMessage` run facet's
/// message when there is one.
fn error_of(status: MappedStatus, run: Option<&RunBody>) -> Option<String> {
    let reported = run
        .and_then(|run| run.facets.as_ref())
        .and_then(|facets| facets.get("errorMessage"))
        .and_then(|facet| facet.get("message"))
        .and_then(Value::as_str)
        .filter(|text| !text.contains('\0'));
    match status.0 {
        Some(RunStatus::Failed) => Some(reported.map_or_else(
            || "the OpenLineage run reported FAIL".to_owned(),
            str::to_owned,
        )),
        Some(RunStatus::Cancelled) => Some("the OpenLineage run reported ABORT".to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: serde_json::Value) -> RunEventBody {
        serde_json::from_value(value).unwrap()
    }

    fn complete_event() -> serde_json::Value {
        serde_json::json!({
            "eventType": "COMPLETE",
            "eventTime": "2024-05-01T12:00:00.500Z",
            "producer": "https://example.com/producer",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            "run": {
                "runId": "0190B6C2-0000-7000-8000-000000000001",
                "facets": {"parent": {
                    "run": {"runId": "0190b6c2-0000-7000-8000-000000000002"},
                    "job": {"namespace": "airflow", "name": "dag"}
                }}
            },
            "job": {"namespace": "airflow", "name": "dag.task", "facets": {
                "sourceCodeLocation": {"type": "git", "url": "https://git.example/repo"}
            }},
            "inputs": [{"namespace": "s3://bucket", "name": "raw.csv"}],
            "outputs": [{"namespace": "s3://bucket", "name": "clean.csv",
                "facets": {"schema": {"fields": []}}}]
        })
    }

    #[test]
    fn maps_complete_event() {
        let event = to_event(body(complete_event()), "alice").unwrap();

        assert_eq!(event.run_id, "0190b6c2-0000-7000-8000-000000000001");
        assert_eq!(event.status, Some(RunStatus::Succeeded));
        assert_eq!(event.event_time_ms, 1_714_564_800_500);
        assert_eq!(event.job_name, "dag.task");
        assert_eq!(
            event.parent_run_id.as_deref(),
            Some("0190b6c2-0000-7000-8000-000000000002")
        );
        assert_eq!(event.inputs[0].node().id, "s3://bucket/raw.csv");
        assert!(event.outputs[0].facets.is_some());
        let url = (
            "openlineage.source_code_location.url".to_owned(),
            "https://git.example/repo".to_owned(),
        );
        assert!(event.tags.contains(&url), "{:?}", event.tags);
    }

    #[test]
    fn names_every_missing_field() {
        let error = to_event(body(serde_json::json!({"eventType": "START"})), "alice").unwrap_err();

        let fields: Vec<&str> = error.details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["eventTime", "producer", "schemaURL", "run", "job"]);
    }

    #[test]
    fn rejects_bad_values() {
        let mut event = complete_event();
        event["eventType"] = "DONE".into();
        event["eventTime"] = "yesterday".into();
        event["run"]["runId"] = "run-1".into();
        event["outputs"][0]["name"] = "".into();

        let error = to_event(body(event), "alice").unwrap_err();

        let fields: Vec<&str> = error.details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(
            fields,
            ["eventType", "eventTime", "run.runId", "outputs[0].name"]
        );
    }

    #[test]
    fn accepts_naive_time_as_utc() {
        assert_eq!(event_time("2024-05-01T12:00:00"), Ok(1_714_564_800_000));
    }
}
