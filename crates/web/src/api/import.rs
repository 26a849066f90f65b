//! `POST /api/v1/import`: bulk import of registrants from CSV or NDJSON. The body is streamed
//! into the store's import, never buffered whole, and bounded by `max_import_bytes` (checked
//! against Content-Length up front, and counted as it streams). The route is not subject to the
//! JSON body limit: the `Body` extractor reads the raw stream.

use std::io;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use futures::StreamExt;
use g2p_store::import::{
    DEFAULT_CHUNK_SIZE, ImportError, ImportFormat, ImportOptions, ImportReport, MAX_CHUNK_SIZE,
};
use serde::Deserialize;
use tokio_util::io::StreamReader;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ImportQuery {
    /// `csv` or `ndjson`. When absent, taken from the Content-Type (`text/csv` or
    /// `application/x-ndjson`).
    pub format: Option<String>,
    /// Rows per transaction, 1 to 10,000 (default 2,000).
    pub chunk_size: Option<usize>,
}

/// The I/O error raised inside the body stream once it passes the limit, recognised again when
/// the import returns.
#[derive(Debug)]
struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body over the import limit")
    }
}

impl std::error::Error for BodyTooLarge {}

fn choose_format(query: Option<&str>, headers: &HeaderMap) -> Result<ImportFormat, ApiError> {
    if let Some(f) = query {
        return ImportFormat::parse(f)
            .ok_or_else(|| ApiError::field("format", "must be csv or ndjson"));
    }
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(ImportFormat::from_content_type)
        .ok_or_else(|| {
            ApiError::field(
                "format",
                "give ?format=csv|ndjson, or a Content-Type of text/csv or application/x-ndjson",
            )
        })
}

/// Imports registrants; rows whose `external_key` already exists are skipped, so a re-run of
/// the same file creates nothing. Bad rows are reported by line and field; the others land.
#[utoipa::path(post, path = "/api/v1/import", tag = "import", params(ImportQuery),
    request_body(description = "CSV with a header row (columns: registrant fields, phone, \
        id:<ID TYPE>, attr:<key>, bank_account_number, bank_iban, bank_bic, bank_code), or one \
        registrant JSON object per line. external_key is required on every row.",
        content((String = "text/csv"), (String = "application/x-ndjson"))),
    responses(
        (status = 200, description = "The import ran; failed rows are listed in the report",
            body = ImportReport),
        (status = 403, body = ErrorBody),
        (status = 413, description = "Body over max_import_bytes", body = ErrorBody),
        (status = 422, description = "Unknown format, bad CSV header or unknown column; \
            nothing was imported", body = ErrorBody)))]
pub async fn import(
    State(s): State<AppState>,
    c: Caller,
    Query(q): Query<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ImportReport>, ApiError> {
    c.require_write()?;
    let format = choose_format(q.format.as_deref(), &headers)?;
    let chunk_size = match q.chunk_size {
        None => DEFAULT_CHUNK_SIZE,
        Some(n) if (1..=MAX_CHUNK_SIZE).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::field(
                "chunk_size",
                format!("must be between 1 and {MAX_CHUNK_SIZE}"),
            ));
        }
    };
    let limit = s.settings.max_import_bytes;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut seen: u64 = 0;
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(io::Error::other)?;
        seen += chunk.len() as u64;
        if seen > limit {
            return Err(io::Error::other(BodyTooLarge));
        }
        Ok(chunk)
    });
    let opts = ImportOptions {
        chunk_size,
        ..ImportOptions::default()
    };
    let result = s
        .store
        .import_registrants(StreamReader::new(stream), format, &opts, &c.actor())
        .await;
    match result {
        Ok(report) => Ok(Json(report)),
        Err(ImportError::Header(m)) => Err(ApiError::field("header", m)),
        Err(ImportError::Read(e)) if e.get_ref().is_some_and(|i| i.is::<BodyTooLarge>()) => {
            // Chunks committed before the limit was reached stay; re-sending a smaller file is
            // safe because the import is idempotent.
            Err(ApiError::PayloadTooLarge(limit))
        }
        Err(ImportError::Read(e)) => Err(ApiError::BadRequest {
            code: "bad_body",
            message: format!("cannot read the request body: {e}"),
        }),
        Err(ImportError::Store(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn format_from_query_or_content_type() {
        let mut h = HeaderMap::new();
        assert!(choose_format(None, &h).is_err());
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        assert_eq!(choose_format(None, &h).unwrap(), ImportFormat::Csv);
        assert_eq!(
            choose_format(Some("ndjson"), &h).unwrap(),
            ImportFormat::Ndjson
        );
        assert!(choose_format(Some("xml"), &h).is_err());
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        assert_eq!(choose_format(None, &h).unwrap(), ImportFormat::Ndjson);
    }
}
