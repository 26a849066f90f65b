//! ODK input (spec §8): check `odkconfig`, sign in to ODK Central, read the OData Submissions
//! feed within the submissionDate window, and hand the rows over as records. Better than MTS:
//! pages with `$top` and follows `@odata.nextLink`, has timeouts, and signs out afterwards.
//! Owns no queue logic.

use serde_json::{Map, Value, json};

use super::config::MtsConfig;
use super::wire::{ApiError, Structural, py_str};

fn odk_error(code: &'static str, msg: &str) -> ApiError {
    ApiError::Business(code, msg.to_owned())
}

/// The submissions selected by `odkconfig`, in the order Central returns them.
pub(crate) async fn pull(r: &Map<String, Value>, cfg: &MtsConfig) -> Result<Vec<Value>, ApiError> {
    let mut st = Structural::default();
    let Some(odk) = st.opt_obj(r, "odkconfig") else {
        st.finish()?;
        return Err(ApiError::structure("field required"));
    };
    // Python truthiness: absent, null and "" are all "not provided".
    let get = |k: &str| odk.get(k).and_then(py_str).filter(|s| !s.is_empty());
    let base = get("baseurl").ok_or_else(|| odk_error("ATS-REQ-18", "no odk baseurl provided"))?;
    let email = get("email").ok_or_else(|| odk_error("ATS-REQ-19", "no email provided"))?;
    let password =
        get("password").ok_or_else(|| odk_error("ATS-REQ-20", "no password provided"))?;
    let version = get("version").unwrap_or_else(|| "v1".into());
    let base = base.trim_end_matches('/').to_owned();
    let mut url = match get("odataurl") {
        Some(u) => u,
        None => {
            let p = get("projectid")
                .ok_or_else(|| odk_error("ATS-REQ-21", "no odk project id provided"))?;
            let f =
                get("formid").ok_or_else(|| odk_error("ATS-REQ-22", "no odk form id provided"))?;
            format!("{base}/{version}/projects/{p}/forms/{f}.svc/Submissions")
        }
    };
    if let (Some(start), Some(end)) = (get("startdate"), get("enddate")) {
        let sep = if url.contains('?') { '&' } else { '?' };
        url.push_str(&format!(
            "{sep}$filter=__system/submissionDate%20ge%20{start}%20and%20__system/submissionDate%20lt%20{end}"
        ));
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    url.push_str(&format!("{sep}$top={}", cfg.odk_page_size.max(1)));

    let client = reqwest::Client::builder()
        .timeout(cfg.odk_timeout)
        .build()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let internal = |e: reqwest::Error| ApiError::Internal(e.to_string());
    let session: Value = client
        .post(format!("{base}/{version}/sessions"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .map_err(internal)?
        .json()
        .await
        .unwrap_or(Value::Null);
    // MTS fails with Python's KeyError text here (spec §8).
    let token = session["token"]
        .as_str()
        .ok_or_else(|| ApiError::Internal("'token'".into()))?;
    let result = read_pages(&client, url, token, cfg.max_records).await;
    // Signing out is a courtesy (MTS never does): its failure changes nothing.
    let _ = client
        .delete(format!("{base}/{version}/sessions/{token}"))
        .bearer_auth(token)
        .send()
        .await;
    let rows = result?;
    if rows.is_empty() {
        return Err(odk_error("ATS-REQ-23", "no submissions found for odk pull"));
    }
    Ok(rows)
}

async fn read_pages(
    client: &reqwest::Client,
    mut url: String,
    token: &str,
    max: usize,
) -> Result<Vec<Value>, ApiError> {
    let mut rows = Vec::new();
    loop {
        let r = client
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let code = r.status();
        let doc: Value = r.json().await.unwrap_or(Value::Null);
        if !code.is_success() {
            return Err(ApiError::Internal(format!(
                "ODK Central answered HTTP {}: {doc}",
                code.as_u16()
            )));
        }
        if let Some(Value::Array(v)) = doc.get("value") {
            rows.extend(v.iter().cloned());
        }
        if rows.len() > max {
            return Err(ApiError::req102("invalid input. too many records"));
        }
        match doc.get("@odata.nextLink").and_then(Value::as_str) {
            Some(next) => url = next.to_owned(),
            None => return Ok(rows),
        }
    }
}
