//! ODK MTS Connector end to end over real HTTP: g2p (API, worker, receiver), `g2p_mts`
//! pulling from `g2p_sim::odk` (ODK Central) on their own sockets, on SQLite and PostgreSQL.

use chrono::{DateTime, TimeDelta, Utc};
use g2p_sim::odk::{DEFAULT_EMAIL, DEFAULT_PASSWORD, OdkSim, REGISTRATION_FORM};
use serde_json::{Value, json};

use g2p::demo_odk::{REGISTRATION_OUTPUT_FORMAT, registration_mapping};

use crate::helpers::TestApp;
use crate::mts_callbacks::{Relay, deliver};
use crate::mts_connector::{start_mts, wait_run};

pub(crate) fn submission(given: &str, vid: &str) -> Value {
    json!({"given_name": given, "family_name": "Odhiambo", "gender": "female",
           "birth_date": "1991-04-12", "phone": "+254700000001", "vid": vid,
           "household_size": "4", "address": {"district": "Kisumu", "village": "Kanyakwar"},
           "meta": {}})
}

pub(crate) async fn start_odk() -> (OdkSim, String) {
    let sim = OdkSim::generate(3, 0, Utc::now() - TimeDelta::days(1), TimeDelta::minutes(1));
    let (addr, _task) = g2p_sim::odk::serve(sim.clone(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("odk");
    (sim, format!("http://{addr}"))
}

pub(crate) async fn odk_connector(
    t: &TestApp,
    mts_url: &str,
    odk_url: &str,
    start: DateTime<Utc>,
) -> i64 {
    let (st, c) = t
        .post(
            "/api/v1/mts/connectors",
            &t.admin,
            json!({
                "name": "odk registrations", "mts_url": mts_url, "input_type": "odk",
                "job_type": "recurring", "interval_minutes": 60,
                "callback_url": format!("{}/api/v1/mts/callbacks/0", t.base),
                "callback_password": "correct horse battery",
                "mapping": registration_mapping(),
                "output_format": REGISTRATION_OUTPUT_FORMAT,
                "odk_base_url": odk_url, "odk_project_id": 1, "odk_form_id": REGISTRATION_FORM,
                "odk_email": DEFAULT_EMAIL, "odk_password": DEFAULT_PASSWORD,
                "odk_start": start.to_rfc3339(), "odk_overlap_minutes": 10,
            }),
        )
        .await;
    assert_eq!(st, 201, "{c}");
    assert!(c.get("odk_password").is_none(), "secret never returned");
    let cid = c["id"].as_i64().expect("id");
    patch(
        t,
        cid,
        json!({"callback_url": format!("{}/api/v1/mts/callbacks/{cid}", t.base)}),
    )
    .await;
    cid
}

async fn patch(t: &TestApp, cid: i64, body: Value) {
    let (st, c) = t
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/mts/connectors/{cid}"),
            &t.admin,
            Some(body),
        )
        .await;
    assert_eq!(st, 200, "{c}");
}

/// Runs (the delta, or the body's manual window) and waits for every result.
pub(crate) async fn run(t: &TestApp, cid: i64, body: Value) -> Value {
    let (st, run) = t
        .post(
            &format!("/api/v1/mts/connectors/{cid}/runs"),
            &t.admin,
            body,
        )
        .await;
    assert_eq!(st, 202, "{run}");
    t.drain_jobs().await;
    wait_run(t, run["id"].as_i64().expect("run id")).await
}

/// Runs and returns the run as it ended (failed runs included).
async fn run_ending(t: &TestApp, cid: i64) -> Value {
    let (st, run) = t
        .post(
            &format!("/api/v1/mts/connectors/{cid}/runs"),
            &t.admin,
            json!({}),
        )
        .await;
    assert_eq!(st, 202, "{run}");
    t.drain_jobs().await;
    let (_, v) = t
        .get(&format!("/api/v1/mts/runs/{}", run["id"]), &t.viewer)
        .await;
    v
}

async fn watermark(t: &TestApp, cid: i64) -> Value {
    let (_, c) = t
        .get(&format!("/api/v1/mts/connectors/{cid}"), &t.viewer)
        .await;
    c["watermark"].clone()
}

/// The submissions of connector `cid` as the API lists them (`query` after the `?`).
pub(crate) async fn submissions(t: &TestApp, cid: i64, query: &str) -> Vec<Value> {
    let (st, v) = t
        .get(
            &format!("/api/v1/mts/connectors/{cid}/submissions?{query}"),
            &t.viewer,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v.as_array().expect("list").clone()
}

async fn registrant_ids(t: &TestApp, id: &Value) -> Vec<(String, String)> {
    crate::mts_connector::ids(t, id.as_i64().expect("a registrant id")).await
}

async fn registrant_count(t: &TestApp) -> usize {
    let (_, v) = t.get("/api/v1/registrants?limit=500", &t.viewer).await;
    v["items"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn imports_odk_submissions_by_window_without_duplicates() {
    let (mts, mts_url) = start_mts().await;
    for t in TestApp::all().await {
        let (odk, odk_url) = start_odk().await;
        let now = Utc::now();
        let start = now - TimeDelta::hours(3);
        let s1 = odk
            .add_submission(
                1,
                REGISTRATION_FORM,
                submission("Akinyi", "1234567890123456"),
                now - TimeDelta::minutes(90),
            )
            .expect("s1");
        // 9999…: the mock authenticator answers IDA-DEA-001.
        let s2 = odk
            .add_submission(
                1,
                REGISTRATION_FORM,
                submission("Achieng", "9999000011112222"),
                now - TimeDelta::minutes(80),
            )
            .expect("s2");
        // Before the connector's start: never imported by the recurring runs.
        odk.add_submission(
            1,
            REGISTRATION_FORM,
            submission("Old", "1111222233334444"),
            now - TimeDelta::hours(4),
        )
        .expect("old");
        let cid = odk_connector(&t, &mts_url, &odk_url, start).await;
        assert_eq!(watermark(&t, cid).await, Value::Null);
        // Callbacks pass through a relay that keeps them, to be delivered again below.
        let relay = Relay::start(&t.base).await;
        patch(
            &t,
            cid,
            json!({"callback_url": format!("{}/api/v1/mts/callbacks/{cid}", relay.base)}),
        )
        .await;

        // First run: [start, now).
        let done = run(&t, cid, json!({})).await;
        assert_eq!(done["sent"], 2, "{done}");
        assert_eq!(
            (
                &done["odk"]["created"],
                &done["odk"]["tokenised"],
                &done["odk"]["failed"]
            ),
            (&json!(2), &json!(1), &json!(1)),
            "{done}"
        );
        let first_run = done["id"].clone();
        let wm1 = watermark(&t, cid).await;
        assert!(wm1.is_string(), "the watermark moved: {wm1}");
        let subs = submissions(&t, cid, "").await;
        let by_id = |id: &str| {
            subs.iter()
                .find(|s| s["instance_id"] == id)
                .cloned()
                .expect("row")
        };
        let r1 = by_id(&s1)["registrant_id"].clone();
        let r2 = by_id(&s2)["registrant_id"].clone();
        let ids1 = registrant_ids(&t, &r1).await;
        assert_eq!(ids1.len(), 2, "{ids1:?}");
        assert_eq!(
            ids1[0],
            (
                "MOSIP AUTH TOKEN".to_owned(),
                g2p_mts::mock_token("1234567890123456", "mpartner-default-mosip")
            )
        );
        assert_eq!(ids1[1], ("ODK INSTANCE ID".to_owned(), s1.clone()));
        let ids2 = registrant_ids(&t, &r2).await;
        assert!(
            ids2.contains(&("MOSIP VID".to_owned(), "9999000011112222".to_owned())),
            "a failure keeps its VID: {ids2:?}"
        );
        assert_eq!(by_id(&s2)["error_code"], "IDA-DEA-001");
        let (_, reg) = t.get(&format!("/api/v1/registrants/{r1}"), &t.viewer).await;
        assert_eq!(reg["given_name"], "Akinyi", "{reg}");
        assert_eq!(reg["address"], "Kanyakwar, Kisumu", "{reg}");
        assert_eq!(reg["attributes"]["household_size"], 4, "{reg}");
        assert_eq!(registrant_count(&t).await, 2);

        // The first run's callbacks delivered again: acknowledged, nothing changes.
        let before = submissions(&t, cid, "").await;
        for d in relay.take() {
            let (st, body) = deliver(&t.client, &t.base, &d).await;
            assert_eq!(st, 200);
            let report: Value = serde_json::from_slice(&body).expect("report");
            assert_eq!(report["created"], 0, "{report}");
            assert_eq!(report["updated"], 0, "{report}");
        }
        assert_eq!(registrant_count(&t).await, 2, "replays duplicate nobody");
        let after: Vec<Value> = submissions(&t, cid, "").await;
        assert_eq!(
            after
                .iter()
                .map(|s| &s["registrant_id"])
                .collect::<Vec<_>>(),
            before
                .iter()
                .map(|s| &s["registrant_id"])
                .collect::<Vec<_>>()
        );
        assert_eq!(registrant_ids(&t, &r1).await, ids1);

        // The next run takes only newer submissions (the overlap re-reads nothing older).
        odk.add_submission(
            1,
            REGISTRATION_FORM,
            submission("Atieno", "2234567890123456"),
            Utc::now(),
        )
        .expect("s3");
        let done = run(&t, cid, json!({})).await;
        assert_eq!(done["sent"], 1, "{done}");
        assert_eq!(done["odk"]["created"], 1, "{done}");
        assert_eq!(registrant_count(&t).await, 3);
        let wm2 = watermark(&t, cid).await;
        assert!(wm2.as_str() > wm1.as_str(), "{wm1} {wm2}");

        // A manual import of a past window takes exactly that window; re-reading submissions
        // already imported creates nobody.
        let done = run(
            &t,
            cid,
            json!({"window_start": (now - TimeDelta::minutes(95)).to_rfc3339(),
                   "window_end": (now - TimeDelta::minutes(85)).to_rfc3339()}),
        )
        .await;
        assert_eq!(done["sent"], 1, "{done}");
        assert_eq!(done["odk"]["received"], 1, "{done}");
        assert_eq!(done["odk"]["created"], 0, "{done}");
        assert_eq!(
            watermark(&t, cid).await,
            wm2,
            "a manual window leaves the watermark"
        );
        let done = run(
            &t,
            cid,
            json!({"window_start": start.to_rfc3339(), "window_end": Utc::now().to_rfc3339()}),
        )
        .await;
        assert_eq!(done["sent"], 3, "{done}");
        assert_eq!(done["odk"]["created"], 0, "{done}");
        assert_eq!(
            registrant_count(&t).await,
            3,
            "re-running a window duplicates nobody"
        );
        // Each run keeps its own counts when a later window reads its submissions again.
        let (_, first) = t
            .get(&format!("/api/v1/mts/runs/{first_run}"), &t.viewer)
            .await;
        assert_eq!(first["odk"]["created"], 2, "{first}");
        assert_eq!(first["odk"]["received"], 2, "{first}");
        assert_eq!(done["odk"]["unchanged"], 3, "{done}");
        assert_eq!(registrant_ids(&t, &r1).await, ids1, "nothing changed");

        // The same person submitted twice: the second is flagged, not made a second person.
        let s4 = odk
            .add_submission(
                1,
                REGISTRATION_FORM,
                submission("Akinyi A.", "1234567890123456"),
                Utc::now(),
            )
            .expect("s4");
        let done = run(&t, cid, json!({})).await;
        assert_eq!(done["odk"]["duplicates"], 1, "{done}");
        let dups = submissions(&t, cid, "outcome=duplicate").await;
        assert_eq!(dups.len(), 1, "{dups:?}");
        assert_eq!(dups[0]["instance_id"], s4);
        assert_eq!(dups[0]["duplicate_of"], r1);
        assert_eq!(registrant_count(&t).await, 3);

        // MTS refuses the request: the run fails, the watermark stays, and the next run
        // (MTS back) takes the window again.
        let wm3 = watermark(&t, cid).await;
        let s5 = odk
            .add_submission(
                1,
                REGISTRATION_FORM,
                submission("Awino", "3234567890123456"),
                Utc::now(),
            )
            .expect("s5");
        let refusing = refusing_mts().await;
        patch(&t, cid, json!({"mts_url": refusing})).await;
        let failed = run_ending(&t, cid).await;
        assert_eq!(failed["status"], "failed", "{failed}");
        assert!(
            failed["error"]
                .as_str()
                .unwrap_or_default()
                .contains("ATS-REQ-102"),
            "{failed}"
        );
        assert_eq!(watermark(&t, cid).await, wm3);
        patch(&t, cid, json!({"mts_url": mts_url})).await;
        let done = run(&t, cid, json!({})).await;
        assert_eq!(done["odk"]["created"], 1, "{done}");
        assert!(
            submissions(&t, cid, "outcome=created")
                .await
                .iter()
                .any(|s| s["instance_id"] == s5)
        );

        // Wrong ODK credentials: a clear run error, nothing imported, the watermark unchanged.
        let wm4 = watermark(&t, cid).await;
        patch(&t, cid, json!({"odk_password": "not the password"})).await;
        odk.add_submission(
            1,
            REGISTRATION_FORM,
            submission("Adhiambo", "4234567890123456"),
            Utc::now(),
        )
        .expect("s6");
        let failed = run_ending(&t, cid).await;
        assert_eq!(failed["status"], "failed", "{failed}");
        assert!(
            failed["error"]
                .as_str()
                .unwrap_or_default()
                .contains("refused the credentials"),
            "{failed}"
        );
        assert_eq!(watermark(&t, cid).await, wm4);
        assert_eq!(registrant_count(&t).await, 4);
        relay.task.abort();
        t.stop().await;
    }
    mts.shutdown().await;
}

/// An MTS that refuses every request as invalid.
async fn refusing_mts() -> String {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"errors": [{"errorCode": "ATS-REQ-102",
                "errorMessage": "invalid input"}], "response": null})),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// The household example of `docs/odk-connector.md`: the head is authenticated; the household
/// and its other members come from the same submission.
pub(crate) const HOUSEHOLD_OUTPUT_FORMAT: &str = r#"{instance_id: .input.__id, submission_date: .input.__system.submissionDate, status: .output.status, token: .output.token, errorCode: .output.errorCode, errorMessage: .output.errorMessage, vid: .input.head.vid, registrant: {given_name: .input.head.given_name, family_name: .input.head.family_name, gender: .input.head.gender, birthdate: .input.head.birth_date, address: .input.village}, group: {is_group: true, name: .input.household_name, address: .input.village}, members: [.input.member_1, .input.member_2 | select(. != null and .given_name != null) | {given_name: .given_name, family_name: .family_name, gender: .gender, birthdate: .birth_date}]}"#;

fn household_form() -> g2p_sim::odk::FormSpec {
    use g2p_sim::odk::Field;
    let mut fields = vec![
        Field::new("/household_name", "string"),
        Field::new("/village", "string"),
    ];
    for group in ["head", "member_1", "member_2"] {
        fields.push(Field::new(&format!("/{group}"), "structure"));
        for (f, kind) in [
            ("given_name", "string"),
            ("family_name", "string"),
            ("gender", "string"),
            ("birth_date", "date"),
        ] {
            fields.push(Field::new(&format!("/{group}/{f}"), kind));
        }
    }
    fields.push(Field::new("/head/vid", "string"));
    fields.push(Field::new("/meta", "structure"));
    fields.push(Field::new("/meta/instanceID", "string"));
    g2p_sim::odk::FormSpec {
        xml_form_id: "household".to_owned(),
        name: Some("Household Registration".to_owned()),
        version: "1".to_owned(),
        fields,
    }
}

#[tokio::test]
async fn household_forms_make_groups_and_failures_can_be_held() {
    let (mts, mts_url) = start_mts().await;
    for t in TestApp::all().await {
        let (odk, odk_url) = start_odk().await;
        odk.add_form(1, household_form()).expect("form");
        let now = Utc::now();
        let hh = odk
            .add_submission(
                1,
                "household",
                json!({"household_name": "Otieno household", "village": "Kanyakwar",
                    "head": {"given_name": "Juma", "family_name": "Otieno", "gender": "male",
                             "birth_date": "1980-02-03", "vid": "5234567890123456"},
                    "member_1": {"given_name": "Aoko", "family_name": "Otieno",
                                 "gender": "female", "birth_date": "2010-06-07"},
                    "member_2": {},
                    "meta": {}}),
                now - TimeDelta::minutes(5),
            )
            .expect("household");
        let cid = odk_connector(&t, &mts_url, &odk_url, now - TimeDelta::hours(1)).await;
        patch(
            &t,
            cid,
            json!({"odk_form_id": "household", "output_format": HOUSEHOLD_OUTPUT_FORMAT,
                   "mapping": {"vid": "head.vid", "name": ["head.given_name", "head.family_name"],
                               "gender": "head.gender", "dob": "head.birth_date",
                               "fullAddress": ["village"]}}),
        )
        .await;
        let done = run(&t, cid, json!({})).await;
        assert_eq!(done["odk"]["created"], 1, "{done}");
        let subs = submissions(&t, cid, "").await;
        assert_eq!(subs[0]["instance_id"], hh);
        let head = subs[0]["registrant_id"].clone();
        let (_, detail) = t
            .get(&format!("/api/v1/registrants/{head}"), &t.viewer)
            .await;
        assert_eq!(detail["given_name"], "Juma", "{detail}");
        let memberships = detail["memberships"].as_array().expect("memberships");
        assert_eq!(memberships.len(), 1, "{detail}");
        let group = memberships[0]["group_id"].clone();
        let (_, g) = t
            .get(&format!("/api/v1/registrants/{group}"), &t.viewer)
            .await;
        assert_eq!(g["is_group"], true, "{g}");
        assert_eq!(g["name"], "Otieno household", "{g}");
        let members = g["memberships"].as_array().expect("members");
        assert_eq!(
            members.len(),
            2,
            "head and one member (the empty slot is no one): {g}"
        );
        // Run again over the same window: nobody new, the group keeps its two members.
        run(
            &t,
            cid,
            json!({"window_start": (now - TimeDelta::hours(1)).to_rfc3339(),
                            "window_end": Utc::now().to_rfc3339()}),
        )
        .await;
        assert_eq!(registrant_count(&t).await, 3);

        // Failed authentications held for review: no registrant is made.
        patch(&t, cid, json!({"odk_hold_failed": true})).await;
        let held = odk
            .add_submission(
                1,
                "household",
                json!({"household_name": "Ouma household", "village": "Nyalenda",
                    "head": {"given_name": "Ouma", "family_name": "Okoth", "gender": "male",
                             "birth_date": "1975-01-01", "vid": "9999123412341234"},
                    "meta": {}}),
                Utc::now(),
            )
            .expect("held");
        let done = run(&t, cid, json!({})).await;
        assert_eq!(done["odk"]["held"], 1, "{done}");
        let rows = submissions(&t, cid, "outcome=held").await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["instance_id"], held);
        assert_eq!(rows[0]["error_code"], "IDA-DEA-001");
        assert_eq!(rows[0]["registrant_id"], Value::Null);
        assert_eq!(registrant_count(&t).await, 3);
        t.stop().await;
    }
    mts.shutdown().await;
}

#[tokio::test]
async fn switching_to_odk_input_needs_the_odk_password() {
    for t in TestApp::all().await {
        let (st, c) = t
            .post(
                "/api/v1/mts/connectors",
                &t.admin,
                json!({"name": "registry first", "callback_url": "http://127.0.0.1:1/cb"}),
            )
            .await;
        assert_eq!(st, 201, "{c}");
        let cid = c["id"].as_i64().expect("id");
        let odk = json!({"input_type": "odk", "job_type": "recurring",
                         "odk_base_url": "http://127.0.0.1:2",
                         "odk_project_id": 1, "odk_form_id": "f", "odk_email": "a@b.test"});
        let (st, e) = t
            .call(
                reqwest::Method::PATCH,
                &format!("/api/v1/mts/connectors/{cid}"),
                &t.admin,
                Some(odk.clone()),
            )
            .await;
        assert_eq!(st, 422, "{e}");
        assert!(e.to_string().contains("odk_password"), "{e}");
        let mut with_password = odk;
        with_password["odk_password"] = json!("secret");
        patch(&t, cid, with_password).await;
        // Stored now: later updates need not repeat it.
        patch(&t, cid, json!({"odk_overlap_minutes": 5})).await;
        t.stop().await;
    }
}
