use super::{digest, new_run, on_each_backend};
use crate::store::mlflow::{
    LoggedModelError, LoggedModelStatus, NewLoggedModel, NewModelMetric, model_node,
};
use crate::store::{DEFAULT_PROJECT, Node, Store};

/// Builds a model of `project_id` named `name`, produced by `run_id` if given.
fn new_model(project_id: i64, name: &str, run_id: Option<&str>) -> NewLoggedModel {
    NewLoggedModel {
        project_id,
        name: name.to_owned(),
        model_type: Some("agent".to_owned()),
        source_run_id: run_id.map(str::to_owned),
        experiment_artifacts: "mlflow-artifacts:/0".to_owned(),
        params: vec![("lr".to_owned(), "0.1".to_owned())],
        tags: vec![
            ("team".to_owned(), "a".to_owned()),
            ("team".to_owned(), "b".to_owned()),
        ],
    }
}

fn metric(model_id: &str, key: &str, value: f64, step: i64) -> NewModelMetric {
    NewModelMetric {
        model_id: model_id.to_owned(),
        key: key.to_owned(),
        value,
        timestamp_ms: 1_000 + step,
        step,
        dataset_name: Some("eval".to_owned()),
        dataset_digest: None,
    }
}

#[tokio::test]
async fn logged_model_lifecycle() {
    on_each_backend(async |store: &Store| {
        let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
        let run = store.create_run(new_run("train")).await.unwrap();
        let created = store
            .mlflow_create_logged_model(new_model(project.id, "clf", Some(&run.id)))
            .await
            .unwrap();
        let id = created.model.id.clone();
        assert!(id.starts_with("m-"), "{id}");
        assert_eq!(created.status(), LoggedModelStatus::Pending);
        assert_eq!(
            created.model.artifact_location,
            format!("mlflow-artifacts:/0/models/{id}/artifacts")
        );
        assert_eq!(created.params["lr"], "0.1");
        assert_eq!(
            created.tags["team"], "b",
            "the last value of a repeated key wins"
        );

        let ready = store
            .mlflow_finalize_logged_model(&id, LoggedModelStatus::Ready)
            .await
            .unwrap();
        assert_eq!(ready.status(), LoggedModelStatus::Ready);

        let conflict = store
            .mlflow_log_logged_model_params(&id, &[("lr".to_owned(), "0.2".to_owned())])
            .await;
        assert!(matches!(
            conflict,
            Err(LoggedModelError::ParamConflict { .. })
        ));
        store
            .mlflow_delete_logged_model_tag(&id, "team")
            .await
            .unwrap();
        let missing = store.mlflow_delete_logged_model_tag(&id, "team").await;
        assert!(matches!(missing, Err(LoggedModelError::TagNotFound { .. })));

        store.mlflow_delete_logged_model(&id).await.unwrap();
        assert!(
            store
                .mlflow_logged_model(&id, false)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .mlflow_logged_model(&id, true)
                .await
                .unwrap()
                .is_some()
        );
        let listed = store.mlflow_logged_models_of(&[project.id]).await.unwrap();
        assert!(listed.is_empty(), "deleted models are not listed");

        let graph = store.run_lineage(&run.id).await.unwrap();
        assert_eq!(graph.nodes, vec![Node::run(&run.id), model_node(&id)]);
    })
    .await;
}

#[tokio::test]
async fn logged_model_metrics_and_run_links() {
    on_each_backend(async |store: &Store| {
        let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
        let run = store.create_run(new_run("eval")).await.unwrap();
        let model = store
            .mlflow_create_logged_model(new_model(project.id, "scored", None))
            .await
            .unwrap();
        let id = model.model.id.clone();
        let values = [metric(&id, "acc", 0.5, 0), metric(&id, "acc", f64::NAN, 1)];
        store
            .mlflow_log_model_metrics(&run.id, &values)
            .await
            .unwrap();
        store
            .mlflow_log_model_metrics(&run.id, &values[..1])
            .await
            .expect("a value sent again is kept once");

        let stored = store
            .mlflow_logged_model(&id, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.metrics.len(), 2);
        assert_eq!(stored.metrics[0].value, Some(0.5));
        assert_eq!(stored.metrics[1].value, None, "NaN is stored as NULL");
        assert_eq!(stored.metrics[0].dataset_name.as_deref(), Some("eval"));

        let unknown = metric("m-missing", "acc", 1.0, 0);
        let failed = store.mlflow_log_model_metrics(&run.id, &[unknown]).await;
        assert!(matches!(failed, Err(LoggedModelError::NotFound(_))));

        store
            .mlflow_log_model_outputs(&run.id, &[(id.clone(), 4)])
            .await
            .unwrap();
        store
            .mlflow_log_model_inputs(&run.id, std::slice::from_ref(&id))
            .await
            .unwrap();
        let links = store
            .mlflow_run_models(std::slice::from_ref(&run.id))
            .await
            .unwrap();
        assert_eq!(links[&run.id].outputs, vec![(id.clone(), 4)]);
        assert_eq!(links[&run.id].inputs, vec![id.clone()]);
    })
    .await;
}

#[tokio::test]
async fn logged_model_artifacts_point_at_stored_content() {
    on_each_backend(async |store: &Store| {
        let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
        let model = store
            .mlflow_create_logged_model(new_model(project.id, "files", None))
            .await
            .unwrap();
        let id = model.model.id.clone();
        store
            .record_artifact(&digest('a'), 10, "text/plain")
            .await
            .unwrap();
        store
            .record_artifact(&digest('b'), 20, "application/octet-stream")
            .await
            .unwrap();
        store
            .mlflow_put_model_artifact(&id, "MLmodel", &digest('a'))
            .await
            .unwrap();
        store
            .mlflow_put_model_artifact(&id, "MLmodel", &digest('b'))
            .await
            .expect("an upload to the same path replaces the file");

        let files = store.mlflow_model_artifacts(&id).await.unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, "MLmodel");
        assert_eq!(files[0].digest, digest('b'));
        assert_eq!(files[0].size, 20);
    })
    .await;
}
