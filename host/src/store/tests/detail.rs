use super::steps::{new_step, running};
use super::{digest, new_run, on_each_backend};
use crate::store::{
    Direction, EnvironmentSnapshot, GitState, NewMetric, PluginRef, RunStatus, Store, StoreError,
};

#[tokio::test]
async fn run_detail_contains_everything() {
    on_each_backend(async |store: &Store| {
        let pipeline = store
            .ensure_pipeline("vision", "train", "name: train\nsteps: []\n")
            .await
            .unwrap();
        let mut new = new_run("detail");
        new.project = "vision".to_owned();
        new.pipeline_id = Some(pipeline.id);
        let run = store.create_run(new).await.unwrap();
        store
            .set_run_status(&run.id, RunStatus::Running, None)
            .await
            .unwrap();

        let params = [("lr".to_owned(), "0.1".to_owned())];
        store.log_params(&run.id, &params).await.unwrap();
        store
            .set_tags(&run.id, &[("team".to_owned(), "ml".to_owned())])
            .await
            .unwrap();

        let step = store
            .create_step_run(new_step(&run.id, "fit", None))
            .await
            .unwrap();
        store.update_step_run(&step.id, running(1)).await.unwrap();
        let (data, model, report) = (digest('a'), digest('b'), digest('c'));
        for (digest, size) in [(&data, 100), (&model, 200), (&report, 300)] {
            store
                .record_artifact(digest, size, "application/octet-stream")
                .await
                .unwrap();
        }
        let link = async |step: Option<&str>, name: &str, digest: &str, direction| {
            store
                .link_artifact(&run.id, step, name, digest, direction)
                .await
                .unwrap()
        };
        link(Some(&step.id), "data", &data, Direction::Input).await;
        link(Some(&step.id), "model", &model, Direction::Output).await;
        link(None, "report", &report, Direction::Output).await;

        let metric = NewMetric {
            step_run_id: Some(step.id.clone()),
            key: "loss".to_owned(),
            value: 0.25,
            step: 4,
            timestamp_ms: 10,
        };
        store.log_metrics(&run.id, &[metric]).await.unwrap();

        let environment = EnvironmentSnapshot {
            git: Some(GitState {
                commit: "0123456789abcdef0123456789abcdef01234567".to_owned(),
                dirty: true,
            }),
            runledger_version: "0.1.0".to_owned(),
            wasmtime_version: Some("48.0.0".to_owned()),
            os: "linux".to_owned(),
            arch: "x86_64".to_owned(),
            plugins: vec![PluginRef {
                name: "trainer".to_owned(),
                version: "1.0.0".to_owned(),
                digest: digest('e'),
            }],
            packages: vec!["numpy==2.1.0".to_owned()],
            extra: serde_json::Map::from_iter([("gpu".to_owned(), serde_json::json!("none"))]),
        };
        store.put_environment(&run.id, &environment).await.unwrap();

        let detail = store.get_run_detail(&run.id).await.unwrap();

        assert_eq!(detail.run.id, run.id);
        assert_eq!(detail.run.status, RunStatus::Running);
        assert_eq!(detail.project.name, "vision");
        assert_eq!(detail.pipeline.as_ref().map(|p| p.id), Some(pipeline.id));
        assert_eq!(detail.params["lr"], "0.1");
        assert_eq!(detail.tags["team"], "ml");
        assert_eq!(detail.steps.len(), 1);
        let step_detail = &detail.steps[0];
        assert_eq!(step_detail.step_run.id, step.id);
        assert_eq!(
            step_detail.step_run.params_json,
            serde_json::json!({ "lr": 0.1 })
        );
        assert_eq!(step_detail.inputs.len(), 1);
        assert_eq!(step_detail.inputs[0].link.digest, data);
        assert_eq!(step_detail.inputs[0].size, 100);
        assert_eq!(step_detail.outputs.len(), 1);
        assert_eq!(step_detail.outputs[0].link.name, "model");
        assert_eq!(detail.latest_metrics.len(), 1);
        assert_eq!(detail.latest_metrics[0].value, 0.25);
        let names: Vec<&str> = detail
            .artifacts
            .iter()
            .map(|a| a.link.name.as_str())
            .collect();
        assert_eq!(names, ["data", "model", "report"]);
        assert_eq!(detail.environment, Some(environment));

        let missing = store.get_run_detail("no-such-run").await.unwrap_err();
        assert!(matches!(missing, StoreError::RunNotFound(_)), "{missing}");
    })
    .await;
}

#[tokio::test]
async fn external_run_detail_has_no_pipeline() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("external")).await.unwrap();

        let detail = store.get_run_detail(&run.id).await.unwrap();

        assert!(detail.pipeline.is_none());
        assert!(detail.steps.is_empty());
        assert!(detail.environment.is_none());
        assert_eq!(detail.project.name, "default");
    })
    .await;
}
