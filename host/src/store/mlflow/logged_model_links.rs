//! The records that tie logged models to runs and files: metric values runs log for models,
//! models that runs declare as inputs or outputs, and the files uploaded to a model's artifact
//! location.
//!
//! A model is a named dataset of the lineage graph, `mlflow-models/<model_id>`: a run that
//! produced it has an edge to it, and a run that used it an edge from it. Its files are
//! content-addressed artifacts, like a run's.

use super::entity::{logged_model_artifact, logged_model_metric, run_model_link};
use super::logged_models::{LoggedModelError, require_row, touch};
use crate::store::entity::{artifact, openlineage_dataset};
use crate::store::lineage::{self, NewEdge, Node};
use crate::store::{Store, StoreError, batch, metrics, now_ms, runs};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use std::collections::{BTreeSet, HashMap};

/// Lineage namespace of logged models. A model's node id is `mlflow-models/<model_id>`.
pub const MODEL_LINEAGE_NAMESPACE: &str = "mlflow-models";

/// Direction of a run's link to a model: the run used it.
const INPUT: &str = "input";

/// Direction of a run's link to a model: the run produced it.
const OUTPUT: &str = "output";

/// A metric value a run logs for a logged model.
#[derive(Debug, Clone, PartialEq)]
pub struct NewModelMetric {
    /// The model.
    pub model_id: String,
    /// Metric name.
    pub key: String,
    /// The value, NaN and the infinities included.
    pub value: f64,
    /// Time of measurement, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Training step.
    pub step: i64,
    /// Name of the dataset the value was measured on.
    pub dataset_name: Option<String>,
    /// Digest of the dataset the value was measured on.
    pub dataset_digest: Option<String>,
}

/// The models a run used and produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunModels {
    /// Ids of the models the run used, in logging order.
    pub inputs: Vec<String>,
    /// Ids of the models the run produced, with the step of each, in logging order.
    pub outputs: Vec<(String, i64)>,
}

/// A file of a logged model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelArtifact {
    /// Path under the model's artifact root.
    pub path: String,
    /// SHA-256 of the content.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// Media type recorded at upload.
    pub media_type: String,
}

/// Returns the lineage node of a logged model.
pub fn model_node(model_id: &str) -> Node {
    Node::named_dataset(MODEL_LINEAGE_NAMESPACE, model_id)
}

impl Store {
    /// Records metric values a run logged for logged models, in one transaction. A value
    /// sent again for the same model, run, key, timestamp and step is kept once.
    pub async fn mlflow_log_model_metrics(
        &self,
        run_id: &str,
        values: &[NewModelMetric],
    ) -> Result<(), LoggedModelError> {
        if values.is_empty() {
            return Ok(());
        }
        let transaction = batch::begin_write(&self.db).await?;
        runs::require_run(&transaction, run_id).await?;
        let models: BTreeSet<&str> = values.iter().map(|value| value.model_id.as_str()).collect();
        for model_id in &models {
            require_row(&transaction, model_id).await?;
        }
        insert_metric_values(&transaction, run_id, values).await?;
        for model_id in models {
            touch(&transaction, model_id).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Records models as outputs of a run, each with the step that produced it, and the
    /// lineage edges from the run to them. A model already recorded as an output keeps its
    /// first step.
    pub async fn mlflow_log_model_outputs(
        &self,
        run_id: &str,
        outputs: &[(String, i64)],
    ) -> Result<(), LoggedModelError> {
        let transaction = batch::begin_write(&self.db).await?;
        runs::require_run(&transaction, run_id).await?;
        for (model_id, step) in outputs {
            let model = require_row(&transaction, model_id).await?;
            insert_link(&transaction, run_id, model_id, OUTPUT, *step).await?;
            record_model_output_edge(&transaction, run_id, model_id, &model.name).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Records models as inputs of a run, and the lineage edges from them to the run.
    pub async fn mlflow_log_model_inputs(
        &self,
        run_id: &str,
        model_ids: &[String],
    ) -> Result<(), LoggedModelError> {
        if model_ids.is_empty() {
            return Ok(());
        }
        let transaction = batch::begin_write(&self.db).await?;
        runs::require_run(&transaction, run_id).await?;
        for model_id in model_ids {
            let model = require_row(&transaction, model_id).await?;
            insert_link(&transaction, run_id, model_id, INPUT, 0).await?;
            record_model_node(&transaction, model_id, &model.name).await?;
            let edge = NewEdge {
                run_id: run_id.to_owned(),
                source: model_node(model_id),
                target: Node::run(run_id),
            };
            lineage::record_edges(&transaction, &[edge], Some(run_id)).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Returns the models each of `run_ids` used and produced, by run.
    pub async fn mlflow_run_models(
        &self,
        run_ids: &[String],
    ) -> Result<HashMap<String, RunModels>, StoreError> {
        let mut found: HashMap<String, RunModels> = HashMap::new();
        for chunk in run_ids.chunks(batch::rows_per_statement(1) - 1) {
            let rows = run_model_link::Entity::find()
                .filter(run_model_link::Column::RunId.is_in(chunk.iter().map(String::as_str)))
                .order_by_asc(run_model_link::Column::CreatedAt)
                .order_by_asc(run_model_link::Column::ModelId)
                .all(&self.db)
                .await?;
            for row in rows {
                let models = found.entry(row.run_id).or_default();
                if row.direction == INPUT {
                    models.inputs.push(row.model_id);
                } else {
                    models.outputs.push((row.model_id, row.step));
                }
            }
        }
        Ok(found)
    }

    /// Names a recorded artifact as the file `path` of a logged model, replacing the file an
    /// earlier upload stored there.
    pub async fn mlflow_put_model_artifact(
        &self,
        model_id: &str,
        path: &str,
        digest: &str,
    ) -> Result<(), LoggedModelError> {
        let transaction = batch::begin_write(&self.db).await?;
        require_row(&transaction, model_id).await?;
        let row = logged_model_artifact::ActiveModel {
            model_id: Set(model_id.to_owned()),
            path: Set(path.to_owned()),
            digest: Set(digest.to_owned()),
            created_at: Set(now_ms()),
        };
        let replace = OnConflict::columns([
            logged_model_artifact::Column::ModelId,
            logged_model_artifact::Column::Path,
        ])
        .update_columns([
            logged_model_artifact::Column::Digest,
            logged_model_artifact::Column::CreatedAt,
        ])
        .to_owned();
        logged_model_artifact::Entity::insert(row)
            .on_conflict(replace)
            .exec_without_returning(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Lists the files of a logged model by path.
    pub async fn mlflow_model_artifacts(
        &self,
        model_id: &str,
    ) -> Result<Vec<ModelArtifact>, StoreError> {
        let links = logged_model_artifact::Entity::find()
            .filter(logged_model_artifact::Column::ModelId.eq(model_id))
            .order_by_asc(logged_model_artifact::Column::Path)
            .all(&self.db)
            .await?;
        let digests: BTreeSet<&str> = links.iter().map(|link| link.digest.as_str()).collect();
        let mut metadata = HashMap::new();
        for chunk in digests.into_iter().collect::<Vec<_>>().chunks(1000) {
            let rows = artifact::Entity::find()
                .filter(artifact::Column::Digest.is_in(chunk.iter().copied()))
                .all(&self.db)
                .await?;
            metadata.extend(rows.into_iter().map(|row| (row.digest.clone(), row)));
        }
        Ok(links
            .into_iter()
            .filter_map(|link| {
                let meta = metadata.get(&link.digest)?;
                Some(ModelArtifact {
                    path: link.path,
                    size: meta.size,
                    media_type: meta.media_type.clone(),
                    digest: link.digest,
                })
            })
            .collect())
    }
}

async fn insert_metric_values(
    db: &impl ConnectionTrait,
    run_id: &str,
    values: &[NewModelMetric],
) -> Result<(), DbErr> {
    let rows: Vec<logged_model_metric::ActiveModel> = values
        .iter()
        .map(|value| logged_model_metric::ActiveModel {
            model_id: Set(value.model_id.clone()),
            run_id: Set(run_id.to_owned()),
            key: Set(value.key.clone()),
            value: Set(metrics::encode(value.value)),
            timestamp_ms: Set(value.timestamp_ms),
            step: Set(value.step),
            dataset_name: Set(value.dataset_name.clone()),
            dataset_digest: Set(value.dataset_digest.clone()),
            ..Default::default()
        })
        .collect();
    let keep = OnConflict::columns([
        logged_model_metric::Column::ModelId,
        logged_model_metric::Column::RunId,
        logged_model_metric::Column::Key,
        logged_model_metric::Column::TimestampMs,
        logged_model_metric::Column::Step,
    ])
    .do_nothing()
    .to_owned();
    for chunk in rows.chunks(batch::rows_per_statement(8)) {
        logged_model_metric::Entity::insert_many(chunk.to_vec())
            .on_conflict(keep.clone())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

async fn insert_link(
    db: &impl ConnectionTrait,
    run_id: &str,
    model_id: &str,
    direction: &str,
    step: i64,
) -> Result<(), DbErr> {
    let row = run_model_link::ActiveModel {
        run_id: Set(run_id.to_owned()),
        model_id: Set(model_id.to_owned()),
        direction: Set(direction.to_owned()),
        step: Set(step),
        created_at: Set(now_ms()),
    };
    let keep = OnConflict::columns([
        run_model_link::Column::RunId,
        run_model_link::Column::ModelId,
        run_model_link::Column::Direction,
    ])
    .do_nothing()
    .to_owned();
    run_model_link::Entity::insert(row)
        .on_conflict(keep)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Records the lineage edge from a run to a model it produced, with the model's node.
pub(super) async fn record_model_output_edge(
    db: &impl ConnectionTrait,
    run_id: &str,
    model_id: &str,
    name: &str,
) -> Result<(), StoreError> {
    record_model_node(db, model_id, name).await?;
    let edge = NewEdge {
        run_id: run_id.to_owned(),
        source: Node::run(run_id),
        target: model_node(model_id),
    };
    lineage::record_edges(db, &[edge], Some(run_id)).await
}

/// Records the model's lineage node, so lineage views can name it.
async fn record_model_node(
    db: &impl ConnectionTrait,
    model_id: &str,
    name: &str,
) -> Result<(), DbErr> {
    let node = model_node(model_id);
    let now = now_ms();
    let row = openlineage_dataset::ActiveModel {
        node_id: Set(node.id),
        namespace: Set(MODEL_LINEAGE_NAMESPACE.to_owned()),
        name: Set(model_id.to_owned()),
        facets_json: Set(Some(serde_json::json!({
            "mlflow_logged_model": { "model_id": model_id, "name": name }
        }))),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let upsert = OnConflict::column(openlineage_dataset::Column::NodeId)
        .update_column(openlineage_dataset::Column::UpdatedAt)
        .to_owned();
    openlineage_dataset::Entity::insert(row)
        .on_conflict(upsert)
        .exec_without_returning(db)
        .await?;
    Ok(())
}
