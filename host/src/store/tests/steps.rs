use super::{digest, new_run, on_each_backend};
use crate::store::{
    Direction, NewLogLine, NewPlugin, NewStepRun, PluginRef, StepRunUpdate, StepStatus, Store,
    StoreError,
};

/// Builds a pending wasm step of `run_id` with an optional cache key.
pub(super) fn new_step(run_id: &str, name: &str, cache_key: Option<&str>) -> NewStepRun {
    NewStepRun {
        run_id: run_id.to_owned(),
        name: name.to_owned(),
        plugin: Some(PluginRef {
            name: "trainer".to_owned(),
            version: "1.0.0".to_owned(),
            digest: digest('e'),
        }),
        executor: "wasm".to_owned(),
        status: StepStatus::Pending,
        params: serde_json::json!({ "lr": 0.1 }),
        cache_key: cache_key.map(str::to_owned),
        cached_from: None,
    }
}

/// Builds the update that starts attempt number `attempts`.
pub(super) fn running(attempts: i32) -> StepRunUpdate {
    StepRunUpdate {
        status: StepStatus::Running,
        attempts: Some(attempts),
        error: None,
    }
}

fn finished(status: StepStatus) -> StepRunUpdate {
    StepRunUpdate {
        status,
        attempts: None,
        error: None,
    }
}

#[tokio::test]
async fn step_run_retry_and_finish() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("steps")).await.unwrap();
        let step = store
            .create_step_run(new_step(&run.id, "train", None))
            .await
            .unwrap();
        assert_eq!(step.status, StepStatus::Pending);
        assert_eq!(step.attempts, 0);
        assert_eq!(step.params_json, serde_json::json!({ "lr": 0.1 }));

        let first = store.update_step_run(&step.id, running(1)).await.unwrap();
        let failed = StepRunUpdate {
            status: StepStatus::Failed,
            attempts: None,
            error: Some("out of fuel".into()),
        };
        store.update_step_run(&step.id, failed).await.unwrap();
        let retry = store.update_step_run(&step.id, running(2)).await.unwrap();
        assert_eq!(
            retry.started_at, first.started_at,
            "start time is the first attempt's"
        );
        assert!(retry.ended_at.is_none());
        assert!(retry.error.is_none());

        let done = store
            .update_step_run(&step.id, finished(StepStatus::Succeeded))
            .await
            .unwrap();
        assert_eq!(done.attempts, 2);
        assert!(done.ended_at.is_some());

        let missing = store
            .update_step_run("no-such-step", running(1))
            .await
            .unwrap_err();
        assert!(
            matches!(missing, StoreError::StepRunNotFound(_)),
            "{missing}"
        );
    })
    .await;
}

#[tokio::test]
async fn cache_lookup_finds_latest_reusable() {
    on_each_backend(async |store: &Store| {
        let key = digest('c');
        let run = store.create_run(new_run("cache")).await.unwrap();
        let step = async |status: StepStatus, cache_key: &str| {
            let created = store
                .create_step_run(new_step(&run.id, "train", Some(cache_key)))
                .await
                .unwrap();
            store
                .update_step_run(&created.id, finished(status))
                .await
                .unwrap()
        };

        assert!(store.find_cached_step_run(&key).await.unwrap().is_none());

        let succeeded = step(StepStatus::Succeeded, &key).await;
        let _failed_later = step(StepStatus::Failed, &key).await;
        let found = store.find_cached_step_run(&key).await.unwrap().unwrap();
        assert_eq!(found.id, succeeded.id, "failed step runs are not reused");

        let mut hit = new_step(&run.id, "train", Some(&key));
        hit.status = StepStatus::Cached;
        hit.cached_from = Some(succeeded.id.clone());
        let cached = store.create_step_run(hit).await.unwrap();
        assert!(cached.ended_at.is_some());
        let found = store.find_cached_step_run(&key).await.unwrap().unwrap();
        assert_eq!(found.id, cached.id, "the newest reusable step run wins");
        assert_eq!(found.cached_from.as_deref(), Some(succeeded.id.as_str()));

        let other = digest('d');
        step(StepStatus::Failed, &other).await;
        assert!(store.find_cached_step_run(&other).await.unwrap().is_none());

        let late = store
            .create_step_run(new_step(&run.id, "late", None))
            .await
            .unwrap();
        store
            .set_step_cache(&late.id, Some(&other), Some(&succeeded.id))
            .await
            .unwrap();
        let late = store.get_step_run(&late.id).await.unwrap().unwrap();
        assert_eq!(late.cache_key.as_deref(), Some(other.as_str()));
        assert_eq!(late.cached_from.as_deref(), Some(succeeded.id.as_str()));
        let dangling = store
            .set_step_cache(&late.id, None, Some("no-such-step"))
            .await;
        assert!(matches!(dangling, Err(StoreError::StepRunNotFound(_))));
    })
    .await;
}

#[tokio::test]
async fn step_outputs_and_link_rules() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("outputs")).await.unwrap();
        let other_run = store.create_run(new_run("other")).await.unwrap();
        let step = store
            .create_step_run(new_step(&run.id, "train", None))
            .await
            .unwrap();
        let (model, data) = (digest('a'), digest('b'));
        store
            .record_artifact(&model, 10, "application/onnx")
            .await
            .unwrap();
        store.record_artifact(&data, 20, "text/csv").await.unwrap();

        let again = store
            .record_artifact(&model, 10, "text/plain")
            .await
            .unwrap();
        assert_eq!(
            again.media_type, "application/onnx",
            "the first record stays"
        );
        let size = store.record_artifact(&model, 11, "application/onnx").await;
        assert!(matches!(size, Err(StoreError::ArtifactSizeMismatch { .. })));

        let link = async |name: &str, digest: &str, direction: Direction| {
            store
                .link_artifact(&run.id, Some(&step.id), name, digest, direction)
                .await
        };
        link("data", &data, Direction::Input).await.unwrap();
        let first = link("model", &model, Direction::Output).await.unwrap();
        let repeat = link("model", &model, Direction::Output).await.unwrap();
        assert_eq!(first.id, repeat.id, "linking again is idempotent");

        let conflict = link("model", &data, Direction::Output).await.unwrap_err();
        assert!(
            matches!(conflict, StoreError::ArtifactLinkConflict { .. }),
            "{conflict}"
        );
        let unknown = link("extra", &digest('f'), Direction::Output)
            .await
            .unwrap_err();
        assert!(
            matches!(unknown, StoreError::ArtifactNotRecorded(_)),
            "{unknown}"
        );
        let invalid = link("extra", "abc", Direction::Output).await.unwrap_err();
        assert!(matches!(invalid, StoreError::InvalidDigest(_)), "{invalid}");
        let foreign = store
            .link_artifact(&other_run.id, Some(&step.id), "x", &model, Direction::Input)
            .await
            .unwrap_err();
        assert!(
            matches!(foreign, StoreError::StepRunNotInRun { .. }),
            "{foreign}"
        );

        let outputs = store.step_outputs(&step.id).await.unwrap();
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].name, "model");
        assert_eq!(outputs[0].digest, model);
        let inputs = store.step_inputs(&step.id).await.unwrap();
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0].digest, data);
    })
    .await;
}

#[tokio::test]
async fn step_logs_number_lines_in_order() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("logs")).await.unwrap();
        let step = store
            .create_step_run(new_step(&run.id, "train", None))
            .await
            .unwrap();
        let line = |message: &str| NewLogLine {
            level: "info".to_owned(),
            message: message.to_owned(),
            fields: Some(serde_json::json!({ "epoch": 1 })),
            timestamp_ms: 1_700_000_000_000,
        };

        store
            .append_step_logs(&step.id, &[line("one"), line("two")])
            .await
            .unwrap();
        store
            .append_step_logs(&step.id, &[line("three")])
            .await
            .unwrap();

        let all = store.list_step_logs(&step.id, None, None).await.unwrap();
        let seqs: Vec<i64> = all.iter().map(|l| l.seq).collect();
        let messages: Vec<&str> = all.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(seqs, [0, 1, 2]);
        assert_eq!(messages, ["one", "two", "three"]);
        assert_eq!(all[0].fields_json, Some(serde_json::json!({ "epoch": 1 })));

        let tail = store
            .list_step_logs(&step.id, Some(0), Some(1))
            .await
            .unwrap();
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].message, "two");

        let missing = store.append_step_logs("no-such-step", &[line("x")]).await;
        assert!(matches!(missing, Err(StoreError::StepRunNotFound(_))));
    })
    .await;
}

#[tokio::test]
async fn plugins_upsert_by_digest() {
    on_each_backend(async |store: &Store| {
        let plugin = |digest: String, version: &str| NewPlugin {
            digest,
            name: "trainer".to_owned(),
            version: version.to_owned(),
            kind: "step-executor".to_owned(),
            manifest_text: format!("name = \"trainer\"\nversion = \"{version}\"\n"),
        };

        let first = store
            .upsert_plugin(plugin(digest('1'), "1.0.0"))
            .await
            .unwrap();
        let updated = store
            .upsert_plugin(plugin(digest('1'), "1.0.1"))
            .await
            .unwrap();
        store
            .upsert_plugin(plugin(digest('2'), "2.0.0"))
            .await
            .unwrap();

        assert_eq!(updated.version, "1.0.1");
        assert_eq!(updated.first_seen, first.first_seen);
        let listed = store.list_plugins().await.unwrap();
        let versions: Vec<&str> = listed.iter().map(|p| p.version.as_str()).collect();
        assert_eq!(versions, ["1.0.1", "2.0.0"]);

        let invalid = store.upsert_plugin(plugin("XYZ".into(), "1")).await;
        assert!(matches!(invalid, Err(StoreError::InvalidDigest(_))));
    })
    .await;
}
