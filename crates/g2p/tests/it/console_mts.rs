//! The MTS connector pages of the console: plain HTTP checks of roles, secrets and the polled
//! fragment, then a walk in headless Chromium against `g2p_sim::mts` (in-process): create a
//! connector (an invalid mapping first, shown inline), run it, and watch the run complete with
//! one record processed and one failed.
//!
//! The browser test needs `/usr/bin/chromedriver` and `/usr/bin/chromium`; without them it
//! prints "SKIPPING browser test" and passes, unless `G2P_REQUIRE_BROWSER=1` (CI), where it
//! fails. The browser set-up is that of `console.rs`.

// Test helpers, not only `#[test]` functions, may fail loudly.
#![allow(clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use g2p_sim::mts::mock_token;
use g2p_store::Backend;
use reqwest::Response;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::helpers::TestApp;
use crate::mts_connector::{person, start_mts};

/// Tokenised by the mock MTS.
const OK_VID: &str = "4000123456";
/// 9999…: the mock answers IDA-DEA-001.
const BAD_VID: &str = "9999012345";
const PASSWORD: &str = "correct horse battery";

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
async fn mts_pages_show_secrets_as_set_and_only_admins_change_things() {
    let t = TestApp::spawn(Backend::Sqlite).await.expect("app");
    let (st, c) = t
        .post(
            "/api/v1/mts/connectors",
            &t.admin,
            json!({"name": "Kayes tokens", "mts_url": "http://127.0.0.1:9",
                   "callback_url": format!("{}/api/v1/mts/callbacks/1", t.base),
                   "callback_password": PASSWORD}),
        )
        .await;
    assert_eq!(st, 201, "{c}");
    let cid = c["id"].as_i64().expect("id");
    let page = format!("/mts/{cid}");

    // A viewer reads, sees no buttons, and may not post.
    let viewer = sign_in(&t, &t.viewer).await;
    let (st, html) = get_page(&t, "/mts", &viewer).await;
    assert_eq!(st, 200, "{html}");
    assert!(
        html.contains("Kayes tokens") && html.contains("never run"),
        "{html}"
    );
    assert!(html.contains(r#"aria-current="page">MTS connectors"#));
    assert!(!html.contains("New connector"), "viewers cannot create");
    let (st, html) = get_page(&t, &page, &viewer).await;
    assert_eq!(st, 200, "{html}");
    assert!(!html.contains(PASSWORD), "the secret is never rendered");
    assert!(
        html.contains("<dt>Callback password</dt><dd>set</dd>"),
        "{html}"
    );
    assert!(
        html.contains("<dt>ODK password</dt><dd>not set</dd>"),
        "{html}"
    );
    for button in [
        "Run now",
        "Retry failed",
        "Save settings",
        ">Start<",
        ">Stop<",
    ] {
        assert!(!html.contains(button), "{button} shown to a viewer");
    }
    assert!(html.contains("disabled"), "settings are read-only");
    let csrf = csrf_of(&html);
    for action in ["run", "start", "stop", "retry"] {
        let r = post_form(&t, &format!("{page}/{action}"), &viewer, &[("csrf", &csrf)]).await;
        assert_eq!(r.status().as_u16(), 403, "viewer {action}");
    }
    let r = post_form(&t, "/mts/new", &viewer, &[("csrf", &csrf), ("name", "x")]).await;
    assert_eq!(r.status().as_u16(), 403, "viewer create");
    let r = post_form(&t, &page, &viewer, &[("csrf", &csrf), ("name", "x")]).await;
    assert_eq!(r.status().as_u16(), 403, "viewer update");

    // An admin's settings form keeps the password field empty; saving it empty keeps the
    // stored secret, and a bad value comes back next to its field with the input kept.
    let admin = sign_in(&t, &t.admin).await;
    let (st, html) = get_page(&t, &page, &admin).await;
    assert_eq!(st, 200);
    assert!(html.contains("Run now") && html.contains("Save settings"));
    assert!(!html.contains(PASSWORD));
    assert!(
        html.contains(r#"name="callback_password" value="""#),
        "password field never pre-filled"
    );
    let csrf = csrf_of(&html);
    let r = post_form(
        &t,
        &page,
        &admin,
        &[
            ("csrf", &csrf),
            ("name", "Kayes tokens"),
            ("mts_url", "http://127.0.0.1:9"),
            ("input_type", "registry"),
            ("job_type", "recurring"),
            ("interval_minutes", "soon"),
            ("lang", "eng"),
            ("mapping", r#"{"vid": "vid"}"#),
            ("output_type", "json"),
            ("delivery_type", "callback"),
            ("fields", r#"["given_name"]"#),
            ("filter", r#"[["family_name", "=", "Diaz"]]"#),
            ("callback_url", ""),
            ("callback_http_method", "POST"),
            ("callback_timeout_seconds", "10"),
            ("callback_auth_type", "staticBearer"),
            ("chunk_size", "0"),
            ("vid_id_type", "MOSIP VID"),
            ("token_id_type", "MOSIP AUTH TOKEN"),
        ],
    )
    .await;
    assert_eq!(r.status().as_u16(), 422);
    let html = r.text().await.expect("body");
    assert!(
        html.contains(r#"id="set-interval_minutes-error">must be a whole number"#),
        "{html}"
    );
    assert!(html.contains(r#"id="set-chunk_size-error">must be between 1 and 10000"#));
    assert!(html.contains(r#"value="soon""#), "the input is kept");
    let r = post_form(
        &t,
        &page,
        &admin,
        &[
            ("csrf", &csrf),
            ("name", "Kayes tokens"),
            ("mts_url", "http://127.0.0.1:9"),
            ("input_type", "registry"),
            ("job_type", "one_time"),
            ("lang", "eng"),
            ("mapping", r#"{"vid": "vid"}"#),
            ("output_type", "json"),
            ("delivery_type", "callback"),
            ("fields", r#"["given_name"]"#),
            ("filter", "[]"),
            ("callback_url", ""),
            ("callback_http_method", "PUT"),
            ("callback_auth_type", "staticBearer"),
            ("vid_id_type", "MOSIP VID"),
            ("token_id_type", "MOSIP AUTH TOKEN"),
            ("remove_vid", "true"),
        ],
    )
    .await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(location(&r), format!("{page}?done=saved"));
    let (_, v) = t
        .get(&format!("/api/v1/mts/connectors/{cid}"), &t.viewer)
        .await;
    assert_eq!(v["callback_password_set"], true, "{v}");
    assert_eq!(v["settings"]["callback_http_method"], "PUT", "{v}");
    assert_eq!(v["settings"]["call_in_bulk"], false, "unticked: {v}");
    assert_eq!(
        v["settings"]["callback_url"],
        format!("{}/api/v1/mts/callbacks/{cid}", t.base),
        "an empty callback URL becomes this connector's receiver: {v}"
    );

    // Run now queues a run; a second one is refused while it has not finished.
    let r = post_form(&t, &format!("{page}/run"), &admin, &[("csrf", &csrf)]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(location(&r), format!("{page}?done=run"));
    let r = post_form(&t, &format!("{page}/run"), &admin, &[("csrf", &csrf)]).await;
    assert_eq!(r.status().as_u16(), 409);
    let html = r.text().await.expect("body");
    assert!(html.contains(r#"id="action-error""#) && html.contains("has not finished"));

    // The fragment that htmx polls while the run is queued.
    let resp = t
        .client
        .get(t.url(&format!("{page}/runs")))
        .header(COOKIE, &viewer)
        .header("HX-Request", "true")
        .send()
        .await
        .expect("fragment");
    assert_eq!(resp.status().as_u16(), 200);
    let frag = resp.text().await.expect("body");
    assert!(
        frag.starts_with(r#"<div id="mts-activity" hx-get="/mts/"#)
            && frag.contains(r#"hx-trigger="every 2s""#)
            && frag.contains("queued"),
        "{frag}"
    );

    // A manual import with a bad id is refused next to the field.
    let r = post_form(
        &t,
        &format!("{page}/run"),
        &admin,
        &[("csrf", &csrf), ("import", "1"), ("registrant_ids", "1, x")],
    )
    .await;
    assert_eq!(r.status().as_u16(), 422);
    let html = r.text().await.expect("body");
    assert!(
        html.contains(r#"id="import-ids-error">&#34;x&#34; is not a registrant id"#)
            || html.contains(r#"id="import-ids-error">&quot;x&quot; is not a registrant id"#),
        "{html}"
    );

    // Stop ends the queued run.
    let r = post_form(&t, &format!("{page}/stop"), &admin, &[("csrf", &csrf)]).await;
    assert_eq!(r.status().as_u16(), 303);
    let (_, runs) = t
        .get(&format!("/api/v1/mts/connectors/{cid}/runs"), &t.viewer)
        .await;
    assert_eq!(runs[0]["status"], "stopped", "{runs}");
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
            // `--` matters: procps-ng 4.0.2 reads `kill -KILL -1234` as signal options.
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

/// Polls `check` until it returns `Some`, for up to `secs` seconds.
async fn eventually<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
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

/// Replaces the text of the control labelled `label`.
async fn type_into(c: &Client, label: &str, text: &str) {
    let field = by_label(c, label).await;
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn value_of(c: &Client, label: &str) -> String {
    by_label(c, label)
        .await
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default()
}

async fn text_of(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn wait_path(c: &Client, what: &str, path: &str) {
    eventually(what, 10, || async {
        let url = c.current_url().await.ok()?;
        (url.path() == path).then_some(())
    })
    .await;
}

#[tokio::test]
async fn mts_connector_in_a_browser() {
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("G2P_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "G2P_REQUIRE_BROWSER=1 but {CHROMEDRIVER} or {CHROMIUM} is missing"
        );
        println!("SKIPPING browser test: {CHROMEDRIVER} or {CHROMIUM} not installed");
        return;
    }
    let (mts, mts_url) = start_mts().await;
    let t = TestApp::spawn(Backend::Sqlite).await.expect("app");
    let ok = person(&t, 1, OK_VID).await;
    let bad = person(&t, 2, BAD_VID).await;
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
    let outcome = std::panic::AssertUnwindSafe(walk(&client, &t, &mts_url, ok, bad))
        .catch_unwind()
        .await;
    let _ = client.close().await;
    drop(driver);
    t.stop().await;
    mts.abort().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn walk(c: &Client, t: &TestApp, mts_url: &str, ok: i64, bad: i64) {
    // Sign in as the admin and open the connectors from the navigation.
    c.goto(&t.url("/login")).await.expect("login page");
    type_into(c, "API key", &t.admin).await;
    c.find(Locator::Css("main form button[type=submit]"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("submit");
    wait_path(c, "the registrant list", "/registrants").await;
    c.find(Locator::LinkText("MTS connectors"))
        .await
        .expect("nav link")
        .click()
        .await
        .expect("open");
    wait_path(c, "the connector list", "/mts").await;
    let main = text_of(c, "main").await.unwrap_or_default();
    assert!(main.contains("No connectors."), "{main}");

    // A mapping without vid (and a name that is not a list) is refused next to the field,
    // with everything typed kept.
    let filter = format!(r#"[["id","in",[{ok},{bad}]]]"#);
    type_into(c, "Name", "Diaz family tokens").await;
    type_into(c, "MTS URL", mts_url).await;
    type_into(c, "Mapping (JSON)", r#"{"name": "given_name"}"#).await;
    type_into(c, "Filter (JSON)", &filter).await;
    assert_eq!(
        value_of(c, "Callback URL").await,
        "",
        "left empty: defaulted"
    );
    c.find(Locator::Id("save-connector"))
        .await
        .expect("create button")
        .click()
        .await
        .expect("create");
    let error = eventually("the mapping error", 10, || text_of(c, "#set-mapping-error")).await;
    assert!(error.contains("mapping.vid: is required"), "{error}");
    assert!(error.contains("mapping.name: must be an array"), "{error}");
    let alert = text_of(c, "[role=alert]").await.unwrap_or_default();
    assert!(alert.contains("not saved"), "{alert}");
    assert_eq!(value_of(c, "Name").await, "Diaz family tokens");
    assert_eq!(value_of(c, "MTS URL").await, mts_url);
    assert_eq!(value_of(c, "Filter (JSON)").await, filter);
    let invalid = by_label(c, "Mapping (JSON)")
        .await
        .attr("aria-invalid")
        .await
        .expect("attr");
    assert_eq!(invalid.as_deref(), Some("true"));

    // A valid mapping creates the connector; its callback URL is its own receiver and a
    // callback secret was generated (shown only as "set").
    type_into(
        c,
        "Mapping (JSON)",
        r#"{"vid": "vid", "name": ["given_name", "family_name"], "dob": "birthdate", "gender": "gender", "fullAddress": ["address"]}"#,
    )
    .await;
    c.find(Locator::Id("save-connector"))
        .await
        .expect("create button")
        .click()
        .await
        .expect("create");
    let cid: i64 = eventually("the connector page", 10, || async {
        let url = c.current_url().await.ok()?;
        url.path().strip_prefix("/mts/")?.parse().ok()
    })
    .await;
    let notice = text_of(c, ".notice").await.unwrap_or_default();
    assert_eq!(notice, "Connector created.");
    assert_eq!(
        text_of(c, "h1").await.as_deref(),
        Some("Diaz family tokens")
    );
    assert_eq!(
        value_of(c, "Callback URL").await,
        format!("{}/api/v1/mts/callbacks/{cid}", t.base)
    );
    assert_eq!(value_of(c, "Password or bearer token").await, "");
    let source = c.source().await.expect("source");
    assert!(
        source.contains("<dt>Callback password</dt><dd>set</dd>"),
        "a generated secret, shown only as set"
    );

    // Run now queues a run, and the page polls while it is in progress.
    c.find(Locator::Id("mts-run"))
        .await
        .expect("run button")
        .click()
        .await
        .expect("run");
    eventually("the queued run", 10, || async {
        let notice = text_of(c, ".notice").await?;
        let row = text_of(c, "#mts-runs tbody tr").await?;
        (notice == "Run queued." && row.contains("queued")).then_some(())
    })
    .await;
    let polls = c
        .find(Locator::Id("mts-activity"))
        .await
        .expect("activity")
        .attr("hx-get")
        .await
        .expect("attr");
    assert_eq!(polls, Some(format!("/mts/{cid}/runs")));

    // The worker sends both records to MTS; its callbacks arrive; htmx shows the outcome.
    t.drain_jobs().await;
    let row = eventually("the completed run", 30, || async {
        let row = text_of(c, "#mts-runs tbody tr").await?;
        row.contains("completed").then_some(row)
    })
    .await;
    let failures = text_of(c, "#mts-failures").await.unwrap_or_default();
    assert!(row.contains("1 of 2 processed"), "{row}\n{failures}");
    assert!(row.contains("1 of 2 failed"), "{row}");
    assert!(row.contains("0 of 2 pending"), "{row}");
    let failures = eventually("the failures table", 10, || text_of(c, "#mts-failures")).await;
    assert!(failures.contains("IDA-DEA-001"), "{failures}");
    assert!(
        failures.contains("Demographic data name in eng did not match"),
        "{failures}"
    );
    let link = c
        .find(Locator::Css("#mts-failures tbody th a"))
        .await
        .expect("registrant link")
        .attr("href")
        .await
        .expect("href");
    assert_eq!(link, Some(format!("/registrants/{bad}")));
    let polls = c
        .find(Locator::Id("mts-activity"))
        .await
        .expect("activity")
        .attr("hx-get")
        .await
        .expect("attr");
    assert_eq!(polls, None, "polling stops once nothing is in progress");

    // The token is stored and the VID removed for the one that succeeded.
    let (st, v) = t
        .get(&format!("/api/v1/registrants/{ok}/ids"), &t.viewer)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v[0]["id_type"], "MOSIP AUTH TOKEN", "{v}");
    assert_eq!(v[0]["value"], mock_token(OK_VID, "mpartner-default-mosip"));

    // The list shows the connector with its last run.
    c.goto(&t.url("/mts")).await.expect("list");
    let table = text_of(c, "#mts-connectors").await.unwrap_or_default();
    assert!(
        table.contains("Diaz family tokens") && table.contains("completed"),
        "{table}"
    );
    assert!(
        table.contains("1 processed, 1 failed, 0 pending of 2 sent"),
        "{table}"
    );
}
