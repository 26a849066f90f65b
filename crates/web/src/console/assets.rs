//! Static files of the console (htmx, the style sheet), embedded in the binary so that a
//! deployment is one file and no page loads anything from a CDN. URLs carry a content hash
//! (`?v=`), so the files can be cached for a year.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// htmx 2.0.11 from the npm package `htmx.org` (`dist/htmx.min.js`), 0BSD
/// (`static/htmx.LICENSE`).
const HTMX_JS: &[u8] = include_bytes!("../../static/htmx.min.js");
const CONSOLE_CSS: &[u8] = include_bytes!("../../static/console.css");

static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = Sha256::new();
    h.update(HTMX_JS);
    h.update(CONSOLE_CSS);
    hex::encode(&h.finalize()[..6])
});

/// Short hash of all assets, appended to their URLs so a new build is fetched afresh.
pub fn version() -> &'static str {
    VERSION.as_str()
}

pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "htmx.min.js" => (HTMX_JS, "text/javascript; charset=utf-8"),
        "console.css" => (CONSOLE_CSS, "text/css; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        body,
    )
        .into_response()
}
