//! The web console: plain HTTP checks of sessions, CSRF, roles, masking and headers, then one
//! walk through the console in headless Chromium (sign in, filter, open a registrant).
//!
//! The browser test needs `/usr/bin/chromedriver` and `/usr/bin/chromium`; without them it prints
//! "SKIPPING browser test" and passes, unless `G2P_REQUIRE_BROWSER=1` (CI), where it fails.

// Test helpers, not only `#[test]` functions, may fail loudly.
#![allow(clippy::expect_used, clippy::panic)]

use fantoccini::{Client, Locator};
use g2p_store::Backend;
use g2p_store::jobs::NewJob;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::browser::{
    self, SIGN_IN, by_label, click, csrf_of, eventually, get_fragment, get_page, location,
    post_form, sign_in, type_into, wait_path,
};
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
    let (_, frag) = get_fragment(&t, "/jobs", &admin).await;
    assert!(
        frag.starts_with(r#"<div id="jobs""#) && frag.contains("queued"),
        "{frag}"
    );
    t.stop().await;
}

// ------------------------------------------------------------------ browser

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

/// Types `filter` into the (empty) filter field and applies it.
async fn apply_filter(c: &Client, filter: &str) {
    by_label(c, "Filter")
        .await
        .send_keys(filter)
        .await
        .expect("type filter");
    click(c, Locator::Css("form[role=search] button[type=submit]")).await;
}

#[tokio::test]
async fn console_in_a_browser() {
    if !browser::available() {
        return;
    }
    let t = TestApp::spawn(Backend::Sqlite).await.expect("app");
    let s = seed(&t).await;
    let outcome = browser::session(|c| browse(c, &t, &s)).await;
    t.stop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn browse(c: Client, t: &TestApp, s: &Seeded) {
    let c = &c;
    // A wrong key is refused.
    c.goto(&t.url("/login")).await.expect("login page");
    type_into(c, "API key", "g2p_this-is-not-a-key").await;
    click(c, SIGN_IN).await;
    let alert = eventually("the sign-in error", 10, || async {
        c.find(Locator::Css("[role=alert]")).await.ok()
    })
    .await;
    assert!(alert.text().await.expect("text").contains("not valid"));
    assert_eq!(c.current_url().await.expect("url").path(), "/login");

    // The viewer's key signs in and lands on the registrant list.
    type_into(c, "API key", &t.viewer).await;
    click(c, SIGN_IN).await;
    wait_path(c, "the registrant list", "/registrants").await;
    let all = result_names(c).await;
    assert!(all.len() >= 4, "everyone is listed first: {all:?}");
    let source = c.source().await.expect("source");
    assert!(source.contains("test-viewer"), "signed-in key shown");

    // A marker on the window survives only if htmx swaps the table instead of reloading.
    c.execute("window.g2pMarker = 'kept'; return null;", vec![])
        .await
        .expect("set marker");

    // Filter by ID type: exactly the VID holder remains.
    apply_filter(c, r#"[["reg_ids.id_type","=like","MOSIP VID"]]"#).await;
    let names = eventually("the filtered table", 10, || async {
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
    click(c, Locator::LinkText("Amina Diallo")).await;
    let path = format!("/registrants/{}", s.vid_holder);
    wait_path(c, "the detail page", &path).await;
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
    apply_filter(c, r#"[["no_such_field","=",1]]"#).await;
    let error = eventually("the filter error", 10, || async {
        let e = c.find(Locator::Id("filter-error")).await.ok()?;
        e.text().await.ok()
    })
    .await;
    assert!(
        error.contains("Invalid filter") && error.contains("term 0"),
        "{error}"
    );

    // Signing out returns to the sign-in page.
    click(c, Locator::Css("header form button[type=submit]")).await;
    wait_path(c, "the sign-in page", "/login").await;
}
