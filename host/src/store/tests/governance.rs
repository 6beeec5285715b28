use super::{digest, new_run, on_each_backend};
use crate::store::entity::{audit_entry, model_version, promotion, registered_model};
use crate::store::migration::Migrator;
use crate::store::{
    Attachment, AuditQuery, CheckRow, ModelChange, ModelQuery, NewModel, NewModelVersion,
    NewPromotion, NewValidation, PolicyDecisionRow, PromotionOutcome, PromotionStatus,
    SYSTEM_ACTOR, Store, StoreError, ValidationTrigger, VersionQuery,
};
use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::MigratorTrait;
use serde_json::json;
use std::collections::BTreeMap;

async fn register(store: &Store, name: &str) -> registered_model::Model {
    let new = NewModel {
        name: name.to_owned(),
        description: format!("{name} model"),
        tags: BTreeMap::from([("team".to_owned(), "ml".to_owned())]),
    };
    store
        .create_model("alice", new)
        .await
        .expect("create model")
}

async fn add_version(store: &Store, model: &str, fill: char) -> model_version::Model {
    let run = store
        .create_run(new_run("train"))
        .await
        .expect("create run");
    let new = NewModelVersion {
        model: model.to_owned(),
        run_id: Some(run.id),
        artifact_name: "train.model".to_owned(),
        artifact_digest: digest(fill),
        source: format!("artifacts:/{}", digest(fill)),
        description: String::new(),
        tags: BTreeMap::new(),
    };
    store
        .create_model_version("alice", new)
        .await
        .expect("create version")
}

async fn audit_actions(store: &Store, model: &str) -> Vec<String> {
    audit(store, model, None)
        .await
        .into_iter()
        .map(|entry| entry.action)
        .collect()
}

async fn audit(store: &Store, model: &str, version: Option<i64>) -> Vec<audit_entry::Model> {
    let query = AuditQuery {
        model: model.to_owned(),
        version,
        after_seq: None,
        limit: 0,
    };
    store.audit_log(&query).await.expect("read audit log")
}

fn decision(plugin: &str, decision: &str, reason: &str) -> PolicyDecisionRow {
    PolicyDecisionRow {
        plugin: plugin.to_owned(),
        plugin_digest: digest('d'),
        decision: decision.to_owned(),
        reason: reason.to_owned(),
        needed: None,
    }
}

fn promotion_to(model: &str, version: i64, alias: &str) -> NewPromotion {
    NewPromotion {
        model: model.to_owned(),
        version,
        alias: alias.to_owned(),
    }
}

#[tokio::test]
async fn models_create_update_delete() {
    on_each_backend(async |store: &Store| {
        let model = register(store, "wine-quality").await;

        assert_eq!(model.created_by, "alice");
        assert_eq!(model.last_version, 0);
        let tags = store.model_tags(model.id).await.unwrap();
        assert_eq!(tags.get("team").map(String::as_str), Some("ml"));
        let again = store
            .create_model(
                "bob",
                NewModel {
                    name: "wine-quality".to_owned(),
                    ..NewModel::default()
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(again, StoreError::ModelNameTaken { ref name } if name == "wine-quality"),
            "{again}"
        );
        let invalid = store
            .create_model(
                "bob",
                NewModel {
                    name: "has space".to_owned(),
                    ..NewModel::default()
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                invalid,
                StoreError::InvalidName {
                    what: "model name",
                    ..
                }
            ),
            "{invalid}"
        );

        let change = ModelChange {
            description: Some("reds and whites".to_owned()),
            new_name: Some("wine".to_owned()),
        };
        let renamed = store
            .update_model("bob", "wine-quality", change)
            .await
            .unwrap();
        assert_eq!(renamed.name, "wine");
        assert_eq!(renamed.description, "reds and whites");
        assert!(store.get_model("wine-quality").await.unwrap().is_none());
        let missing = store.require_model("wine-quality").await.unwrap_err();
        assert!(
            matches!(missing, StoreError::ModelNotFound { .. }),
            "{missing}"
        );

        store.delete_model("carol", "wine").await.expect("delete");
        assert!(store.get_model("wine").await.unwrap().is_none());
        assert_eq!(
            audit_actions(store, "wine-quality").await,
            ["model.created", "model.updated"]
        );
        assert_eq!(
            audit_actions(store, "wine").await,
            ["model.updated", "model.deleted"]
        );
        let renaming = &audit(store, "wine", None).await[0];
        assert_eq!(renaming.actor, "bob");
        assert_eq!(
            renaming.detail["name"],
            json!({ "from": "wine-quality", "to": "wine" })
        );
    })
    .await;
}

#[tokio::test]
async fn models_list_by_prefix_in_pages() {
    on_each_backend(async |store: &Store| {
        for name in ["a_b", "a_c", "axb", "a_d", "b_a"] {
            register(store, name).await;
        }

        let mut query = ModelQuery {
            name_prefix: Some("a_".to_owned()),
            limit: 2,
            page_token: None,
        };
        let first = store.list_models(&query).await.unwrap();
        let names: Vec<&str> = first.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a_b", "a_c"]);
        query.page_token = first.next_page_token;
        let second = store.list_models(&query).await.unwrap();
        let names: Vec<&str> = second.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a_d"]);
        assert_eq!(second.next_page_token, None);

        query.page_token = Some("not-a-token".to_owned());
        let error = store.list_models(&query).await.unwrap_err();
        assert!(matches!(error, StoreError::InvalidPageToken(_)), "{error}");
    })
    .await;
}

#[tokio::test]
async fn model_tags_set_and_delete() {
    on_each_backend(async |store: &Store| {
        let model = register(store, "tagged").await;

        store
            .set_model_tag("bob", "tagged", "team", "infra")
            .await
            .unwrap();
        store
            .set_model_tag("bob", "tagged", "stage", "beta")
            .await
            .unwrap();
        assert!(
            store
                .delete_model_tag("bob", "tagged", "stage")
                .await
                .unwrap()
        );
        assert!(
            !store
                .delete_model_tag("bob", "tagged", "stage")
                .await
                .unwrap()
        );

        let tags = store.model_tags(model.id).await.unwrap();
        assert_eq!(
            tags,
            BTreeMap::from([("team".to_owned(), "infra".to_owned())])
        );
        let entries = audit(store, "tagged", None).await;
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "model.created",
                "model.tag_set",
                "model.tag_set",
                "model.tag_deleted"
            ]
        );
        assert_eq!(entries[1].detail["previous"], json!("ml"));
        let error = store
            .set_model_tag("bob", "tagged", "", "x")
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::InvalidName {
                    what: "tag key",
                    ..
                }
            ),
            "{error}"
        );
    })
    .await;
}

#[tokio::test]
async fn version_numbers_count_up_without_reuse() {
    on_each_backend(async |store: &Store| {
        register(store, "numbered").await;

        let first = add_version(store, "numbered", 'a').await;
        let second = add_version(store, "numbered", 'b').await;
        store
            .delete_model_version("bob", "numbered", 2)
            .await
            .unwrap();
        let third = add_version(store, "numbered", 'c').await;

        assert_eq!([first.version, second.version, third.version], [1, 2, 3]);
        let (_, found) = store.require_model_version("numbered", 1).await.unwrap();
        assert_eq!(found.artifact_digest, digest('a'));
        assert!(
            store
                .get_model_version("numbered", 2)
                .await
                .unwrap()
                .is_none()
        );
        let gone = store
            .require_model_version("numbered", 2)
            .await
            .unwrap_err();
        assert!(
            matches!(gone, StoreError::ModelVersionNotFound { version: 2, .. }),
            "{gone}"
        );
        let model = store.require_model("numbered").await.unwrap();
        let latest = store.latest_model_version(model.id).await.unwrap();
        assert_eq!(latest.map(|v| v.version), Some(3));
    })
    .await;
}

#[tokio::test]
async fn version_creation_checks_inputs() {
    on_each_backend(async |store: &Store| {
        register(store, "checked").await;
        let base = NewModelVersion {
            model: "checked".to_owned(),
            artifact_name: "model".to_owned(),
            artifact_digest: digest('a'),
            ..NewModelVersion::default()
        };

        let no_run = NewModelVersion {
            run_id: Some("missing-run".to_owned()),
            ..base.clone()
        };
        let error = store.create_model_version("a", no_run).await.unwrap_err();
        assert!(matches!(error, StoreError::RunNotFound(_)), "{error}");
        let bad_digest = NewModelVersion {
            artifact_digest: "ABC".to_owned(),
            ..base.clone()
        };
        let error = store
            .create_model_version("a", bad_digest)
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::InvalidDigest(_)), "{error}");
        let no_model = NewModelVersion {
            model: "absent".to_owned(),
            ..base.clone()
        };
        let error = store.create_model_version("a", no_model).await.unwrap_err();
        assert!(matches!(error, StoreError::ModelNotFound { .. }), "{error}");

        let version = store.create_model_version("a", base).await.unwrap();
        assert_eq!(version.version, 1);
        assert_eq!(version.run_id, None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_versions_get_distinct_numbers() {
    on_each_backend(async |store: &Store| {
        register(store, "racy").await;

        let creations = (0..8).map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let new = NewModelVersion {
                    model: "racy".to_owned(),
                    artifact_name: "model".to_owned(),
                    artifact_digest: digest('e'),
                    ..NewModelVersion::default()
                };
                store.create_model_version("racer", new).await
            })
        });
        let results = futures_util::future::join_all(creations).await;

        let mut numbers: Vec<i64> = results
            .into_iter()
            .map(|joined| joined.expect("task").expect("create version").version)
            .collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=8).collect::<Vec<_>>());
        let model = store.require_model("racy").await.unwrap();
        assert_eq!(model.last_version, 8);
    })
    .await;
}

#[tokio::test]
async fn versions_list_newest_first_in_pages() {
    on_each_backend(async |store: &Store| {
        register(store, "paged").await;
        for fill in ['a', 'b', 'c'] {
            add_version(store, "paged", fill).await;
        }

        let mut query = VersionQuery {
            limit: 2,
            page_token: None,
        };
        let first = store.list_model_versions("paged", &query).await.unwrap();
        let numbers: Vec<i64> = first.versions.iter().map(|v| v.version).collect();
        assert_eq!(numbers, [3, 2]);
        query.page_token = first.next_page_token;
        let second = store.list_model_versions("paged", &query).await.unwrap();
        let numbers: Vec<i64> = second.versions.iter().map(|v| v.version).collect();
        assert_eq!(numbers, [1]);
        assert_eq!(second.next_page_token, None);
    })
    .await;
}

#[tokio::test]
async fn version_tags_and_description() {
    on_each_backend(async |store: &Store| {
        register(store, "described").await;
        let version = add_version(store, "described", 'a').await;

        store
            .set_version_tag("bob", "described", 1, "data", "2024")
            .await
            .unwrap();
        store
            .set_version_tag("bob", "described", 1, "gpu", "a100")
            .await
            .unwrap();
        assert!(
            store
                .delete_version_tag("bob", "described", 1, "gpu")
                .await
                .unwrap()
        );
        let updated = store
            .update_model_version("bob", "described", 1, "first good one")
            .await
            .unwrap();

        assert_eq!(updated.description, "first good one");
        let tags = store.version_tags(version.id).await.unwrap();
        assert_eq!(
            tags,
            BTreeMap::from([("data".to_owned(), "2024".to_owned())])
        );
        let entries = audit(store, "described", Some(1)).await;
        let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "version.created",
                "version.tag_set",
                "version.tag_set",
                "version.tag_deleted",
                "version.updated"
            ]
        );
        assert_eq!(
            entries[4].detail["description"]["to"],
            json!("first good one")
        );
    })
    .await;
}

#[tokio::test]
async fn attachments_round_trip() {
    on_each_backend(async |store: &Store| {
        register(store, "governed").await;
        let threshold = Attachment {
            plugin: "metric-threshold@0.1.0".to_owned(),
            config: json!({ "rules": ["test_rmse <= 0.75"] }),
        };
        let finite = Attachment {
            plugin: "finite-metrics".to_owned(),
            config: json!({}),
        };
        let approvals = Attachment {
            plugin: "required-approvals@0.1.0".to_owned(),
            config: json!({ "count": 2, "role": "approver" }),
        };

        let validators = vec![threshold.clone(), finite.clone()];
        store
            .set_model_validators("admin", "governed", validators.clone())
            .await
            .unwrap();
        store
            .set_alias_policies("admin", "governed", "production", vec![approvals.clone()])
            .await
            .unwrap();
        store
            .set_alias_policies("admin", "governed", "staging", vec![finite.clone()])
            .await
            .unwrap();
        store
            .set_alias_policies("admin", "governed", "staging", Vec::new())
            .await
            .unwrap();

        assert_eq!(
            store.model_validators("governed").await.unwrap(),
            validators
        );
        let production = store
            .alias_policies("governed", "production")
            .await
            .unwrap();
        assert_eq!(production, std::slice::from_ref(&approvals));
        assert!(
            store
                .alias_policies("governed", "staging")
                .await
                .unwrap()
                .is_empty()
        );
        let all = store.all_alias_policies("governed").await.unwrap();
        assert_eq!(
            all,
            BTreeMap::from([("production".to_owned(), vec![approvals])])
        );
        let entries = audit(store, "governed", None).await;
        let last = entries.last().expect("audit entries");
        assert_eq!(last.action, "policies.set");
        assert_eq!(last.alias.as_deref(), Some("staging"));
        assert_eq!(
            last.detail["previous"][0]["plugin"],
            json!("finite-metrics")
        );
        let error = store
            .set_alias_policies("admin", "governed", "v2", Vec::new())
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::InvalidName { what: "alias", .. }),
            "{error}"
        );
    })
    .await;
}

#[tokio::test]
async fn validations_round_trip() {
    on_each_backend(async |store: &Store| {
        register(store, "validated").await;
        let version = add_version(store, "validated", 'a').await;
        let run_id = version.run_id.clone().expect("version has a run");
        let checks = vec![
            CheckRow {
                name: "test_rmse <= 0.75".to_owned(),
                passed: true,
                severity: "blocking".to_owned(),
                message: "test_rmse is 0.61".to_owned(),
            },
            CheckRow {
                name: "test_r2 >= 0.25".to_owned(),
                passed: false,
                severity: "blocking".to_owned(),
                message: "test_r2 is 0.12".to_owned(),
            },
        ];
        let new = NewValidation {
            run_id: run_id.clone(),
            model_version_id: Some(version.id),
            trigger: ValidationTrigger::ModelVersion,
            plugin: "metric-threshold@0.1.0".to_owned(),
            plugin_digest: digest('f'),
            config: json!({ "rules": ["test_rmse <= 0.75", "test_r2 >= 0.25"] }),
            error: None,
            checks: checks.clone(),
        };

        let id = store.record_validation("alice", new).await.unwrap();
        let failed = NewValidation {
            run_id: run_id.clone(),
            model_version_id: None,
            trigger: ValidationTrigger::Pipeline,
            plugin: "finite-metrics@0.1.0".to_owned(),
            plugin_digest: digest('0'),
            config: json!({}),
            error: Some("plugin ran out of fuel".to_owned()),
            checks: Vec::new(),
        };
        let second = store.record_validation("alice", failed).await.unwrap();

        let records = store.run_validations(&run_id).await.unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].id, id);
        assert_eq!(records[0].checks, checks);
        assert_eq!(records[0].trigger, ValidationTrigger::ModelVersion);
        assert_eq!(records[0].config["rules"][1], json!("test_r2 >= 0.25"));
        assert_eq!(records[1].id, second);
        assert_eq!(records[1].error.as_deref(), Some("plugin ran out of fuel"));
        assert!(records[1].checks.is_empty());
        let for_version = store.version_validations(version.id).await.unwrap();
        assert_eq!(for_version.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
        let entry = audit(store, "validated", Some(1))
            .await
            .pop()
            .expect("entry");
        assert_eq!(entry.action, "validation.recorded");
        assert_eq!(entry.detail["passed"], json!(1));
        assert_eq!(entry.detail["failed"], json!(1));
        assert_eq!(entry.detail["blocking_failed"], json!(1));
        assert_eq!(entry.detail["plugin_digest"], json!(digest('f')));
    })
    .await;
}

#[tokio::test]
async fn promotion_supersedes_pending_one() {
    on_each_backend(async |store: &Store| {
        register(store, "promoted").await;
        add_version(store, "promoted", 'a').await;
        add_version(store, "promoted", 'b').await;

        let first = store
            .create_promotion("alice", promotion_to("promoted", 1, "production"))
            .await
            .unwrap();
        let repeated = store
            .create_promotion("bob", promotion_to("promoted", 1, "production"))
            .await
            .unwrap();
        let second = store
            .create_promotion("bob", promotion_to("promoted", 2, "production"))
            .await
            .unwrap();
        let other_alias = store
            .create_promotion("bob", promotion_to("promoted", 1, "staging"))
            .await
            .unwrap();

        assert_eq!(repeated.id, first.id);
        assert_eq!(repeated.requester, "alice");
        assert_ne!(second.id, first.id);
        let old = store.require_promotion(first.id).await.unwrap();
        assert_eq!(old.status, PromotionStatus::Superseded);
        assert!(
            old.reason
                .as_deref()
                .unwrap_or_default()
                .contains("version 2"),
            "{old:?}"
        );
        assert!(old.decided_at.is_some());
        let pending = store
            .list_promotions("promoted", Some(PromotionStatus::Pending))
            .await
            .unwrap();
        let ids: Vec<i64> = pending.iter().map(|p| p.id).collect();
        assert_eq!(ids, [other_alias.id, second.id]);
        let found = store
            .pending_promotion("promoted", 2, "production")
            .await
            .unwrap();
        assert_eq!(found.map(|p| p.id), Some(second.id));
        assert!(
            store
                .pending_promotion("promoted", 1, "production")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            audit_actions(store, "promoted").await[3..],
            [
                "promotion.requested",
                "promotion.superseded",
                "promotion.requested",
                "promotion.requested"
            ]
        );
        let missing = store
            .create_promotion("bob", promotion_to("promoted", 9, "production"))
            .await
            .unwrap_err();
        assert!(
            matches!(missing, StoreError::ModelVersionNotFound { version: 9, .. }),
            "{missing}"
        );
    })
    .await;
}

#[tokio::test]
async fn duplicate_approval_is_rejected() {
    on_each_backend(async |store: &Store| {
        register(store, "approved").await;
        add_version(store, "approved", 'a').await;
        let promotion = store
            .create_promotion("alice", promotion_to("approved", 1, "production"))
            .await
            .unwrap();

        let approval = store
            .add_approval("bob", promotion.id, "approver", "looks good")
            .await
            .unwrap();
        let again = store
            .add_approval("bob", promotion.id, "admin", "really")
            .await
            .unwrap_err();
        store
            .add_approval("carol", promotion.id, "admin", "")
            .await
            .unwrap();

        assert_eq!(approval.approver, "bob");
        assert_eq!(approval.role, "approver");
        assert!(
            matches!(again, StoreError::ApprovalTaken { ref approver } if approver == "bob"),
            "{again}"
        );
        let approvals = store.approvals(promotion.id).await.unwrap();
        let approvers: Vec<&str> = approvals.iter().map(|a| a.approver.as_str()).collect();
        assert_eq!(approvers, ["bob", "carol"]);
        let entries = audit(store, "approved", Some(1)).await;
        let recorded: Vec<_> = entries
            .iter()
            .filter(|e| e.action == "approval.recorded")
            .collect();
        assert_eq!(recorded.len(), 2);
        assert_eq!(
            recorded[0].detail,
            json!({ "approver": "bob", "role": "approver", "comment": "looks good" })
        );
        assert_eq!(recorded[0].promotion_id, Some(promotion.id));
        let missing = store
            .add_approval("dave", 999_999, "admin", "")
            .await
            .unwrap_err();
        assert!(
            matches!(missing, StoreError::PromotionNotFound { id: 999_999 }),
            "{missing}"
        );
    })
    .await;
}

#[tokio::test]
async fn decisions_move_alias_with_audit_entries() {
    on_each_backend(async |store: &Store| {
        register(store, "decided").await;
        add_version(store, "decided", 'a').await;
        add_version(store, "decided", 'b').await;
        let first = store
            .create_promotion("alice", promotion_to("decided", 1, "production"))
            .await
            .unwrap();
        let waiting = [decision(
            "required-approvals@0.1.0",
            "pending",
            "needs 1 approver",
        )];

        let pending = store
            .record_decisions("tester", first.id, &waiting, PromotionOutcome::Pending)
            .await
            .unwrap();
        assert_eq!(pending.status, PromotionStatus::Pending);
        assert!(
            store
                .version_by_alias("decided", "production")
                .await
                .unwrap()
                .is_none()
        );
        store
            .add_approval("bob", first.id, "approver", "ok")
            .await
            .unwrap();
        let allowed = [
            decision("required-approvals@0.1.0", "allow", "bob approved"),
            decision("validations-passed@0.1.0", "allow", "all checks passed"),
        ];
        let completed = store
            .record_decisions("tester", first.id, &allowed, PromotionOutcome::Completed)
            .await
            .unwrap();

        assert_eq!(completed.status, PromotionStatus::Completed);
        assert!(completed.decided_at.is_some());
        let aliased = store
            .version_by_alias("decided", "production")
            .await
            .unwrap();
        assert_eq!(aliased.map(|v| v.version), Some(1));
        let model = store.require_model("decided").await.unwrap();
        assert_eq!(
            store.model_aliases(model.id).await.unwrap(),
            [("production".to_owned(), 1)]
        );
        assert_eq!(store.promotion_decisions(first.id).await.unwrap(), allowed);
        let entries = audit(store, "decided", Some(1)).await;
        let tail: Vec<&str> = entries[entries.len() - 7..]
            .iter()
            .map(|e| e.action.as_str())
            .collect();
        assert_eq!(
            tail,
            [
                "policy.decided",
                "promotion.pending",
                "approval.recorded",
                "policy.decided",
                "policy.decided",
                "alias.moved",
                "promotion.completed"
            ]
        );
        let moved = &entries[entries.len() - 2];
        assert_eq!(moved.actor, SYSTEM_ACTOR);
        assert_eq!(
            moved.detail,
            json!({ "from": null, "to": 1, "triggered_by": "tester" })
        );
        assert_eq!(
            entries[entries.len() - 4].detail["reason"],
            json!("bob approved")
        );

        let second = store
            .create_promotion("alice", promotion_to("decided", 2, "production"))
            .await
            .unwrap();
        store
            .record_decisions("tester", second.id, &[], PromotionOutcome::Completed)
            .await
            .unwrap();
        let moved = audit(store, "decided", Some(2)).await;
        let moved = moved
            .iter()
            .find(|e| e.action == "alias.moved")
            .expect("alias.moved entry");
        assert_eq!(
            moved.detail,
            json!({ "from": 1, "to": 2, "triggered_by": "tester" })
        );
        let again = store
            .record_decisions("tester", first.id, &[], PromotionOutcome::Completed)
            .await
            .unwrap_err();
        assert!(
            matches!(
                again,
                StoreError::PromotionNotPending {
                    status: PromotionStatus::Completed,
                    ..
                }
            ),
            "{again}"
        );
        let late = store
            .add_approval("carol", first.id, "admin", "")
            .await
            .unwrap_err();
        assert!(
            matches!(late, StoreError::PromotionNotPending { .. }),
            "{late}"
        );
    })
    .await;
}

#[tokio::test]
async fn denial_keeps_alias() {
    on_each_backend(async |store: &Store| {
        register(store, "denied").await;
        add_version(store, "denied", 'a').await;
        let request = store
            .create_promotion("alice", promotion_to("denied", 1, "production"))
            .await
            .unwrap();
        let rows = [decision(
            "dataset-allowlist@0.1.0",
            "deny",
            "dataset `raw` is not allowed",
        )];
        let outcome = PromotionOutcome::Denied {
            reason: "dataset-allowlist@0.1.0 denied: dataset `raw` is not allowed".to_owned(),
        };

        let denied = store
            .record_decisions("tester", request.id, &rows, outcome)
            .await
            .unwrap();

        assert_eq!(denied.status, PromotionStatus::Denied);
        assert!(
            denied
                .reason
                .as_deref()
                .unwrap_or_default()
                .contains("`raw`")
        );
        assert!(
            store
                .version_by_alias("denied", "production")
                .await
                .unwrap()
                .is_none()
        );
        let actions = audit_actions(store, "denied").await;
        assert_eq!(
            actions[actions.len() - 2..],
            ["policy.decided", "promotion.denied"]
        );
    })
    .await;
}

#[tokio::test]
async fn failed_decision_writes_nothing() {
    on_each_backend(async |store: &Store| {
        register(store, "atomic").await;
        add_version(store, "atomic", 'a').await;
        let request = store
            .create_promotion("alice", promotion_to("atomic", 1, "production"))
            .await
            .unwrap();
        let before = audit(store, "atomic", None).await.len();
        // A trigger that fails the alias insert simulates any failure after the first
        // statement of the transaction.
        let (create, drop) = match store.backend() {
            DbBackend::Postgres => (
                vec![
                    "CREATE FUNCTION reject_alias() RETURNS trigger LANGUAGE plpgsql AS $$ \
                     BEGIN RAISE EXCEPTION 'alias insert rejected by test'; END $$",
                    "CREATE TRIGGER reject_alias BEFORE INSERT ON model_aliases \
                     FOR EACH ROW EXECUTE FUNCTION reject_alias()",
                ],
                vec![
                    "DROP TRIGGER reject_alias ON model_aliases",
                    "DROP FUNCTION reject_alias()",
                ],
            ),
            _ => (
                vec![
                    "CREATE TRIGGER reject_alias BEFORE INSERT ON model_aliases \
                     BEGIN SELECT RAISE(ABORT, 'alias insert rejected by test'); END",
                ],
                vec!["DROP TRIGGER reject_alias"],
            ),
        };
        for statement in create {
            store
                .connection()
                .execute_unprepared(statement)
                .await
                .unwrap();
        }
        let allowed = [decision("validations-passed@0.1.0", "allow", "ok")];

        let error = store
            .record_decisions("tester", request.id, &allowed, PromotionOutcome::Completed)
            .await
            .unwrap_err();

        assert!(
            error.to_string().contains("alias insert rejected by test"),
            "{error}"
        );
        assert_eq!(audit(store, "atomic", None).await.len(), before);
        let unchanged = store.require_promotion(request.id).await.unwrap();
        assert_eq!(unchanged.status, PromotionStatus::Pending);
        for statement in drop {
            store
                .connection()
                .execute_unprepared(statement)
                .await
                .unwrap();
        }
        let completed = store
            .record_decisions("tester", request.id, &allowed, PromotionOutcome::Completed)
            .await
            .unwrap();
        assert_eq!(completed.status, PromotionStatus::Completed);
    })
    .await;
}

#[tokio::test]
async fn version_delete_removes_its_aliases() {
    on_each_backend(async |store: &Store| {
        register(store, "aliased").await;
        add_version(store, "aliased", 'a').await;
        add_version(store, "aliased", 'b').await;
        for (version, alias) in [(1, "production"), (1, "champion"), (2, "staging")] {
            let request = store
                .create_promotion("alice", promotion_to("aliased", version, alias))
                .await
                .unwrap();
            store
                .record_decisions("tester", request.id, &[], PromotionOutcome::Completed)
                .await
                .unwrap();
        }

        store
            .delete_model_version("bob", "aliased", 1)
            .await
            .unwrap();

        let model = store.require_model("aliased").await.unwrap();
        assert_eq!(
            store.model_aliases(model.id).await.unwrap(),
            [("staging".to_owned(), 2)]
        );
        assert!(
            store
                .version_by_alias("aliased", "production")
                .await
                .unwrap()
                .is_none()
        );
        let entries = audit(store, "aliased", Some(1)).await;
        let tail: Vec<(&str, Option<&str>)> = entries[entries.len() - 3..]
            .iter()
            .map(|e| (e.action.as_str(), e.alias.as_deref()))
            .collect();
        assert_eq!(
            tail,
            [
                ("version.deleted", None),
                ("alias.removed", Some("champion")),
                ("alias.removed", Some("production"))
            ]
        );
        let (_, kept) = store.require_model_version("aliased", 2).await.unwrap();
        let promotions = store.list_promotions("aliased", None).await.unwrap();
        let versions: Vec<i64> = promotions.iter().map(|p| p.version_id).collect();
        assert_eq!(versions, [kept.id]);
        assert!(
            store
                .remove_alias("bob", "aliased", "staging")
                .await
                .unwrap()
        );
        assert!(
            !store
                .remove_alias("bob", "aliased", "staging")
                .await
                .unwrap()
        );
        assert!(store.model_aliases(model.id).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn audit_log_filters_and_orders() {
    on_each_backend(async |store: &Store| {
        register(store, "ordered").await;
        register(store, "other").await;
        add_version(store, "ordered", 'a').await;
        add_version(store, "ordered", 'b').await;
        store
            .set_model_tag("bob", "ordered", "k", "v")
            .await
            .unwrap();

        let all = audit(store, "ordered", None).await;
        let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "model.created",
                "version.created",
                "version.created",
                "model.tag_set"
            ]
        );
        assert!(all.windows(2).all(|pair| pair[0].seq < pair[1].seq));
        assert!(all.iter().all(|e| e.model.as_deref() == Some("ordered")));
        let second = audit(store, "ordered", Some(2)).await;
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].detail["artifact_digest"], json!(digest('b')));
        let query = AuditQuery {
            model: "ordered".to_owned(),
            version: None,
            after_seq: Some(all[1].seq),
            limit: 1,
        };
        let page = store.audit_log(&query).await.unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [all[2].seq]);
    })
    .await;
}

#[tokio::test]
async fn audit_log_rejects_update_and_delete() {
    on_each_backend(async |store: &Store| {
        register(store, "sealed").await;
        let db = store.connection();

        let update = db
            .execute_unprepared("UPDATE audit_log SET actor = 'mallory'")
            .await;
        let delete = db.execute_unprepared("DELETE FROM audit_log").await;

        let update = update.expect_err("update of audit_log must fail");
        assert!(update.to_string().contains("append-only"), "{update}");
        let delete = delete.expect_err("delete from audit_log must fail");
        assert!(delete.to_string().contains("append-only"), "{delete}");
        if store.backend() == DbBackend::Postgres {
            let truncate = db.execute_unprepared("TRUNCATE audit_log").await;
            let truncate = truncate.expect_err("truncate of audit_log must fail");
            assert!(truncate.to_string().contains("append-only"), "{truncate}");
        }
        let entries = audit(store, "sealed", None).await;
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].actor, "alice");
    })
    .await;
}

#[tokio::test]
async fn model_delete_keeps_audit_entries() {
    on_each_backend(async |store: &Store| {
        register(store, "doomed").await;
        add_version(store, "doomed", 'a').await;
        let request = store
            .create_promotion("alice", promotion_to("doomed", 1, "production"))
            .await
            .unwrap();
        store
            .add_approval("bob", request.id, "approver", "")
            .await
            .unwrap();
        store
            .set_model_validators(
                "alice",
                "doomed",
                vec![Attachment {
                    plugin: "finite-metrics".to_owned(),
                    config: json!({}),
                }],
            )
            .await
            .unwrap();

        store.delete_model("carol", "doomed").await.unwrap();

        assert!(store.get_promotion(request.id).await.unwrap().is_none());
        assert!(store.approvals(request.id).await.unwrap().is_empty());
        let error = store.model_validators("doomed").await.unwrap_err();
        assert!(matches!(error, StoreError::ModelNotFound { .. }), "{error}");
        let actions = audit_actions(store, "doomed").await;
        assert_eq!(
            actions,
            [
                "model.created",
                "version.created",
                "promotion.requested",
                "approval.recorded",
                "validators.set",
                "model.deleted"
            ]
        );
        let deleted = audit(store, "doomed", None).await.pop().expect("entry");
        assert_eq!(deleted.actor, "carol");
        assert_eq!(deleted.detail["last_version"], json!(1));
        let recreated = register(store, "doomed").await;
        assert_eq!(recreated.last_version, 0);
        let promotions: Vec<promotion::Model> =
            store.list_promotions("doomed", None).await.unwrap();
        assert!(promotions.is_empty());
    })
    .await;
}

#[tokio::test]
async fn governance_migration_rolls_back() {
    on_each_backend(async |store: &Store| {
        let names: Vec<String> = Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        let position = names
            .iter()
            .position(|name| name == "m20261204_000011_create_governance")
            .expect("governance migration is listed");
        let steps = u32::try_from(names.len() - position).unwrap();
        let db = store.connection();

        Migrator::down(db, Some(steps)).await.expect("roll back");

        let gone = db
            .execute_unprepared("SELECT count(*) FROM audit_log")
            .await;
        assert!(gone.is_err(), "audit_log still exists after rolling back");
        let gone = db
            .execute_unprepared("SELECT count(*) FROM registered_models")
            .await;
        assert!(
            gone.is_err(),
            "registered_models still exists after rolling back"
        );
        Migrator::up(db, None).await.expect("apply again");
        register(store, "after-rollback").await;
        assert_eq!(
            audit_actions(store, "after-rollback").await,
            ["model.created"]
        );
    })
    .await;
}
