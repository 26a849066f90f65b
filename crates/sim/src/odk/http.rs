//! The HTTP surface: one fallback handler that applies the knobs, authenticates the way
//! Central's preprocessors do (Bearer session, Basic over HTTPS only), routes by hand (Central's
//! URL shapes such as `form.svc` and `Submissions('uuid:…')` do not fit a path router well),
//! answers the REST routes itself and hands the OData ones to [`super::odata`]. It also owns
//! the problem documents and the header conventions Central follows (cache headers, Express
//! ETags, 304s). State changes happen only under the write lock, never across an await.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderName, IF_NONE_MATCH, SET_COOKIE, VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use super::OdkSim;
use super::json::Json;
use super::model::{Inner, ReviewState, Session, Submission};
use super::odata;
use super::wire::{
    encode_uri_component, express_etag, http_date, iso, parse_query, percent_decode,
    sanitize_odata_identifier, sha1_hex,
};

/// `GET /version.txt` as Central's `write-version.sh` writes it (commit ids not known: zeros).
const VERSION_TXT: &str = "versions:\n0000000000000000000000000000000000000000 (v2026.2.2)\n 0000000000000000000000000000000000000000 client (v2026.2.2)\n 0000000000000000000000000000000000000000 server (v2026.2.2)\n";

pub(crate) const JSON_UTF8: &str = "application/json; charset=utf-8";
const ODATA_VERSION: HeaderName = HeaderName::from_static("odata-version");

pub(crate) fn router(sim: OdkSim) -> Router {
    Router::new().fallback(handle).with_state(sim)
}

async fn handle(State(sim): State<OdkSim>, req: Request) -> Response {
    let (latency, fail) = {
        let mut inner = sim.write();
        inner.requests += 1;
        let fail = inner.knobs.fail_next > 0;
        if fail {
            inner.knobs.fail_next -= 1;
        }
        (inner.knobs.latency, fail)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (parts, body) = req.into_parts();
    if fail {
        let reply = Reply::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"message":"Internal Server Error"}"#,
        );
        return reply.finish(&parts.method, &parts.headers);
    }
    let body = match axum::body::to_bytes(body, 8 << 20).await {
        Ok(b) => b,
        Err(_) => {
            return Problem::unparseable("json", 0)
                .json()
                .finish(&parts.method, &parts.headers);
        }
    };
    let raw_query = parts.uri.query().unwrap_or("");
    let req = Req {
        method: &parts.method,
        path: parts.uri.path(),
        query: parse_query(raw_query),
        headers: &parts.headers,
        body: &body,
    };
    let reply = {
        let mut inner = sim.write();
        route(&mut inner, &req)
    };
    reply.finish(&parts.method, &parts.headers)
}

/// A request as the handlers see it (raw path, decoded query pairs in order).
pub(crate) struct Req<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
}

impl Req<'_> {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first value of a query parameter (Express would make an array of repeats).
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `env.domain`, or `http://{Host}` when none was configured.
    pub(crate) fn domain(&self, inner: &Inner) -> String {
        match &inner.domain {
            Some(d) => d.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.header("host").unwrap_or("localhost")),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Problems (lib/util/problem.js) and replies.

/// One of Central's problems: HTTP status = floor(code).
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) details: Option<Json>,
}

impl Problem {
    fn new(code: &'static str, message: impl Into<String>, details: Option<Json>) -> Self {
        Self {
            code,
            message: message.into(),
            details,
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        let whole = self
            .code
            .split('.')
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(500);
        StatusCode::from_u16(whole).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub(crate) fn auth_failed() -> Self {
        Self::new(
            "401.2",
            "Could not authenticate with the provided credentials.",
            None,
        )
    }

    pub(crate) fn https_only() -> Self {
        Self::new(
            "401.3",
            "This authentication method is only available over HTTPS",
            None,
        )
    }

    pub(crate) fn insufficient_rights() -> Self {
        Self::new(
            "403.1",
            "The authentication you provided does not have rights to perform that action.",
            None,
        )
    }

    pub(crate) fn not_found() -> Self {
        Self::new(
            "404.1",
            "Could not find the resource you were looking for.",
            None,
        )
    }

    pub(crate) fn not_implemented(feature: &str) -> Self {
        Self::new(
            "501.1",
            format!("The requested feature {feature} is not supported by this server."),
            Some(Json::obj().put("feature", Json::str(feature)).build()),
        )
    }

    pub(crate) fn unparseable(format: &str, raw_length: usize) -> Self {
        Self::new(
            "400.1",
            format!("Could not parse the given data ({raw_length} chars) as {format}."),
            Some(
                Json::obj()
                    .put("format", Json::str(format))
                    .put(
                        "rawLength",
                        Json::int(i64::try_from(raw_length).unwrap_or(0)),
                    )
                    .build(),
            ),
        )
    }

    pub(crate) fn unparseable_filter(reason: &str) -> Self {
        Self::new(
            "400.18",
            format!("The OData filter expression you provided could not be parsed: {reason}"),
            Some(Json::obj().put("reason", Json::str(reason)).build()),
        )
    }

    pub(crate) fn unsupported_expression(at: usize, kind: &str, text: &str) -> Self {
        Self::new(
            "501.4",
            format!(
                "The given OData filter expression uses features not supported by this server: {kind} at {at} (\"{text}\")"
            ),
            Some(
                Json::obj()
                    .put("at", Json::int(i64::try_from(at).unwrap_or(0)))
                    .put("type", Json::str(kind))
                    .put("text", Json::str(text))
                    .build(),
            ),
        )
    }

    pub(crate) fn unsupported_field(at: usize, text: &str) -> Self {
        Self::new(
            "501.5",
            format!(
                "The given OData filter expression references fields not supported by this server: {text} at {at}"
            ),
            Some(super::filter::at_text(at, text)),
        )
    }

    pub(crate) fn unsupported_expand(text: &str) -> Self {
        Self::new(
            "501.6",
            format!(
                "The given OData expand expression is not supported by this server: \"{text}\". Currently, only \"$expand=*\" is supported."
            ),
            Some(Json::obj().put("text", Json::str(text)).build()),
        )
    }

    pub(crate) fn select_with_expand() -> Self {
        Self::new(
            "501.11",
            "This server doesn't support $select query parameter with $expand.",
            None,
        )
    }

    pub(crate) fn property_not_found(property: &str) -> Self {
        Self::new(
            "400.23",
            format!("Could not find a property named '{property}'"),
            Some(Json::obj().put("property", Json::str(property)).build()),
        )
    }

    pub(crate) fn invalid_skiptoken() -> Self {
        Self::new("400.35", "Invalid $skiptoken", None)
    }

    pub(crate) fn unacceptable_format(allowed: &[&str], got: &str) -> Self {
        Self::new(
            "406.1",
            format!(
                "Requested format not acceptable; this resource allows: {}.",
                allowed.join(",")
            ),
            Some(
                Json::obj()
                    .put(
                        "allowed",
                        Json::Arr(allowed.iter().map(|a| Json::str(*a)).collect()),
                    )
                    .put("got", Json::str(got))
                    .build(),
            ),
        )
    }

    fn unexpected_value(field: &str, value: &str, reason: &str) -> Self {
        Self::new(
            "400.8",
            format!("Unexpected {field} value {value}; {reason}"),
            Some(
                Json::obj()
                    .put("field", Json::str(field))
                    .put("value", Json::str(value))
                    .put("reason", Json::str(reason))
                    .build(),
            ),
        )
    }

    /// 400.3; `got` keeps JavaScript's view (`undefined` members are printed in the
    /// message but dropped from the JSON details).
    fn missing_parameters(expected: &[&str], got: &[(&str, Option<&Value>)]) -> Self {
        let printed: Vec<String> = got
            .iter()
            .map(|(k, v)| {
                let shown = match v {
                    None => "undefined".to_owned(),
                    Some(Value::String(s)) => format!("'{s}'"),
                    Some(Value::Null) => "null".to_owned(),
                    Some(Value::Object(_)) => "[object Object]".to_owned(),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    Some(other) => other.to_string(),
                };
                format!("{k}: {shown}")
            })
            .collect();
        let details_got = Json::Obj(
            got.iter()
                .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), Json::from_value(v))))
                .collect(),
        );
        Self::new(
            "400.3",
            format!(
                "Required parameters missing. Expected ({}), got ({}).",
                expected.join(", "),
                printed.join(", ")
            ),
            Some(
                Json::obj()
                    .put(
                        "expected",
                        Json::Arr(expected.iter().map(|e| Json::str(*e)).collect()),
                    )
                    .put("got", details_got)
                    .build(),
            ),
        )
    }

    /// `{"message":…,"code":…,"details":…}` (`details` only when present).
    pub(crate) fn json(&self) -> Reply {
        Reply::json(self.status(), self.json_body())
    }

    pub(crate) fn json_body(&self) -> String {
        let mut b = Json::obj()
            .put("message", Json::str(&self.message))
            .put("code", Json::Num(self.code.to_owned()));
        if let Some(d) = &self.details {
            b = b.put("details", d.clone());
        }
        b.build().to_json_string()
    }

    /// The XML form used on `$metadata` (Central's mustache template, so details that are
    /// objects print as `[object Object]`).
    pub(crate) fn xml(&self) -> Reply {
        let details = if self.details.is_some() {
            "[object Object]"
        } else {
            ""
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error code=\"{}\">\n  <message>{}</message>\n  <details>{}</details>\n</error>",
            self.code,
            mustache_escape(&self.message),
            mustache_escape(details)
        );
        Reply {
            content_type: Some("text/xml; charset=utf-8"),
            ..Reply::new(self.status(), Payload::Fixed(body))
        }
    }
}

/// Mustache's HTML escaping of `{{…}}`.
pub(crate) fn mustache_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '/' => out.push_str("&#x2F;"),
            '`' => out.push_str("&#x60;"),
            '=' => out.push_str("&#x3D;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) enum Payload {
    /// Sent with Content-Length (and, unless set, Express's body-hash ETag).
    Fixed(String),
    /// Streamed with `Transfer-Encoding: chunked`, as Central streams data documents.
    Chunks(Vec<String>),
}

/// A response before the headers every Central response carries are added.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) content_type: Option<&'static str>,
    /// Adds `OData-Version: 4.0`.
    pub(crate) odata: bool,
    pub(crate) etag: Option<String>,
    pub(crate) cookies: Vec<String>,
    pub(crate) payload: Payload,
}

impl Reply {
    pub(crate) fn new(status: StatusCode, payload: Payload) -> Self {
        Self {
            status,
            content_type: None,
            odata: false,
            etag: None,
            cookies: Vec::new(),
            payload,
        }
    }

    pub(crate) fn json(status: StatusCode, body: impl Into<String>) -> Self {
        Self {
            content_type: Some(JSON_UTF8),
            ..Self::new(status, Payload::Fixed(body.into()))
        }
    }

    pub(crate) fn odata(mut self) -> Self {
        self.odata = true;
        self
    }

    fn finish(self, method: &Method, req_headers: &HeaderMap) -> Response {
        let is_get = method == Method::GET || method == Method::HEAD;
        let mut headers = HeaderMap::new();
        // Central's API sets these on every response; sign-in and other writes are no-store.
        let (cache, vary) = if is_get {
            ("private, no-cache", "Accept-Encoding, Origin")
        } else {
            ("no-store", "*")
        };
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
        headers.insert(VARY, HeaderValue::from_static(vary));
        for c in &self.cookies {
            if let Ok(v) = HeaderValue::from_str(c) {
                headers.append(SET_COOKIE, v);
            }
        }
        if self.odata {
            headers.insert(ODATA_VERSION, HeaderValue::from_static("4.0"));
        }
        let etag = match (&self.etag, &self.payload) {
            (Some(e), _) => Some(e.clone()),
            (None, Payload::Fixed(body)) => Some(express_etag(body.as_bytes())),
            (None, Payload::Chunks(_)) => None,
        };
        if let Some(e) = &etag
            && let Ok(v) = HeaderValue::from_str(e)
        {
            headers.insert(ETAG, v);
        }
        let not_modified = is_get
            && self.status == StatusCode::OK
            && etag
                .as_deref()
                .is_some_and(|e| etag_matches(req_headers.get(IF_NONE_MATCH), e));
        let (status, body) = if not_modified {
            (StatusCode::NOT_MODIFIED, Body::empty())
        } else {
            if let Some(ct) = self.content_type {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            }
            let body = match self.payload {
                Payload::Fixed(s) => Body::from(s),
                Payload::Chunks(chunks) => Body::from_stream(stream_of(chunks)),
            };
            (self.status, body)
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }
}

/// A stream of chunks; its unknown length makes hyper use chunked transfer encoding.
fn stream_of(
    chunks: Vec<String>,
) -> impl futures::Stream<Item = Result<String, std::convert::Infallible>> {
    futures::stream::iter(chunks.into_iter().map(Ok))
}

/// `If-None-Match` handling: Express compares weakly; Central's `withEtag` accepts any header
/// that contains the tag (nginx may have weakened it).
fn etag_matches(header: Option<&HeaderValue>, etag: &str) -> bool {
    let Some(h) = header.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let bare = etag.trim_start_matches("W/");
    h.split(',')
        .any(|t| t.trim().trim_start_matches("W/") == bare)
        || h.contains(bare.trim_matches('"'))
}

// ------------------------------------------------------------------------------------------------
// Authentication (lib/http/preprocessors.js): Bearer session, then Basic; anything else is
// anonymous, which every route here rejects with 401.2 (as observed on v2026.2.2).

pub(crate) enum Auth {
    Anonymous,
    Actor { id: u64, session: Option<String> },
}

fn authenticate(inner: &Inner, req: &Req) -> Result<Auth, Problem> {
    let Some(header) = req.header("authorization") else {
        return Ok(Auth::Anonymous);
    };
    if let Some(token) = header.strip_prefix("Bearer ") {
        let now = inner.now();
        return match inner.sessions.get(token) {
            Some(s) if s.expires_at > now && inner.actors.contains_key(&s.actor_id) => {
                Ok(Auth::Actor {
                    id: s.actor_id,
                    session: Some(token.to_owned()),
                })
            }
            _ => Err(Problem::auth_failed()),
        };
    }
    if let Some(encoded) = header.strip_prefix("Basic ") {
        // Basic is refused over plain HTTP (401.3) unless a proxy says it terminated TLS.
        if req
            .header("x-forwarded-proto")
            .map(str::to_ascii_lowercase)
            .as_deref()
            != Some("https")
        {
            return Err(Problem::https_only());
        }
        let decoded = B64
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let Some((email, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            return Err(Problem::auth_failed());
        };
        return match inner.actor_by_email(email) {
            Some(a) if a.password.as_deref() == Some(password) => Ok(Auth::Actor {
                id: a.id,
                session: None,
            }),
            _ => Err(Problem::auth_failed()),
        };
    }
    Err(Problem::auth_failed())
}

// ------------------------------------------------------------------------------------------------
// Routing.

/// Whether the (decoded) path is an OData `$metadata` document, whose errors are XML.
fn is_metadata_path(segs: &[String]) -> bool {
    segs.len() == 6 && segs[4].ends_with(".svc") && segs[5] == "$metadata"
}

fn route(inner: &mut Inner, req: &Req) -> Reply {
    let segs: Vec<String> = req
        .path
        .split('/')
        .skip(1)
        .map(|s| percent_decode(s, false))
        .collect();
    let xml_errors = is_metadata_path(&segs);
    let fail = |p: Problem| if xml_errors { p.xml() } else { p.json() };

    // Served by Central's nginx frontend, outside the API: no authentication.
    if req.method == Method::GET && req.path == "/version.txt" {
        let mut r = Reply::new(StatusCode::OK, Payload::Fixed(VERSION_TXT.to_owned()));
        r.content_type = Some("text/plain");
        return r;
    }
    let auth = match authenticate(inner, req) {
        Ok(a) => a,
        Err(p) => return fail(p),
    };
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let method = req.method.clone();

    if method == Method::POST && s == ["v1", "sessions"] {
        return sign_in(inner, req);
    }
    let Auth::Actor { id: actor, session } = auth else {
        return fail(Problem::auth_failed());
    };

    match (method, s.as_slice()) {
        (Method::DELETE, ["v1", "sessions", token]) => {
            sign_out(inner, actor, session.as_deref(), token)
        }
        (Method::GET, ["v1", "users", "current"]) => current_user(inner, actor),
        (Method::GET, ["v1", "projects"]) => list_projects(inner, actor),
        (Method::GET, ["v1", "projects", p]) => with_project(inner, actor, p, |_, proj| {
            Reply::json(StatusCode::OK, project_json(proj).to_json_string())
        }),
        (Method::GET, ["v1", "projects", p, "forms"]) => {
            with_project(inner, actor, p, |_, proj| {
                let forms: Vec<Json> = proj.forms.iter().map(|f| form_json(proj.id, f)).collect();
                Reply::json(StatusCode::OK, Json::Arr(forms).to_json_string())
            })
        }
        (Method::GET, ["v1", "projects", p, "forms", f, tail @ ..]) if f.ends_with(".svc") => {
            let xml_form_id = f.trim_end_matches(".svc");
            odata::handle(inner, req, actor, p, xml_form_id, tail)
        }
        (Method::GET, ["v1", "projects", p, "forms", f]) => {
            with_form(inner, actor, p, f, |_, pid, form| {
                Reply::json(StatusCode::OK, form_json(pid, form).to_json_string())
            })
        }
        (Method::GET, ["v1", "projects", p, "forms", f, "fields"]) => {
            let odata = req
                .param("odata")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            with_form(inner, actor, p, f, |_, _, form| fields_reply(form, odata))
        }
        (Method::GET, ["v1", "projects", p, "forms", f, "submissions"]) => {
            with_form(inner, actor, p, f, |_, _, form| rest_submissions(req, form))
        }
        (Method::PATCH, ["v1", "projects", p, "forms", f, "submissions", id]) => {
            patch_submission(inner, req, actor, p, f, id)
        }
        (Method::DELETE, ["v1", "projects", p, "forms", f, "submissions", id]) => {
            delete_submission(inner, actor, p, f, id)
        }
        _ => fail(Problem::not_found()),
    }
}

fn with_project(
    inner: &Inner,
    actor: u64,
    project: &str,
    then: impl FnOnce(&Inner, &super::model::Project) -> Reply,
) -> Reply {
    let Some(proj) = project
        .parse::<u64>()
        .ok()
        .and_then(|id| inner.projects.get(&id))
    else {
        return Problem::not_found().json();
    };
    if !inner.can_read(actor, proj.id) {
        return Problem::insufficient_rights().json();
    }
    then(inner, proj)
}

fn with_form(
    inner: &Inner,
    actor: u64,
    project: &str,
    form: &str,
    then: impl FnOnce(&Inner, u64, &super::model::Form) -> Reply,
) -> Reply {
    let Some(proj) = project
        .parse::<u64>()
        .ok()
        .and_then(|id| inner.projects.get(&id))
    else {
        return Problem::not_found().json();
    };
    let Some(f) = proj.forms.iter().find(|x| x.xml_form_id == form) else {
        return Problem::not_found().json();
    };
    if !inner.can_read(actor, proj.id) {
        return Problem::insufficient_rights().json();
    }
    then(inner, proj.id, f)
}

// ------------------------------------------------------------------------------------------------
// Sessions and users.

/// 64 characters of `[A-Za-z0-9!$]`: 48 random bytes in base64 with `/`→`!` and `+`→`$`
/// (Central's `generateToken`).
fn generate_token() -> String {
    let mut bytes = [0u8; 48];
    rand::fill(&mut bytes[..]);
    B64.encode(bytes).replace('/', "!").replace('+', "$")
}

fn sign_in(inner: &mut Inner, req: &Req) -> Reply {
    if inner.knobs.sessions_unavailable {
        let body = "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
        return Reply {
            content_type: Some("text/html"),
            ..Reply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Payload::Fixed(body.to_owned()),
            )
        };
    }
    let body: Value = if req.body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(serde_json::Map::new())
    } else {
        match serde_json::from_slice(req.body) {
            Ok(v) => v,
            Err(_) => {
                return Problem::unparseable(
                    "json",
                    String::from_utf8_lossy(req.body).chars().count(),
                )
                .json();
            }
        }
    };
    let email = body.get("email");
    let password = body.get("password");
    let blank = |v: Option<&Value>| {
        matches!(v, None | Some(Value::Null)) || v.and_then(Value::as_str) == Some("")
    };
    if blank(email) || blank(password) {
        return Problem::missing_parameters(
            &["email", "password"],
            &[("email", email), ("password", password)],
        )
        .json();
    }
    let (Some(email), Some(password)) = (
        email.and_then(Value::as_str),
        password.and_then(Value::as_str),
    ) else {
        return Problem::auth_failed().json();
    };
    let Some(actor_id) = inner
        .actor_by_email(email)
        .filter(|a| a.password.as_deref() == Some(password))
        .map(|a| a.id)
    else {
        return Problem::auth_failed().json();
    };
    let now = inner.now();
    let token = generate_token();
    let csrf = generate_token();
    let expires_at = now + inner.session_lifetime;
    inner.sessions.insert(
        token.clone(),
        Session {
            actor_id,
            expires_at,
        },
    );
    if let Some(a) = inner.actors.get_mut(&actor_id) {
        a.last_login_at = Some(now);
    }
    let body = Json::obj()
        .put("token", Json::str(&token))
        .put("csrf", Json::str(&csrf))
        .put("expiresAt", Json::str(iso(expires_at)))
        .put("createdAt", Json::str(iso(now)))
        .build();
    let secure = inner
        .domain
        .as_deref()
        .is_some_and(|d| d.starts_with("https:"));
    let expires = http_date(expires_at);
    let (name, flag) = if secure {
        ("__Host-session", "; Secure")
    } else {
        ("session", "")
    };
    let mut reply = Reply::json(StatusCode::OK, body.to_json_string());
    reply.cookies = vec![
        format!(
            "{name}={}; Path=/; Expires={expires}; HttpOnly{flag}; SameSite=Strict",
            encode_uri_component(&token)
        ),
        format!(
            "__csrf={}; Path=/; Expires={expires}{flag}; SameSite=Strict",
            encode_uri_component(&csrf)
        ),
    ];
    reply
}

fn sign_out(inner: &mut Inner, actor: u64, current: Option<&str>, which: &str) -> Reply {
    let token = if which == "current" {
        match current {
            Some(t) => t.to_owned(),
            None => return Problem::not_found().json(),
        }
    } else {
        which.to_owned()
    };
    let Some(session) = inner.sessions.get(&token) else {
        return Problem::not_found().json();
    };
    let admin = inner.actors.get(&actor).is_some_and(|a| a.admin);
    if session.actor_id != actor && !admin {
        return Problem::insufficient_rights().json();
    }
    inner.sessions.remove(&token);
    let mut reply = Reply::json(StatusCode::OK, r#"{"success":true}"#);
    if current == Some(token.as_str()) {
        let cookie = if inner
            .domain
            .as_deref()
            .is_some_and(|d| d.starts_with("https:"))
        {
            "__Host-session"
        } else {
            "session"
        };
        reply.cookies = vec![
            format!(
                "{cookie}=null; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Secure; SameSite=Strict"
            ),
            "__csrf=null; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure; SameSite=Strict"
                .to_owned(),
        ];
    }
    reply
}

fn current_user(inner: &Inner, actor: u64) -> Reply {
    let Some(a) = inner.actors.get(&actor) else {
        return Problem::auth_failed().json();
    };
    let body = Json::obj()
        .put("email", Json::opt_str(a.email.clone()))
        .put("lastLoginAt", Json::opt_str(a.last_login_at.map(iso)))
        .put("id", Json::int(i64::try_from(a.id).unwrap_or(0)))
        .put("type", Json::str(a.kind))
        .put("displayName", Json::str(&a.display_name))
        .put("createdAt", Json::str(iso(a.created_at)))
        .put("updatedAt", Json::Null)
        .put("deletedAt", Json::Null)
        .build();
    Reply::json(StatusCode::OK, body.to_json_string())
}

// ------------------------------------------------------------------------------------------------
// Projects, forms, fields.

fn list_projects(inner: &Inner, actor: u64) -> Reply {
    let visible: Vec<Json> = inner
        .projects
        .values()
        .filter(|p| inner.can_read(actor, p.id))
        .map(project_json)
        .collect();
    Reply::json(StatusCode::OK, Json::Arr(visible).to_json_string())
}

fn project_json(p: &super::model::Project) -> Json {
    Json::obj()
        .put("id", Json::int(i64::try_from(p.id).unwrap_or(0)))
        .put("name", Json::str(&p.name))
        .put("acteeId", Json::str(&p.actee_id))
        .put("createdAt", Json::str(iso(p.created_at)))
        .put("updatedAt", Json::Null)
        .put("deletedAt", Json::Null)
        .put("archived", Json::Null)
        .put("keyId", Json::Null)
        .put("description", Json::opt_str(p.description.clone()))
        .build()
}

fn form_json(project: u64, f: &super::model::Form) -> Json {
    Json::obj()
        .put("projectId", Json::int(i64::try_from(project).unwrap_or(0)))
        .put("xmlFormId", Json::str(&f.xml_form_id))
        .put("state", Json::str(&f.state))
        .put("enketoId", Json::Null)
        .put("enketoOnceId", Json::Null)
        .put("createdAt", Json::str(iso(f.created_at)))
        .put("updatedAt", Json::opt_str(f.updated_at.map(iso)))
        .put("webformsEnabled", Json::Bool(true))
        .put("keyId", Json::Null)
        .put("version", Json::str(&f.version))
        .put("hash", Json::str(&f.hash))
        .put("sha", Json::str(&f.sha))
        .put("sha256", Json::str(&f.sha256))
        .put("draftToken", Json::Null)
        .put("publishedAt", Json::opt_str(f.published_at.map(iso)))
        .put("name", Json::opt_str(f.name.clone()))
        .build()
}

fn fields_reply(form: &super::model::Form, odata: bool) -> Reply {
    let fields: Vec<Json> = form
        .fields
        .iter()
        .map(|f| {
            let (path, name) = if odata {
                let path: Vec<String> = f
                    .path
                    .split('/')
                    .skip(1)
                    .map(sanitize_odata_identifier)
                    .collect();
                (
                    format!("/{}", path.join("/")),
                    sanitize_odata_identifier(f.name()),
                )
            } else {
                (f.path.clone(), f.name().to_owned())
            };
            Json::obj()
                .put("path", Json::str(path))
                .put("name", Json::str(name))
                .put("type", Json::str(&f.kind))
                .put("binary", f.binary.map_or(Json::Null, Json::Bool))
                .put(
                    "selectMultiple",
                    f.select_multiple.map_or(Json::Null, Json::Bool),
                )
                .build()
        })
        .collect();
    Reply::json(StatusCode::OK, Json::Arr(fields).to_json_string())
}

// ------------------------------------------------------------------------------------------------
// REST submissions.

/// The stand-in for Central's `eventhash` ETag: a digest of the returned rows' identities and
/// versions (so it depends on the rows, not on the query); zeros for no rows.
pub(crate) fn event_hash(rows: &[&Submission]) -> String {
    if rows.is_empty() {
        return "W/\"eventhash:00000000000000000000000000000000\"".to_owned();
    }
    let mut text = String::new();
    for s in rows {
        text.push_str(&format!(
            "{}|{}|{}|{}|{}|{:?}|{};",
            s.seq,
            s.instance_id,
            s.current_instance_id,
            s.updated_at.map(iso).unwrap_or_default(),
            s.deleted_at.map(iso).unwrap_or_default(),
            s.review_state,
            s.edits
        ));
    }
    let hex: String = sha1_hex(text.as_bytes()).chars().take(32).collect();
    format!("W/\"eventhash:{hex}\"")
}

fn rest_submissions(req: &Req, form: &super::model::Form) -> Reply {
    let deleted = req
        .param("deleted")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut rows: Vec<&Submission> = form
        .submissions
        .iter()
        .filter(|s| s.deleted_at.is_some() == deleted)
        .collect();
    rows.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.seq)));
    let offset = req
        .param("offset")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let limit = req
        .param("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let rows: Vec<&Submission> = rows.into_iter().skip(offset).take(limit).collect();
    let list: Vec<Json> = rows.iter().map(|s| rest_submission_json(s, true)).collect();
    let mut reply = Reply::json(StatusCode::OK, Json::Arr(list).to_json_string());
    reply.etag = Some(event_hash(&rows));
    reply
}

fn rest_submission_json(s: &Submission, full: bool) -> Json {
    let submitter = s
        .submitter_id
        .map_or(Json::Null, |id| Json::int(i64::try_from(id).unwrap_or(0)));
    let b = Json::obj()
        .put("instanceId", Json::str(&s.instance_id))
        .put("submitterId", submitter.clone())
        .put("deviceId", Json::opt_str(s.device_id.clone()))
        .put("createdAt", Json::str(iso(s.created_at)))
        .put("updatedAt", Json::opt_str(s.updated_at.map(iso)))
        .put(
            "reviewState",
            Json::opt_str(s.review_state.map(ReviewState::as_str)),
        );
    if !full {
        return b
            .put("deletedAt", Json::opt_str(s.deleted_at.map(iso)))
            .build();
    }
    b.put("userAgent", Json::opt_str(s.user_agent.clone()))
        .put("deletedAt", Json::opt_str(s.deleted_at.map(iso)))
        .put(
            "currentVersion",
            Json::obj()
                .put("submitterId", submitter)
                .put("createdAt", Json::str(iso(s.version_created_at)))
                .put("instanceName", Json::Null)
                .put("instanceId", Json::str(&s.current_instance_id))
                .put("current", Json::Bool(true))
                .put("deviceId", Json::opt_str(s.device_id.clone()))
                .put("userAgent", Json::opt_str(s.user_agent.clone()))
                .build(),
        )
        .build()
}

/// Finds a live submission for a write; Administrator only (Project Viewer cannot write).
fn writable<'a>(
    inner: &'a mut Inner,
    actor: u64,
    project: &str,
    form: &str,
    instance_id: &str,
) -> Result<&'a mut Submission, Problem> {
    let admin = inner.actors.get(&actor).is_some_and(|a| a.admin);
    let pid = project.parse::<u64>().map_err(|_| Problem::not_found())?;
    let f = inner
        .form_mut(pid, form)
        .map_err(|_| Problem::not_found())?;
    if !admin {
        return Err(Problem::insufficient_rights());
    }
    f.submissions
        .iter_mut()
        .find(|s| s.instance_id == instance_id && s.deleted_at.is_none())
        .ok_or_else(Problem::not_found)
}

fn patch_submission(inner: &mut Inner, req: &Req, actor: u64, p: &str, f: &str, id: &str) -> Reply {
    let now = inner.now();
    let body: Value = match serde_json::from_slice(req.body) {
        Ok(v) => v,
        Err(_) => return Problem::unparseable("json", req.body.len()).json(),
    };
    let state = match body.get("reviewState") {
        Some(Value::String(s)) => match ReviewState::parse(s) {
            Some(st) => st,
            None => {
                return Problem::unexpected_value("reviewState", s, "not a valid review state")
                    .json();
            }
        },
        _ => {
            return Problem::missing_parameters(
                &["reviewState"],
                &[("reviewState", body.get("reviewState"))],
            )
            .json();
        }
    };
    match writable(inner, actor, p, f, id) {
        Ok(s) => {
            s.review_state = Some(state);
            s.updated_at = Some(now);
            let s = s.clone();
            Reply::json(
                StatusCode::OK,
                rest_submission_json(&s, false).to_json_string(),
            )
        }
        Err(problem) => problem.json(),
    }
}

fn delete_submission(inner: &mut Inner, actor: u64, p: &str, f: &str, id: &str) -> Reply {
    let now = inner.now();
    match writable(inner, actor, p, f, id) {
        Ok(s) => {
            s.deleted_at = Some(now);
            Reply::json(StatusCode::OK, r#"{"success":true}"#)
        }
        Err(problem) => problem.json(),
    }
}
