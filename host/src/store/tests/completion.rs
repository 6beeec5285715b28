use super::steps::new_step;
use super::{digest, new_run, on_each_backend};
use crate::store::{
    Direction, NewArtifact, NewEdge, NewLogLine, NewMetric, NewStepLink, Node, StepCompletion,
    StepStatus, Store, StoreError, TraverseDirection,
};

fn line(message: &str) -> NewLogLine {
    NewLogLine {
        level: "info".to_owned(),
        message: message.to_owned(),
        fields: None,
        timestamp_ms: 1_700_000_000_000,
    }
}

fn metric(step_run_id: &str, key: &str, value: f64, step: i64) -> NewMetric {
    NewMetric {
        step_run_id: Some(step_run_id.to_owned()),
        key: key.to_owned(),
        value,
        step,
        timestamp_ms: 1_700_000_000_000,
    }
}

fn artifact(digest: &str, size: u64) -> NewArtifact {
    NewArtifact {
        digest: digest.to_owned(),
        size,
        media_type: "text/plain".to_owned(),
    }
}

fn link(name: &str, digest: &str, direction: Direction) -> NewStepLink {
    NewStepLink {
        name: name.to_owned(),
        digest: digest.to_owned(),
        direction,
    }
}

/// Builds the completion of a step that read `input` and wrote `output`, with one log line,
/// two metric values and the lineage edges input -> step run -> output.
fn succeeded(run_id: &str, step_run_id: &str, input: &str, output: &str) -> StepCompletion {
    let step_node = Node::step_run(step_run_id);
    let mut completion = StepCompletion::new(run_id, step_run_id, StepStatus::Succeeded, 1);
    completion.cache_key = Some(digest('c'));
    completion.logs = vec![line("done")];
    completion.metrics = vec![
        metric(step_run_id, "loss", f64::NAN, 0),
        metric(step_run_id, "loss", 0.5, 1),
    ];
    completion.artifacts = vec![artifact(output, 3)];
    completion.links = vec![
        link("data", input, Direction::Input),
        link("model", output, Direction::Output),
    ];
    completion.edges = vec![
        NewEdge {
            run_id: run_id.to_owned(),
            source: Node::dataset(input),
            target: step_node.clone(),
        },
        NewEdge {
            run_id: run_id.to_owned(),
            source: step_node,
            target: Node::artifact(output),
        },
    ];
    completion
}

#[tokio::test]
async fn attempt_start_keeps_first_start_time() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("attempts")).await.unwrap();
        let step = store
            .create_step_run(new_step(&run.id, "train", None))
            .await
            .unwrap();
        let key = digest('c');

        store
            .start_step_attempt(&step.id, 1, Some(&key))
            .await
            .unwrap();
        let first = store.get_step_run(&step.id).await.unwrap().unwrap();
        assert_eq!(first.status, StepStatus::Running);
        assert_eq!(first.attempts, 1);
        assert_eq!(first.cache_key.as_deref(), Some(key.as_str()));
        assert!(first.started_at.is_some());

        store
            .start_step_attempt(&step.id, 2, Some(&key))
            .await
            .unwrap();
        let retry = store.get_step_run(&step.id).await.unwrap().unwrap();
        assert_eq!(retry.attempts, 2);
        assert_eq!(
            retry.started_at, first.started_at,
            "start time is the first's"
        );
        assert!(retry.ended_at.is_none());
        assert!(retry.error.is_none());

        let missing = store.start_step_attempt("no-such-step", 1, None).await;
        assert!(
            matches!(missing, Err(StoreError::StepRunNotFound(_))),
            "{missing:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn completion_records_everything() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("complete")).await.unwrap();
        let step = store
            .create_step_run(new_step(&run.id, "train", None))
            .await
            .unwrap();
        let (input, output) = (digest('a'), digest('b'));
        store.record_artifact(&input, 5, "text/csv").await.unwrap();
        store
            .append_step_logs(&step.id, &[line("earlier")])
            .await
            .unwrap();
        store.start_step_attempt(&step.id, 1, None).await.unwrap();

        let completion = succeeded(&run.id, &step.id, &input, &output);
        store.complete_step(&completion).await.unwrap();

        let stored = store.get_step_run(&step.id).await.unwrap().unwrap();
        assert_eq!(stored.status, StepStatus::Succeeded);
        assert_eq!(stored.attempts, 1);
        assert_eq!(stored.cache_key, completion.cache_key);
        assert!(stored.ended_at.is_some());
        let logs = store.list_step_logs(&step.id, None, None).await.unwrap();
        let seqs: Vec<i64> = logs.iter().map(|l| l.seq).collect();
        assert_eq!(seqs, [0, 1], "new lines follow the stored ones");
        assert_eq!(logs[1].message, "done");

        let history = store.metric_history(&run.id, "loss").await.unwrap();
        assert_eq!(history.len(), 2);
        assert!(history[0].value.is_nan());
        let latest = store.latest_metrics(&run.id).await.unwrap();
        assert_eq!(latest[0].value, 0.5, "the higher step is the latest");

        let outputs = store.step_output_artifacts(&step.id).await.unwrap();
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].link.digest, output);
        assert_eq!(outputs[0].size, 3);
        let inputs = store.step_inputs(&step.id).await.unwrap();
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0].digest, input);
        let upstream = store
            .traverse(Node::artifact(&output), TraverseDirection::Upstream, None)
            .await
            .unwrap();
        assert_eq!(upstream.nodes.last(), Some(&Node::dataset(&input)));
    })
    .await;
}

#[tokio::test]
async fn completion_repeated_is_idempotent() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("again")).await.unwrap();
        let step = store
            .create_step_run(new_step(&run.id, "train", None))
            .await
            .unwrap();
        let (input, output) = (digest('a'), digest('b'));
        store.record_artifact(&input, 5, "text/csv").await.unwrap();
        let mut completion = succeeded(&run.id, &step.id, &input, &output);
        completion.artifacts.push(artifact(&output, 3));
        completion
            .links
            .push(link("model", &output, Direction::Output));

        store.complete_step(&completion).await.unwrap();
        store.complete_step(&completion).await.unwrap();

        let links = store.run_artifacts(&run.id).await.unwrap();
        assert_eq!(
            links.len(),
            2,
            "a name linked again to its digest keeps one link"
        );
        let graph = store
            .traverse(
                Node::step_run(&step.id),
                TraverseDirection::Downstream,
                None,
            )
            .await
            .unwrap();
        assert_eq!(graph.edges.len(), 1, "an edge is recorded once per run");
        let logs = store.list_step_logs(&step.id, None, None).await.unwrap();
        assert_eq!(logs.len(), 2, "log lines append");
    })
    .await;
}

#[tokio::test]
async fn completion_failure_writes_nothing() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("atomic")).await.unwrap();
        let step = store
            .create_step_run(new_step(&run.id, "train", None))
            .await
            .unwrap();
        let (input, output) = (digest('a'), digest('b'));
        store.record_artifact(&input, 5, "text/csv").await.unwrap();
        let mut completion = succeeded(&run.id, &step.id, &input, &output);
        completion
            .links
            .push(link("model", &input, Direction::Output));

        let conflict = store.complete_step(&completion).await.unwrap_err();
        assert!(
            matches!(conflict, StoreError::ArtifactLinkConflict { .. }),
            "{conflict}"
        );

        let stored = store.get_step_run(&step.id).await.unwrap().unwrap();
        assert_eq!(stored.status, StepStatus::Pending);
        assert!(stored.ended_at.is_none());
        assert!(store.get_artifact(&output).await.unwrap().is_none());
        assert!(store.run_artifacts(&run.id).await.unwrap().is_empty());
        let logs = store.list_step_logs(&step.id, None, None).await.unwrap();
        assert!(logs.is_empty());
        let history = store.metric_history(&run.id, "loss").await.unwrap();
        assert!(history.is_empty());
    })
    .await;
}

#[tokio::test]
async fn completion_rejects_invalid_records() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("invalid")).await.unwrap();
        let other_run = store.create_run(new_run("other")).await.unwrap();
        let step = store
            .create_step_run(new_step(&run.id, "train", None))
            .await
            .unwrap();
        let (input, output) = (digest('a'), digest('b'));
        store
            .record_artifact(&output, 3, "text/plain")
            .await
            .unwrap();
        let valid = || succeeded(&run.id, &step.id, &input, &output);
        let complete =
            async |completion: StepCompletion| store.complete_step(&completion).await.unwrap_err();

        let mut running = valid();
        running.status = StepStatus::Running;
        let error = complete(running).await;
        assert!(
            matches!(error, StoreError::StepStatusNotFinal { .. }),
            "{error}"
        );

        let error = complete(valid()).await;
        assert!(
            matches!(error, StoreError::ArtifactNotRecorded(_)),
            "{error}"
        );

        store.record_artifact(&input, 5, "text/csv").await.unwrap();
        let mut resized = valid();
        resized.artifacts = vec![artifact(&output, 4)];
        let error = complete(resized).await;
        assert!(
            matches!(error, StoreError::ArtifactSizeMismatch { .. }),
            "{error}"
        );

        let mut dangling = valid();
        dangling.cached_from = Some("no-such-step".to_owned());
        let error = complete(dangling).await;
        assert!(matches!(error, StoreError::StepRunNotFound(_)), "{error}");

        let mut foreign = valid();
        foreign.run_id = other_run.id.clone();
        let error = complete(foreign).await;
        assert!(
            matches!(error, StoreError::StepRunNotInRun { .. }),
            "{error}"
        );

        let mut missing_run = valid();
        missing_run.run_id = "no-such-run".to_owned();
        let error = complete(missing_run).await;
        assert!(matches!(error, StoreError::RunNotFound(_)), "{error}");

        let mut missing_step = valid();
        missing_step.step_run_id = "no-such-step".to_owned();
        let error = complete(missing_step).await;
        assert!(matches!(error, StoreError::StepRunNotFound(_)), "{error}");

        let mut invalid = valid();
        invalid.links.push(link("extra", "abc", Direction::Output));
        let error = complete(invalid).await;
        assert!(matches!(error, StoreError::InvalidDigest(_)), "{error}");
    })
    .await;
}

#[tokio::test]
async fn completion_chunks_large_batches() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("large")).await.unwrap();
        let step = store
            .create_step_run(new_step(&run.id, "train", None))
            .await
            .unwrap();
        let mut completion = StepCompletion::new(&run.id, &step.id, StepStatus::Failed, 3);

        // More rows than one statement of six columns can bind on SQLite (5,461).
        let count = 6_000;
        completion.logs = (0..count).map(|i| line(&format!("line {i}"))).collect();
        completion.metrics = (0..count)
            .map(|i| metric(&step.id, &format!("m{}", i % 7), i as f64, i))
            .collect();
        store.complete_step(&completion).await.unwrap();

        let logs = store.list_step_logs(&step.id, None, None).await.unwrap();
        assert_eq!(logs.len(), count as usize);
        assert_eq!(logs.last().map(|l| l.seq), Some(count - 1));
        let metrics = store.step_metrics(&step.id).await.unwrap();
        assert_eq!(metrics.len(), count as usize);
        let latest = store.latest_metrics(&run.id).await.unwrap();
        assert_eq!(latest.len(), 7);
        assert_eq!(
            latest[0].value,
            (count - 1) as f64,
            "m0 holds the last value"
        );
    })
    .await;
}

#[tokio::test]
async fn retried_attempt_records_logs_and_metrics() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("retry")).await.unwrap();
        let other_run = store.create_run(new_run("other")).await.unwrap();
        let step = store
            .create_step_run(new_step(&run.id, "train", None))
            .await
            .unwrap();

        let metrics = [metric(&step.id, "loss", 2.0, 0)];
        store
            .record_step_attempt(&run.id, &step.id, &[line("attempt 1 failed")], &metrics)
            .await
            .unwrap();

        let logs = store.list_step_logs(&step.id, None, None).await.unwrap();
        assert_eq!(logs.len(), 1);
        let history = store.metric_history(&run.id, "loss").await.unwrap();
        assert_eq!(history.len(), 1);
        let foreign = store
            .record_step_attempt(&other_run.id, &step.id, &[line("x")], &[])
            .await;
        assert!(
            matches!(foreign, Err(StoreError::StepRunNotInRun { .. })),
            "{foreign:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn step_runs_created_in_batch_keep_order() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("batch")).await.unwrap();
        let names: Vec<String> = (0..50).map(|i| format!("s{i}")).collect();
        let steps = names
            .iter()
            .map(|name| new_step(&run.id, name, None))
            .collect();

        let ids = store.create_step_runs(steps).await.unwrap();

        let listed = store.list_step_runs(&run.id).await.unwrap();
        let listed_ids: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
        let listed_names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(listed_ids, ids);
        assert_eq!(listed_names, names);
        assert!(listed.iter().all(|s| s.status == StepStatus::Pending));
        let missing = store
            .create_step_runs(vec![new_step("no-such-run", "s", None)])
            .await;
        assert!(
            matches!(missing, Err(StoreError::RunNotFound(_))),
            "{missing:?}"
        );
    })
    .await;
}
