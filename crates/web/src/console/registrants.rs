//! Registrant pages: the filterable, keyset-paged list (full page, or just the results fragment
//! for htmx) and the detail page with IDs, attributes, bank accounts, memberships and audit.

use std::collections::HashMap;

use askama::Template;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum_htmx::{HxHistoryRestoreRequest, HxRequest};
use g2p_domain::filter::Domain;
use g2p_domain::{DomainError, RegId, Registrant};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ConsoleError, ConsoleUser, Layout, format_time, is_sensitive_id_type, mask, render};
use crate::error::ApiError;
use crate::state::AppState;

const PAGE_SIZE: i64 = 50;
const AUDIT_ENTRIES: i64 = 50;

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    filter: String,
    /// Kept as text so that a mangled cursor gets an HTML error page, not axum's plain one.
    #[serde(default)]
    after: String,
}

pub struct Row {
    pub id: i64,
    pub name: String,
    pub kind: &'static str,
    pub gender: String,
    pub birthdate: String,
    pub ids: Vec<String>,
    pub registration_date: String,
}

/// The part of the list page that a filter or page change replaces.
pub struct Results {
    pub filter: String,
    pub rows: Vec<Row>,
    pub error: Option<String>,
    pub next_after: Option<i64>,
    pub is_first_page: bool,
}

impl Results {
    pub fn summary(&self) -> String {
        match (self.error.is_some(), self.rows.len()) {
            (true, _) => "The filter could not be used.".to_owned(),
            (false, 0) => "No registrants match.".to_owned(),
            (false, 1) => "1 registrant shown.".to_owned(),
            (false, n) => format!("{n} registrants shown."),
        }
    }
}

#[derive(Template)]
#[template(path = "registrants.html")]
struct ListPage {
    layout: Layout,
    results: Results,
}

#[derive(Template)]
#[template(path = "registrants_fragment.html")]
struct ListFragment {
    results: Results,
}

/// Plain text is a name search; anything starting with `[` is an Odoo domain in JSON.
fn parse_filter(filter: &str) -> Result<Domain, String> {
    let f = filter.trim();
    if f.is_empty() {
        return Ok(Domain::match_all());
    }
    if f.starts_with('[') {
        return Domain::parse_str(f).map_err(|e| format!("Invalid filter: {e}."));
    }
    Domain::from_json(&json!([["name", "ilike", f]])).map_err(|e| format!("Invalid search: {e}."))
}

/// List cells are shown on screens: tokens and VIDs are masked for every role.
fn id_text(id: &RegId) -> String {
    let value = if is_sensitive_id_type(&id.id_type) {
        mask(&id.value)
    } else {
        id.value.clone()
    };
    format!("{}: {}", id.id_type, value)
}

fn row(r: Registrant, ids: &[RegId]) -> Row {
    Row {
        id: r.id,
        kind: if r.is_group { "Group" } else { "Individual" },
        gender: r.gender.unwrap_or_default(),
        birthdate: r.birthdate.map(|d| d.to_string()).unwrap_or_default(),
        ids: ids
            .iter()
            .filter(|i| i.registrant_id == r.id)
            .map(id_text)
            .collect(),
        registration_date: r
            .registration_date
            .map(|d| d.to_string())
            .unwrap_or_default(),
        name: r.name,
    }
}

pub async fn list(
    State(state): State<AppState>,
    user: ConsoleUser,
    HxRequest(htmx): HxRequest,
    HxHistoryRestoreRequest(restore): HxHistoryRestoreRequest,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let Query(q) = q.map_err(|e| bad_request(e.body_text()))?;
    let after = match q.after.trim() {
        "" => None,
        a => Some(
            a.parse::<i64>()
                .map_err(|_| bad_request("the `after` cursor must be a registrant id".into()))?,
        ),
    };
    let mut results = Results {
        filter: q.filter,
        rows: Vec::new(),
        error: None,
        next_after: None,
        is_first_page: after.is_none(),
    };
    let status = match parse_filter(&results.filter) {
        Err(message) => {
            results.error = Some(message);
            StatusCode::UNPROCESSABLE_ENTITY
        }
        Ok(domain) => {
            let page = state
                .store
                .search_registrants(&domain, after, PAGE_SIZE)
                .await?;
            let ids: Vec<i64> = page.items.iter().map(|r| r.id).collect();
            let reg_ids = state.store.reg_ids_for(&ids).await?;
            results.rows = page.items.into_iter().map(|r| row(r, &reg_ids)).collect();
            results.next_after = page.next_after;
            StatusCode::OK
        }
    };
    Ok(if htmx && !restore {
        render(status, &ListFragment { results })
    } else {
        render(
            status,
            &ListPage {
                layout: Layout::new(&user, "registrants"),
                results,
            },
        )
    })
}

fn bad_request(message: String) -> ConsoleError {
    ApiError::BadRequest {
        code: "bad_request",
        message,
    }
    .into()
}

// ------------------------------------------------------------------ detail

pub struct Field {
    pub label: &'static str,
    pub value: String,
}

pub struct IdRow {
    pub id_type: String,
    pub value: String,
    pub masked: bool,
    pub status: &'static str,
    pub expiry: String,
    pub description: String,
}

pub struct AccountRow {
    pub account_number: String,
    pub iban: String,
    pub bank_code: String,
    pub bic: String,
    pub holder: String,
}

pub struct MemberRow {
    pub other_id: i64,
    pub other_name: String,
    pub kinds: String,
    pub start_date: String,
    pub end_date: String,
}

pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Template)]
#[template(path = "registrant.html")]
struct DetailPage {
    layout: Layout,
    name: String,
    is_group: bool,
    fields: Vec<Field>,
    ids: Vec<IdRow>,
    attributes: Vec<(String, String)>,
    accounts: Vec<AccountRow>,
    members: Vec<MemberRow>,
    audit: Vec<AuditRow>,
    audit_payloads_hidden: bool,
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

fn fields_of(r: &Registrant) -> Vec<Field> {
    let mut f = Vec::new();
    let mut add = |label: &'static str, value: String| {
        if !value.is_empty() {
            f.push(Field { label, value });
        }
    };
    add(
        "Type",
        if r.is_group {
            "Group".into()
        } else {
            "Individual".into()
        },
    );
    add("Group kind", opt(&r.group_kind));
    add("Given name", opt(&r.given_name));
    add("Family name", opt(&r.family_name));
    add("Additional name", opt(&r.addl_name));
    add("Gender", opt(&r.gender));
    add(
        "Birth date",
        r.birthdate
            .map(|d| {
                if r.birthdate_not_exact {
                    format!("{d} (approximate)")
                } else {
                    d.to_string()
                }
            })
            .unwrap_or_default(),
    );
    add("Birth place", opt(&r.birth_place));
    add("Address", opt(&r.address));
    add("Phone", opt(&r.phone));
    add(
        "Other phone numbers",
        r.phone_numbers
            .iter()
            .map(|p| p.phone_no.clone())
            .collect::<Vec<_>>()
            .join(", "),
    );
    add("Email", opt(&r.email));
    add(
        "Registration date",
        r.registration_date
            .map(|d| d.to_string())
            .unwrap_or_default(),
    );
    add(
        "Disabled",
        if r.disabled {
            match &r.disabled_reason {
                Some(reason) => format!("yes: {reason}"),
                None => "yes".into(),
            }
        } else {
            String::new()
        },
    );
    add("External key", opt(&r.external_key));
    add("Created", format_time(&r.created_at));
    add("Updated", format_time(&r.updated_at));
    add("Version", r.version.to_string());
    f
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Audit snapshots as shown: pretty JSON with bank account numbers masked, as everywhere else
/// on screen.
fn pretty(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(|v| {
        let mut v = v.clone();
        mask_accounts(&mut v);
        serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
    })
}

fn mask_accounts(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, field) in map.iter_mut() {
                match field {
                    Value::String(s) if k == "account_number" || k == "iban" => *s = mask(s),
                    other => mask_accounts(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_accounts),
        _ => {}
    }
}

/// Names of the registrants at the other end of memberships, in one query.
async fn names_of(state: &AppState, ids: &[i64]) -> Result<HashMap<i64, String>, ConsoleError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let domain = Domain::from_json(&json!([["id", "in", ids]])).map_err(DomainError::from)?;
    let limit = i64::try_from(ids.len()).unwrap_or(i64::MAX);
    let page = state.store.search_registrants(&domain, None, limit).await?;
    Ok(page.items.into_iter().map(|r| (r.id, r.name)).collect())
}

pub async fn detail(
    State(state): State<AppState>,
    user: ConsoleUser,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Path(id)) = id else {
        return Err(ApiError::NotFound("registrant".into()).into());
    };
    let d = state.store.registrant_detail(id).await?;
    let full = user.sees_full_values();
    let r = &d.registrant;

    let ids = d
        .ids
        .iter()
        .map(|i| {
            let masked = !full && is_sensitive_id_type(&i.id_type);
            IdRow {
                id_type: i.id_type.clone(),
                value: if masked {
                    mask(&i.value)
                } else {
                    i.value.clone()
                },
                masked,
                status: i.status.as_str(),
                expiry: i.expiry_date.map(|d| d.to_string()).unwrap_or_default(),
                description: opt(&i.description),
            }
        })
        .collect();

    let attributes = r
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), json_text(v)))
        .collect();

    // Account numbers are masked for everyone: nobody needs them in full on a screen.
    let accounts = d
        .bank_accounts
        .iter()
        .map(|a| AccountRow {
            account_number: mask(&a.account_number),
            iban: a.iban.as_deref().map(mask).unwrap_or_default(),
            bank_code: opt(&a.bank_code),
            bic: opt(&a.bic),
            holder: opt(&a.account_holder_name),
        })
        .collect();

    // A group lists its members; an individual lists its groups.
    let other = |m: &g2p_domain::Membership| {
        if r.is_group {
            m.individual_id
        } else {
            m.group_id
        }
    };
    let other_ids: Vec<i64> = d.memberships.iter().map(other).collect();
    let names = names_of(&state, &other_ids).await?;
    let members = d
        .memberships
        .iter()
        .map(|m| {
            let o = other(m);
            MemberRow {
                other_id: o,
                other_name: names.get(&o).cloned().unwrap_or_else(|| format!("#{o}")),
                kinds: m.kinds.join(", "),
                start_date: m.start_date.map(|d| d.to_string()).unwrap_or_default(),
                end_date: m.end_date.map(|d| d.to_string()).unwrap_or_default(),
            }
        })
        .collect();

    // Before/after snapshots hold ID values and account numbers in full: only for roles that
    // see them anyway.
    let audit = state
        .store
        .audit_for_registrant(id, None, AUDIT_ENTRIES)
        .await?
        .into_iter()
        .map(|e| AuditRow {
            at: format_time(&e.at),
            actor: e.actor,
            action: e.action,
            entity: match e.entity_id {
                Some(eid) if e.entity != "registrant" => format!("{} #{eid}", e.entity),
                _ => e.entity,
            },
            before: if full { pretty(&e.before) } else { None },
            after: if full { pretty(&e.after) } else { None },
        })
        .collect();

    let page = DetailPage {
        layout: Layout::new(&user, "registrants"),
        name: r.name.clone(),
        is_group: r.is_group,
        fields: fields_of(r),
        ids,
        attributes,
        accounts,
        members,
        audit,
        audit_payloads_hidden: !full,
    };
    Ok(render(StatusCode::OK, &page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_a_name_search() {
        assert!(parse_filter("").is_ok());
        assert!(parse_filter("Amina").is_ok());
        assert!(parse_filter(r#"[["reg_ids.id_type","=like","MOSIP VID"]]"#).is_ok());
        let e = parse_filter(r#"[["nope","=",1]]"#)
            .err()
            .unwrap_or_default();
        assert!(e.starts_with("Invalid filter: term 0"), "{e}");
    }

    #[test]
    fn audit_snapshots_mask_account_numbers() {
        let v = Some(json!({"bank_accounts": [{"account_number": "000123456789", "bic": "X"}]}));
        let text = pretty(&v).unwrap_or_default();
        assert!(
            text.contains("••••6789") && !text.contains("000123456789"),
            "{text}"
        );
    }
}
