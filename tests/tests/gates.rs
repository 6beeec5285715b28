//! Governance against real plugin components and real databases: model versions validated by
//! the shipped validators, promotions decided by the shipped policies, approvals and their
//! refusals, policies that fail and so deny, and the audit log of a whole flow. Every scenario
//! runs once on SQLite and once on a fresh PostgreSQL database.
//!
//! Needs `cargo xtask build-plugins` and PostgreSQL at 127.0.0.1:5432 trusting user
//! `postgres`; run with `cargo test -p runledger-tests --test gates`.

use runledger::engine::{Engine, RunOptions, plan::PlanContext};
use runledger::gates::{
    Actor, DecisionKind, GateError, Gates, NewModelRequest, NewVersion, PromotionStatus,
    PromotionView, Role, SelfApprovalKind, Trigger, ValidatorSpec, VersionView,
};
use runledger::runtime::PluginRegistry;
use runledger::store::artifacts::ArtifactStore;
use runledger::store::{
    DEFAULT_PROJECT, Direction, NewEdge, NewMetric, NewRun, NewStepRun, Node, RunSource, RunStatus,
    StepStatus, Store,
};
use runledger_tests::{
    Backend, TestStore, registry, shared_runtime, test_plugins_dir, workspace_root,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Defines a `_sqlite` and a `_postgres` test for each async scenario function.
macro_rules! on_both_backends {
    ($($scenario:ident => $sqlite:ident, $postgres:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $sqlite() {
                $scenario(Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $postgres() {
                $scenario(Backend::Postgres).await;
            }
        )*
    };
}

on_both_backends! {
    promotion_without_policies => no_policies_sqlite, no_policies_postgres;
    two_approvals_complete => two_approvals_sqlite, two_approvals_postgres;
    approval_refusals => approval_refusals_sqlite, approval_refusals_postgres;
    dataset_allowlist_denies => allowlist_denies_sqlite, allowlist_denies_postgres;
    failed_validation_denies => failed_validation_sqlite, failed_validation_postgres;
    baseline_compare_fails_worse => baseline_compare_sqlite, baseline_compare_postgres;
    broken_policies_deny => broken_policies_sqlite, broken_policies_postgres;
    audit_of_whole_flow => audit_flow_sqlite, audit_flow_postgres;
    wine_pipeline_flow => wine_flow_sqlite, wine_flow_postgres;
    validator_inputs_and_failures => validator_inputs_sqlite, validator_inputs_postgres;
    attachment_checks => attachment_checks_sqlite, attachment_checks_postgres;
}

/// Name of the registered model every scenario uses.
const MODEL: &str = "wine-quality";

/// User that started every run the fixture records.
const AUTHOR: &str = "dana";

/// Content of the training dataset of the recorded runs.
const DATASET: &[u8] = b"fixed acidity,quality\n7.4,5\n7.8,5\n11.2,6\n";

// ---------------------------------------------------------------------------------------------
// fixture

/// A store on a fresh database and the gates over it.
struct Fixture {
    db: TestStore,
    gates: Gates,
}

/// What [`Fixture::record_run`] recorded.
struct RecordedRun {
    run_id: String,
    model_digest: String,
    dataset_digest: String,
}

impl Fixture {
    async fn new(backend: Backend) -> Self {
        let db = TestStore::open(backend).await;
        let gates = Gates::new(db.store.clone(), shared_runtime());
        Self { db, gates }
    }

    fn store(&self) -> &Store {
        &self.db.store
    }

    /// Records a succeeded run by [`AUTHOR`]: the dataset as a run input, a `train` step that
    /// read it and produced `model`, the lineage between them, and `metrics` at step 0.
    async fn record_run(&self, metrics: &[(&str, f64)]) -> RecordedRun {
        let store = self.store();
        let run = store
            .create_run(NewRun {
                project: DEFAULT_PROJECT.to_owned(),
                pipeline_id: None,
                name: "train-wine".to_owned(),
                source: RunSource::Api,
                user_name: AUTHOR.to_owned(),
                seed: None,
                owner: None,
            })
            .await
            .expect("run is created");
        store
            .set_run_status(&run.id, RunStatus::Running, None)
            .await
            .expect("run starts");

        let dataset_digest = sha256(DATASET);
        store
            .record_artifact(&dataset_digest, DATASET.len() as u64, "text/csv")
            .await
            .expect("dataset artifact is recorded");
        store
            .record_dataset(&dataset_digest, "wine", "file:///data/wine.csv")
            .await
            .expect("dataset is recorded");
        store
            .link_artifact(&run.id, None, "wine", &dataset_digest, Direction::Input)
            .await
            .expect("dataset is linked as run input");

        let step = store
            .create_step_run(NewStepRun {
                run_id: run.id.clone(),
                name: "train".to_owned(),
                plugin: None,
                executor: "external".to_owned(),
                status: StepStatus::Succeeded,
                params: json!({}),
                cache_key: None,
                cached_from: None,
            })
            .await
            .expect("step run is created");

        let model_bytes = format!("model of run {}", run.id);
        let model_digest = sha256(model_bytes.as_bytes());
        store
            .record_artifact(&model_digest, model_bytes.len() as u64, "application/json")
            .await
            .expect("model artifact is recorded");
        store
            .link_artifact(
                &run.id,
                Some(&step.id),
                "model",
                &model_digest,
                Direction::Output,
            )
            .await
            .expect("model is linked as step output");
        store
            .add_edges(&[
                NewEdge {
                    run_id: run.id.clone(),
                    source: Node::dataset(dataset_digest.clone()),
                    target: Node::step_run(step.id.clone()),
                },
                NewEdge {
                    run_id: run.id.clone(),
                    source: Node::step_run(step.id.clone()),
                    target: Node::artifact(model_digest.clone()),
                },
            ])
            .await
            .expect("lineage is recorded");

        let values: Vec<NewMetric> = metrics
            .iter()
            .map(|(key, value)| NewMetric {
                step_run_id: None,
                key: (*key).to_owned(),
                value: *value,
                step: 0,
                timestamp_ms: 1_700_000_000_000,
            })
            .collect();
        store
            .log_metrics(&run.id, &values)
            .await
            .expect("metrics are logged");
        store
            .set_run_status(&run.id, RunStatus::Succeeded, None)
            .await
            .expect("run succeeds");

        RecordedRun {
            run_id: run.id,
            model_digest,
            dataset_digest,
        }
    }

    async fn create_model(&self) {
        let new = NewModelRequest {
            name: MODEL.to_owned(),
            description: "predicts wine quality".to_owned(),
            tags: Default::default(),
        };
        self.gates
            .create_model(&admin(), new)
            .await
            .expect("model is registered");
    }

    /// Creates the next version of [`MODEL`] from the `train.model` output of `run`.
    async fn create_version(&self, run: &RecordedRun) -> VersionView {
        let new = NewVersion {
            model: MODEL.to_owned(),
            run_id: run.run_id.clone(),
            artifact: "train.model".to_owned(),
            description: String::new(),
            tags: Default::default(),
        };
        self.gates
            .create_version(registry(), &admin(), new)
            .await
            .expect("version is created")
    }

    async fn set_policies(&self, alias: &str, policies: Vec<ValidatorSpec>) {
        self.gates
            .set_policies(registry(), &admin(), MODEL, alias, policies)
            .await
            .expect("policies are attached");
    }

    async fn request(&self, requester: &Actor, version: u64, alias: &str) -> PromotionView {
        self.request_with(registry(), requester, version, alias)
            .await
    }

    async fn request_with(
        &self,
        plugins: &PluginRegistry,
        requester: &Actor,
        version: u64,
        alias: &str,
    ) -> PromotionView {
        self.gates
            .request_promotion(plugins, requester, MODEL, version, alias)
            .await
            .expect("promotion is requested")
    }

    async fn approve(&self, approver: &Actor, version: u64, alias: &str) -> PromotionView {
        self.try_approve(approver, version, alias)
            .await
            .unwrap_or_else(|error| panic!("{} approves: {error}", approver.name))
    }

    async fn try_approve(
        &self,
        approver: &Actor,
        version: u64,
        alias: &str,
    ) -> Result<PromotionView, GateError> {
        self.gates
            .approve(registry(), approver, MODEL, version, alias, "looks good")
            .await
    }

    /// Returns the version `alias` points at, if any.
    async fn alias_target(&self, alias: &str) -> Option<u64> {
        let model = self.gates.model(MODEL).await.expect("model is read");
        model.aliases.get(alias).copied()
    }
}

fn actor(name: &str, role: Role) -> Actor {
    Actor {
        name: name.to_owned(),
        role,
    }
}

fn admin() -> Actor {
    actor("root", Role::Admin)
}

fn spec(plugin: &str, config: Value) -> ValidatorSpec {
    ValidatorSpec {
        plugin: plugin.to_owned(),
        config,
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn required_approvals(count: u32) -> ValidatorSpec {
    spec(
        "required-approvals",
        json!({ "count": count, "role": "approver" }),
    )
}

// ---------------------------------------------------------------------------------------------
// scenarios

async fn promotion_without_policies(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    fixture.create_model().await;
    let run = fixture.record_run(&[("test_rmse", 0.6)]).await;
    let version = fixture.create_version(&run).await;
    assert_eq!(version.version, 1, "first version number");
    assert_eq!(
        version.artifact_name, "train.model",
        "canonical artifact name"
    );
    assert_eq!(version.artifact_digest, run.model_digest, "artifact digest");

    let promotion = fixture
        .request(&actor("alice", Role::Editor), 1, "production")
        .await;

    assert_eq!(
        promotion.status,
        PromotionStatus::Completed,
        "no policy: completes"
    );
    assert!(promotion.decisions.is_empty(), "no policy: no decisions");
    assert_eq!(
        fixture.alias_target("production").await,
        Some(1),
        "alias moved"
    );
    let shown = fixture
        .gates
        .version(MODEL, 1)
        .await
        .expect("version is read");
    assert_eq!(
        shown.aliases,
        vec!["production".to_owned()],
        "version lists its alias"
    );
}

async fn two_approvals_complete(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    fixture.create_model().await;
    let run = fixture.record_run(&[("test_rmse", 0.6)]).await;
    fixture.create_version(&run).await;
    fixture
        .set_policies("production", vec![required_approvals(2)])
        .await;

    let requested = fixture
        .request(&actor("alice", Role::Editor), 1, "production")
        .await;
    assert_eq!(
        requested.status,
        PromotionStatus::Pending,
        "waits for approvals"
    );
    assert_eq!(requested.needed.len(), 1, "one policy waits");
    assert_eq!(requested.needed[0].count, 2, "two approvals missing");
    assert_eq!(requested.needed[0].role, "approver", "role needed");
    assert_eq!(
        requested.needed[0].plugin, "required-approvals@0.1.0",
        "waiting policy"
    );
    assert_eq!(
        requested.decisions[0].decision,
        DecisionKind::Pending,
        "decision"
    );
    assert_eq!(
        fixture.alias_target("production").await,
        None,
        "alias not moved yet"
    );

    let first = fixture
        .approve(&actor("bob", Role::Approver), 1, "production")
        .await;
    assert_eq!(
        first.status,
        PromotionStatus::Pending,
        "one approval is not enough"
    );
    assert_eq!(first.needed[0].count, 1, "one approval missing");
    assert_eq!(first.approvals.len(), 1, "approvals so far");
    let listed = fixture
        .gates
        .promotions(MODEL, Some(PromotionStatus::Pending))
        .await
        .expect("pending promotions are listed");
    assert_eq!(
        listed[0].needed, first.needed,
        "listing reads back what is needed"
    );
    let read = fixture
        .gates
        .promotion(first.id)
        .await
        .expect("the promotion is read back");
    assert_eq!(
        read.needed, first.needed,
        "reading by id gives what is needed"
    );
    assert_eq!(
        fixture.alias_target("production").await,
        None,
        "alias still not moved"
    );

    let second = fixture
        .approve(&actor("carol", Role::Admin), 1, "production")
        .await;
    assert_eq!(
        second.status,
        PromotionStatus::Completed,
        "two approvals complete it"
    );
    assert!(second.needed.is_empty(), "nothing more needed");
    assert_eq!(
        second.decisions[0].decision,
        DecisionKind::Allow,
        "policy allows"
    );
    let approvers: Vec<&str> = second
        .approvals
        .iter()
        .map(|a| a.approver.as_str())
        .collect();
    assert_eq!(approvers, ["bob", "carol"], "approvals in order");
    assert_eq!(
        fixture.alias_target("production").await,
        Some(1),
        "alias moved"
    );

    let completed = fixture
        .gates
        .promotions(MODEL, Some(PromotionStatus::Completed))
        .await
        .expect("promotions are listed");
    assert_eq!(completed.len(), 1, "one completed promotion");
    assert_eq!(completed[0].version, 1, "completed promotion's version");
}

async fn approval_refusals(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    fixture.create_model().await;
    let run = fixture.record_run(&[("test_rmse", 0.6)]).await;
    fixture.create_version(&run).await;
    fixture
        .set_policies("production", vec![required_approvals(1)])
        .await;

    let unrequested = fixture
        .try_approve(&actor("bob", Role::Approver), 1, "production")
        .await;
    assert!(
        matches!(
            unrequested,
            Err(GateError::NoPendingPromotion { version: 1, .. })
        ),
        "approval before any request: {unrequested:?}"
    );

    let requester = actor("alice", Role::Approver);
    fixture.request(&requester, 1, "production").await;

    let own = fixture.try_approve(&requester, 1, "production").await;
    assert!(
        matches!(
            own,
            Err(GateError::SelfApproval {
                kind: SelfApprovalKind::Requester,
                ..
            })
        ),
        "the requester approves: {own:?}"
    );
    let author = fixture
        .try_approve(&actor(AUTHOR, Role::Admin), 1, "production")
        .await;
    assert!(
        matches!(
            author,
            Err(GateError::SelfApproval {
                kind: SelfApprovalKind::RunAuthor,
                ..
            })
        ),
        "the run's author approves: {author:?}"
    );
    let viewer = fixture
        .try_approve(&actor("eve", Role::Viewer), 1, "production")
        .await;
    match viewer {
        Err(GateError::RoleTooLow { role, needed, .. }) => {
            assert_eq!(role, Role::Viewer, "role reported");
            assert_eq!(needed, Role::Approver, "role needed");
        }
        other => panic!("a viewer approves: {other:?}"),
    }
    let editor = fixture
        .try_approve(&actor("frank", Role::Editor), 1, "production")
        .await;
    assert!(
        matches!(
            editor,
            Err(GateError::RoleTooLow {
                role: Role::Editor,
                ..
            })
        ),
        "an editor approves: {editor:?}"
    );

    let pending_policy = spec(
        "required-approvals",
        json!({ "count": 2, "role": "approver" }),
    );
    fixture
        .set_policies("production", vec![pending_policy])
        .await;
    let bob = actor("bob", Role::Approver);
    let long_comment = "z".repeat(runledger::gates::MAX_COMMENT_CHARS + 1);
    let too_long = fixture
        .gates
        .approve(registry(), &bob, MODEL, 1, "production", &long_comment)
        .await;
    assert!(
        matches!(
            too_long,
            Err(GateError::InvalidInput {
                field: "comment",
                ..
            })
        ),
        "an oversized comment: {too_long:?}"
    );
    let once = fixture.approve(&bob, 1, "production").await;
    assert_eq!(
        once.status,
        PromotionStatus::Pending,
        "one of two approvals"
    );
    let twice = fixture.try_approve(&bob, 1, "production").await;
    assert!(
        matches!(twice, Err(GateError::DuplicateApproval { .. })),
        "bob approves twice: {twice:?}"
    );
    let message = twice.unwrap_err().to_string();
    assert!(
        message.contains("bob already approved"),
        "message: {message}"
    );

    let other_alias = fixture.try_approve(&bob, 1, "staging").await;
    assert!(
        matches!(other_alias, Err(GateError::NoPendingPromotion { .. })),
        "approval of an alias nobody asked for: {other_alias:?}"
    );
    assert_eq!(
        fixture.alias_target("production").await,
        None,
        "alias never moved"
    );
}

async fn dataset_allowlist_denies(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    fixture.create_model().await;
    let run = fixture.record_run(&[("test_rmse", 0.6)]).await;
    fixture.create_version(&run).await;
    let allowed = sha256(b"some other dataset");
    fixture
        .set_policies(
            "production",
            vec![spec("dataset-allowlist", json!({ "digests": [allowed] }))],
        )
        .await;

    let promotion = fixture
        .request(&actor("alice", Role::Editor), 1, "production")
        .await;

    assert_eq!(
        promotion.status,
        PromotionStatus::Denied,
        "unlisted dataset"
    );
    let reason = promotion.reason.clone().unwrap_or_default();
    assert!(
        reason.contains(&run.dataset_digest),
        "reason names the digest: {reason}"
    );
    assert!(
        reason.contains("wine"),
        "reason names the dataset: {reason}"
    );
    assert!(
        reason.contains("dataset-allowlist@0.1.0"),
        "reason names the policy: {reason}"
    );
    assert_eq!(
        promotion.decisions[0].decision,
        DecisionKind::Deny,
        "policy denies"
    );
    assert_eq!(
        fixture.alias_target("production").await,
        None,
        "alias not moved"
    );

    let listed = spec(
        "dataset-allowlist",
        json!({ "digests": [run.dataset_digest.clone()] }),
    );
    fixture.set_policies("production", vec![listed]).await;
    let again = fixture
        .request(&actor("alice", Role::Editor), 1, "production")
        .await;
    assert_eq!(
        again.status,
        PromotionStatus::Completed,
        "listed dataset: {again:?}"
    );
}

async fn failed_validation_denies(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    fixture.create_model().await;
    let threshold = spec(
        "metric-threshold",
        json!({ "rules": ["test_rmse <= 0.5", "test_r2 >= 0.25"] }),
    );
    fixture
        .gates
        .set_validators(registry(), &admin(), MODEL, vec![threshold])
        .await
        .expect("validators are attached");
    fixture
        .set_policies(
            "production",
            vec![spec(
                "validations-passed",
                json!({ "require-checks": true }),
            )],
        )
        .await;
    let run = fixture
        .record_run(&[("test_rmse", 0.7), ("test_r2", 0.4)])
        .await;

    let version = fixture.create_version(&run).await;

    assert_eq!(version.validations.len(), 1, "one validator ran");
    let validation = &version.validations[0];
    assert_eq!(validation.trigger, "model_version", "trigger");
    assert_eq!(
        validation.plugin, "metric-threshold@0.1.0",
        "pinned plugin id"
    );
    assert!(validation.error.is_none(), "validator ran: {validation:?}");
    let rmse = &validation.checks[0];
    assert_eq!(rmse.name, "test_rmse <= 0.5", "check named by its rule");
    assert!(!rmse.passed, "0.7 is above 0.5");
    assert!(
        rmse.message.contains("0.7"),
        "message gives the value: {}",
        rmse.message
    );
    assert!(validation.checks[1].passed, "0.4 >= 0.25");

    let promotion = fixture
        .request(&actor("alice", Role::Editor), 1, "production")
        .await;
    assert_eq!(
        promotion.status,
        PromotionStatus::Denied,
        "failed blocking check"
    );
    let reason = promotion.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("test_rmse <= 0.5"),
        "reason names the check: {reason}"
    );
    assert!(
        reason.contains("metric-threshold"),
        "reason names the validator: {reason}"
    );

    let passing = fixture
        .record_run(&[("test_rmse", 0.45), ("test_r2", 0.4)])
        .await;
    let second = fixture.create_version(&passing).await;
    assert!(
        second.validations[0]
            .checks
            .iter()
            .all(|check| check.passed),
        "second version passes: {:?}",
        second.validations
    );
    let promoted = fixture
        .request(&actor("alice", Role::Editor), 2, "production")
        .await;
    assert_eq!(
        promoted.status,
        PromotionStatus::Completed,
        "passing version"
    );
    assert_eq!(
        fixture.alias_target("production").await,
        Some(2),
        "alias moved"
    );
}

async fn baseline_compare_fails_worse(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    fixture.create_model().await;
    let baseline = spec(
        "baseline-compare",
        json!({
            "model": MODEL,
            "alias": "production",
            "metrics": [{ "key": "test_rmse", "better": "lower", "max-regression": 0.05 }],
        }),
    );
    fixture
        .gates
        .set_validators(registry(), &admin(), MODEL, vec![baseline])
        .await
        .expect("validators are attached");

    let first_run = fixture.record_run(&[("test_rmse", 0.6)]).await;
    let first = fixture.create_version(&first_run).await;
    let checks = &first.validations[0].checks;
    assert_eq!(checks.len(), 1, "one check without a baseline: {checks:?}");
    assert_eq!(checks[0].name, "baseline", "check name without a baseline");
    assert!(checks[0].passed, "no baseline passes by default");
    fixture
        .request(&actor("alice", Role::Editor), 1, "production")
        .await;

    let worse_run = fixture.record_run(&[("test_rmse", 0.8)]).await;
    let worse = fixture.create_version(&worse_run).await;
    let check = &worse.validations[0].checks[0];
    assert!(
        !check.passed,
        "0.8 regresses 0.6 by more than 0.05: {check:?}"
    );
    assert!(
        check.message.contains("0.8"),
        "message gives the value: {}",
        check.message
    );
    assert!(
        check.message.contains("0.6"),
        "message gives the baseline: {}",
        check.message
    );
    assert!(
        check.message.contains(&first_run.run_id),
        "message names the baseline run: {}",
        check.message
    );

    let close_run = fixture.record_run(&[("test_rmse", 0.62)]).await;
    let close = fixture.create_version(&close_run).await;
    assert!(
        close.validations[0].checks[0].passed,
        "0.62 is within 0.05 of 0.6"
    );

    let manual = fixture
        .gates
        .validate_run(
            registry(),
            &admin(),
            &worse_run.run_id,
            &[spec("finite-metrics", json!({}))],
            Trigger::Manual,
            None,
        )
        .await
        .expect("manual validation runs");
    assert_eq!(manual.blocking_failures, 0, "finite metrics: {manual:?}");
    assert_eq!(manual.records[0].trigger, "manual", "manual trigger");
}

async fn broken_policies_deny(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    fixture.create_model().await;
    let run = fixture.record_run(&[("test_rmse", 0.6)]).await;
    fixture.create_version(&run).await;
    let requester = actor("alice", Role::Editor);

    // Each broken policy with the words one of which its reason must contain. The spinning
    // one runs out of fuel, or of time on a loaded machine.
    let broken_policies: [(&str, &[&str]); 4] = [
        ("policy-panics", &["deliberate panic"]),
        ("policy-spin", &["fuel budget", "wall-clock timeout"]),
        ("policy-garbage", &["count of 0"]),
        ("policy-wrong-imports", &["runledger:plugin/artifacts"]),
    ];
    for (broken, causes) in broken_policies {
        fixture
            .set_policies("production", vec![spec(broken, json!({}))])
            .await;
        let promotion = fixture.request(&requester, 1, "production").await;
        assert_eq!(promotion.status, PromotionStatus::Denied, "{broken} denies");
        let reason = promotion.reason.clone().unwrap_or_default();
        let id = format!("{broken}@0.1.0");
        assert!(
            reason.contains(&id),
            "{broken}: reason names the plugin: {reason}"
        );
        assert!(
            causes.iter().any(|cause| reason.contains(cause)),
            "{broken}: reason gives the cause: {reason}"
        );
        let digest = &promotion.decisions[0].digest;
        assert_eq!(digest.len(), 64, "{broken}: digest is recorded");
        assert!(
            reason.contains(digest.as_str()),
            "{broken}: reason gives the digest: {reason}"
        );
        assert_eq!(
            fixture.alias_target("production").await,
            None,
            "{broken}: no move"
        );
    }

    // required-approvals lives in the first-party directory only, so a registry of the test
    // plugins alone does not have it at decision time.
    fixture
        .set_policies("production", vec![required_approvals(1)])
        .await;
    let without_policy = PluginRegistry::scan(&[test_plugins_dir()]);
    let missing = fixture
        .request_with(&without_policy, &requester, 1, "production")
        .await;
    assert_eq!(
        missing.status,
        PromotionStatus::Denied,
        "missing plugin denies"
    );
    let reason = missing.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("required-approvals@0.1.0") && reason.contains("not found"),
        "reason names the missing plugin: {reason}"
    );

    fixture
        .set_policies(
            "production",
            vec![spec(
                "validations-passed",
                json!({ "require-checks": false }),
            )],
        )
        .await;
    let working = fixture.request(&requester, 1, "production").await;
    assert_eq!(
        working.status,
        PromotionStatus::Completed,
        "a sound policy after broken ones"
    );
    assert_eq!(
        fixture.alias_target("production").await,
        Some(1),
        "alias moved"
    );
}

async fn audit_of_whole_flow(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    fixture.create_model().await;
    let run = fixture.record_run(&[("test_rmse", 0.6)]).await;
    fixture.create_version(&run).await;
    fixture
        .set_policies("production", vec![required_approvals(2)])
        .await;
    fixture
        .request(&actor("alice", Role::Editor), 1, "production")
        .await;
    fixture
        .approve(&actor("bob", Role::Approver), 1, "production")
        .await;
    fixture
        .approve(&actor("carol", Role::Approver), 1, "production")
        .await;

    let entries = fixture
        .gates
        .audit(MODEL, None, None, 100)
        .await
        .expect("audit log is read");
    let actions: Vec<&str> = entries.iter().map(|entry| entry.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "model.created",
            "version.created",
            "policies.set",
            "promotion.requested",
            "policy.decided",
            "promotion.pending",
            "approval.recorded",
            "policy.decided",
            "promotion.pending",
            "approval.recorded",
            "policy.decided",
            "alias.moved",
            "promotion.completed",
        ],
        "audit actions in order"
    );
    let seqs: Vec<i64> = entries.iter().map(|entry| entry.seq).collect();
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "seq increases: {seqs:?}"
    );
    let actors: Vec<&str> = entries.iter().map(|entry| entry.actor.as_str()).collect();
    assert_eq!(actors[3], "alice", "requester recorded");
    assert_eq!(actors[6], "bob", "first approver recorded");
    assert_eq!(actors[9], "carol", "second approver recorded");
    let moved = &entries[11];
    assert_eq!(moved.alias.as_deref(), Some("production"), "moved alias");
    assert_eq!(moved.version, Some(1), "version moved to");
    assert_eq!(moved.detail["to"], 1, "alias.moved names the new version");
    assert_eq!(
        moved.detail["from"],
        Value::Null,
        "the alias pointed nowhere before"
    );
    assert_eq!(
        moved.detail["triggered_by"], "carol",
        "the approval that completed the promotion is named"
    );
    let decided = &entries[10];
    assert_eq!(
        decided.promotion_id, entries[3].promotion_id,
        "decision of this promotion"
    );
    assert_eq!(
        decided.detail["plugin"], "required-approvals@0.1.0",
        "policy.decided names the policy"
    );

    let after = fixture
        .gates
        .audit(MODEL, None, Some(seqs[5]), 100)
        .await
        .expect("audit log is read after a seq");
    assert_eq!(after.len(), entries.len() - 6, "entries after the sixth");
    assert_eq!(
        after[0].action, "approval.recorded",
        "first entry after the sixth"
    );
}

async fn validator_inputs_and_failures(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    fixture.create_model().await;
    let run = fixture
        .record_run(&[("test_rmse", 0.6), ("summary", 1.0)])
        .await;
    let params = [
        ("alpha".to_owned(), "0.2".to_owned()),
        ("solver".to_owned(), "sgd".to_owned()),
    ];
    fixture
        .store()
        .log_params(&run.run_id, &params)
        .await
        .expect("params are logged");
    let probe = spec(
        "validator-probe",
        json!({ "series": "test_rmse", "alias": { "model": MODEL, "alias": "production" } }),
    );
    let specs = [
        probe,
        spec("validator-panics", json!({})),
        spec("no-such-validator", json!({})),
    ];

    let outcome = fixture
        .gates
        .validate_run(
            registry(),
            &admin(),
            &run.run_id,
            &specs,
            Trigger::Manual,
            None,
        )
        .await
        .expect("validation runs");

    assert_eq!(outcome.records.len(), 3, "one record per validator");
    assert_eq!(
        outcome.blocking_failures, 2,
        "two validators failed: {outcome:?}"
    );
    let probed = &outcome.records[0];
    assert!(probed.error.is_none(), "probe ran: {probed:?}");
    let names: Vec<&str> = probed.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "summary",
            "test_rmse",
            "summary (2)",
            "series test_rmse",
            "alias wine-quality/production"
        ],
        "check names, the repeated one renamed"
    );
    assert!(
        probed.checks[2].message.contains("more than once"),
        "renamed check says why: {}",
        probed.checks[2].message
    );
    let seen: Value =
        serde_json::from_str(probed.checks[2].message.split(" (renamed").next().unwrap())
            .expect("summary check carries JSON");
    assert_eq!(seen["author"], AUTHOR, "author crossed");
    assert_eq!(seen["run_id"], run.run_id.as_str(), "run id crossed");
    assert_eq!(
        seen["params"],
        json!([["alpha", "0.2"], ["solver", "\"sgd\""]]),
        "params as JSON text"
    );
    assert_eq!(
        seen["input_datasets"],
        json!([["wine", run.dataset_digest]]),
        "run input dataset, once"
    );
    assert_eq!(
        seen["steps"],
        json!([["train", "succeeded", null, false]]),
        "steps"
    );
    assert_eq!(
        probed.checks[3].message, "1 points at steps [0]",
        "series read back"
    );
    assert_eq!(probed.checks[4].message, "none", "no production alias yet");

    let panicked = &outcome.records[1];
    assert_eq!(
        panicked.plugin, "validator-panics@0.1.0",
        "panicking validator"
    );
    let error = panicked.error.clone().unwrap_or_default();
    assert!(
        error.contains("panicked"),
        "error says it panicked: {error}"
    );
    assert_eq!(
        panicked.checks.len(),
        1,
        "one failed check stands for the call"
    );
    assert_eq!(
        panicked.checks[0].name, "validator-panics@0.1.0",
        "check names it"
    );
    assert!(!panicked.checks[0].passed, "the check fails");
    assert_eq!(panicked.checks[0].severity, "blocking", "and blocks");

    let missing = &outcome.records[2];
    assert_eq!(missing.plugin, "no-such-validator", "plugin as given");
    assert_eq!(missing.plugin_digest, "", "no digest without a plugin");
    let error = missing.error.clone().unwrap_or_default();
    assert!(error.contains("not found"), "error says not found: {error}");

    let recorded = fixture
        .gates
        .run_validations(&run.run_id)
        .await
        .expect("validations are listed");
    assert_eq!(
        recorded, outcome.records,
        "listing matches what was recorded"
    );
}

async fn attachment_checks(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    fixture.create_model().await;
    let validators = [
        spec("finite-metrics", json!({})),
        spec("metric-threshold", json!({ "rules": [5] })),
    ];
    let invalid = fixture
        .gates
        .set_validators(registry(), &admin(), MODEL, validators.to_vec())
        .await;
    match invalid {
        Err(error @ GateError::InvalidSpec { index: 1, .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("validators[1]"),
                "names the index: {message}"
            );
            assert!(
                message.contains("metric-threshold"),
                "names the plugin: {message}"
            );
            assert!(
                message.contains("/rules/0"),
                "names the config path: {message}"
            );
        }
        other => panic!("invalid config is attached: {other:?}"),
    }

    let wrong_kind = fixture.gates.check_specs(
        registry(),
        runledger::runtime::PluginKind::Policy,
        &[spec("metric-threshold", json!({ "rules": ["a < 1"] }))],
    );
    match wrong_kind {
        Err(error @ GateError::InvalidSpec { index: 0, .. }) => {
            let message = error.to_string();
            assert!(message.contains("policies[0]"), "names the list: {message}");
            assert!(
                message.contains("metric-validator"),
                "names the kind: {message}"
            );
        }
        other => panic!("a validator is attached as a policy: {other:?}"),
    }

    let reserved = fixture
        .gates
        .set_policies(registry(), &admin(), MODEL, "latest", Vec::new())
        .await;
    assert!(
        reserved.is_err(),
        "the alias `latest` is reserved: {reserved:?}"
    );

    let model = fixture
        .gates
        .set_validators(
            registry(),
            &admin(),
            MODEL,
            vec![spec("finite-metrics", json!({}))],
        )
        .await
        .expect("a valid validator is attached");
    assert_eq!(
        model.validators[0].plugin, "finite-metrics@0.1.0",
        "a plugin given by name is pinned to its version"
    );
    let unchanged = fixture.gates.model(MODEL).await.expect("model is read");
    assert_eq!(
        unchanged.validators.len(),
        1,
        "the rejected list was not stored"
    );
}

async fn wine_pipeline_flow(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    let run_id = run_wine_pipeline(&fixture).await;
    fixture.create_model().await;
    let threshold = spec(
        "metric-threshold",
        json!({ "rules": ["test_rmse <= 5", "`test_rmse` >= 0"] }),
    );
    fixture
        .gates
        .set_validators(registry(), &admin(), MODEL, vec![threshold])
        .await
        .expect("validators are attached");

    let new = NewVersion {
        model: MODEL.to_owned(),
        run_id: run_id.clone(),
        artifact: "train.missing".to_owned(),
        description: String::new(),
        tags: Default::default(),
    };
    let unknown = fixture
        .gates
        .create_version(registry(), &admin(), new.clone())
        .await;
    match unknown {
        Err(error @ GateError::ArtifactNotFound { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("train.model"),
                "message lists outputs: {message}"
            );
        }
        other => panic!("unknown artifact: {other:?}"),
    }

    let version = fixture
        .gates
        .create_version(
            registry(),
            &admin(),
            NewVersion {
                artifact: "train.model".to_owned(),
                ..new
            },
        )
        .await
        .expect("version is created from the wine run");
    let checks = &version.validations[0].checks;
    assert!(
        checks.iter().all(|check| check.passed),
        "wine checks pass: {checks:?}"
    );

    let wine_digest = runledger_tests::sha256_file(
        &workspace_root().join("examples/wine-quality/data/winequality-red.csv"),
    );
    fixture
        .set_policies(
            "production",
            vec![spec(
                "dataset-allowlist",
                json!({ "digests": [wine_digest] }),
            )],
        )
        .await;
    let promotion = fixture
        .request(&actor("alice", Role::Editor), 1, "production")
        .await;
    assert_eq!(
        promotion.status,
        PromotionStatus::Completed,
        "the wine CSV is upstream of the model and allowed: {promotion:?}"
    );
}

/// Runs the wine-quality example through the engine on the fixture's store and returns the
/// run id.
async fn run_wine_pipeline(fixture: &Fixture) -> String {
    let artifacts =
        ArtifactStore::open(fixture.db.dir.path().join("artifacts")).expect("artifact store");
    let engine = Engine::new(shared_runtime(), fixture.store().clone(), artifacts);

    let path = workspace_root().join("examples/wine-quality/pipeline.yaml");
    let text = std::fs::read_to_string(&path).expect("wine pipeline is readable");
    let base_dir = path.parent().expect("pipeline directory").to_owned();
    let context = PlanContext {
        registry: registry(),
        base_dir: &base_dir,
        overrides: &Default::default(),
        artifacts: engine.artifacts(),
        pinned_inputs: &Default::default(),
    };
    let plan = runledger::engine::plan::plan(&text, &path.display().to_string(), &context)
        .expect("wine pipeline plans");

    let options = RunOptions {
        parallelism: 2,
        user: AUTHOR.to_owned(),
        ..RunOptions::default()
    };
    let run_id = engine
        .create_run(&plan, &options)
        .await
        .expect("wine run is created");
    let summary = engine
        .execute(
            &run_id,
            &plan,
            &options,
            Arc::new(AtomicBool::new(false)),
            None,
        )
        .await
        .expect("wine run executes");
    assert_eq!(summary.status, RunStatus::Succeeded, "wine run succeeds");
    run_id
}
