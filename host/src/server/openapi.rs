//! The OpenAPI 3.1 document, assembled from the routes' annotations.

use super::error::{ErrorBody, ErrorCode, ErrorDetail, FieldProblem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Top-level facts of the document; every path and schema comes from the route modules.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "runledger",
        description = "Records machine-learning pipeline runs: params, metric series, \
            content-addressed artifacts, environments, step records and lineage.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode, FieldProblem)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "operations", description = "Health checks and metrics"),
        (name = "runs", description = "Pipeline runs: submit, list, inspect, cancel"),
        (name = "ingestion", description = "Runs executed elsewhere, reported over REST"),
        (name = "artifacts", description = "Content-addressed artifact files"),
        (name = "metrics", description = "Metric time series"),
        (name = "lineage", description = "The lineage graph and OpenLineage events"),
        (name = "plugins", description = "WebAssembly plugins"),
        (name = "tokens", description = "Bearer tokens and their roles"),
        (name = "models", description = "The model registry: versions, validators, \
            policies, promotions, approvals and the audit log"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer token scheme that protected routes use.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from `runledger tokens create`; not needed in local mode",
                    ))
                    .build(),
            ),
        );
    }
}
