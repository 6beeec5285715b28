use super::{new_run, on_each_backend};
use crate::store::migration::Migrator;
use crate::store::{RunFilter, RunOwner, RunStatus, Store, StoreError};
use sea_orm::ConnectionTrait;
use sea_orm_migration::MigratorTrait;

#[tokio::test]
async fn migrations_apply_twice() {
    on_each_backend(async |store: &Store| {
        store.migrate().await.expect("second migration");
        store.migrate().await.expect("third migration");

        let pending = Migrator::get_pending_migrations(store.connection())
            .await
            .expect("read migration status");
        assert!(pending.is_empty(), "{} migrations pending", pending.len());
    })
    .await;
}

#[tokio::test]
async fn current_schema_check_follows_migration_table() {
    on_each_backend(async |store: &Store| {
        assert!(store.schema_is_current().await, "fresh store not current");

        let db = store.connection();
        let first = Migrator::migrations()[0].name().to_owned();
        db.execute_unprepared(&format!(
            "DELETE FROM seaql_migrations WHERE version = '{first}'"
        ))
        .await
        .expect("delete one applied version");
        assert!(!store.schema_is_current().await, "current without {first}");
    })
    .await;
}

#[tokio::test]
async fn migrate_rejects_unknown_applied_migration() {
    on_each_backend(async |store: &Store| {
        store
            .connection()
            .execute_unprepared(
                "INSERT INTO seaql_migrations (version, applied_at) \
                 VALUES ('m29991231_000001_from_newer_build', 0)",
            )
            .await
            .expect("record a migration of a newer build");

        let result = store.migrate().await;
        assert!(matches!(result, Err(StoreError::Migrate(_))), "{result:?}");
    })
    .await;
}

#[tokio::test]
async fn sqlite_connection_uses_wal_and_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/by-url.db?mode=rwc", dir.path().display());
    let store = Store::connect(&url).await.expect("connect by URL");
    store.migrate().await.expect("migrate");
    let db = store.connection();

    let pragma = async |name: &str| {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!("PRAGMA {name}"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<String>(0)
            .or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))
            .unwrap()
    };

    assert_eq!(pragma("journal_mode").await, "wal");
    assert_eq!(pragma("foreign_keys").await, "1");
    assert_eq!(pragma("busy_timeout").await, "30000");
}

#[tokio::test]
async fn sqlite_opens_odd_paths_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("data dir?x=1#frag%20");

    let store = Store::open_sqlite(&odd).await.expect("open odd path");
    store.create_run(new_run("odd")).await.unwrap();
    assert!(odd.join(crate::store::SQLITE_FILE_NAME).is_file());

    let memory = Store::connect("sqlite::memory:")
        .await
        .expect("connect in memory");
    memory.migrate().await.expect("migrate in memory");
    let run = memory.create_run(new_run("memory")).await.unwrap();
    assert!(memory.get_run(&run.id).await.unwrap().is_some());
}

#[tokio::test]
async fn concurrent_migrations_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/shared.db?mode=rwc", dir.path().display());
    let database = super::TempDatabase::create().await;

    for url in [url.as_str(), database.url.as_str()] {
        let first = Store::connect(url).await.unwrap();
        let second = Store::connect(url).await.unwrap();

        let (a, b) = tokio::join!(first.migrate(), second.migrate());

        a.expect("first migration");
        b.expect("second migration");
        let applied = Migrator::get_applied_migrations(first.connection())
            .await
            .unwrap();
        assert_eq!(applied.len(), Migrator::migrations().len(), "on {url}");
        first.close().await.unwrap();
        second.close().await.unwrap();
    }
}

/// Processes started together on a new data directory, such as `runledger run` and a
/// `runledger runs list` polling it, each open the file while another may be turning on WAL.
/// Switching the journal mode takes a lock that SQLite's busy timeout does not wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_sqlite_file_opens_concurrently() {
    const ROUNDS: usize = 12;
    const STORES: usize = 6;

    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let opens: Vec<_> = (0..STORES)
            .map(|_| {
                let path = dir.path().to_owned();
                tokio::spawn(async move { Store::open_sqlite(&path).await })
            })
            .collect();

        for (index, open) in opens.into_iter().enumerate() {
            let store = open
                .await
                .unwrap()
                .unwrap_or_else(|error| panic!("round {round}, store {index}: {error}"));
            store.close().await.unwrap();
        }
    }
}

#[test]
fn redact_password_hides_only_password() {
    let redact = crate::store::redact_password;

    assert_eq!(
        redact("postgres://user:secret@db:5432/runs"),
        "postgres://user:***@db:5432/runs"
    );
    assert_eq!(
        redact("postgres://user@db:5432/runs"),
        "postgres://user@db:5432/runs"
    );
    assert_eq!(redact("sqlite:///tmp/a@b.db"), "sqlite:///tmp/a@b.db");
}

#[tokio::test]
async fn params_are_immutable() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("params")).await.unwrap();
        let params = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        store
            .log_params(&run.id, &params(&[("lr", "0.1"), ("epochs", "3")]))
            .await
            .unwrap();

        store
            .log_params(&run.id, &params(&[("lr", "0.1")]))
            .await
            .expect("logging the same value again is accepted");

        let error = store
            .log_params(&run.id, &params(&[("batch", "32"), ("lr", "0.2")]))
            .await
            .unwrap_err();
        match &error {
            StoreError::ParamConflict { key, old, new, .. } => {
                assert_eq!(key, "lr");
                assert_eq!(old, "0.1");
                assert_eq!(new, "0.2");
            }
            other => panic!("expected a param conflict, got {other}"),
        }
        let message = error.to_string();
        assert!(
            message.contains("`0.1`") && message.contains("`0.2`"),
            "{message}"
        );

        let stored = store.get_params(&run.id).await.unwrap();
        assert_eq!(
            stored.len(),
            2,
            "the rejected call stored nothing: {stored:?}"
        );
        assert_eq!(stored["lr"], "0.1");

        let duplicate = store
            .log_params(&run.id, &params(&[("seed", "1"), ("seed", "2")]))
            .await
            .unwrap_err();
        assert!(
            matches!(duplicate, StoreError::ParamConflict { .. }),
            "{duplicate}"
        );
    })
    .await;
}

#[tokio::test]
async fn run_status_sets_timestamps() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("status")).await.unwrap();
        assert_eq!(run.status, RunStatus::Queued);
        assert!(run.started_at.is_none());

        let running = store
            .set_run_status(&run.id, RunStatus::Running, None)
            .await
            .unwrap();
        assert!(running.started_at.is_some());
        assert!(running.ended_at.is_none());

        let failed = store
            .set_run_status(
                &run.id,
                RunStatus::Failed,
                Some("step `train` failed".into()),
            )
            .await
            .unwrap();
        assert!(failed.ended_at.is_some());
        assert_eq!(failed.started_at, running.started_at);
        assert_eq!(failed.error.as_deref(), Some("step `train` failed"));

        let error = store
            .set_run_status(&run.id, RunStatus::Running, None)
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::RunAlreadyEnded { .. }),
            "{error}"
        );

        let missing = store
            .set_run_status("no-such-run", RunStatus::Running, None)
            .await
            .unwrap_err();
        assert!(matches!(missing, StoreError::RunNotFound(_)), "{missing}");
    })
    .await;
}

#[tokio::test]
async fn list_runs_applies_filters() {
    on_each_backend(async |store: &Store| {
        let pipeline = store
            .ensure_pipeline("default", "train", "steps: []\n")
            .await
            .unwrap();
        let again = store
            .ensure_pipeline("default", "train", "steps: []\n")
            .await
            .unwrap();
        assert_eq!(pipeline.id, again.id);

        let mut ids = Vec::new();
        for name in ["a", "b", "c"] {
            let mut new = new_run(name);
            new.pipeline_id = Some(pipeline.id);
            ids.push(store.create_run(new).await.unwrap().id);
        }
        let external = store.create_run(new_run("external")).await.unwrap();
        store
            .set_run_status(&ids[1], RunStatus::Running, None)
            .await
            .unwrap();
        let tag = [("team".to_owned(), "vision".to_owned())];
        store.set_tags(&ids[2], &tag).await.unwrap();
        store.set_tags(&external.id, &tag).await.unwrap();

        let all = store.list_runs(&RunFilter::default()).await.unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].id, external.id, "newest first");

        let by_pipeline = RunFilter {
            pipeline_name: Some("train".into()),
            ..RunFilter::default()
        };
        assert_eq!(store.list_runs(&by_pipeline).await.unwrap().len(), 3);

        let by_status = RunFilter {
            status: Some(RunStatus::Running),
            ..RunFilter::default()
        };
        let running = store.list_runs(&by_status).await.unwrap();
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].id, ids[1]);

        let by_tag_and_pipeline = RunFilter {
            pipeline_name: Some("train".into()),
            tags: tag.to_vec(),
            ..RunFilter::default()
        };
        let tagged = store.list_runs(&by_tag_and_pipeline).await.unwrap();
        assert_eq!(tagged.len(), 1);
        assert_eq!(tagged[0].id, ids[2]);

        let limited = RunFilter {
            project: Some("default".into()),
            limit: Some(2),
            ..RunFilter::default()
        };
        assert_eq!(store.list_runs(&limited).await.unwrap().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn tags_upsert_and_delete() {
    on_each_backend(async |store: &Store| {
        let run = store.create_run(new_run("tags")).await.unwrap();
        let tag = |k: &str, v: &str| (k.to_owned(), v.to_owned());

        store
            .set_tags(&run.id, &[tag("stage", "dev"), tag("owner", "ana")])
            .await
            .unwrap();
        store
            .set_tags(&run.id, &[tag("stage", "prod"), tag("stage", "staging")])
            .await
            .unwrap();
        store.delete_tag(&run.id, "owner").await.unwrap();

        let tags = store.get_tags(&run.id).await.unwrap();
        assert_eq!(tags.len(), 1);
        assert_eq!(tags["stage"], "staging", "the last value given wins");
    })
    .await;
}

#[tokio::test]
async fn mark_interrupted_only_dead_local_owners() {
    on_each_backend(async |store: &Store| {
        let owned = |name: &str, pid: u32, host: &str| {
            let mut new = new_run(name);
            new.owner = Some(RunOwner {
                pid,
                hostname: host.to_owned(),
            });
            new
        };
        let dead = store.create_run(owned("dead", 100, "here")).await.unwrap();
        let dead_queued = store
            .create_run(owned("queued", 100, "here"))
            .await
            .unwrap();
        let alive = store.create_run(owned("alive", 200, "here")).await.unwrap();
        let elsewhere = store
            .create_run(owned("elsewhere", 100, "there"))
            .await
            .unwrap();
        let finished = store
            .create_run(owned("finished", 100, "here"))
            .await
            .unwrap();
        let unowned = store.create_run(new_run("unowned")).await.unwrap();
        for run in [&dead, &alive, &elsewhere, &finished] {
            store
                .set_run_status(&run.id, RunStatus::Running, None)
                .await
                .unwrap();
        }
        store
            .set_run_status(&finished.id, RunStatus::Succeeded, None)
            .await
            .unwrap();
        let step = store
            .create_step_run(super::steps::new_step(&dead.id, "train", None))
            .await
            .unwrap();
        store
            .update_step_run(&step.id, super::steps::running(1))
            .await
            .unwrap();

        let mut marked = store
            .mark_interrupted("here", |pid| pid == 200)
            .await
            .unwrap();
        marked.sort();
        let mut expected = vec![dead.id.clone(), dead_queued.id.clone()];
        expected.sort();
        assert_eq!(marked, expected);

        let status = async |id: &str| store.require_run(id).await.unwrap().status;
        assert_eq!(status(&dead.id).await, RunStatus::Interrupted);
        assert_eq!(status(&alive.id).await, RunStatus::Running);
        assert_eq!(status(&elsewhere.id).await, RunStatus::Running);
        assert_eq!(status(&finished.id).await, RunStatus::Succeeded);
        assert_eq!(status(&unowned.id).await, RunStatus::Queued);

        let interrupted = store.require_run(&dead.id).await.unwrap();
        assert!(interrupted.ended_at.is_some());
        assert!(interrupted.error.unwrap().contains("100"));
        let step = store.get_step_run(&step.id).await.unwrap().unwrap();
        assert_eq!(step.status, crate::store::StepStatus::Cancelled);
        assert!(step.ended_at.is_some());

        let again = store.mark_interrupted("here", |_| false).await.unwrap();
        assert_eq!(again, vec![alive.id.clone()]);
    })
    .await;
}
