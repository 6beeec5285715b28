//! The native REST API under `/api/v1`, one module per resource.

pub mod artifacts;
pub mod external;
pub mod ingest;
pub mod lineage;
pub mod metrics;
pub mod models;
pub mod plugins;
pub mod runs;
pub mod steps;
pub mod tokens;
pub mod validations;
pub mod value;
pub mod whoami;

use super::state::AppState;
use crate::server::routes::ApiRouter;

/// Every route of the native API, with its OpenAPI description.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .merge(runs::router())
        .merge(ingest::router())
        .merge(external::router())
        .merge(artifacts::router())
        .merge(metrics::router())
        .merge(lineage::router())
        .merge(plugins::router())
        .merge(tokens::router())
        .merge(models::router())
        .merge(validations::router())
        .merge(steps::router())
        .merge(whoami::router())
}
