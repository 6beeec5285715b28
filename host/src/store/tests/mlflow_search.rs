use super::on_each_backend;
use crate::store::mlflow::{
    ExperimentCondition, ExperimentKey, ExperimentSearch, LifecycleStage, NewDatasetInput,
    RegistryCondition, RegistryKey, RegistrySearch,
};
use crate::store::{
    Comparison, DatasetField, NewExternalRun, NewModel, NewModelVersion, RunSearch, SortKey,
    SortTerm, Store, TextAttribute, TextMatch, TieOrder, TimeAttribute,
};
use std::collections::BTreeMap;

fn external_run(project: &str, name: &str, started_at: i64) -> NewExternalRun {
    NewExternalRun {
        project: project.to_owned(),
        name: name.to_owned(),
        user_name: "client".to_owned(),
        started_at: Some(started_at),
        params: Vec::new(),
        tags: Vec::new(),
    }
}

fn dataset(name: &str, context: &str) -> NewDatasetInput {
    NewDatasetInput {
        name: name.to_owned(),
        digest: format!("d-{name}"),
        source_type: "http".to_owned(),
        source: "{}".to_owned(),
        schema: None,
        profile: None,
        tags: BTreeMap::from([("mlflow.data.context".to_owned(), context.to_owned())]),
    }
}

/// Returns the names of the runs of project `wine` that meet `filter`, in MLflow's order.
async fn names(store: &Store, filter: Vec<Comparison>) -> Vec<String> {
    let mut conditions = vec![Comparison::Text {
        attribute: TextAttribute::Project,
        test: TextMatch::In(vec!["wine".to_owned()]),
    }];
    conditions.extend(filter);
    let order = vec![SortKey {
        term: SortTerm::Time(TimeAttribute::StartedAt),
        descending: true,
    }];
    let mut search = RunSearch::new(conditions, order, 100);
    search.ties = TieOrder::Ascending;
    let page = store.search_runs(&search).await.unwrap();
    page.runs.into_iter().map(|run| run.name).collect()
}

#[tokio::test]
async fn run_search_filters_mlflow_conditions() {
    on_each_backend(async |store: &Store| {
        let mut ids = Vec::new();
        for (name, start) in [("a", 3), ("b", 2), ("c", 1)] {
            let run = store
                .create_external_run(external_run("wine", name, start))
                .await
                .unwrap();
            ids.push(run.run.id);
        }
        store
            .mlflow_log_inputs(&ids[0], &[dataset("train", "training")])
            .await
            .unwrap();
        store
            .mlflow_log_inputs(
                &ids[1],
                &[dataset("train", "training"), dataset("eval", "eval")],
            )
            .await
            .unwrap();
        store
            .mlflow_set_run_stage(&ids[2], LifecycleStage::Deleted)
            .await
            .unwrap();

        let context = |test| Comparison::Dataset {
            field: DatasetField::Context,
            test,
            negated: false,
        };
        let eval = names(store, vec![context(TextMatch::Eq("eval".into()))]).await;
        assert_eq!(eval, ["b"]);
        let training = names(store, vec![context(TextMatch::Like("train%".into()))]).await;
        assert_eq!(training, ["a", "b"]);
        let outside = Comparison::Dataset {
            field: DatasetField::Name,
            test: TextMatch::In(vec!["train".into()]),
            negated: true,
        };
        assert_eq!(names(store, vec![outside]).await, ["b"]);
        assert_eq!(names(store, vec![Comparison::InTrash(true)]).await, ["c"]);
        assert_eq!(
            names(store, vec![Comparison::InTrash(false)]).await,
            ["a", "b"]
        );

        let roots = vec![("wine".to_owned(), "s3://bucket/wine/".to_owned())];
        let uri = Comparison::ArtifactUri {
            roots: roots.clone(),
            test: TextMatch::Eq(format!("s3://bucket/wine/{}/artifacts", ids[1])),
        };
        assert_eq!(names(store, vec![uri]).await, ["b"]);
        let pattern = Comparison::ArtifactUri {
            roots,
            test: TextMatch::Like("s3://bucket/wine/%/artifacts".into()),
        };
        assert_eq!(names(store, vec![pattern]).await, ["a", "b", "c"]);
        let elsewhere = Comparison::ArtifactUri {
            roots: vec![("other".to_owned(), "s3://x".to_owned())],
            test: TextMatch::Ne("y".into()),
        };
        assert!(names(store, vec![elsewhere]).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn run_search_tests_key_presence() {
    on_each_backend(async |store: &Store| {
        let mut tuned = external_run("wine", "tuned", 2);
        tuned.params = vec![("lr".to_owned(), "0.1".to_owned())];
        tuned.tags = vec![("team".to_owned(), "ml".to_owned())];
        store.create_external_run(tuned).await.unwrap();
        store
            .create_external_run(external_run("wine", "plain", 1))
            .await
            .unwrap();

        let param = |exists| Comparison::ParamExists {
            key: "lr".into(),
            exists,
        };
        let tag = |exists| Comparison::TagExists {
            key: "team".into(),
            exists,
        };
        assert_eq!(names(store, vec![param(true)]).await, ["tuned"]);
        assert_eq!(names(store, vec![param(false)]).await, ["plain"]);
        assert_eq!(names(store, vec![tag(false)]).await, ["plain"]);
        assert_eq!(names(store, vec![tag(true), param(true)]).await, ["tuned"]);
    })
    .await;
}

#[tokio::test]
async fn run_search_orders_ties_by_ascending_id() {
    on_each_backend(async |store: &Store| {
        let mut ids = Vec::new();
        for name in ["x", "y", "z"] {
            let run = store
                .create_external_run(external_run("wine", name, 5))
                .await
                .unwrap();
            ids.push((run.run.id, name.to_owned()));
        }
        ids.sort();
        let expected: Vec<String> = ids.into_iter().map(|(_, name)| name).collect();

        assert_eq!(names(store, Vec::new()).await, expected);
    })
    .await;
}

#[tokio::test]
async fn experiment_search_filters_and_pages() {
    on_each_backend(async |store: &Store| {
        for name in ["exp-a", "exp-b", "exp-c"] {
            let tags = [("team".to_owned(), format!("team-{name}"))];
            let tags = if name == "exp-c" { &[][..] } else { &tags[..] };
            store
                .mlflow_create_experiment(name, None, tags)
                .await
                .unwrap()
                .unwrap();
        }
        let search = |conditions, offset| ExperimentSearch {
            conditions,
            order: vec![(ExperimentKey::Name, true)],
            stage: Some(LifecycleStage::Active),
            offset,
            limit: 2,
        };
        let named = |found: Vec<crate::store::mlflow::Experiment>| -> Vec<String> {
            found.into_iter().map(|item| item.project.name).collect()
        };
        let like = ExperimentCondition::Name(TextMatch::Like("exp-%".into()));

        let first = store
            .mlflow_search_experiments(&search(vec![like.clone()], 0))
            .await
            .unwrap();
        assert_eq!(named(first), ["exp-c", "exp-b"]);
        let second = store
            .mlflow_search_experiments(&search(vec![like.clone()], 2))
            .await
            .unwrap();
        assert_eq!(named(second), ["exp-a"]);
        let untagged = ExperimentCondition::TagExists {
            key: "team".into(),
            exists: false,
        };
        let found = store
            .mlflow_search_experiments(&search(vec![like.clone(), untagged], 0))
            .await
            .unwrap();
        assert_eq!(named(found), ["exp-c"]);
        let default = ExperimentCondition::Name(TextMatch::Eq("Default".into()));
        store
            .ensure_project(crate::store::DEFAULT_PROJECT)
            .await
            .unwrap();
        let found = store
            .mlflow_search_experiments(&search(vec![default], 0))
            .await
            .unwrap();
        assert_eq!(named(found), [crate::store::DEFAULT_PROJECT]);
    })
    .await;
}

#[tokio::test]
async fn registry_search_filters_models_and_versions() {
    on_each_backend(async |store: &Store| {
        for name in ["reg-a", "reg-b"] {
            let new = NewModel {
                name: name.to_owned(),
                description: String::new(),
                tags: BTreeMap::from([("team".to_owned(), name.to_owned())]),
            };
            store.create_model("tester", new).await.unwrap();
        }
        for number in 0..3 {
            let new = NewModelVersion {
                model: "reg-a".to_owned(),
                artifact_name: "model.bin".to_owned(),
                artifact_digest: super::digest('a'),
                source: format!("s3://models/{number}"),
                ..NewModelVersion::default()
            };
            store.create_model_version("tester", new).await.unwrap();
        }

        let models = RegistrySearch {
            conditions: vec![RegistryCondition::Tag {
                key: "team".into(),
                test: TextMatch::Ne("reg-a".into()),
                missing_matches: false,
            }],
            order: vec![(RegistryKey::Name, false)],
            offset: 0,
            limit: 10,
        };
        assert_eq!(
            store.mlflow_search_models(&models).await.unwrap(),
            ["reg-b"]
        );

        let versions = RegistrySearch {
            conditions: vec![
                RegistryCondition::Name(TextMatch::Eq("reg-a".into())),
                RegistryCondition::VersionNumber(crate::store::CompareOp::Ge, 2),
            ],
            order: vec![(RegistryKey::VersionNumber, true)],
            offset: 0,
            limit: 10,
        };
        let found = store.mlflow_search_versions(&versions).await.unwrap();
        let numbers: Vec<i64> = found.iter().map(|item| item.version.version).collect();
        assert_eq!(numbers, [3, 2]);
        assert_eq!(found[0].model, "reg-a");
        assert_eq!(found[0].version.source, "s3://models/2");
    })
    .await;
}
