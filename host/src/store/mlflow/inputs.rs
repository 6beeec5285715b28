//! Datasets that MLflow clients log as inputs of runs, recorded as named datasets of the
//! lineage graph that flow into the run.

use super::entity::dataset_input;
use crate::store::entity::openlineage_dataset;
use crate::store::lineage::{self, NewEdge, Node};
use crate::store::{Store, StoreError, batch, now_ms, runs};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use std::collections::{BTreeMap, HashMap};

/// Lineage namespace of the datasets MLflow clients declare. Their lineage node id is
/// `mlflow/NAME@DIGEST`, because MLflow identifies a dataset by name and digest.
const LINEAGE_NAMESPACE: &str = "mlflow";

/// A dataset an MLflow client logs as an input of a run, with the fields of MLflow's
/// `Dataset` message and the input's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDatasetInput {
    /// Dataset name.
    pub name: String,
    /// Digest the client computed.
    pub digest: String,
    /// Kind of source, such as `http`.
    pub source_type: String,
    /// The source, as JSON text.
    pub source: String,
    /// Schema, as JSON text.
    pub schema: Option<String>,
    /// Profile, as JSON text.
    pub profile: Option<String>,
    /// Input tags, such as `mlflow.data.context`.
    pub tags: BTreeMap<String, String>,
}

impl NewDatasetInput {
    /// Returns the lineage node of the dataset.
    pub fn node(&self) -> Node {
        let name = format!("{}@{}", self.name, self.digest);
        Node::named_dataset(LINEAGE_NAMESPACE, &name)
    }
}

impl Store {
    /// Records datasets as inputs of a run, each with a lineage edge into the run's node, in
    /// one transaction. A dataset logged again with the same name and digest keeps its first
    /// record.
    pub async fn mlflow_log_inputs(
        &self,
        run_id: &str,
        inputs: &[NewDatasetInput],
    ) -> Result<(), StoreError> {
        if inputs.is_empty() {
            return Ok(());
        }
        let transaction = batch::begin_write(&self.db).await?;
        runs::require_run(&transaction, run_id).await?;
        for input in inputs {
            insert_input(&transaction, run_id, input).await?;
            record_named_dataset(&transaction, input).await?;
        }
        let edges: Vec<NewEdge> = inputs
            .iter()
            .map(|input| NewEdge {
                run_id: run_id.to_owned(),
                source: input.node(),
                target: Node::run(run_id),
            })
            .collect();
        lineage::record_edges(&transaction, &edges, Some(run_id)).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Returns the datasets logged as inputs of each of `run_ids`, in logging order, by run.
    pub async fn mlflow_dataset_inputs(
        &self,
        run_ids: &[String],
    ) -> Result<HashMap<String, Vec<dataset_input::Model>>, StoreError> {
        let mut inputs: HashMap<String, Vec<dataset_input::Model>> = HashMap::new();
        for chunk in run_ids.chunks(batch::rows_per_statement(1)) {
            let rows = dataset_input::Entity::find()
                .filter(dataset_input::Column::RunId.is_in(chunk.iter().map(String::as_str)))
                .order_by_asc(dataset_input::Column::Id)
                .all(&self.db)
                .await?;
            for row in rows {
                inputs.entry(row.run_id.clone()).or_default().push(row);
            }
        }
        Ok(inputs)
    }
}

async fn insert_input(
    db: &impl ConnectionTrait,
    run_id: &str,
    input: &NewDatasetInput,
) -> Result<(), StoreError> {
    let tags = serde_json::to_value(&input.tags).unwrap_or_default();
    let row = dataset_input::ActiveModel {
        run_id: Set(run_id.to_owned()),
        name: Set(input.name.clone()),
        digest: Set(input.digest.clone()),
        source_type: Set(input.source_type.clone()),
        source: Set(input.source.clone()),
        schema: Set(input.schema.clone()),
        profile: Set(input.profile.clone()),
        tags_json: Set(tags),
        created_at: Set(now_ms()),
        ..Default::default()
    };
    let keep = OnConflict::columns([
        dataset_input::Column::RunId,
        dataset_input::Column::Name,
        dataset_input::Column::Digest,
    ])
    .do_nothing()
    .to_owned();
    dataset_input::Entity::insert(row)
        .on_conflict(keep)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Records the dataset under its lineage node id, so lineage views can describe it.
async fn record_named_dataset(
    db: &impl ConnectionTrait,
    input: &NewDatasetInput,
) -> Result<(), StoreError> {
    let node = input.node();
    let facets = serde_json::json!({
        "mlflow": {
            "digest": input.digest,
            "source_type": input.source_type,
            "source": input.source,
        }
    });
    let now = now_ms();
    let row = openlineage_dataset::ActiveModel {
        node_id: Set(node.id),
        namespace: Set(LINEAGE_NAMESPACE.to_owned()),
        name: Set(format!("{}@{}", input.name, input.digest)),
        facets_json: Set(Some(facets)),
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
