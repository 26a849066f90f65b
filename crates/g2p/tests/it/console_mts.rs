//! The MTS connector pages of the console: plain HTTP checks of roles, secrets and the polled
//! fragment, then a walk in headless Chromium against `g2p_mts` (in-process): create a
//! connector (an invalid mapping first, shown inline), run it, and watch the run complete with
//! one record processed and one failed.
//!
//! The browser test needs `/usr/bin/chromedriver` and `/usr/bin/chromium`; without them it
//! prints "SKIPPING browser test" and passes, unless `G2P_REQUIRE_BROWSER=1` (CI), where it
//! fails. The helpers, and the browser set-up, are those of `browser.rs`.

// Test helpers, not only `#[test]` functions, may fail loudly.
#![allow(clippy::expect_used, clippy::panic)]

use fantoccini::{Client, Locator};
use g2p_mts::mock_token;
use g2p_store::Backend;
use serde_json::json;

use crate::browser::{
    self, assert_invalid, click, csrf_of, eventually, get_fragment, get_page, location, post_form,
    sign_in, sign_in_as, text_of, type_into, value_of, wait_path,
};
use crate::helpers::TestApp;
use crate::mts_connector::{person, start_mts};

/// Tokenised by the mock MTS.
const OK_VID: &str = "4000123456";
/// 9999…: the mock answers IDA-DEA-001.
const BAD_VID: &str = "9999012345";
const PASSWORD: &str = "correct horse battery";

// ------------------------------------------------------------------ plain HTTP

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
    let (st, frag) = get_fragment(&t, &format!("{page}/runs"), &viewer).await;
    assert_eq!(st, 200);
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

/// Saves the new connector's form and waits for its page: the connector's id.
pub(crate) async fn save_new_connector(c: &Client) -> i64 {
    click(c, Locator::Id("save-connector")).await;
    let cid: i64 = eventually("the connector page", 10, || async {
        let url = c.current_url().await.ok()?;
        url.path().strip_prefix("/mts/")?.parse().ok()
    })
    .await;
    assert_eq!(
        text_of(c, ".notice").await.as_deref(),
        Some("Connector created.")
    );
    cid
}

/// Clicks "Run now" on a connector's page and waits for the queued run.
pub(crate) async fn run_now(c: &Client) {
    click(c, Locator::Id("mts-run")).await;
    eventually("the queued run", 10, || async {
        let notice = text_of(c, ".notice").await?;
        let row = text_of(c, "#mts-runs tbody tr").await?;
        (notice == "Run queued." && row.contains("queued")).then_some(())
    })
    .await;
}

/// Waits (up to 30 s) until the newest run on a connector's page has completed: its row.
pub(crate) async fn completed_run(c: &Client) -> String {
    eventually("the completed run", 30, || async {
        let row = text_of(c, "#mts-runs tbody tr").await?;
        row.contains("completed").then_some(row)
    })
    .await
}

/// Where the connector's activity polls (`hx-get`), if it does.
async fn polls(c: &Client) -> Option<String> {
    c.find(Locator::Id("mts-activity"))
        .await
        .expect("activity")
        .attr("hx-get")
        .await
        .expect("attr")
}

#[tokio::test]
async fn mts_connector_in_a_browser() {
    if !browser::available() {
        return;
    }
    let (mts, mts_url) = start_mts().await;
    let t = TestApp::spawn(Backend::Sqlite).await.expect("app");
    let ok = person(&t, 1, OK_VID).await;
    let bad = person(&t, 2, BAD_VID).await;
    let outcome = browser::session(|c| walk(c, &t, &mts_url, ok, bad)).await;
    t.stop().await;
    mts.shutdown().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn walk(c: Client, t: &TestApp, mts_url: &str, ok: i64, bad: i64) {
    let c = &c;
    // Sign in as the admin and open the connectors from the navigation.
    sign_in_as(c, t, &t.admin).await;
    click(c, Locator::LinkText("MTS connectors")).await;
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
    click(c, Locator::Id("save-connector")).await;
    let error = eventually("the mapping error", 10, || text_of(c, "#set-mapping-error")).await;
    assert!(error.contains("mapping.vid: is required"), "{error}");
    assert!(error.contains("mapping.name: must be an array"), "{error}");
    let alert = text_of(c, "[role=alert]").await.unwrap_or_default();
    assert!(alert.contains("not saved"), "{alert}");
    assert_eq!(value_of(c, "Name").await, "Diaz family tokens");
    assert_eq!(value_of(c, "MTS URL").await, mts_url);
    assert_eq!(value_of(c, "Filter (JSON)").await, filter);
    assert_invalid(c, "Mapping (JSON)").await;

    // A valid mapping creates the connector; its callback URL is its own receiver and a
    // callback secret was generated (shown only as "set").
    type_into(
        c,
        "Mapping (JSON)",
        r#"{"vid": "vid", "name": ["given_name", "family_name"], "dob": "birthdate", "gender": "gender", "fullAddress": ["address"]}"#,
    )
    .await;
    let cid = save_new_connector(c).await;
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
    run_now(c).await;
    assert_eq!(polls(c).await, Some(format!("/mts/{cid}/runs")));

    // The worker sends both records to MTS; its callbacks arrive; htmx shows the outcome.
    t.drain_jobs().await;
    let row = completed_run(c).await;
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
    assert_eq!(
        polls(c).await,
        None,
        "polling stops once nothing is in progress"
    );

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
