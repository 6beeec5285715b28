use super::{new_run, on_each_backend};
use crate::store::{
    MetricWrite, NewExternalRun, NewMetric, NewStepRun, RunBatch, RunFinish, RunStatus, StepStatus,
    Store, StoreError,
};

fn value(key: &str, value: f64, step: i64) -> NewMetric {
    NewMetric {
        step_run_id: None,
        key: key.to_owned(),
        value,
        step,
        timestamp_ms: 1_000,
    }
}

fn external_run(name: &str) -> NewExternalRun {
    NewExternalRun {
        project: "ingest".to_owned(),
        name: name.to_owned(),
        user_name: "client".to_owned(),
        started_at: None,
        params: vec![("alpha".to_owned(), "0.1".to_owned())],
        tags: Vec::new(),
    }
}

fn step_of(run_id: &str) -> NewStepRun {
    NewStepRun {
        run_id: run_id.to_owned(),
        name: "train".to_owned(),
        plugin: None,
        executor: "external".to_owned(),
        status: StepStatus::Running,
        params: serde_json::json!({}),
        cache_key: None,
        cached_from: None,
    }
}

#[tokio::test]
async fn metric_group_rejects_bad_writes_alone() {
    on_each_backend(async |store: &Store| {
        let open = store
            .create_external_run(external_run("open"))
            .await
            .unwrap();
        let ended = store
            .create_external_run(external_run("ended"))
            .await
            .unwrap();
        let other = store.create_run(new_run("other")).await.unwrap();
        let foreign_step = store.create_step_run(step_of(&other.id)).await.unwrap();
        let finish = RunFinish {
            status: RunStatus::Succeeded,
            error: None,
            ended_at: None,
        };
        store
            .finish_external_run(&ended.run.id, finish)
            .await
            .unwrap();

        let mut foreign = value("loss", 9.0, 9);
        foreign.step_run_id = Some(foreign_step.id.clone());
        let writes = [
            MetricWrite {
                run_id: open.run.id.clone(),
                values: vec![value("loss", 2.0, 1), value("loss", 1.0, 2)],
            },
            MetricWrite {
                run_id: "0190b8a0-0000-7000-8000-000000000000".to_owned(),
                values: vec![value("loss", 1.0, 1)],
            },
            MetricWrite {
                run_id: ended.run.id.clone(),
                values: vec![value("loss", 1.0, 1)],
            },
            MetricWrite {
                run_id: open.run.id.clone(),
                values: vec![foreign],
            },
            MetricWrite {
                run_id: other.id.clone(),
                values: vec![value("accuracy", 0.5, 1)],
            },
        ];
        let outcomes = store.log_metric_group(&writes).await.unwrap();

        assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
        assert!(matches!(outcomes[1], Err(StoreError::RunNotFound(_))));
        assert!(matches!(outcomes[2], Err(StoreError::RunEnded { .. })));
        assert!(matches!(
            outcomes[3],
            Err(StoreError::StepRunNotInRun { .. })
        ));
        assert!(outcomes[4].is_ok(), "a pipeline run takes metrics too");
        let history = store.metric_history(&open.run.id, "loss").await.unwrap();
        assert_eq!(
            history.len(),
            2,
            "only the valid write of the run: {history:?}"
        );
        let latest = store.latest_metrics(&open.run.id).await.unwrap();
        assert_eq!(latest[0].step, 2, "the latest value is the highest step");
        let ended_history = store.metric_history(&ended.run.id, "loss").await.unwrap();
        assert!(ended_history.is_empty(), "nothing reached the ended run");
        let accuracy = store.metric_history(&other.id, "accuracy").await.unwrap();
        assert_eq!(accuracy.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn run_batch_is_all_or_nothing() {
    on_each_backend(async |store: &Store| {
        let record = store
            .create_external_run(external_run("batch"))
            .await
            .unwrap();
        let run_id = &record.run.id;
        let batch = RunBatch {
            metrics: vec![value("loss", 1.0, 1)],
            params: vec![("alpha".to_owned(), "0.2".to_owned())],
            tags: vec![("team".to_owned(), "ml".to_owned())],
        };

        let error = store.log_run_batch(run_id, &batch).await.unwrap_err();

        assert!(matches!(error, StoreError::ParamConflict { .. }), "{error}");
        assert!(
            store
                .metric_history(run_id, "loss")
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.get_tags(run_id).await.unwrap().is_empty());
        let params = store.get_params(run_id).await.unwrap();
        assert_eq!(params["alpha"], "0.1", "the first value stays");
    })
    .await;
}
