use super::{new_run, on_each_backend};
use crate::store::mlflow::LifecycleStage;
use crate::store::{
    MetricWrite, NewExternalRun, NewMetric, NewStepRun, RunBatch, RunFinish, RunStatus,
    RunsAccepting, StepStatus, Store, StoreError,
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
                accepts: RunsAccepting::Open,
            },
            MetricWrite {
                run_id: "0190b8a0-0000-7000-8000-000000000000".to_owned(),
                values: vec![value("loss", 1.0, 1)],
                accepts: RunsAccepting::Open,
            },
            MetricWrite {
                run_id: ended.run.id.clone(),
                values: vec![value("loss", 1.0, 1)],
                accepts: RunsAccepting::Open,
            },
            MetricWrite {
                run_id: open.run.id.clone(),
                values: vec![foreign],
                accepts: RunsAccepting::Open,
            },
            MetricWrite {
                run_id: other.id.clone(),
                values: vec![value("accuracy", 0.5, 1)],
                accepts: RunsAccepting::Open,
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
async fn mlflow_writes_skip_deleted_runs() {
    on_each_backend(async |store: &Store| {
        let ended = store
            .create_external_run(external_run("ended"))
            .await
            .unwrap();
        let deleted = store
            .create_external_run(external_run("deleted"))
            .await
            .unwrap();
        let finish = RunFinish {
            status: RunStatus::Failed,
            error: None,
            ended_at: None,
        };
        store
            .finish_external_run(&ended.run.id, finish)
            .await
            .unwrap();
        store
            .mlflow_set_run_stage(&deleted.run.id, LifecycleStage::Deleted)
            .await
            .unwrap();

        let write = |run_id: &str| MetricWrite {
            run_id: run_id.to_owned(),
            values: vec![value("loss", 0.5, 3)],
            accepts: RunsAccepting::NotDeleted,
        };
        let writes = [write(&ended.run.id), write(&deleted.run.id)];
        let outcomes = store.log_metric_group(&writes).await.unwrap();

        assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
        assert!(
            matches!(&outcomes[1], Err(StoreError::RunDeleted(id)) if *id == deleted.run.id),
            "{:?}",
            outcomes[1]
        );
        let history = store.metric_history(&ended.run.id, "loss").await.unwrap();
        assert_eq!(history.len(), 1, "the ended run took the value");
        assert_eq!(history[0].value, 0.5);
        let trashed = store.metric_history(&deleted.run.id, "loss").await.unwrap();
        assert!(trashed.is_empty(), "nothing reached the deleted run");

        store
            .mlflow_set_run_stage(&deleted.run.id, LifecycleStage::Active)
            .await
            .unwrap();
        let outcomes = store
            .log_metric_group(&[write(&deleted.run.id)])
            .await
            .unwrap();
        assert!(outcomes[0].is_ok(), "a restored run takes values again");
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

/// Runs of the committer comparison: one open, one ended, one in MLflow's trash, and a pipeline
/// run whose step run the writes must not borrow.
struct CommitterRuns {
    open: String,
    own_step: String,
    ended: String,
    deleted: String,
    foreign_step: String,
}

async fn committer_runs(store: &Store) -> CommitterRuns {
    let open = store.create_external_run(external_run("open")).await;
    let open = open.unwrap().run.id;
    let own_step = store.create_step_run(step_of(&open)).await.unwrap().id;
    let ended = store.create_external_run(external_run("ended")).await;
    let ended = ended.unwrap().run.id;
    let finish = RunFinish {
        status: RunStatus::Succeeded,
        error: None,
        ended_at: None,
    };
    store.finish_external_run(&ended, finish).await.unwrap();
    let deleted = store.create_external_run(external_run("deleted")).await;
    let deleted = deleted.unwrap().run.id;
    store
        .mlflow_set_run_stage(&deleted, LifecycleStage::Deleted)
        .await
        .unwrap();
    let other = store.create_run(new_run("other")).await.unwrap();
    let foreign_step = store.create_step_run(step_of(&other.id)).await.unwrap().id;
    CommitterRuns {
        open,
        own_step,
        ended,
        deleted,
        foreign_step,
    }
}

/// Writes that take every path of the checks, and more rows than one multi-row `INSERT` holds.
fn committer_writes(runs: &CommitterRuns) -> Vec<MetricWrite> {
    let write = |run_id: &str, values: Vec<NewMetric>, accepts| MetricWrite {
        run_id: run_id.to_owned(),
        values,
        accepts,
    };
    let mut long: Vec<NewMetric> = (0..150)
        .map(|step| value("loss", step as f64, step))
        .collect();
    long.push(value("loss", f64::NAN, 150));
    long.push(value("loss", f64::INFINITY, 149));
    let mut own = value("accuracy", 0.75, 4);
    own.step_run_id = Some(runs.own_step.clone());
    let mut borrowed = value("accuracy", 0.5, 5);
    borrowed.step_run_id = Some(runs.foreign_step.clone());
    let unknown = "0190b8a0-0000-7000-8000-000000000000";
    vec![
        write(&runs.open, long, RunsAccepting::Open),
        write(&runs.open, vec![own], RunsAccepting::Open),
        write(&runs.open, vec![borrowed], RunsAccepting::Open),
        write(
            unknown,
            vec![value("loss", 1.0, 1)],
            RunsAccepting::NotDeleted,
        ),
        write(
            &runs.ended,
            vec![value("loss", 1.0, 1)],
            RunsAccepting::Open,
        ),
        write(
            &runs.ended,
            vec![value("loss", 2.0, 2)],
            RunsAccepting::NotDeleted,
        ),
        write(
            &runs.deleted,
            vec![value("loss", 3.0, 3)],
            RunsAccepting::NotDeleted,
        ),
    ]
}

/// Lists every series point and latest value a store keeps for a run, as comparable text.
async fn recorded(store: &Store, run_id: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for key in ["loss", "accuracy"] {
        for point in store.metric_history(run_id, key).await.unwrap() {
            let step_run = point.step_run_id.is_some();
            lines.push(format!("{key} {} {} {step_run}", point.step, point.value));
        }
    }
    for point in store.latest_metrics(run_id).await.unwrap() {
        lines.push(format!(
            "latest {} {} {}",
            point.key, point.step, point.value
        ));
    }
    lines
}

/// Outcome of a write, by kind, so that outcomes of two databases compare.
fn outcome_kind(outcome: &Result<(), StoreError>) -> String {
    match outcome {
        Ok(()) => "ok".to_owned(),
        Err(error) => format!("{error:?}")
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

#[tokio::test]
async fn sqlite_committer_matches_group_commit() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let pooled = Store::open_sqlite(dirs[0].path()).await.unwrap();
    let direct = Store::open_sqlite(dirs[1].path()).await.unwrap();
    let pooled_runs = committer_runs(&pooled).await;
    let direct_runs = committer_runs(&direct).await;
    let mut committer = direct.sqlite_committer().unwrap().unwrap();

    let pooled_outcomes = pooled
        .log_metric_group(&committer_writes(&pooled_runs))
        .await
        .unwrap();
    let direct_outcomes = committer.commit(&committer_writes(&direct_runs)).unwrap();

    let kinds = |outcomes: &[Result<(), StoreError>]| -> Vec<String> {
        outcomes.iter().map(outcome_kind).collect()
    };
    assert_eq!(
        kinds(&direct_outcomes),
        [
            "ok",
            "ok",
            "StepRunNotInRun",
            "RunNotFound",
            "RunEnded",
            "ok",
            "RunDeleted"
        ]
    );
    assert_eq!(kinds(&direct_outcomes), kinds(&pooled_outcomes));
    for (pooled_run, direct_run) in [
        (&pooled_runs.open, &direct_runs.open),
        (&pooled_runs.ended, &direct_runs.ended),
        (&pooled_runs.deleted, &direct_runs.deleted),
    ] {
        let expected = recorded(&pooled, pooled_run).await;
        assert_eq!(recorded(&direct, direct_run).await, expected);
    }
    let open = recorded(&direct, &direct_runs.open).await;
    assert_eq!(open.len(), 152 + 1 + 2, "{open:?}");
    let series = async |store: &Store, run_id: &str| {
        let all = i64::MIN..=i64::MAX;
        let series = store.metric_series(run_id, "loss", None, all, 4).await;
        format!("{:?}", series.unwrap())
    };
    assert_eq!(
        series(&direct, &direct_runs.open).await,
        series(&pooled, &pooled_runs.open).await,
        "the downsampled series, which reads the block summaries, agree"
    );
    assert!(open.contains(&"latest loss 150 NaN".to_owned()), "{open:?}");
}

#[tokio::test]
async fn committer_only_for_writable_files() {
    let dir = tempfile::tempdir().unwrap();
    let created = Store::open_sqlite(dir.path()).await.unwrap();
    assert!(
        created.sqlite_committer().is_some(),
        "a data directory's file"
    );
    created.close().await.unwrap();
    let path = dir.path().join(crate::store::SQLITE_FILE_NAME);

    let writable = Store::connect(&format!("sqlite://{}?mode=rwc", path.display())).await;
    let writable = writable.unwrap();
    assert_eq!(writable.sqlite_file(), Some(path.as_path()));
    assert!(writable.sqlite_committer().unwrap().is_ok());

    let read_only = Store::connect(&format!("sqlite://{}?mode=ro", path.display())).await;
    let read_only = read_only.unwrap();
    assert!(
        read_only.sqlite_file().is_none(),
        "mode=ro keeps writes to the pool"
    );

    let memory = Store::connect("sqlite::memory:").await.unwrap();
    assert!(
        memory.sqlite_committer().is_none(),
        "in-memory SQLite has no file"
    );
}

#[tokio::test]
async fn committer_yields_while_another_connection_writes() {
    let (dir, store, run_id, mut committer) = committer_with_run("busy").await;
    let write = MetricWrite {
        run_id: run_id.clone(),
        values: vec![value("loss", 0.5, 1)],
        accepts: RunsAccepting::Open,
    };
    let path = dir.path().join(crate::store::SQLITE_FILE_NAME);
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();

    let started = std::time::Instant::now();
    let while_held = committer.stage_unless_busy(&write);
    let waited = started.elapsed();
    other.execute_batch("ROLLBACK").unwrap();
    let after = committer.stage_unless_busy(&write);
    committer.move_staged().unwrap();

    assert!(matches!(while_held, Ok(None)), "{while_held:?}");
    assert!(waited < std::time::Duration::from_secs(5), "{waited:?}");
    let outcome = after.unwrap().expect("the lock is free again");
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(
        recorded(&store, &run_id).await,
        ["loss 1 0.5 false", "latest loss 1 0.5"]
    );

    let (locked, lock_taken) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked.send(()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        other.execute_batch("ROLLBACK").unwrap();
    });
    lock_taken.recv().unwrap();
    let started = std::time::Instant::now();
    let commit = committer.commit(std::slice::from_ref(&write));
    let waited = started.elapsed();
    holder.join().unwrap();

    assert!(commit.is_ok(), "commit waits for the lock: {commit:?}");
    assert!(
        waited >= std::time::Duration::from_millis(200),
        "{waited:?}"
    );
}

#[tokio::test]
async fn committer_checkpoints_keep_the_log_small() {
    let (dir, store, run_id, mut committer) = committer_with_run("log").await;
    let wal = dir
        .path()
        .join(format!("{}-wal", crate::store::SQLITE_FILE_NAME));
    let write = |step: i64| MetricWrite {
        run_id: run_id.clone(),
        values: vec![value("loss", 0.5, step)],
        accepts: RunsAccepting::Open,
    };

    let mut became_large = None;
    for step in 0..2_000 {
        committer.commit(&[write(step)]).unwrap();
        if committer.wal_is_large() && became_large.is_none() {
            became_large = Some(step);
        }
        committer.checkpoint_if_large();
        assert!(!committer.wal_is_large(), "checkpointed at step {step}");
    }

    let became_large = became_large.expect("2,000 commits fill the log past the threshold");
    assert!(became_large < 1_000, "{became_large}");
    let wal_bytes = std::fs::metadata(&wal).unwrap().len();
    // Without checkpoints the log would hold every commit's pages: tens of MiB.
    assert!(wal_bytes < 8 << 20, "the log has {wal_bytes} bytes");
    let points = store.metric_history(&run_id, "loss").await.unwrap();
    assert_eq!(points.len(), 2_000);
}

#[tokio::test]
async fn failed_commit_releases_the_write_lock() {
    let (dir, store, run_id, mut committer) = committer_with_run("fails").await;
    let path = dir.path().join(crate::store::SQLITE_FILE_NAME);
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER reject_poison BEFORE INSERT ON metrics WHEN NEW.key = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poison rejected'); END",
        )
        .unwrap();
    let write = |key: &str| MetricWrite {
        run_id: run_id.clone(),
        values: vec![value(key, 0.5, 1)],
        accepts: RunsAccepting::Open,
    };

    let failed = committer.commit(&[write("poison")]);
    other.busy_timeout(std::time::Duration::ZERO).unwrap();
    let lock_free = other.execute_batch("BEGIN IMMEDIATE; ROLLBACK");
    let after = committer.commit(&[write("loss")]);

    let error = failed.expect_err("the trigger aborts the insert");
    assert!(error.to_string().contains("poison rejected"), "{error}");
    assert!(
        lock_free.is_ok(),
        "the failed commit rolled back: {lock_free:?}"
    );
    let outcomes = after.expect("the connection is usable again");
    assert_eq!(
        outcomes.iter().map(outcome_kind).collect::<Vec<_>>(),
        ["ok"]
    );
    assert_eq!(
        recorded(&store, &run_id).await,
        ["loss 1 0.5 false", "latest loss 1 0.5"]
    );
}

#[tokio::test]
async fn staged_values_match_a_direct_commit() {
    let (dir, store, run_id, mut committer) = committer_with_run("staged").await;
    let (other_dir, direct, direct_run, mut direct_committer) = committer_with_run("direct").await;
    let step_run = store.create_step_run(step_of(&run_id)).await.unwrap();
    let direct_step_run = direct.create_step_run(step_of(&direct_run)).await.unwrap();
    let writes = |run_id: &str, step_run_id: &str| {
        let mut from_step = value("accuracy", 0.75, 2);
        from_step.step_run_id = Some(step_run_id.to_owned());
        [
            vec![value("loss", 0.5, 1), value("loss", f64::NAN, 2)],
            vec![value("loss", 0.25, 2), from_step],
            vec![value("loss", 0.125, 1)],
        ]
        .map(|values| MetricWrite {
            run_id: run_id.to_owned(),
            values,
            accepts: RunsAccepting::Open,
        })
    };

    for write in writes(&run_id, &step_run.id) {
        let outcome = committer.stage_unless_busy(&write).unwrap();
        assert!(matches!(outcome, Some(Ok(()))), "{outcome:?}");
    }
    let staged = committer
        .staged_rows()
        .load(std::sync::atomic::Ordering::Relaxed);
    let before_move = recorded(&store, &run_id).await;
    committer.move_staged().unwrap();
    for write in writes(&direct_run, &direct_step_run.id) {
        direct_committer.commit(&[write]).unwrap();
    }

    assert_eq!(staged, 5);
    assert!(before_move.is_empty(), "{before_move:?}");
    let moved = recorded(&store, &run_id).await;
    assert_eq!(moved, recorded(&direct, &direct_run).await);
    assert_eq!(moved.last().unwrap(), "latest loss 2 0.25");
    assert_eq!(
        store.metric_history(&run_id, "accuracy").await.unwrap()[0].step_run_id,
        Some(step_run.id)
    );
    assert_eq!(
        block_summaries(dir.path(), &run_id),
        block_summaries(other_dir.path(), &direct_run)
    );
}

#[tokio::test]
async fn rejected_writes_are_not_staged() {
    let (_dir, store, run_id, mut committer) = committer_with_run("rejected").await;
    let missing = MetricWrite {
        run_id: "missing".to_owned(),
        values: vec![value("loss", 0.5, 1)],
        accepts: RunsAccepting::Open,
    };
    let finish = RunFinish {
        status: RunStatus::Succeeded,
        error: None,
        ended_at: None,
    };
    store.finish_external_run(&run_id, finish).await.unwrap();
    let ended = MetricWrite {
        run_id: run_id.clone(),
        values: vec![value("loss", 0.5, 1)],
        accepts: RunsAccepting::Open,
    };

    let missing = committer.stage_unless_busy(&missing).unwrap();
    let ended = committer.stage_unless_busy(&ended).unwrap();

    assert!(
        matches!(missing, Some(Err(StoreError::RunNotFound(_)))),
        "{missing:?}"
    );
    assert!(
        matches!(ended, Some(Err(StoreError::RunEnded { .. }))),
        "{ended:?}"
    );
    let staged = committer
        .staged_rows()
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(staged, 0);
}

#[tokio::test]
async fn staged_values_of_a_removed_run_are_dropped() {
    let (dir, store, kept, mut committer) = committer_with_run("kept").await;
    let removed = store.create_external_run(external_run("removed")).await;
    let removed = removed.unwrap().run.id;
    for run_id in [&removed, &kept] {
        let write = MetricWrite {
            run_id: run_id.clone(),
            values: vec![value("loss", 0.5, 1)],
            accepts: RunsAccepting::Open,
        };
        committer.stage_unless_busy(&write).unwrap();
    }
    let path = dir.path().join(crate::store::SQLITE_FILE_NAME);
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    other
        .execute("DELETE FROM runs WHERE id = ?1", [&removed])
        .unwrap();

    let moved = committer.move_staged();

    assert!(moved.is_ok(), "{moved:?}");
    assert_eq!(
        recorded(&store, &kept).await,
        ["loss 1 0.5 false", "latest loss 1 0.5"]
    );
    let left: i64 = other
        .query_row("SELECT count(*) FROM metric_inbox", [], |row| row.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn values_left_staged_move_when_the_store_opens() {
    let (dir, store, run_id, mut committer) = committer_with_run("left").await;
    let write = MetricWrite {
        run_id: run_id.clone(),
        values: vec![value("loss", 0.5, 1)],
        accepts: RunsAccepting::Open,
    };
    committer.stage_unless_busy(&write).unwrap();
    drop(committer);
    store.close().await.unwrap();

    let reopened = Store::open_sqlite(dir.path()).await.unwrap();

    assert_eq!(
        recorded(&reopened, &run_id).await,
        ["loss 1 0.5 false", "latest loss 1 0.5"]
    );
}

/// Returns the block summaries of a run's series in the SQLite store in `dir`, one line each.
fn block_summaries(dir: &std::path::Path, run_id: &str) -> Vec<String> {
    let path = dir.join(crate::store::SQLITE_FILE_NAME);
    let connection = rusqlite::Connection::open(path).unwrap();
    let mut statement = connection
        .prepare(
            "SELECT key, block, point_count, min_value, max_value, first_step, last_step, \
             last_value FROM metric_blocks WHERE run_id = ?1 ORDER BY key, block",
        )
        .unwrap();
    let rows = statement.query_map([run_id], |row| {
        let columns: Vec<String> = (0..8)
            .map(|index| format!("{:?}", row.get_ref(index).unwrap()))
            .collect();
        Ok(columns.join(" "))
    });
    rows.unwrap().map(Result::unwrap).collect()
}

/// Returns a SQLite store in a temporary directory, an external run in it and the store's
/// committer.
async fn committer_with_run(
    name: &str,
) -> (
    tempfile::TempDir,
    Store,
    String,
    crate::store::SqliteCommitter,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path()).await.unwrap();
    let run_id = store.create_external_run(external_run(name)).await;
    let run_id = run_id.unwrap().run.id;
    let committer = store.sqlite_committer().unwrap().unwrap();
    (dir, store, run_id, committer)
}
