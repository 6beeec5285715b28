//! The web UI: static files under `/ui/` and the single page for every UI URL.
//!
//! `build.rs` embeds the sources of `host/ui/` and the npm libraries the UI loads, so the binary
//! serves the UI without files on disk. The page URLs (`/`, `/runs`, `/runs/{run_id}`,
//! `/lineage`, `/compare`, `/models`, `/models/{name}`) all return `index.html`, and the
//! browser-side router in `app.js` renders the page. These routes need no token, because they
//! contain no data: the page reads everything from `/api/v1` with the user's token.

use super::error::ApiError;
use super::state::AppState;
use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::OnceLock;

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// Paths of the pages that `app.js` renders. Each of them serves `index.html`.
const PAGE_ROUTES: &[&str] = &[
    "/",
    "/runs",
    "/runs/{run_id}",
    "/lineage",
    "/compare",
    "/models",
    "/models/{name}",
];

/// Placeholder in `index.html` that is replaced by a notice when vendor files are missing.
const NOTICE_PLACEHOLDER: &str = "<!-- runledger:notice -->";

/// Content Security Policy of the page. Scripts, styles and data come from this server only.
/// Images may be blob URLs, which the artifact previews use; inline styles are allowed because
/// uPlot positions its cursor and legend with them.
const PAGE_POLICY: &str = "default-src 'self'; img-src 'self' blob: data:; \
    style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; \
    frame-ancestors 'none'; form-action 'self'";

/// Returns the UI routes: the static files and the page URLs.
pub fn router() -> Router<AppState> {
    let mut router = Router::new().route("/ui/{*path}", get(asset));
    for path in PAGE_ROUTES {
        router = router.route(path, get(page));
    }
    router
}

/// Returns whether `path` is a UI route, which needs no token.
pub fn is_ui_path(path: &str) -> bool {
    let page = matches!(path, "/" | "/runs" | "/lineage" | "/compare" | "/models");
    if page || path.starts_with("/ui/") {
        return true;
    }
    let single_segment = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
    };
    single_segment("/runs/") || single_segment("/models/")
}

/// An embedded file with the validator that conditional requests compare.
struct Asset {
    bytes: &'static [u8],
    etag: HeaderValue,
}

/// Returns the embedded files by path, with each ETag computed once from the content.
fn assets() -> &'static HashMap<&'static str, Asset> {
    static TABLE: OnceLock<HashMap<&'static str, Asset>> = OnceLock::new();
    TABLE.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(path, bytes)| {
                let digest = hex::encode(Sha256::digest(bytes));
                let etag = HeaderValue::from_str(&format!("\"{}\"", &digest[..32]))
                    .expect("a quoted hex digest is a valid header value");
                (*path, Asset { bytes, etag })
            })
            .collect()
    })
}

/// `GET /ui/{path}`: returns one embedded file, or a 404 that explains why it is missing.
async fn asset(
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(asset) = assets().get(path.as_str()) else {
        return missing_asset(&path).into_response();
    };
    if not_modified(&headers, &asset.etag) {
        return (StatusCode::NOT_MODIFIED, [(ETAG, asset.etag.clone())]).into_response();
    }
    let content_type = HeaderValue::from_static(content_type(&path));
    (
        [
            (CONTENT_TYPE, content_type),
            (ETAG, asset.etag.clone()),
            // Browsers revalidate each use with the ETag, so a rebuilt binary's files show up
            // at once while unchanged files cost only a 304.
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        asset.bytes,
    )
        .into_response()
}

fn missing_asset(path: &str) -> ApiError {
    if MISSING_VENDOR_FILES.contains(&path) {
        return ApiError::not_found(format!(
            "front-end libraries are missing: /ui/{path} was not built into this binary; run \
             `cargo xtask setup`, then build runledger again"
        ));
    }
    ApiError::not_found(format!(
        "no UI file /ui/{path}; the UI starts at /runs, and the API is described at \
         /api/v1/openapi.json"
    ))
}

/// Returns whether an `If-None-Match` header names `etag` or `*`.
fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(value) = headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let etag = etag.to_str().unwrap_or_default();
    value
        .split(',')
        .map(|candidate| candidate.trim().trim_start_matches("W/"))
        .any(|candidate| candidate == "*" || candidate == etag)
}

/// Returns the media type of a file by its extension.
fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, extension)| extension);
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Serves a page URL: `index.html`, with a notice at the top when vendor files are missing.
async fn page() -> Response {
    let Some(index) = assets().get("index.html") else {
        return ApiError::not_found(
            "the web UI was not built into this binary: host/ui/index.html was missing at build \
             time; build runledger from a complete checkout",
        )
        .into_response();
    };
    let html = String::from_utf8_lossy(index.bytes).replace(NOTICE_PLACEHOLDER, &notice());
    (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_POLICY),
            ),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        html,
    )
        .into_response()
}

/// Returns the notice shown when the build found no npm libraries, or nothing when it did.
fn notice() -> String {
    if MISSING_VENDOR_FILES.is_empty() {
        return String::new();
    }
    format!(
        "<p class=\"notice\" data-testid=\"error\">front-end libraries are missing: run \
         <code>cargo xtask setup</code>, then build runledger again (missing: {})</p>",
        MISSING_VENDOR_FILES.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_paths_are_ui_paths() {
        for path in [
            "/",
            "/runs",
            "/runs/abc",
            "/models/wine",
            "/lineage",
            "/ui/app.js",
        ] {
            assert!(is_ui_path(path), "{path}");
        }
    }

    #[test]
    fn api_paths_are_not_ui_paths() {
        for path in [
            "/api/v1/runs",
            "/runs/abc/steps",
            "/models/wine/versions",
            "/healthz",
            "/api/2.0/mlflow/runs/get",
            "/ajax-api/2.0/mlflow/runs/get",
            "/uix",
        ] {
            assert!(!is_ui_path(path), "{path}");
        }
    }

    #[test]
    fn if_none_match_accepts_lists_and_weak_tags() {
        let etag = HeaderValue::from_static("\"abc\"");
        let mut headers = HeaderMap::new();
        headers.insert(IF_NONE_MATCH, HeaderValue::from_static("\"x\", W/\"abc\""));
        assert!(not_modified(&headers, &etag));
        headers.insert(IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
        assert!(!not_modified(&headers, &etag));
    }

    #[test]
    fn every_source_file_has_a_known_type() {
        for (path, _) in ASSETS {
            assert_ne!(content_type(path), "application/octet-stream", "{path}");
        }
    }
}
