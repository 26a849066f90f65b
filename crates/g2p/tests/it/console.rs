//! The web console: plain HTTP checks of sessions, CSRF, roles, masking and headers, then one
//! walk through the console in headless Chromium (sign in, filter, open a registrant).
//!
//! The browser test needs `/usr/bin/chromedriver` and `/usr/bin/chromium`; without them it prints
//! "SKIPPING browser test" and passes, unless `G2P_REQUIRE_BROWSER=1` (CI), where it fails.

// Test helpers, not only `#[test]` functions, may fail loudly.
#![allow(clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use g2p_store::Backend;
use g2p_store::jobs::NewJob;
use reqwest::Response;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::TestApp;

const VID: &str = "4820193746501234";

struct Seeded {
    vid_holder: i64,
    others: Vec<i64>,
}

/// Three individuals (one with a MOSIP VID and a bank account) and a group holding two of them.
async fn seed(t: &TestApp) -> Seeded {
    let vid_holder = t
        .create_individual(json!({
            "name": "Amina Diallo", "gender": "female", "birthdate": "1990-04-01",
            "registration_date": "2024-05-02",
            "attributes": {"district": "Kayes"},
            "ids": [{"id_type": "MOSIP VID", "value": VID}, {"id_type": "PHONE", "value": "+22370000001"}]
        }))
        .await;
    let b = t
        .create_individual(json!({
            "name": "Bakary Traore", "gender": "male",
            "ids": [{"id_type": "NATIONAL ID", "value": "ML-778899"}]
        }))
        .await;
    let c = t.create_individual(json!({"name": "Coumba Keita"})).await;
    let (status, v) = t
        .post(
            &format!("/api/v1/registrants/{vid_holder}/bank-accounts"),
            &t.registrar,
            json!({"account_number": "000123456789"}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, g) = t
        .post(
            "/api/v1/registrants",
            &t.registrar,
            json!({"is_group": true, "name": "Diallo household"}),
        )
        .await;
    assert_eq!(status, 201, "{g}");
    let gid = g["id"].as_i64().expect("group id");
    for member in [vid_holder, b] {
        let (status, v) = t
            .post(
                &format!("/api/v1/registrants/{gid}/members"),
                &t.registrar,
                json!({"individual_id": member, "kinds": ["member"]}),
            )
            .await;
        assert_eq!(status, 201, "{v}");
    }
    Seeded {
        vid_holder,
        others: vec![b, c, gid],
    }
}

// ------------------------------------------------------------------ plain HTTP

/// Signs in with `key` through the form and returns the `Cookie` header value.
async fn sign_in(t: &TestApp, key: &str) -> String {
    let resp = t
        .client
        .post(t.url("/login"))
        .form(&[("key", key)])
        .send()
        .await
        .expect("login sent");
    assert_eq!(resp.status().as_u16(), 303, "sign-in should redirect");
    assert_eq!(location(&resp), "/registrants");
    let set = resp
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("session cookie set")
        .to_owned();
    set.split(';').next().expect("cookie pair").to_owned()
}

fn location(resp: &Response) -> String {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn get_page(t: &TestApp, path: &str, cookie: &str) -> (u16, String) {
    let resp = t
        .client
        .get(t.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("page request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("page body"))
}

async fn post_form(t: &TestApp, path: &str, cookie: &str, form: &[(&str, &str)]) -> Response {
    t.client
        .post(t.url(path))
        .header(COOKIE, cookie)
        .form(form)
        .send()
        .await
        .expect("form posted")
}

/// The CSRF token of a page (every signed-in page has one in its sign-out form).
fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("page has a csrf field") + marker.len();
    html[start..]
        .split('"')
        .next()
        .expect("csrf value")
        .to_owned()
}

#[tokio::test]
async fn console_sign_in_sets_a_strict_http_only_cookie() {
    let t = TestApp::spawn(Backend::Sqlite).await.expect("app");
    let resp = t
        .client
        .post(t.url("/login"))
        .form(&[("key", t.viewer.as_str())])
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(location(&resp), "/registrants");
    let set = resp
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("cookie")
        .to_owned();
    assert!(set.starts_with("g2p_session="), "{set}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{attr} missing in {set}");
    }
    assert!(
        !set.contains(t.viewer.as_str()),
        "the key itself must not be in the cookie"
    );
    let cookie = set.split(';').next().expect("pair").to_owned();

    let resp = t
        .client
        .get(t.url("/registrants"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers().clone();
    let header = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert!(header("content-security-policy").starts_with("default-src 'self'"));
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("referrer-policy"), "same-origin");
    assert_eq!(header("cache-control"), "no-store");
    let html = resp.text().await.expect("body");
    assert!(html.contains(r#"<html lang="en">"#));
    assert!(
        html.contains("test-viewer") && html.contains("(viewer)"),
        "who is signed in"
    );
    assert!(html.contains(r#"aria-current="page">Registrants"#));
    assert!(html.contains("Sign out"));
    assert!(!html.contains("<script>"), "no inline scripts");

    // Signing out clears the cookie.
    let csrf = csrf_of(&html);
    let resp = post_form(&t, "/logout", &cookie, &[("csrf", &csrf)]).await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(location(&resp), "/login");
    let cleared = resp
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // A wrong key gets the form again, 401, and no cookie.
    let resp = t
        .client
        .post(t.url("/login"))
        .form(&[("key", "g2p_notakey")])
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    let html = resp.text().await.expect("body");
    assert!(
        html.contains(r#"role="alert""#) && html.contains("not valid"),
        "{html}"
    );

    // Static assets are embedded and cacheable.
    let resp = t
        .client
        .get(t.url("/static/htmx.min.js"))
        .send()
        .await
        .expect("js");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .contains("immutable")
    );
    t.stop().await;
}

#[tokio::test]
async fn console_pages_without_a_session_redirect_to_sign_in() {
    let t = TestApp::spawn(Backend::Sqlite).await.expect("app");
    for path in ["/", "/registrants", "/registrants/1", "/id-types", "/jobs"] {
        let resp = t.client.get(t.url(path)).send().await.expect("get");
        assert_eq!(resp.status().as_u16(), 303, "{path}");
        assert_eq!(location(&resp), "/login", "{path}");
    }
    // A tampered cookie is no session.
    let resp = t
        .client
        .get(t.url("/registrants"))
        .header(COOKIE, "g2p_session=abc.99999999999.00")
        .send()
        .await
        .expect("get");
    assert_eq!(location(&resp), "/login");
    // htmx requests are told to navigate instead of swapping the sign-in page into a table.
    let resp = t
        .client
        .get(t.url("/jobs"))
        .header("HX-Request", "true")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(
        resp.headers()
            .get("hx-redirect")
            .and_then(|v| v.to_str().ok()),
        Some("/login")
    );
    let (status, html) = get_page(&t, "/login", "").await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"<label for="api-key">"#) && html.contains(r#"id="api-key""#));
    t.stop().await;
}

#[tokio::test]
async fn console_posts_need_the_session_csrf_token_and_same_origin() {
    let t = TestApp::spawn(Backend::Sqlite).await.expect("app");
    let cookie = sign_in(&t, &t.admin).await;
    let (_, html) = get_page(&t, "/id-types", &cookie).await;
    let csrf = csrf_of(&html);

    let resp = post_form(&t, "/id-types", &cookie, &[("name", "FARMER ID")]).await;
    assert_eq!(resp.status().as_u16(), 403, "no token");
    let resp = post_form(
        &t,
        "/id-types",
        &cookie,
        &[("name", "FARMER ID"), ("csrf", "00ff")],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 403, "wrong token");
    // Another admin session's token does not fit this session.
    let other = sign_in(&t, &t.admin).await;
    let (_, other_html) = get_page(&t, "/id-types", &other).await;
    if other != cookie {
        let resp = post_form(
            &t,
            "/id-types",
            &cookie,
            &[("name", "FARMER ID"), ("csrf", &csrf_of(&other_html))],
        )
        .await;
        assert_eq!(resp.status().as_u16(), 403, "token of another session");
    }
    // Cross-site form posts are refused even with a token, and sign-in too.
    let resp = t
        .client
        .post(t.url("/id-types"))
        .header(COOKIE, &cookie)
        .header("Sec-Fetch-Site", "cross-site")
        .form(&[("name", "FARMER ID"), ("csrf", &csrf)])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 403);
    let resp = t
        .client
        .post(t.url("/login"))
        .header("Origin", "https://evil.example")
        .form(&[("key", t.admin.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.headers().get(SET_COOKIE).is_none());

    // With the token: created, and the list confirms it.
    let resp = post_form(
        &t,
        "/id-types",
        &cookie,
        &[
            ("name", "FARMER ID"),
            ("validation_regex", "[0-9]{6}"),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    let (_, html) = get_page(&t, &location(&resp), &cookie).await;
    assert!(html.contains("FARMER ID") && html.contains(r#"role="status""#));

    // Validation and conflicts come back next to the field.
    let resp = post_form(
        &t,
        "/id-types",
        &cookie,
        &[
            ("name", "BAD"),
            ("validation_regex", "([0-9"),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 422);
    let html = resp.text().await.expect("body");
    assert!(html.contains(r#"id="regex-error""#) && html.contains("aria-invalid=\"true\""));
    let resp = post_form(
        &t,
        "/id-types",
        &cookie,
        &[("name", "farmer id"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 409);
    assert!(
        resp.text()
            .await
            .expect("body")
            .contains(r#"id="name-error""#)
    );
    t.stop().await;
}

#[tokio::test]
async fn connector_keys_cannot_use_the_console() {
    let t = TestApp::spawn(Backend::Sqlite).await.expect("app");
    let resp = t
        .client
        .post(t.url("/login"))
        .form(&[("key", t.connector.as_str())])
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    assert!(
        resp.text()
            .await
            .expect("body")
            .contains("cannot use the console")
    );
    t.stop().await;
}

#[tokio::test]
async fn viewers_cannot_create_id_types() {
    let t = TestApp::spawn(Backend::Sqlite).await.expect("app");
    let cookie = sign_in(&t, &t.viewer).await;
    let (status, html) = get_page(&t, "/id-types", &cookie).await;
    assert_eq!(status, 200);
    assert!(html.contains("MOSIP VID"));
    assert!(!html.contains("Create ID type"), "no form for viewers");
    let csrf = csrf_of(&html);
    let resp = post_form(
        &t,
        "/id-types",
        &cookie,
        &[("name", "VIEWER TYPE"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 403);
    let (_, types) = t.get("/api/v1/id-types", &t.admin).await;
    let names: Vec<&str> = types
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(!names.contains(&"VIEWER TYPE"), "{names:?}");
    t.stop().await;
}

#[tokio::test]
async fn console_lists_filter_and_mask() {
    let t = TestApp::spawn(Backend::Sqlite).await.expect("app");
    let s = seed(&t).await;
    let viewer = sign_in(&t, &t.viewer).await;

    let (status, html) = get_page(&t, "/registrants", &viewer).await;
    assert_eq!(status, 200);
    assert!(html.contains("Amina Diallo") && html.contains("Coumba Keita"));
    assert!(
        html.contains("MOSIP VID: ••••1234"),
        "VIDs are masked in the list"
    );
    assert!(!html.contains(VID));
    assert!(html.contains(r#"<th scope="col">Name</th>"#));

    // htmx gets the fragment only; a plain GET gets the page.
    let filter = r#"[["reg_ids.id_type","=like","MOSIP VID"]]"#;
    let resp = t
        .client
        .get(t.url("/registrants"))
        .query(&[("filter", filter)])
        .header(COOKIE, &viewer)
        .header("HX-Request", "true")
        .send()
        .await
        .expect("fragment");
    assert_eq!(resp.status().as_u16(), 200);
    let frag = resp.text().await.expect("body");
    assert!(!frag.contains("<html"), "fragment only");
    assert!(frag.contains("Amina Diallo") && !frag.contains("Bakary Traore"));

    // Plain text is a name search.
    let (_, html) = get_page(&t, "/registrants?filter=bakary", &viewer).await;
    assert!(html.contains("Bakary Traore") && !html.contains("Amina Diallo"));

    // A bad filter says what and where.
    let (status, html) = get_page(
        &t,
        "/registrants?filter=%5B%5B%22nope%22%2C%22%3D%22%2C1%5D%5D",
        &viewer,
    )
    .await;
    assert_eq!(status, 422);
    assert!(html.contains(r#"role="alert" id="filter-error""#), "{html}");
    assert!(html.contains("term 0"), "position shown");

    // Detail: viewers see the VID masked and no audit payloads; registrars see it in full.
    let (status, html) = get_page(&t, &format!("/registrants/{}", s.vid_holder), &viewer).await;
    assert_eq!(status, 200);
    assert!(html.contains("••••1234") && !html.contains(VID));
    assert!(
        html.contains("••••6789") && !html.contains("000123456789"),
        "account masked"
    );
    assert!(html.contains("Kayes"), "attributes shown");
    assert!(html.contains("Diallo household"), "group membership linked");
    assert!(html.contains("Audit trail") && !html.contains("Before and after"));
    let registrar = sign_in(&t, &t.registrar).await;
    let (_, html) = get_page(&t, &format!("/registrants/{}", s.vid_holder), &registrar).await;
    assert!(
        html.contains(VID),
        "registrars see full IDs on the detail page"
    );
    assert!(html.contains("<details>") && html.contains("Before and after"));
    assert!(
        !html.contains("000123456789"),
        "account numbers stay masked"
    );
    let group = s.others[2];
    let (_, html) = get_page(&t, &format!("/registrants/{group}"), &viewer).await;
    assert!(html.contains("Members") && html.contains("Bakary Traore"));

    let (status, html) = get_page(&t, "/registrants/999999", &viewer).await;
    assert_eq!(status, 404);
    assert!(html.contains("Request id"));
    t.stop().await;
}

#[tokio::test]
async fn console_jobs_show_progress_and_admins_can_cancel() {
    let t = TestApp::spawn(Backend::Sqlite).await.expect("app");
    let job = t
        .app
        .store
        .enqueue(NewJob::new(
            "console_test",
            json!({"secret": "do-not-show"}),
        ))
        .await
        .expect("enqueue");
    let viewer = sign_in(&t, &t.viewer).await;
    let (status, html) = get_page(&t, "/jobs", &viewer).await;
    assert_eq!(status, 200);
    assert!(html.contains("console_test") && html.contains("queued"));
    assert!(html.contains(r#"hx-trigger="every 2s""#));
    assert!(!html.contains("do-not-show"), "payloads are never shown");
    assert!(!html.contains("/cancel"), "no buttons for viewers");
    let csrf = csrf_of(&html);
    let resp = post_form(
        &t,
        &format!("/jobs/{}/cancel", job.id),
        &viewer,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 403);

    let admin = sign_in(&t, &t.admin).await;
    let (_, html) = get_page(&t, "/jobs", &admin).await;
    assert!(html.contains(&format!(r#"id="cancel-{}""#, job.id)));
    let csrf = csrf_of(&html);
    let resp = post_form(
        &t,
        &format!("/jobs/{}/cancel", job.id),
        &admin,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        t.app
            .store
            .get_job(job.id)
            .await
            .expect("job")
            .status
            .as_str(),
        "cancelled"
    );
    // Cancelling again is a conflict with a readable message.
    let resp = post_form(
        &t,
        &format!("/jobs/{}/cancel", job.id),
        &admin,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 409);
    let resp = post_form(
        &t,
        &format!("/jobs/{}/retry", job.id),
        &admin,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(resp.status().as_u16(), 303);
    // The polled fragment.
    let resp = t
        .client
        .get(t.url("/jobs"))
        .header(COOKIE, &admin)
        .header("HX-Request", "true")
        .send()
        .await
        .expect("fragment");
    let frag = resp.text().await.expect("body");
    assert!(
        frag.starts_with(r#"<div id="jobs""#) && frag.contains("queued"),
        "{frag}"
    );
    t.stop().await;
}

// ------------------------------------------------------------------ browser

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver (and the browsers it started) stop when this is dropped, also on failure.
struct Chromedriver {
    child: Child,
    profile: PathBuf,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // chromedriver runs in its own process group; ending the group also ends any Chromium
        // it started, which killing chromedriver alone would leave behind.
        let pid = self.child.id();
        if pid > 1 {
            // `--` matters: procps-ng 4.0.2 reads `kill -KILL -1234` as signal options and
            // signals the wrong target (possibly every process).
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn start_chromedriver() -> (Chromedriver, u16) {
    use std::os::unix::process::CommandExt;
    let port = free_port();
    let profile =
        std::env::temp_dir().join(format!("g2p_chrome_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&profile).expect("profile dir");
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("chromedriver starts");
    let guard = Chromedriver { child, profile };
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (guard, port)
}

/// Polls `check` until it returns `Some`, for up to 10 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The form control labelled `label`, found as a person would: through its `<label for>`.
async fn by_label(c: &Client, label: &str) -> fantoccini::elements::Element {
    for l in c
        .find_all(Locator::Css("label[for]"))
        .await
        .expect("labels")
    {
        if l.text().await.expect("label text").trim() == label {
            let id = l.attr("for").await.expect("for").expect("for value");
            return c.find(Locator::Id(&id)).await.expect("labelled control");
        }
    }
    panic!("no control labelled {label:?}");
}

async fn result_names(c: &Client) -> Vec<String> {
    let mut names = Vec::new();
    for a in c
        .find_all(Locator::Css("#results tbody th a"))
        .await
        .unwrap_or_default()
    {
        names.push(a.text().await.unwrap_or_default());
    }
    names
}

#[tokio::test]
async fn console_in_a_browser() {
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("G2P_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "G2P_REQUIRE_BROWSER=1 but {CHROMEDRIVER} or {CHROMIUM} is missing"
        );
        println!("SKIPPING browser test: {CHROMEDRIVER} or {CHROMIUM} not installed");
        return;
    }
    let t = TestApp::spawn(Backend::Sqlite).await.expect("app");
    let s = seed(&t).await;
    let (driver, port) = start_chromedriver().await;

    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", driver.profile.display()),
            ]
        }),
    );
    let client = ClientBuilder::rustls()
        .expect("rustls connector")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session");

    // The walk runs inside catch_unwind so that the browser session is closed even when an
    // assertion fails; the guard then stops chromedriver.
    let outcome = std::panic::AssertUnwindSafe(browse(&client, &t, &s))
        .catch_unwind()
        .await;
    let _ = client.close().await;
    drop(driver);
    t.stop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn browse(c: &Client, t: &TestApp, s: &Seeded) {
    // A wrong key is refused.
    c.goto(&t.url("/login")).await.expect("login page");
    by_label(c, "API key")
        .await
        .send_keys("g2p_this-is-not-a-key")
        .await
        .expect("type key");
    c.find(Locator::Css("main form button[type=submit]"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("submit");
    let alert = eventually("the sign-in error", || async {
        c.find(Locator::Css("[role=alert]")).await.ok()
    })
    .await;
    assert!(alert.text().await.expect("text").contains("not valid"));
    assert_eq!(c.current_url().await.expect("url").path(), "/login");

    // The viewer's key signs in and lands on the registrant list.
    let field = by_label(c, "API key").await;
    field.clear().await.expect("clear");
    field.send_keys(&t.viewer).await.expect("type key");
    c.find(Locator::Css("main form button[type=submit]"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("submit");
    eventually("the registrant list", || async {
        let url = c.current_url().await.ok()?;
        (url.path() == "/registrants").then_some(())
    })
    .await;
    let all = result_names(c).await;
    assert!(all.len() >= 4, "everyone is listed first: {all:?}");
    let source = c.source().await.expect("source");
    assert!(source.contains("test-viewer"), "signed-in key shown");

    // A marker on the window survives only if htmx swaps the table instead of reloading.
    c.execute("window.g2pMarker = 'kept'; return null;", vec![])
        .await
        .expect("set marker");

    // Filter by ID type: exactly the VID holder remains.
    let filter = by_label(c, "Filter").await;
    filter
        .send_keys(r#"[["reg_ids.id_type","=like","MOSIP VID"]]"#)
        .await
        .expect("type filter");
    c.find(Locator::Css("form[role=search] button[type=submit]"))
        .await
        .expect("filter button")
        .click()
        .await
        .expect("apply");
    let names = eventually("the filtered table", || async {
        let names = result_names(c).await;
        (names.len() == 1).then_some(names)
    })
    .await;
    assert_eq!(names, vec!["Amina Diallo".to_owned()]);
    let table = c
        .find(Locator::Css("#results table"))
        .await
        .expect("table")
        .text()
        .await
        .expect("table text");
    assert!(table.contains("MOSIP VID: ••••1234"), "{table}");
    assert!(!table.contains(VID));
    for other in ["Bakary Traore", "Coumba Keita", "Diallo household"] {
        assert!(!table.contains(other), "{other} holds no VID");
    }
    let url = c.current_url().await.expect("url");
    assert!(
        url.query().unwrap_or_default().contains("filter="),
        "the filter is in the address bar: {url}"
    );
    let marker = c
        .execute("return window.g2pMarker || null;", vec![])
        .await
        .expect("marker");
    assert_eq!(
        marker,
        Value::from("kept"),
        "htmx swapped the table in place"
    );

    // Open the registrant.
    c.find(Locator::LinkText("Amina Diallo"))
        .await
        .expect("name link")
        .click()
        .await
        .expect("open");
    let path = format!("/registrants/{}", s.vid_holder);
    eventually("the detail page", || async {
        let url = c.current_url().await.ok()?;
        (url.path() == path).then_some(())
    })
    .await;
    let h1 = c
        .find(Locator::Css("h1"))
        .await
        .expect("heading")
        .text()
        .await
        .expect("text");
    assert_eq!(h1, "Amina Diallo");
    let ids = c
        .find(Locator::Css("section[aria-labelledby=h-ids]"))
        .await
        .expect("IDs section")
        .text()
        .await
        .expect("text");
    assert!(ids.contains("MOSIP VID"), "{ids}");
    assert!(!ids.contains(VID), "viewers see VIDs masked");

    // A bad filter explains itself.
    c.goto(&t.url("/registrants")).await.expect("list");
    by_label(c, "Filter")
        .await
        .send_keys(r#"[["no_such_field","=",1]]"#)
        .await
        .expect("type filter");
    c.find(Locator::Css("form[role=search] button[type=submit]"))
        .await
        .expect("filter button")
        .click()
        .await
        .expect("apply");
    let error = eventually("the filter error", || async {
        let e = c.find(Locator::Id("filter-error")).await.ok()?;
        e.text().await.ok()
    })
    .await;
    assert!(
        error.contains("Invalid filter") && error.contains("term 0"),
        "{error}"
    );

    // Signing out returns to the sign-in page.
    c.find(Locator::Css("header form button[type=submit]"))
        .await
        .expect("sign-out button")
        .click()
        .await
        .expect("sign out");
    eventually("the sign-in page", || async {
        let url = c.current_url().await.ok()?;
        (url.path() == "/login").then_some(())
    })
    .await;
}
