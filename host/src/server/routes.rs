//! Documented routes, declared once and put to two uses. The serving router is built at start
//! from each handler's path and methods alone. The OpenAPI document, whose operations and
//! schemas take megabytes of heap and much code to assemble, is built from the same
//! declarations on its first request, so an idle server does not carry that cost.

use axum::Router;
use axum::extract::Request;
use axum::handler::Handler;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, Route};
use std::convert::Infallible;
use tower::{Layer, Service};
use utoipa::openapi::HttpMethod;
use utoipa::openapi::OpenApi;
use utoipa_axum::PathItemExt as _;
use utoipa_axum::router::OpenApiRouter;

/// Handlers that share a path, as [`documented!`] declares them: their routes, and a function
/// that builds their part of the OpenAPI document.
pub struct RouteGroup<S> {
    router: Router<S>,
    document: fn() -> OpenApiRouter<S>,
}

impl<S: Clone + Send + Sync + 'static> RouteGroup<S> {
    /// Returns a group without routes whose part of the OpenAPI document `document` builds.
    pub fn new(document: fn() -> OpenApiRouter<S>) -> Self {
        Self {
            router: Router::new(),
            document,
        }
    }

    /// Routes each of `methods` on `path` to `handler`. `path` uses the `{param}` syntax that
    /// axum and OpenAPI share.
    pub fn handler<H, T>(mut self, path: &str, methods: &[HttpMethod], handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let methods = methods.iter().fold(MethodRouter::new(), |router, method| {
            router.on(method.to_method_filter(), handler.clone())
        });
        self.router = self.router.route(path, methods);
        self
    }
}

/// A router of documented routes and the functions that describe them.
pub struct ApiRouter<S> {
    router: Router<S>,
    documents: Vec<fn() -> OpenApiRouter<S>>,
}

impl<S: Clone + Send + Sync + 'static> Default for ApiRouter<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> ApiRouter<S> {
    /// Returns a router without routes.
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            documents: Vec::new(),
        }
    }

    /// Adds a group of handlers that share a path.
    pub fn routes(mut self, group: RouteGroup<S>) -> Self {
        self.router = self.router.merge(group.router);
        self.documents.push(group.document);
        self
    }

    /// Adds every route of `other`.
    pub fn merge(mut self, other: Self) -> Self {
        self.router = self.router.merge(other.router);
        self.documents.extend(other.documents);
        self
    }

    /// Wraps the routes added so far in `layer`, as [`Router::layer`] does.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.router = self.router.layer(layer);
        self
    }

    /// Returns the serving router.
    pub fn into_router(self) -> Router<S> {
        self.router
    }

    /// Builds the OpenAPI document of every route on top of `base`, which contains the
    /// document's info, tags and shared components.
    pub fn document(&self, base: OpenApi) -> OpenApi {
        let described = self
            .documents
            .iter()
            .fold(OpenApiRouter::with_openapi(base), |router, part| {
                router.merge(part())
            });
        described.split_for_parts().1
    }
}

/// Declares handlers that share a path, for [`ApiRouter::routes`]: each handler's
/// `#[utoipa::path]` attribute gives its path and methods, and its OpenAPI part is built by
/// `utoipa_axum::routes!` only when the document is.
macro_rules! documented {
    ($($($segment:ident)::+),+ $(,)?) => {{
        let mut group = $crate::server::routes::RouteGroup::new(|| {
            utoipa_axum::router::OpenApiRouter::new()
                .routes(utoipa_axum::routes!($($($segment)::+),+))
        });
        $(
            group = {
                use utoipa::Path as _;
                type Described = $crate::server::routes::described!([] $($segment)+);
                group.handler(
                    &Described::path(),
                    &Described::methods(),
                    $($segment)::+,
                )
            };
        )+
        group
    }};
}

/// Names the type that `#[utoipa::path]` generates beside a handler: `module::__path_name` for
/// `module::name`.
macro_rules! described {
    ([$($module:ident)*] $handler:ident) => {
        utoipa_axum::paste! { $($module::)* [<__path_ $handler>] }
    };
    ([$($module:ident)*] $next:ident $($rest:ident)+) => {
        $crate::server::routes::described!([$($module)* $next] $($rest)+)
    };
}

pub(crate) use {described, documented};
