//! What the console tests share: signing in and fetching pages over plain HTTP, and a headless
//! Chromium driven through chromedriver (`console.rs`, `console_mts.rs`, `console_odk.rs`).
//!
//! The browser tests need `/usr/bin/chromedriver` and `/usr/bin/chromium`; without them
//! [`available`] prints "SKIPPING browser test" and the test passes, unless
//! `G2P_REQUIRE_BROWSER=1` (CI), where it fails.

// Test helpers, not only `#[test]` functions, may fail loudly.
#![allow(clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use reqwest::Response;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::helpers::TestApp;

// ------------------------------------------------------------------ plain HTTP

/// Signs in with `key` through the form and returns the `Cookie` header value.
pub(crate) async fn sign_in(t: &TestApp, key: &str) -> String {
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

/// The `Location` header of a response, empty when there is none.
pub(crate) fn location(resp: &Response) -> String {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// GETs `path` with the session `cookie`: the status and the body.
pub(crate) async fn get_page(t: &TestApp, path: &str, cookie: &str) -> (u16, String) {
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

/// GETs `path` as htmx does, with the session `cookie`: the status and the fragment.
pub(crate) async fn get_fragment(t: &TestApp, path: &str, cookie: &str) -> (u16, String) {
    let resp = t
        .client
        .get(t.url(path))
        .header(COOKIE, cookie)
        .header("HX-Request", "true")
        .send()
        .await
        .expect("fragment");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("fragment body"))
}

/// POSTs `form` to `path` with the session `cookie`.
pub(crate) async fn post_form(
    t: &TestApp,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> Response {
    t.client
        .post(t.url(path))
        .header(COOKIE, cookie)
        .form(form)
        .send()
        .await
        .expect("form posted")
}

/// The CSRF token of a page (every signed-in page has one in its sign-out form).
pub(crate) fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("page has a csrf field") + marker.len();
    html[start..]
        .split('"')
        .next()
        .expect("csrf value")
        .to_owned()
}

// ------------------------------------------------------------------ browser

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Whether the browser tests can run. Without chromedriver or Chromium: prints why the test is
/// skipped and returns false, or fails when `G2P_REQUIRE_BROWSER=1`.
pub(crate) fn available() -> bool {
    if std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists() {
        return true;
    }
    assert!(
        std::env::var("G2P_REQUIRE_BROWSER").as_deref() != Ok("1"),
        "G2P_REQUIRE_BROWSER=1 but {CHROMEDRIVER} or {CHROMIUM} is missing"
    );
    println!("SKIPPING browser test: {CHROMEDRIVER} or {CHROMIUM} not installed");
    false
}

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

/// Runs `walk` in a new headless Chromium session. The walk runs inside `catch_unwind` so that
/// the session is closed and chromedriver stopped even when an assertion fails; the outcome is
/// returned for the caller to stop its own services first and then `resume_unwind` a panic.
pub(crate) async fn session<F, Fut>(walk: F) -> std::thread::Result<()>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()>,
{
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

    let outcome = std::panic::AssertUnwindSafe(walk(client.clone()))
        .catch_unwind()
        .await;
    let _ = client.close().await;
    drop(driver);
    outcome
}

/// Polls `check` until it returns `Some`, for up to `secs` seconds.
pub(crate) async fn eventually<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
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

/// Waits (up to 10 s) until the browser is at `path`.
pub(crate) async fn wait_path(c: &Client, what: &str, path: &str) {
    eventually(what, 10, || async {
        let url = c.current_url().await.ok()?;
        (url.path() == path).then_some(())
    })
    .await;
}

/// The form control labelled `label`, found as a person would: through its `<label for>`.
pub(crate) async fn by_label(c: &Client, label: &str) -> Element {
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
pub(crate) async fn type_into(c: &Client, label: &str, text: &str) {
    let field = by_label(c, label).await;
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

/// The current value of the control labelled `label`.
pub(crate) async fn value_of(c: &Client, label: &str) -> String {
    by_label(c, label)
        .await
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default()
}

/// The text of the first element matching `css`, if there is one.
pub(crate) async fn text_of(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// Clicks the element `what`.
pub(crate) async fn click(c: &Client, what: Locator<'_>) {
    c.find(what)
        .await
        .unwrap_or_else(|e| panic!("{what:?}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {what:?}: {e}"));
}

/// The sign-in form's button.
pub(crate) const SIGN_IN: Locator<'static> = Locator::Css("main form button[type=submit]");

/// Asserts that the control labelled `label` is marked invalid.
pub(crate) async fn assert_invalid(c: &Client, label: &str) {
    let invalid = by_label(c, label)
        .await
        .attr("aria-invalid")
        .await
        .expect("attr");
    assert_eq!(invalid.as_deref(), Some("true"), "{label} marked invalid");
}

/// Signs in with `key` through the sign-in page and waits for the registrant list.
pub(crate) async fn sign_in_as(c: &Client, t: &TestApp, key: &str) {
    c.goto(&t.url("/login")).await.expect("login page");
    type_into(c, "API key", key).await;
    click(c, SIGN_IN).await;
    wait_path(c, "the registrant list", "/registrants").await;
}
