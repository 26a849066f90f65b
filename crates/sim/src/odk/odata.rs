//! The OData feed of a form (`/v1/projects/{p}/forms/{f}.svc`): the service document, the EDMX
//! metadata generated from the form's fields, the Submissions data document with Central's
//! query options (`$top $skip $count $filter $orderby $select $expand $wkt $skiptoken`), its
//! cursor paging and its quirks (§13 of the spec), and single submissions. The order of checks
//! and which errors carry `OData-Version` follow the recorded exchanges. Callers hold the lock.

use std::collections::{HashMap, HashSet};

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose::STANDARD as B64};
use serde_json::Value;

use super::filter::{Filter, parse_orderby, sort_rows};
use super::http::{Payload, Problem, Reply, Req, event_hash, mustache_escape};
use super::json::{Json, js_number as js};
use super::model::{Field, Form, Inner, ReviewState, Submission, lookup};
use super::wire::{iso, sanitize_odata_identifier, serialize_query};

/// Query parameters Central's OData preprocessor lets through; any other gives 501.1.
const ALLOWED_PARAMS: &[&str] = &[
    "$format",
    "$count",
    "$skip",
    "$top",
    "$filter",
    "$wkt",
    "$expand",
    "$select",
    "$skiptoken",
    "$orderby",
    "$search",
];

const SYSTEM_FIELDS: &[&str] = &[
    "submissionDate",
    "updatedAt",
    "submitterId",
    "submitterName",
    "attachmentsPresent",
    "attachmentsExpected",
    "status",
    "reviewState",
    "deviceId",
    "edits",
    "formVersion",
    "deletedAt",
];

enum Doc<'a> {
    Service,
    Metadata,
    Table(&'a str),
    /// `Submissions('…')`: the text between the parentheses, and whether a sub-path follows.
    Single(&'a str, bool),
}

fn classify<'a>(tail: &[&'a str]) -> Option<Doc<'a>> {
    let key = |seg: &'a str| {
        seg.strip_prefix("Submissions(")
            .and_then(|s| s.strip_suffix(')'))
    };
    match tail {
        [] => Some(Doc::Service),
        ["$metadata"] => Some(Doc::Metadata),
        [seg] => Some(key(seg).map_or(Doc::Table(seg), |k| Doc::Single(k, false))),
        [seg, ..] => key(seg).map(|k| Doc::Single(k, true)),
    }
}

/// Handles every GET below `…/forms/{xmlFormId}.svc`.
pub(crate) fn handle(
    inner: &Inner,
    req: &Req,
    actor: u64,
    project: &str,
    xml_form_id: &str,
    tail: &[&str],
) -> Reply {
    let Some(doc) = classify(tail) else {
        return Problem::not_found().json();
    };
    let xml = matches!(doc, Doc::Metadata);
    let fail = |p: Problem| if xml { p.xml() } else { p.json() };

    // Checks of the OData preprocessor: their errors carry no OData-Version header.
    if let Some(v) = req.header("odata-maxversion")
        && v.trim().parse::<f64>().is_ok_and(|v| v < 4.0)
    {
        return fail(Problem::not_found());
    }
    if let Err(p) = check_format(req, xml) {
        return fail(p);
    }
    if let Some((k, _)) = req
        .query
        .iter()
        .find(|(k, _)| !ALLOWED_PARAMS.contains(&k.as_str()))
    {
        return fail(Problem::not_implemented(k));
    }
    if let Some(e) = req.param("$expand") {
        if e != "*" {
            return fail(Problem::unsupported_expand(e));
        }
        if req.param("$select").is_some() {
            return fail(Problem::select_with_expand());
        }
    }

    // From here on Central has set OData-Version.
    let fail = |p: Problem| fail(p).odata();
    let Some(proj) = project
        .parse::<u64>()
        .ok()
        .and_then(|id| inner.projects.get(&id))
    else {
        return fail(Problem::not_found());
    };
    let Some(form) = proj.forms.iter().find(|f| f.xml_form_id == xml_form_id) else {
        return fail(Problem::not_found());
    };
    if !inner.can_read(actor, proj.id) {
        return fail(Problem::insufficient_rights());
    }
    let domain = req.domain(inner);
    match doc {
        Doc::Service => service_document(&domain, req),
        Doc::Metadata => {
            let mut r = Reply::new(StatusCode::OK, Payload::Fixed(edmx(form)));
            r.content_type = Some("application/xml; charset=utf-8");
            r.odata()
        }
        Doc::Table("Submissions") => data_document(inner, req, form, &domain),
        Doc::Table(_) => fail(Problem::not_found()),
        Doc::Single(key, sub_path) => {
            let Some(id) = parse_key(key) else {
                return fail(Problem::not_found());
            };
            if sub_path {
                // Repeat sub-paths: the simulated forms have no repeats.
                return fail(Problem::not_found());
            }
            match form
                .submissions
                .iter()
                .find(|s| s.instance_id == id && s.deleted_at.is_none())
            {
                Some(s) => single_document(inner, req, form, s, &domain),
                None => fail(Problem::not_found()),
            }
        }
    }
}

/// `'((?:uuid:)?[a-z0-9-]+)'`, case-insensitive, as Central's route matches keys.
fn parse_key(key: &str) -> Option<&str> {
    let inner = key.strip_prefix('\'')?.strip_suffix('\'')?;
    let body = if inner
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("uuid:"))
    {
        &inner[5..]
    } else {
        inner
    };
    (!body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .then_some(inner)
}

/// `$format`, else `Accept`: JSON documents need JSON, `$metadata` needs XML (406.1).
fn check_format(req: &Req, xml: bool) -> Result<(), Problem> {
    let (allowed, types): (&[&str], &[&str]) = if xml {
        (
            &["application/xml", "xml"],
            &[
                "application/xml",
                "text/xml",
                "xml",
                "*/*",
                "application/*",
                "text/*",
            ],
        )
    } else {
        (
            &["application/json", "json"],
            &["application/json", "json", "*/*", "application/*"],
        )
    };
    if let Some(f) = req.param("$format") {
        let f_lower = f.to_ascii_lowercase();
        return if allowed.contains(&f_lower.as_str()) {
            Ok(())
        } else {
            Err(Problem::unacceptable_format(allowed, f))
        };
    }
    let Some(accept) = req.header("accept") else {
        return Ok(());
    };
    let ok = accept.split(',').any(|t| {
        let media = t
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        types.contains(&media.as_str())
    });
    if ok || accept.trim().is_empty() {
        Ok(())
    } else {
        Err(Problem::unacceptable_format(allowed, accept))
    }
}

fn service_document(domain: &str, req: &Req) -> Reply {
    let body = Json::obj()
        .put(
            "@odata.context",
            Json::str(format!("{domain}{}/$metadata", req.path)),
        )
        .put(
            "value",
            Json::Arr(vec![
                Json::obj()
                    .put("name", Json::str("Submissions"))
                    .put("kind", Json::str("EntitySet"))
                    .put("url", Json::str("Submissions"))
                    .build(),
            ]),
        )
        .build();
    let mut r = Reply::new(StatusCode::OK, Payload::Fixed(body.to_json_string()));
    r.content_type = Some("application/json; charset=utf-8; odata.metadata=minimal");
    r.odata()
}

/// The path up to and including `.svc`, as received (Central's `getServiceRoot`).
fn service_root(path: &str) -> &str {
    let lower = path.to_ascii_lowercase();
    match lower.find(".svc/") {
        Some(i) => path.get(..i + 4).unwrap_or(path),
        None => path,
    }
}

// ------------------------------------------------------------------------------------------------
// Data documents.

/// JavaScript's `parseInt(x, 10)`: leading whitespace, sign, digits; None for NaN.
fn js_parse_int(s: &str) -> Option<i64> {
    let t = s.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let end = digits.bytes().take_while(u8::is_ascii_digit).count();
    let n: i64 = digits.get(..end)?.parse().ok()?;
    Some(if neg { -n } else { n })
}

/// JavaScript's `parseFloat`: the longest decimal prefix; None for NaN.
fn js_parse_float(s: &str) -> Option<f64> {
    let t = s.trim_start();
    let b = t.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    if t.get(i..).is_some_and(|r| r.starts_with("Infinity")) {
        return Some(if b.first() == Some(&b'-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - int_start;
    if b.get(i) == Some(&b'.') {
        let frac_start = i + 1;
        let mut j = frac_start;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        digits += j - frac_start;
        if digits > 0 {
            i = j;
        }
    }
    if digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_start = j;
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    t.get(..i)?.parse().ok()
}

struct ODataQuery<'a> {
    limit: Option<usize>,
    top_given: bool,
    offset: usize,
    skip_given: bool,
    count: bool,
    wkt: bool,
    filter: Option<&'a str>,
    orderby: Option<&'a str>,
    select: Option<&'a str>,
    skiptoken: Option<&'a str>,
}

impl<'a> ODataQuery<'a> {
    fn from(req: &'a Req) -> Self {
        let top = req.param("$top").and_then(js_parse_int);
        let skip = req.param("$skip").and_then(js_parse_int);
        let truthy = |k: &str| req.param(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Self {
            limit: top.map(|n| usize::try_from(n.max(0)).unwrap_or(usize::MAX)),
            top_given: top.is_some(),
            offset: skip.map_or(0, |n| usize::try_from(n.max(0)).unwrap_or(0)),
            skip_given: skip.is_some(),
            count: truthy("$count"),
            wkt: truthy("$wkt"),
            filter: req.param("$filter"),
            orderby: req.param("$orderby"),
            select: req.param("$select"),
            skiptoken: req.param("$skiptoken"),
        }
    }
}

/// `01` + base64(JSON `{"instanceId":…}`) (`lib/util/db.js`).
fn encode_skiptoken(instance_id: Option<&str>) -> String {
    let json = Json::obj()
        .put("instanceId", Json::opt_str(instance_id))
        .build()
        .to_json_string();
    format!("01{}", B64.encode(json))
}

/// Decodes a skiptoken to its instanceId (None for `null`); a bad prefix or JSON is 400.35.
fn decode_skiptoken(token: &str) -> Result<Option<String>, Problem> {
    let rest = token
        .strip_prefix("01")
        .ok_or_else(Problem::invalid_skiptoken)?;
    // Node's base64 decoder is lenient about padding.
    let lenient = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = lenient
        .decode(rest.trim())
        .map_err(|_| Problem::invalid_skiptoken())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| Problem::invalid_skiptoken())?;
    Ok(value
        .get("instanceId")
        .and_then(Value::as_str)
        .map(str::to_owned))
}

/// `@odata.nextLink`: the request URL with `$skip` removed and `$skiptoken` set, serialised
/// by `URLSearchParams` (`lib/util/http.js#urlWithQueryParams`).
fn next_link(domain: &str, req: &Req, last: Option<&str>) -> String {
    let token = encode_skiptoken(last);
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut replaced = false;
    for (k, v) in &req.query {
        match k.as_str() {
            "$skip" => {}
            "$skiptoken" if replaced => {}
            "$skiptoken" => {
                pairs.push((k.clone(), token.clone()));
                replaced = true;
            }
            _ => pairs.push((k.clone(), v.clone())),
        }
    }
    if !replaced {
        pairs.push(("$skiptoken".to_owned(), token));
    }
    format!("{domain}{}?{}", req.path, serialize_query(&pairs))
}

fn default_order(rows: &mut [&Submission]) {
    // Newest first: createdAt DESC, id DESC.
    rows.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.seq)));
}

fn footer(context: &str, next: Option<&str>, count: Option<usize>) -> String {
    let mut out = String::from("\"@odata.context\":");
    Json::str(context).write(&mut out);
    if let Some(n) = next {
        out.push_str(",\"@odata.nextLink\":");
        Json::str(n).write(&mut out);
    }
    if let Some(c) = count {
        out.push_str(&format!(",\"@odata.count\":{c}"));
    }
    out.push('}');
    out
}

fn data_document(inner: &Inner, req: &Req, form: &Form, domain: &str) -> Reply {
    let fail = |p: Problem| p.json().odata();
    let q = ODataQuery::from(req);
    if q.orderby.is_some() && q.skiptoken.is_some() {
        return fail(Problem::not_implemented(
            "using $orderby and $skiptoken together",
        ));
    }
    let cursor = match q.skiptoken.map(decode_skiptoken).transpose() {
        Ok(c) => c,
        Err(p) => return fail(p),
    };
    let filter = match q.filter.map(Filter::parse).transpose() {
        Ok(f) => f,
        Err(p) => return fail(p),
    };
    let order = match q.orderby.map(parse_orderby).transpose() {
        Ok(o) => o,
        Err(p) => return fail(p),
    };

    let now = inner.now();
    let include_deleted = filter.as_ref().is_some_and(Filter::mentions_deleted_at);
    let mut rows: Vec<&Submission> = form
        .submissions
        .iter()
        .filter(|s| include_deleted || s.deleted_at.is_none())
        .filter(|s| filter.as_ref().is_none_or(|f| f.matches(s, now)))
        .collect();
    match &order {
        Some(terms) => sort_rows(&mut rows, terms),
        None => default_order(&mut rows),
    }
    let count = q.count.then_some(rows.len());
    let context = format!("{domain}{}/$metadata#Submissions", service_root(req.path));

    // `$top=0` is answered from a count alone, without reading rows: a plain JSON body.
    if q.limit == Some(0) {
        let body = format!("{{\"value\":[],{}", footer(&context, None, count));
        return Reply::json(StatusCode::OK, body).odata();
    }

    // The cursor selects rows strictly older than its row in (createdAt, id) order; an unknown
    // or null instanceId gives an empty page (getodk/central-backend#1273).
    let after: Vec<&Submission> = match &cursor {
        None => rows.clone(),
        Some(None) => Vec::new(),
        Some(Some(id)) => match form.submissions.iter().find(|s| &s.instance_id == id) {
            None => Vec::new(),
            Some(c) => rows
                .iter()
                .filter(|s| (s.created_at, s.seq) < (c.created_at, c.seq))
                .copied()
                .collect(),
        },
    };
    let skip = if q.skiptoken.is_some() { 0 } else { q.offset };
    let page: Vec<&Submission> = after
        .iter()
        .skip(skip)
        .take(q.limit.unwrap_or(usize::MAX))
        .copied()
        .collect();
    // Central's "remaining" ignores $skip: a page reached with $skip may carry a nextLink
    // that leads to an empty page (spec §13.4). Reproduced on purpose.
    let remaining = after.len().saturating_sub(page.len());
    let paging = q.top_given || q.skip_given || q.skiptoken.is_some();
    let next = (paging && remaining > 0)
        .then(|| next_link(domain, req, page.last().map(|s| s.instance_id.as_str())));

    // The ETag is computed before the rows are serialised, so a $select error carries it.
    let etag = event_hash(&page);
    let selection = match Selection::parse(form, q.select) {
        Ok(s) => s,
        Err(p) => {
            let mut r = fail(p);
            r.etag = Some(etag);
            return r;
        }
    };
    let shaper = RowShaper::new(inner, form, &selection, q.wkt);
    let mut chunks = Vec::with_capacity(page.len() + 2);
    chunks.push("{\"value\":[".to_owned());
    for (i, s) in page.iter().enumerate() {
        let mut row = if i == 0 {
            String::new()
        } else {
            String::from(",")
        };
        shaper.row(s).write(&mut row);
        chunks.push(row);
    }
    chunks.push(format!("],{}", footer(&context, next.as_deref(), count)));
    let mut r = Reply::new(StatusCode::OK, Payload::Chunks(chunks));
    r.content_type = Some(super::http::JSON_UTF8);
    r.etag = Some(etag);
    r.odata()
}

fn single_document(inner: &Inner, req: &Req, form: &Form, s: &Submission, domain: &str) -> Reply {
    let q = ODataQuery::from(req);
    let selection = match Selection::parse(form, q.select) {
        Ok(sel) => sel,
        Err(p) => return p.json().odata(),
    };
    let shaper = RowShaper::new(inner, form, &selection, q.wkt);
    let rows: Vec<Json> = std::iter::once(s)
        .skip(q.offset)
        .take(q.limit.unwrap_or(usize::MAX))
        .map(|s| shaper.row(s))
        .collect();
    let mut body = String::from("{\"value\":");
    Json::Arr(rows).write(&mut body);
    body.push(',');
    let context = format!("{domain}{}/$metadata#Submissions", service_root(req.path));
    body.push_str(&footer(&context, None, q.count.then_some(1)));
    Reply::json(StatusCode::OK, body).odata()
}

// ------------------------------------------------------------------------------------------------
// Rows.

enum SystemSel {
    All,
    Nothing,
    Some(Vec<&'static str>),
}

/// A parsed `$select`: which schema fields (by index) and which `__system` members.
struct Selection {
    fields: Option<HashSet<usize>>,
    system: SystemSel,
}

impl Selection {
    fn parse(form: &Form, select: Option<&str>) -> Result<Self, Problem> {
        let Some(select) = select.filter(|s| *s != "*") else {
            return Ok(Self {
                fields: None,
                system: SystemSel::All,
            });
        };
        let odata_paths: Vec<String> = form
            .fields
            .iter()
            .map(|f| {
                f.path
                    .split('/')
                    .skip(1)
                    .map(sanitize_odata_identifier)
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        let mut fields = HashSet::new();
        let mut system_all = false;
        let mut system = Vec::new();
        for prop in select.split(',').map(str::trim) {
            if prop == "__id" {
                continue;
            }
            if prop == "__system" {
                system_all = true;
                continue;
            }
            if let Some(name) = prop.strip_prefix("__system/")
                && let Some(known) = SYSTEM_FIELDS.iter().find(|f| **f == name)
            {
                system.push(*known);
                continue;
            }
            let Some(idx) = odata_paths.iter().position(|p| p == prop) else {
                return Err(Problem::property_not_found(prop));
            };
            fields.insert(idx);
            // Ancestors are kept so the value sits in its group.
            let mut parent = form.fields.get(idx).map_or("", Field::parent_path);
            while !parent.is_empty() {
                match form.fields.iter().position(|f| f.path == parent) {
                    Some(p) => {
                        fields.insert(p);
                        parent = form.fields.get(p).map_or("", Field::parent_path);
                    }
                    None => break,
                }
            }
            // A selected group brings all its children.
            if let Some(f) = form.fields.get(idx).filter(|f| f.is_structure()) {
                let prefix = format!("{}/", f.path);
                for (i, g) in form.fields.iter().enumerate() {
                    if g.path.starts_with(&prefix) {
                        fields.insert(i);
                    }
                }
            }
        }
        let system = if system_all {
            SystemSel::All
        } else if system.is_empty() {
            SystemSel::Nothing
        } else {
            SystemSel::Some(system)
        };
        Ok(Self {
            fields: Some(fields),
            system,
        })
    }

    fn includes(&self, idx: usize) -> bool {
        self.fields.as_ref().is_none_or(|f| f.contains(&idx))
    }
}

/// Turns stored submissions into OData rows: form fields in schema order (groups always
/// present, unknown values null), then `__id`, then `__system` with `deletedAt` last.
struct RowShaper<'a> {
    inner: &'a Inner,
    form: &'a Form,
    selection: &'a Selection,
    wkt: bool,
    children: HashMap<&'a str, Vec<usize>>,
}

impl<'a> RowShaper<'a> {
    fn new(inner: &'a Inner, form: &'a Form, selection: &'a Selection, wkt: bool) -> Self {
        let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, f) in form.fields.iter().enumerate() {
            children.entry(f.parent_path()).or_default().push(i);
        }
        Self {
            inner,
            form,
            selection,
            wkt,
            children,
        }
    }

    fn group(&self, parent: &str, data: &Value) -> Vec<(String, Json)> {
        let mut out = Vec::new();
        for &i in self.children.get(parent).map_or(&[][..], Vec::as_slice) {
            if !self.selection.includes(i) {
                continue;
            }
            let Some(f) = self.form.fields.get(i) else {
                continue;
            };
            let value = if f.is_structure() {
                Json::Obj(self.group(&f.path, data))
            } else {
                primitive(lookup(data, &f.path), &f.kind, self.wkt)
            };
            out.push((sanitize_odata_identifier(f.name()), value));
        }
        out
    }

    fn row(&self, s: &Submission) -> Json {
        // Encrypted submissions carry only __id and __system: OData never decrypts.
        let mut members = if s.status.is_none() {
            self.group("", &s.data)
        } else {
            Vec::new()
        };
        members.push(("__id".to_owned(), Json::str(&s.instance_id)));
        let system = || -> Vec<(&'static str, Json)> {
            vec![
                ("submissionDate", Json::str(iso(s.created_at))),
                ("updatedAt", Json::opt_str(s.updated_at.map(iso))),
                (
                    "submitterId",
                    Json::opt_str(s.submitter_id.map(|id| id.to_string())),
                ),
                (
                    "submitterName",
                    Json::opt_str(self.inner.display_name(s.submitter_id)),
                ),
                (
                    "attachmentsPresent",
                    Json::int(i64::from(s.attachments_present)),
                ),
                (
                    "attachmentsExpected",
                    Json::int(i64::from(s.attachments_expected)),
                ),
                ("status", Json::opt_str(s.status.clone())),
                (
                    "reviewState",
                    Json::opt_str(s.review_state.map(ReviewState::as_str)),
                ),
                ("deviceId", Json::opt_str(s.device_id.clone())),
                ("edits", Json::int(i64::from(s.edits))),
                ("formVersion", Json::str(&s.form_version)),
                ("deletedAt", Json::opt_str(s.deleted_at.map(iso))),
            ]
        };
        let keep: Option<&[&str]> = match &self.selection.system {
            SystemSel::All => None,
            SystemSel::Nothing => Some(&[]),
            SystemSel::Some(list) => Some(list),
        };
        if keep.is_none_or(|k| !k.is_empty()) {
            let sys: Vec<(String, Json)> = system()
                .into_iter()
                .filter(|(name, _)| keep.is_none_or(|k| k.contains(name)))
                .map(|(name, v)| (name.to_owned(), v))
                .collect();
            members.push(("__system".to_owned(), Json::Obj(sys)));
        }
        Json::Obj(members)
    }
}

/// Splits like JavaScript's `text.split(/\s+/g)` (a leading blank gives an empty first item).
fn split_ws_js(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if c.is_whitespace() {
            out.push(s.get(start..i).unwrap_or(""));
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = iter.peek() {
                if !d.is_whitespace() {
                    break;
                }
                end = j + d.len_utf8();
                iter.next();
            }
            start = end;
        }
    }
    out.push(s.get(start..).unwrap_or(""));
    out
}

/// `[lat, lon, alt, acc]` of an ODK point, as parseFloat reads them.
fn point(text: &str) -> Option<(f64, f64, Option<f64>, Option<f64>)> {
    let parts: Vec<Option<f64>> = split_ws_js(text).into_iter().map(js_parse_float).collect();
    let lat = parts.first().copied().flatten()?;
    let lon = parts.get(1).copied().flatten()?;
    Some((
        lat,
        lon,
        parts.get(2).copied().flatten(),
        parts.get(3).copied().flatten(),
    ))
}

fn nums(values: &[f64]) -> Json {
    Json::Arr(values.iter().map(|v| Json::float(*v)).collect())
}

/// Converts one stored value (ODK's XML text) to its OData JSON form (`lib/data/odata.js`).
fn primitive(value: Option<&Value>, kind: &str, wkt: bool) -> Json {
    let text = match value {
        None | Some(Value::Null) => return Json::Null,
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => return Json::from_value(other),
    };
    // An empty element produces no text event: the value stays null.
    if text.is_empty() {
        return Json::Null;
    }
    match kind {
        "int" => js_parse_int(&text).map_or(Json::Null, Json::int),
        "decimal" => js_parse_float(&text).map_or(Json::Null, Json::float),
        "geopoint" => {
            let Some((lat, lon, alt, acc)) = point(&text) else {
                return Json::Null;
            };
            let mut coords = vec![lon, lat];
            coords.extend(alt);
            if wkt {
                let joined: Vec<String> = coords.iter().map(|c| js(*c)).collect();
                return Json::str(format!("POINT ({})", joined.join(" ")));
            }
            let mut b = Json::obj()
                .put("type", Json::str("Point"))
                .put("coordinates", nums(&coords));
            if let Some(a) = acc {
                b = b.put(
                    "properties",
                    Json::obj().put("accuracy", Json::float(a)).build(),
                );
            }
            b.build()
        }
        "geotrace" | "geoshape" => geo_line(&text, kind == "geoshape", wkt),
        "dateTime" => {
            // Collect writes "+07"; most specs require "+07:00".
            let t = text.trim();
            let b = t.as_bytes();
            let short_tz = b.len() >= 3
                && matches!(b[b.len() - 3], b'+' | b'-')
                && b[b.len() - 2].is_ascii_digit()
                && b[b.len() - 1].is_ascii_digit();
            Json::str(if short_tz {
                format!("{t}:00")
            } else {
                t.to_owned()
            })
        }
        _ => Json::Str(text),
    }
}

fn geo_line(text: &str, shape: bool, wkt: bool) -> Json {
    let point_strs: Vec<&str> = text
        .split(';')
        .map(|p| p.strip_prefix(' ').unwrap_or(p))
        .collect();
    let mut coords: Vec<Vec<f64>> = Vec::new();
    let mut accuracies: Vec<Option<f64>> = Vec::new();
    for p in &point_strs {
        let parts: Vec<Option<f64>> = split_ws_js(p).into_iter().map(js_parse_float).collect();
        let (lat, lon) = (
            parts.first().copied().flatten(),
            parts.get(1).copied().flatten(),
        );
        let (Some(lat), Some(lon)) = (lat, lon) else {
            if point_strs.len() == 1 {
                return Json::Null;
            }
            continue;
        };
        let mut c = vec![lon, lat];
        c.extend(parts.get(2).copied().flatten());
        coords.push(c);
        accuracies.push(parts.get(3).copied().flatten().filter(|a| *a != 0.0));
    }
    if wkt {
        let pts: Vec<String> = coords
            .iter()
            .map(|c| c.iter().map(|v| js(*v)).collect::<Vec<_>>().join(" "))
            .collect();
        return Json::str(if shape {
            format!("POLYGON (({}))", pts.join(","))
        } else {
            format!("LINESTRING ({})", pts.join(","))
        });
    }
    let line = Json::Arr(coords.iter().map(|c| nums(c)).collect());
    let mut b = Json::obj()
        .put(
            "type",
            Json::str(if shape { "Polygon" } else { "LineString" }),
        )
        .put(
            "coordinates",
            if shape { Json::Arr(vec![line]) } else { line },
        );
    if accuracies.iter().any(Option::is_some) {
        let acc = Json::Arr(
            accuracies
                .iter()
                .map(|a| a.map_or(Json::Null, Json::float))
                .collect(),
        );
        b = b.put("properties", Json::obj().put("accuracies", acc).build());
    }
    b.build()
}

// ------------------------------------------------------------------------------------------------
// EDMX ($metadata), rendered like Central's mustache template (standalone tags removed).

fn edm_type(kind: &str) -> &'static str {
    match kind {
        "int" => "Edm.Int64",
        "decimal" => "Edm.Decimal",
        "boolean" => "Edm.Boolean",
        "geopoint" => "Edm.GeographyPoint",
        "geotrace" => "Edm.GeographyLineString",
        "geoshape" => "Edm.GeographyPolygon",
        "date" => "Edm.Date",
        "dateTime" => "Edm.DateTimeOffset",
        _ => "Edm.String",
    }
}

const EDMX_HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">
  <edmx:DataServices>
    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="org.opendatakit.submission">
      <ComplexType Name="metadata">
        <Property Name="submissionDate" Type="Edm.DateTimeOffset"/>
        <Property Name="updatedAt" Type="Edm.DateTimeOffset"/>
        <Property Name="deletedAt" Type="Edm.DateTimeOffset"/>
        <Property Name="submitterId" Type="Edm.String"/>
        <Property Name="submitterName" Type="Edm.String"/>
        <Property Name="attachmentsPresent" Type="Edm.Int64"/>
        <Property Name="attachmentsExpected" Type="Edm.Int64"/>
        <Property Name="status" Type="org.opendatakit.submission.Status"/>
        <Property Name="reviewState" Type="org.opendatakit.submission.ReviewState"/>
        <Property Name="deviceId" Type="Edm.String"/>
        <Property Name="edits" Type="Edm.Int64"/>
        <Property Name="formVersion" Type="Edm.String"/>
      </ComplexType>
      <EnumType Name="Status">
        <Member Name="notDecrypted"/>
        <Member Name="missingEncryptedFormData"/>
      </EnumType>
      <EnumType Name="ReviewState">
        <Member Name="hasIssues"/>
        <Member Name="edited"/>
        <Member Name="rejected"/>
        <Member Name="approved"/>
      </EnumType>
    </Schema>
"#;

const ANNOTATIONS_HEAD: &str = r#"          <Annotation Term="Org.OData.Capabilities.V1.ConformanceLevel" EnumMember="Org.OData.Capabilities.V1.ConformanceLevelType/Minimal"/>
          <Annotation Term="Org.OData.Capabilities.V1.BatchSupported" Bool="false"/>
          <Annotation Term="Org.OData.Capabilities.V1.CountRestrictions">
            <Record><PropertyValue Property="Countable" Bool="true"/></Record>
          </Annotation>
          <Annotation Term="Org.OData.Capabilities.V1.FilterFunctions">
            <Record>
              <PropertyValue Property="NonCountableProperties">
                <Collection>
                  <String>eq</String>
                </Collection>
              </PropertyValue>
            </Record>
          </Annotation>
          <Annotation Term="Org.OData.Capabilities.V1.FilterFunctions">
            <Record>
              <PropertyValue Property="Filterable" Bool="true"/>
              <PropertyValue Property="RequiresFilter" Bool="false"/>
              <PropertyValue Property="NonFilterableProperties">
                <Collection>
"#;

const ANNOTATIONS_TAIL: &str = r#"                </Collection>
              </PropertyValue>
            </Record>
          </Annotation>
          <Annotation Term="Org.OData.Capabilities.V1.SortRestrictions">
            <Record><PropertyValue Property="Sortable" Bool="false"/></Record>
          </Annotation>
          <Annotation Term="Org.OData.Capabilities.V1.ExpandRestrictions">
            <Record><PropertyValue Property="Expandable" Bool="false"/></Record>
          </Annotation>
"#;

/// A group's complex type: its field path, its type name and its (name, type) properties.
struct ComplexType {
    path: String,
    name: String,
    properties: Vec<(String, String)>,
}

fn edmx(form: &Form) -> String {
    let fqdn = format!(
        "org.opendatakit.user.{}",
        sanitize_odata_identifier(&form.xml_form_id)
    );
    let type_name = |f: &Field| -> String {
        f.path
            .split('/')
            .skip(1)
            .map(sanitize_odata_identifier)
            .collect::<Vec<_>>()
            .join(".")
    };
    // Properties of the root entity and of each group's complex type, in schema order.
    let mut root: Vec<(String, String)> = Vec::new();
    let mut complex: Vec<ComplexType> = Vec::new();
    for f in &form.fields {
        let name = sanitize_odata_identifier(f.name());
        let ty = if f.is_structure() {
            format!("{fqdn}.{}", type_name(f))
        } else {
            edm_type(&f.kind).to_owned()
        };
        let parent = f.parent_path();
        if parent.is_empty() {
            root.push((name, ty));
        } else if let Some(c) = complex.iter_mut().find(|c| c.path == parent) {
            c.properties.push((name, ty));
        }
        if f.is_structure() {
            complex.push(ComplexType {
                path: f.path.clone(),
                name: type_name(f),
                properties: Vec::new(),
            });
        }
    }
    let prop = |out: &mut String, (name, ty): &(String, String)| {
        out.push_str(&format!(
            "        <Property Name=\"{}\" Type=\"{}\"/>\n",
            mustache_escape(name),
            mustache_escape(ty)
        ));
    };
    let mut out = String::from(EDMX_HEAD);
    out.push_str(&format!(
        "    <Schema xmlns=\"http://docs.oasis-open.org/odata/ns/edm\" Namespace=\"{}\">\n",
        mustache_escape(&fqdn)
    ));
    out.push_str("      <EntityType Name=\"Submissions\">\n");
    out.push_str("        <Key><PropertyRef Name=\"__id\"/></Key>\n");
    out.push_str("        <Property Name=\"__id\" Type=\"Edm.String\"/>\n");
    out.push_str(
        "        <Property Name=\"__system\" Type=\"org.opendatakit.submission.metadata\"/>\n",
    );
    for p in &root {
        prop(&mut out, p);
    }
    out.push_str("      </EntityType>\n");
    for c in &complex {
        out.push_str(&format!(
            "      <ComplexType Name=\"{}\">\n",
            mustache_escape(&c.name)
        ));
        for p in &c.properties {
            prop(&mut out, p);
        }
        out.push_str("      </ComplexType>\n");
    }
    out.push_str(&format!(
        "      <EntityContainer Name=\"{}\">\n",
        mustache_escape(&form.xml_form_id)
    ));
    out.push_str(&format!(
        "        <EntitySet Name=\"Submissions\" EntityType=\"{}.Submissions\">\n",
        mustache_escape(&fqdn)
    ));
    out.push_str(ANNOTATIONS_HEAD);
    for (name, _) in &root {
        out.push_str(&format!(
            "                  <PropertyPath>{}</PropertyPath>\n",
            mustache_escape(name)
        ));
    }
    out.push_str(ANNOTATIONS_TAIL);
    out.push_str("        </EntitySet>\n      </EntityContainer>\n    </Schema>\n  </edmx:DataServices>\n</edmx:Edmx>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_tokens() {
        assert_eq!(
            parse_key("'uuid:6f1c2a10-0002-4b6e-9a11-000000000002'"),
            Some("uuid:6f1c2a10-0002-4b6e-9a11-000000000002")
        );
        assert_eq!(parse_key("'uuid:abc_def'"), None);
        assert_eq!(parse_key("'ABC-1'"), Some("ABC-1"));
        let t = encode_skiptoken(Some("uuid:6f1c2a10-0002-4b6e-9a11-000000000002"));
        assert_eq!(
            t,
            "01eyJpbnN0YW5jZUlkIjoidXVpZDo2ZjFjMmExMC0wMDAyLTRiNmUtOWExMS0wMDAwMDAwMDAwMDIifQ=="
        );
        assert_eq!(encode_skiptoken(None), "01eyJpbnN0YW5jZUlkIjpudWxsfQ==");
        assert_eq!(
            decode_skiptoken(&t).ok().flatten().as_deref(),
            Some("uuid:6f1c2a10-0002-4b6e-9a11-000000000002")
        );
        assert!(decode_skiptoken("zz").is_err());
        assert!(decode_skiptoken("01!!!").is_err());
    }

    #[test]
    fn values_convert_like_central() {
        let v = |s: &str| Value::String(s.to_owned());
        assert_eq!(primitive(Some(&v("12abc")), "int", false), Json::int(12));
        assert_eq!(primitive(Some(&v("x")), "int", false), Json::Null);
        assert_eq!(primitive(Some(&v("")), "string", false), Json::Null);
        assert_eq!(
            primitive(Some(&v("2.50")), "decimal", false).to_json_string(),
            "2.5"
        );
        assert_eq!(
            primitive(
                Some(&v("-1.2833333 36.8166667 1661.0 5.0")),
                "geopoint",
                false
            )
            .to_json_string(),
            r#"{"type":"Point","coordinates":[36.8166667,-1.2833333,1661],"properties":{"accuracy":5}}"#
        );
        assert_eq!(
            primitive(Some(&v("-1.5 36.5 1661.0 5.0")), "geopoint", true).to_json_string(),
            r#""POINT (36.5 -1.5 1661)""#
        );
        assert_eq!(
            primitive(Some(&v("1 2 3 4;5 6 7 8")), "geotrace", true).to_json_string(),
            r#""LINESTRING (2 1 3,6 5 7)""#
        );
        assert_eq!(
            primitive(Some(&v("2026-01-01T10:00:00.000+07")), "dateTime", false),
            Json::str("2026-01-01T10:00:00.000+07:00")
        );
        assert_eq!(split_ws_js(" a  b"), vec!["", "a", "b"]);
    }
}
