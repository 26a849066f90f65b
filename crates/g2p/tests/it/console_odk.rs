//! The console of ODK MTS connectors: plain HTTP checks of what the connector page shows
//! (watermark, runs with their windows and outcome counts, the submissions table with its
//! outcome filter and keyset pages, possible duplicates linked to the registrant they
//! duplicate), the manual window form with its inline errors, and the roles; then a walk in
//! headless Chromium: an admin creates an ODK connector through the form (refused first, inline),
//! runs it against `g2p_sim::odk` and `g2p_mts`, and sees the run's outcome and the
//! created submissions, then re-reads the window through the manual window form.
//!
//! The browser test needs `/usr/bin/chromedriver` and `/usr/bin/chromium`; without them it
//! prints "SKIPPING browser test" and passes, unless `G2P_REQUIRE_BROWSER=1` (CI), where it
//! fails. The helpers, and the browser set-up, are those of `browser.rs`.

// Test helpers, not only `#[test]` functions, may fail loudly.
#![allow(clippy::expect_used, clippy::panic)]

use chrono::{DateTime, TimeDelta, Utc};
use fantoccini::{Client, Locator};
use g2p::demo_odk::{REGISTRATION_OUTPUT_FORMAT, registration_mapping};
use g2p_sim::odk::{DEFAULT_EMAIL, DEFAULT_PASSWORD, OdkSim, REGISTRATION_FORM};
use g2p_store::Backend;
use reqwest::Response;
use serde_json::json;

use crate::browser::{
    self, assert_invalid, by_label, click, csrf_of, eventually, get_fragment, get_page, location,
    post_form, sign_in, sign_in_as, text_of, type_into, value_of,
};
use crate::console_mts::{completed_run, run_now, save_new_connector};
use crate::helpers::TestApp;
use crate::mts_connector::start_mts;
use crate::odk_connector::{odk_connector, run, start_odk, submission, submissions};

/// Tokenised by the mock MTS.
const OK_VID: &str = "1234567890123456";
/// 9999…: the mock authenticator answers IDA-DEA-001.
const BAD_VID: &str = "9999000011112222";

// ------------------------------------------------------------------ plain HTTP

/// Adds the registration of `given` with `vid` to project 1, submitted at `at`: its instance id.
fn register(odk: &OdkSim, given: &str, vid: &str, at: DateTime<Utc>) -> String {
    odk.add_submission(1, REGISTRATION_FORM, submission(given, vid), at)
        .unwrap_or_else(|e| panic!("the submission of {given}: {e:?}"))
}

/// The `<tbody>` row of `table_id` whose header cell holds `key`.
fn row_of<'a>(html: &'a str, table_id: &str, key: &str) -> &'a str {
    let table = &html[html
        .find(&format!(r#"id="{table_id}""#))
        .unwrap_or_else(|| panic!("no table {table_id}: {html}"))..];
    let table = &table[..table.find("</table>").expect("table end")];
    table
        .split("<tr>")
        .find(|r| r.contains(key))
        .unwrap_or_else(|| panic!("no row {key} in {table}"))
}

/// The manual window form of connector `cid`, posted with `cookie`.
async fn post_window(
    t: &TestApp,
    cid: i64,
    cookie: &str,
    csrf: &str,
    start: &str,
    end: &str,
) -> Response {
    post_form(
        t,
        &format!("/mts/{cid}/run"),
        cookie,
        &[
            ("csrf", csrf),
            ("window", "1"),
            ("window_start", start),
            ("window_end", end),
        ],
    )
    .await
}

#[tokio::test]
async fn odk_connector_pages_show_windows_outcomes_and_submissions() {
    let (mts, mts_url) = start_mts().await;
    for t in TestApp::all().await {
        let b = t.backend.name();
        let (odk, odk_url) = start_odk().await;
        let now = Utc::now();
        let start = now - TimeDelta::hours(3);
        let s1 = register(&odk, "Akinyi", OK_VID, now - TimeDelta::minutes(90));
        let s2 = register(&odk, "Achieng", BAD_VID, now - TimeDelta::minutes(80));
        let cid = odk_connector(&t, &mts_url, &odk_url, start).await;
        let page = format!("/mts/{cid}");

        // Before any run: no watermark, no submissions; the window form, not the import.
        let viewer = sign_in(&t, &t.viewer).await;
        let admin = sign_in(&t, &t.admin).await;
        let (st, html) = get_page(&t, &page, &admin).await;
        assert_eq!(st, 200, "{b}: {html}");
        assert!(html.contains("Watermark: none yet"), "{b}: {html}");
        assert!(html.contains(r#"id="odk-no-submissions">No submissions."#));
        assert!(html.contains(r#"id="mts-run-window""#) && html.contains("Manual window"));
        assert!(!html.contains("Manual import"), "registry connectors only");
        assert!(
            !html.contains(r#"id="mts-retry""#),
            "registry connectors only"
        );
        assert!(
            !html.contains(r#"id="h-failures""#),
            "registry connectors only"
        );

        // The delta: both submissions, one authenticated, one not (its VID kept).
        let done = run(&t, cid, json!({})).await;
        assert_eq!(done["odk"]["created"], 2, "{b}: {done}");
        let run1 = done["id"].as_i64().expect("run id");
        let subs = submissions(&t, cid, "").await;
        let reg = |id: &str| {
            subs.iter()
                .find(|s| s["instance_id"] == id)
                .and_then(|s| s["registrant_id"].as_i64())
                .expect("registrant")
        };
        let (r1, r2) = (reg(&s1), reg(&s2));

        // A viewer reads it all: the watermark, the run's window and outcome, the submissions.
        let (st, html) = get_page(&t, &page, &viewer).await;
        assert_eq!(st, 200, "{b}: {html}");
        assert!(
            html.contains(r#"<p id="odk-watermark">Watermark: submissions received before <time>"#),
            "{b}: {html}"
        );
        let row = row_of(&html, "mts-runs", &format!("#{run1}"));
        assert!(row.contains("completed") && row.contains(" → "), "{row}");
        assert!(row.contains("<td>2</td>"), "sent: {row}");
        assert!(row.contains(r#"<progress value="2" max="2""#), "{row}");
        assert!(row.contains("2 of 2 received"), "{row}");
        for count in [
            "created 2",
            "updated 0",
            "tokenised 1",
            "failed 1",
            "duplicates 0",
            "held 0",
            "invalid 0",
        ] {
            assert!(row.contains(&format!("<li>{count}</li>")), "{count}: {row}");
        }
        let ok_row = row_of(&html, "odk-submissions-table", &s1);
        assert!(
            ok_row.contains(">created<") && ok_row.contains("processed"),
            "{ok_row}"
        );
        assert!(
            ok_row.contains(&format!(r#"<a href="/registrants/{r1}">"#)),
            "{ok_row}"
        );
        let bad_row = row_of(&html, "odk-submissions-table", &s2);
        assert!(bad_row.contains("<code>IDA-DEA-001</code>"), "{bad_row}");
        assert!(
            bad_row.contains(&format!(r#"<a href="/registrants/{r2}">"#)),
            "{bad_row}"
        );
        for admin_only in ["Run window", "Run now", "Save settings"] {
            assert!(!html.contains(admin_only), "{admin_only} shown to a viewer");
        }

        // The same person submits again: a possible duplicate, linked to the first.
        let s3 = register(&odk, "Akinyi A.", OK_VID, Utc::now());
        let done = run(&t, cid, json!({})).await;
        assert_eq!(done["odk"]["duplicates"], 1, "{b}: {done}");
        let (st, html) = get_page(&t, &format!("{page}?outcome=duplicate"), &viewer).await;
        assert_eq!(st, 200, "{b}: {html}");
        assert!(
            html.contains(r#"<option value="duplicate" selected>Possible duplicates</option>"#),
            "{html}"
        );
        let dup = row_of(&html, "odk-submissions-table", &s3);
        assert!(dup.contains(">duplicate<"), "{dup}");
        assert!(
            dup.contains(&format!(
                r#"<a href="/registrants/{r1}" class="duplicate-of">Registrant {r1}</a>"#
            )),
            "{dup}"
        );
        let table = &html[html.find("odk-submissions-table").expect("table")..];
        assert!(!table.contains(&s1) && !table.contains(&s2), "filtered");
        let (_, html) = get_page(&t, &format!("{page}?outcome=held"), &viewer).await;
        assert!(html.contains("No submissions with this outcome."), "{html}");
        let (st, _) = get_page(&t, &format!("{page}?outcome=lost"), &viewer).await;
        assert_eq!(st, 400, "an unknown outcome");

        // Keyset pages: after the first instance id come the others, with a link back.
        let mut ids = [s1.clone(), s2.clone(), s3.clone()];
        ids.sort();
        let (_, html) = get_page(&t, &format!("{page}?after={}", ids[0]), &viewer).await;
        let table = &html[html.find("odk-submissions-table").expect("table")..];
        assert!(
            !table.contains(&ids[0]) && table.contains(&ids[1]) && table.contains(&ids[2]),
            "{table}"
        );
        assert!(html.contains(r#"id="odk-page-first""#), "{html}");
        assert!(!html.contains(r#"id="odk-page-next""#), "one page only");

        // The polled fragment keeps the page of submissions it was given.
        let (st, frag) = get_fragment(
            &t,
            &format!("{page}/runs?outcome=duplicate&after="),
            &viewer,
        )
        .await;
        assert_eq!(st, 200);
        assert!(frag.starts_with(r#"<div id="mts-activity""#), "{frag}");
        assert!(frag.contains(&s3) && !frag.contains(&s1), "{frag}");

        // The list shows the last run's outcome.
        let (_, html) = get_page(&t, "/mts", &viewer).await;
        assert!(
            html.contains(
                "1 of 1 submissions received: 0 created, 0 updated, 1 possible duplicates"
            ),
            "{b}: {html}"
        );

        // Only admins run a window.
        let csrf = csrf_of(&html);
        let r = post_window(
            &t,
            cid,
            &viewer,
            &csrf,
            "2024-01-01T00:00",
            "2024-01-02T00:00",
        )
        .await;
        assert_eq!(r.status().as_u16(), 403, "viewer window");

        // Bad bounds come back next to their fields, the values kept.
        let (_, html) = get_page(&t, &page, &admin).await;
        let csrf = csrf_of(&html);
        let r = post_window(&t, cid, &admin, &csrf, "yesterday", "").await;
        assert_eq!(r.status().as_u16(), 422);
        let html = r.text().await.expect("body");
        assert!(html.contains(r#"id="window-alert""#), "{html}");
        assert!(
            html.contains(r#"id="window-start-error">must be a date and time in UTC"#),
            "{html}"
        );
        assert!(
            html.contains(r#"id="window-end-error">is required"#),
            "{html}"
        );
        assert!(html.contains(r#"value="yesterday""#), "the input is kept");
        let r = post_window(
            &t,
            cid,
            &admin,
            &csrf,
            "2024-01-02T00:00",
            "2024-01-01T00:00",
        )
        .await;
        assert_eq!(r.status().as_u16(), 422);
        let html = r.text().await.expect("body");
        assert!(
            html.contains(r#"id="window-end-error">must be after window_start"#),
            "the API's own check: {html}"
        );

        // A window as a datetime-local control sends it (UTC): a manual run of that window.
        let fmt = "%Y-%m-%dT%H:%M:%S";
        let (ws, we) = (
            (now - TimeDelta::minutes(95)).format(fmt).to_string(),
            (now - TimeDelta::minutes(85)).format(fmt).to_string(),
        );
        let r = post_window(&t, cid, &admin, &csrf, &ws, &we).await;
        assert_eq!(r.status().as_u16(), 303);
        assert_eq!(location(&r), format!("{page}?done=window"));
        t.drain_jobs().await;
        let (_, runs) = t
            .get(&format!("/api/v1/mts/connectors/{cid}/runs"), &t.viewer)
            .await;
        let manual = &runs[0];
        assert_eq!(manual["kind"], "manual", "{runs}");
        let run3 = manual["id"].as_i64().expect("id");
        let done = crate::mts_connector::wait_run(&t, run3).await;
        assert_eq!(done["sent"], 1, "{b}: {done}");
        assert_eq!(done["odk"]["unchanged"], 1, "{b}: {done}");
        let (_, html) = get_page(&t, &format!("{page}?done=window"), &admin).await;
        assert!(html.contains("Run of the window queued."), "{html}");
        let row = row_of(&html, "mts-runs", &format!("#{run3}"));
        let shown = |d: TimeDelta| (now - d).format("%Y-%m-%d %H:%M:%S UTC").to_string();
        assert!(
            row.contains(&format!(
                "<time>{}</time> → <time>{}</time>",
                shown(TimeDelta::minutes(95)),
                shown(TimeDelta::minutes(85))
            )),
            "{row}"
        );
        assert!(row.contains("1 of 1 received") && row.contains("<li>unchanged 1</li>"));
        t.stop().await;
    }
    mts.shutdown().await;
}

#[tokio::test]
async fn a_window_posted_to_a_registry_connector_is_refused_as_an_action() {
    let t = TestApp::spawn(Backend::Sqlite).await.expect("app");
    let (st, c) = t
        .post(
            "/api/v1/mts/connectors",
            &t.admin,
            json!({"name": "registry", "mts_url": "http://127.0.0.1:9",
                   "callback_url": format!("{}/api/v1/mts/callbacks/1", t.base)}),
        )
        .await;
    assert_eq!(st, 201, "{c}");
    let cid = c["id"].as_i64().expect("id");
    let admin = sign_in(&t, &t.admin).await;
    let (_, html) = get_page(&t, &format!("/mts/{cid}"), &admin).await;
    assert!(html.contains("Manual import") && !html.contains("Manual window"));
    assert!(!html.contains("odk-watermark"), "registry display kept");
    let csrf = csrf_of(&html);
    let r = post_window(
        &t,
        cid,
        &admin,
        &csrf,
        "2024-01-01T00:00",
        "2024-01-02T00:00",
    )
    .await;
    assert_eq!(r.status().as_u16(), 422);
    let html = r.text().await.expect("body");
    assert!(
        html.contains(r#"id="action-error""#) && html.contains("only for ODK input"),
        "{html}"
    );
    t.stop().await;
}

// ------------------------------------------------------------------ browser

#[tokio::test]
async fn odk_connector_in_a_browser() {
    if !browser::available() {
        return;
    }
    let (mts, mts_url) = start_mts().await;
    let (odk, odk_url) = start_odk().await;
    let now = Utc::now();
    let ok = register(&odk, "Akinyi", OK_VID, now - TimeDelta::minutes(30));
    let bad = register(&odk, "Achieng", BAD_VID, now - TimeDelta::minutes(20));
    let t = TestApp::spawn(Backend::Sqlite).await.expect("app");
    let outcome = browser::session(|c| walk(c, &t, &mts_url, &odk_url, [&ok, &bad])).await;
    t.stop().await;
    mts.shutdown().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// `ok` and `bad` are the instance ids of the submission MTS authenticates and of the one it
/// does not.
async fn walk(c: Client, t: &TestApp, mts_url: &str, odk_url: &str, [ok, bad]: [&str; 2]) {
    let c = &c;
    // Sign in as the admin and open the connectors.
    sign_in_as(c, t, &t.admin).await;
    c.goto(&t.url("/mts")).await.expect("connectors");

    // An ODK connector with a base URL that is not one and no ODK password: refused, each
    // problem next to its field, everything else kept.
    let start = (Utc::now() - TimeDelta::hours(2)).to_rfc3339();
    type_into(c, "Name", "Kisumu registrations").await;
    type_into(c, "MTS URL", mts_url).await;
    by_label(c, "Input type")
        .await
        .select_by_value("odk")
        .await
        .expect("input type");
    by_label(c, "Job type")
        .await
        .select_by_value("recurring")
        .await
        .expect("job type");
    type_into(c, "Mapping (JSON)", &registration_mapping().to_string()).await;
    type_into(c, "Output format (jq)", REGISTRATION_OUTPUT_FORMAT).await;
    type_into(c, "ODK base URL", "odk.example.test").await;
    type_into(c, "ODK project id", "1").await;
    type_into(c, "ODK form id", REGISTRATION_FORM).await;
    type_into(c, "ODK email", DEFAULT_EMAIL).await;
    type_into(c, "Submissions from", &start).await;
    click(c, Locator::Id("save-connector")).await;
    let error = eventually("the ODK password error", 10, || {
        text_of(c, "#set-odk_password-error")
    })
    .await;
    assert_eq!(error, "is required for ODK input");
    let url_error = text_of(c, "#set-odk_base_url-error")
        .await
        .unwrap_or_default();
    assert!(!url_error.is_empty(), "the base URL is refused too");
    let alert = text_of(c, "[role=alert]").await.unwrap_or_default();
    assert!(alert.contains("not saved"), "{alert}");
    assert_eq!(value_of(c, "Name").await, "Kisumu registrations");
    assert_eq!(value_of(c, "ODK form id").await, REGISTRATION_FORM);
    assert_eq!(value_of(c, "Input type").await, "odk");
    assert_invalid(c, "ODK password").await;

    // Corrected: the connector is created.
    type_into(c, "ODK base URL", odk_url).await;
    type_into(c, "ODK password", DEFAULT_PASSWORD).await;
    let cid = save_new_connector(c).await;
    let source = c.source().await.expect("source");
    assert!(source.contains("<dt>ODK password</dt><dd>set</dd>"));
    assert!(
        !source.contains(DEFAULT_PASSWORD),
        "the secret is never rendered"
    );
    let watermark = text_of(c, "#odk-watermark").await.unwrap_or_default();
    assert!(watermark.contains("none yet"), "{watermark}");

    // Run now reads the window since the start; the page polls until the run completes.
    run_now(c).await;
    t.drain_jobs().await;
    let row = completed_run(c).await;
    assert!(row.contains("2 of 2 received"), "{row}");
    assert!(row.contains(" → "), "the window read: {row}");
    for count in [
        "created 2",
        "tokenised 1",
        "failed 1",
        "duplicates 0",
        "held 0",
    ] {
        assert!(row.contains(count), "{count}: {row}");
    }
    let received = c
        .find(Locator::Css("#mts-runs tbody tr progress"))
        .await
        .expect("bar");
    assert_eq!(
        received.attr("value").await.expect("value").as_deref(),
        Some("2")
    );
    assert_eq!(
        received.attr("max").await.expect("max").as_deref(),
        Some("2")
    );
    let watermark = text_of(c, "#odk-watermark").await.unwrap_or_default();
    assert!(watermark.contains("have been imported"), "{watermark}");

    // The submissions: both created, the failed one with its error, each linked to its
    // registrant.
    let table = eventually("the submissions", 10, || {
        text_of(c, "#odk-submissions-table")
    })
    .await;
    assert!(table.contains(ok) && table.contains(bad), "{table}");
    assert!(
        table.contains("created") && table.contains("IDA-DEA-001"),
        "{table}"
    );
    let (_, subs) = t
        .get(
            &format!("/api/v1/mts/connectors/{cid}/submissions?outcome=created"),
            &t.viewer,
        )
        .await;
    let registrant = subs
        .as_array()
        .and_then(|a| a.iter().find(|s| s["instance_id"] == ok))
        .and_then(|s| s["registrant_id"].as_i64())
        .expect("registrant of the created submission");
    let links: Vec<String> = {
        let mut out = Vec::new();
        for a in c
            .find_all(Locator::Css("#odk-submissions-table tbody a"))
            .await
            .expect("links")
        {
            out.push(a.attr("href").await.expect("href").unwrap_or_default());
        }
        out
    };
    assert!(
        links.contains(&format!("/registrants/{registrant}")),
        "{links:?}"
    );

    // The filter: only held submissions (none).
    by_label(c, "Outcome")
        .await
        .select_by_value("held")
        .await
        .expect("outcome");
    click(c, Locator::Id("odk-filter-apply")).await;
    let none = eventually("the filtered list", 10, || {
        text_of(c, "#odk-no-submissions")
    })
    .await;
    assert_eq!(none, "No submissions with this outcome.");
    let url = c.current_url().await.expect("url");
    assert_eq!(url.query(), Some("outcome=held"));

    // The same window again through the manual window form: nothing new, nothing changed.
    let local = "%Y-%m-%dT%H:%M:%S";
    let from = (Utc::now() - TimeDelta::hours(1)).format(local).to_string();
    let until = Utc::now().format(local).to_string();
    for (id, v) in [("window-start", &from), ("window-end", &until)] {
        c.execute(
            "document.getElementById(arguments[0]).value = arguments[1];",
            vec![json!(id), json!(v)],
        )
        .await
        .expect("set the window");
    }
    assert_eq!(value_of(c, "From (UTC)").await, from);
    click(c, Locator::Id("mts-run-window")).await;
    eventually("the queued window", 10, || async {
        let notice = text_of(c, ".notice").await?;
        (notice == "Run of the window queued.").then_some(())
    })
    .await;
    t.drain_jobs().await;
    let row = eventually("the completed window", 30, || async {
        let row = text_of(c, "#mts-runs tbody tr").await?;
        (row.contains("manual") && row.contains("completed")).then_some(row)
    })
    .await;
    assert!(row.contains("2 of 2 received"), "{row}");
    assert!(
        row.contains("unchanged 2") && row.contains("created 0"),
        "{row}"
    );
}
