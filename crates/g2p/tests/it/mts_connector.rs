//! Registry MTS Connector end to end over real HTTP: g2p (API, worker via `drain_jobs`, callback
//! receiver) and `g2p_mts` on its own socket, on SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use g2p_mts::{MockAuthenticator, MtsConfig, MtsService, mock_token};
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// The jq pool of an in-process `g2p mts`: this test binary is not g2p, so its workers are the
/// g2p binary's (`g2p mts jq-worker`).
pub(crate) fn jq_workers() -> g2p_mts::JqSettings {
    g2p_mts::JqSettings {
        worker_program: Some(env!("CARGO_BIN_EXE_g2p").into()),
        ..g2p_mts::JqSettings::default()
    }
}

/// `g2p mts` in-process on a free port (mock authenticator with its default failures).
pub(crate) async fn start_mts() -> (MtsService, String) {
    let cfg = MtsConfig {
        poll_interval: Duration::from_millis(50),
        jq: jq_workers(),
        ..MtsConfig::default()
    };
    let auth = MockAuthenticator::new("mpartner-default-mosip").with_default_failures();
    let svc = MtsService::start(cfg, "sqlite::memory:", Arc::new(auth))
        .await
        .expect("mts");
    let (addr, _) = svc
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    (svc, format!("http://{addr}"))
}

/// An individual MTS accepts (name, gender, birth date, address) holding `vid`.
pub(crate) async fn person(t: &TestApp, n: usize, vid: &str) -> i64 {
    t.create_individual(json!({
        "given_name": format!("Ana{n}"), "family_name": "Diaz", "gender": "Female",
        "birthdate": "1990-01-31", "address": "1 Main St",
        "ids": [{"id_type": "MOSIP VID", "value": vid}],
    }))
    .await
}

pub(crate) async fn ids(t: &TestApp, id: i64) -> Vec<(String, String)> {
    let (st, v) = t
        .get(&format!("/api/v1/registrants/{id}/ids"), &t.viewer)
        .await;
    assert_eq!(st, 200, "{v}");
    let mut out: Vec<(String, String)> = v
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| {
            (
                i["id_type"].as_str().unwrap_or_default().to_owned(),
                i["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Waits until the run has no callback owed.
pub(crate) async fn wait_run(t: &TestApp, run: i64) -> Value {
    let start = Instant::now();
    loop {
        let (st, v) = t.get(&format!("/api/v1/mts/runs/{run}"), &t.viewer).await;
        assert_eq!(st, 200, "{v}");
        if v["status"] == "completed" {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "run not completed: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tokenises_registrants_through_mts_callbacks() {
    let (mts, mts_url) = start_mts().await;
    for t in TestApp::all().await {
        for (auth_type, bulk) in [
            ("staticBearer", false),
            ("staticBearer", true),
            ("odoo", false),
            ("odoo", true),
        ] {
            let ok = person(&t, 1, &format!("{}1{auth_type}", 4000 + usize::from(bulk))).await;
            // 9999…: the mock answers IDA-DEA-001.
            let bad = person(
                &t,
                2,
                &format!("9999{}{}", usize::from(bulk), auth_type.len()),
            )
            .await;
            // No address: MTS finds the record invalid (fullAddress is mandatory).
            let invalid = t
                .create_individual(json!({
                    "given_name": "No", "family_name": "Address", "gender": "Female",
                    "birthdate": "1990-01-31",
                    "ids": [{"id_type": "MOSIP VID", "value":
                        format!("77{}{}", usize::from(bulk), auth_type.len())}],
                }))
                .await;
            let (st, c) = t
                .post(
                    "/api/v1/mts/connectors",
                    &t.admin,
                    json!({
                        "name": format!("registry {auth_type} {bulk}"),
                        "mts_url": mts_url,
                        "callback_url": format!("{}/api/v1/mts/callbacks/0", t.base),
                        "callback_auth_type": auth_type,
                        "callback_password": "correct horse battery",
                        "call_in_bulk": bulk,
                        "filter": [["id", "in", [ok, bad, invalid]]],
                    }),
                )
                .await;
            assert_eq!(st, 201, "{c}");
            assert!(
                c.get("callback_password").is_none(),
                "secret never returned"
            );
            assert_eq!(c["callback_password_set"], true);
            let cid = c["id"].as_i64().expect("id");
            // The receiver of this connector.
            let (st, c) = t
                .call(
                    reqwest::Method::PATCH,
                    &format!("/api/v1/mts/connectors/{cid}"),
                    &t.admin,
                    Some(json!({"callback_url":
                        format!("{}/api/v1/mts/callbacks/{cid}", t.base)})),
                )
                .await;
            assert_eq!(st, 200, "{c}");

            let (st, run) = t
                .post(
                    &format!("/api/v1/mts/connectors/{cid}/runs"),
                    &t.admin,
                    json!({}),
                )
                .await;
            assert_eq!(st, 202, "{run}");
            let run_id = run["id"].as_i64().expect("run id");
            t.drain_jobs().await;
            let done = wait_run(&t, run_id).await;
            assert_eq!(done["sent"], 3, "{done}");
            assert_eq!(done["progress"]["processed"], 1, "{done}");
            assert_eq!(done["progress"]["failed"], 2, "{done}");

            let vid = format!("{}1{auth_type}", 4000 + usize::from(bulk));
            assert_eq!(
                ids(&t, ok).await,
                vec![(
                    "MOSIP AUTH TOKEN".to_owned(),
                    mock_token(&vid, "mpartner-default-mosip")
                )],
                "token stored, VID removed"
            );
            let kept = ids(&t, bad).await;
            assert_eq!(kept.len(), 1);
            assert_eq!(kept[0].0, "MOSIP VID", "a failure keeps its VID");
            let (_, f) = t
                .get(&format!("/api/v1/mts/connectors/{cid}/failures"), &t.viewer)
                .await;
            assert_eq!(f[0]["registrant_id"], bad, "{f}");
            assert_eq!(f[0]["error_code"], "IDA-DEA-001", "{f}");
            assert_eq!(f[1]["registrant_id"], invalid, "{f}");
            assert!(
                f[1]["error_code"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("ATS-REQ-"),
                "{f}"
            );
            assert_eq!(ids(&t, invalid).await.len(), 1, "invalid: IDs untouched");

            // The next delta takes nothing: one done, one failed and not yet due.
            let (st, run) = t
                .post(
                    &format!("/api/v1/mts/connectors/{cid}/runs"),
                    &t.admin,
                    json!({}),
                )
                .await;
            assert_eq!(st, 202, "{run}");
            t.drain_jobs().await;
            let done = wait_run(&t, run["id"].as_i64().expect("id")).await;
            assert_eq!(done["sent"], 0, "{done}");

            // The receiver refuses a wrong secret and an unknown reference.
            let r = t
                .client
                .post(t.url(&format!("/api/v1/mts/callbacks/{cid}")))
                .bearer_auth("wrong secret")
                .json(&json!({"ref": "x", "status": "processed", "token": "t"}))
                .send()
                .await
                .expect("call");
            assert_eq!(r.status(), 401);
            if auth_type == "staticBearer" {
                let r = t
                    .client
                    .post(t.url(&format!("/api/v1/mts/callbacks/{cid}")))
                    .bearer_auth("correct horse battery")
                    .json(&json!({"ref": "unknown", "status": "processed", "token": "t"}))
                    .send()
                    .await
                    .expect("call");
                assert_eq!(r.status(), 422);
            }
        }
        t.stop().await;
    }
    mts.shutdown().await;
}

async fn connector(t: &TestApp, name: &str, mts_url: &str, extra: Value) -> i64 {
    let mut body = json!({
        "name": name, "mts_url": mts_url,
        "callback_url": format!("{}/api/v1/mts/callbacks/0", t.base),
        "callback_password": "correct horse battery",
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (st, c) = t.post("/api/v1/mts/connectors", &t.admin, body).await;
    assert_eq!(st, 201, "{c}");
    let cid = c["id"].as_i64().expect("id");
    let (st, c) = t
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/mts/connectors/{cid}"),
            &t.admin,
            Some(json!({"callback_url": format!("{}/api/v1/mts/callbacks/{cid}", t.base)})),
        )
        .await;
    assert_eq!(st, 200, "{c}");
    cid
}

async fn has_token(t: &TestApp, id: i64) -> bool {
    ids(t, id)
        .await
        .iter()
        .any(|(k, _)| k == "MOSIP AUTH TOKEN")
}

async fn wait_token(t: &TestApp, id: i64) {
    let start = Instant::now();
    while !has_token(t, id).await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no token for {id}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn enqueue(t: &TestApp, kind: &str, payload: Value) {
    t.app
        .store
        .enqueue(g2p_store::jobs::NewJob::new(kind, payload))
        .await
        .expect("enqueue");
}

#[tokio::test]
async fn recurring_connector_takes_only_the_delta_until_stopped() {
    let (mts, mts_url) = start_mts().await;
    for t in TestApp::all().await {
        let first = person(&t, 1, "6000001").await;
        let cid = connector(
            &t,
            "recurring",
            &mts_url,
            json!({"job_type": "recurring", "interval_minutes": 60,
                   "filter": [["family_name", "=", "Diaz"]]}),
        )
        .await;
        let (st, run) = t
            .post(
                &format!("/api/v1/mts/connectors/{cid}/start"),
                &t.admin,
                json!({}),
            )
            .await;
        assert_eq!(st, 202, "{run}");
        t.drain_jobs().await;
        wait_run(&t, run["id"].as_i64().expect("id")).await;
        assert!(has_token(&t, first).await);
        let (_, s) = t.get("/api/v1/schedules", &t.admin).await;
        assert!(
            s.to_string().contains(&format!("mts-connector-{cid}")),
            "a schedule per running connector: {s}"
        );

        // The next tick takes only the new registrant.
        let second = person(&t, 2, "6000002").await;
        enqueue(&t, "mts.tick", json!({"connector_id": cid})).await;
        t.drain_jobs().await;
        wait_token(&t, second).await;
        let (_, runs) = t
            .get(&format!("/api/v1/mts/connectors/{cid}/runs"), &t.viewer)
            .await;
        assert_eq!(runs[0]["sent"], 1, "{runs}");
        assert_eq!(runs[0]["kind"], "delta");

        // Stopped: ticks do nothing, the schedule is gone.
        let (st, c) = t
            .post(
                &format!("/api/v1/mts/connectors/{cid}/stop"),
                &t.admin,
                json!({}),
            )
            .await;
        assert_eq!(st, 200, "{c}");
        assert_eq!(c["state"], "stopped");
        let third = person(&t, 3, "6000003").await;
        enqueue(&t, "mts.tick", json!({"connector_id": cid})).await;
        t.drain_jobs().await;
        assert!(!has_token(&t, third).await);
        let (_, runs) = t
            .get(&format!("/api/v1/mts/connectors/{cid}/runs"), &t.viewer)
            .await;
        assert_eq!(runs.as_array().map(Vec::len), Some(2), "{runs}");
        t.stop().await;
    }
    mts.shutdown().await;
}

/// MTS loses its queue after taking a chunk (restarted on a fresh database): the watchdog's
/// status poll gets 404, and only the unresolved records are sent again.
#[tokio::test]
async fn lost_callbacks_are_recovered_by_status_polling() {
    for t in TestApp::all().await {
        let slow = MtsService::start(
            MtsConfig {
                jq: jq_workers(),
                ..MtsConfig::default()
            },
            "sqlite::memory:",
            Arc::new(MockAuthenticator {
                latency: Duration::from_secs(30),
                ..MockAuthenticator::new("mpartner-default-mosip")
            }),
        )
        .await
        .expect("mts");
        let (addr, _) = slow
            .serve("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("serve");
        let a = person(&t, 1, "7000001").await;
        let cid = connector(
            &t,
            "lossy",
            &format!("http://{addr}"),
            json!({"filter": [["id", "=", a]]}),
        )
        .await;
        let (st, run) = t
            .post(
                &format!("/api/v1/mts/connectors/{cid}/runs"),
                &t.admin,
                json!({}),
            )
            .await;
        assert_eq!(st, 202, "{run}");
        // Callbacks are overdue at once.
        let cfg = g2p::Config {
            mts_callback_deadline_secs: 0,
            ..g2p::Config::default()
        };
        let runner = g2p::job_runner(t.app.store.clone(), &cfg, t.app.state.secrets.clone())
            .expect("job runner");
        runner.drain_until_idle().await.expect("drain");
        // Gone with its queue before any callback.
        slow.simulate_crash().await;
        let (fresh, fresh_url) = start_mts().await;
        let (st, _) = t
            .call(
                reqwest::Method::PATCH,
                &format!("/api/v1/mts/connectors/{cid}"),
                &t.admin,
                Some(json!({"mts_url": fresh_url})),
            )
            .await;
        assert_eq!(st, 200);
        assert!(!has_token(&t, a).await);

        enqueue(&t, "mts.watchdog", json!({})).await;
        runner.drain_until_idle().await.expect("drain");
        wait_token(&t, a).await;
        let (_, runs) = t
            .get(&format!("/api/v1/mts/connectors/{cid}/runs"), &t.viewer)
            .await;
        assert_eq!(runs[0]["kind"], "retry", "{runs}");
        assert_eq!(runs[0]["sent"], 1, "{runs}");
        fresh.shutdown().await;
        t.stop().await;
    }
}

#[tokio::test]
async fn manual_import_by_id_list_and_by_csv() {
    let (mts, mts_url) = start_mts().await;
    for t in TestApp::all().await {
        let a = person(&t, 1, "8100001").await;
        let b = person(&t, 2, "8100002").await;
        let c = person(&t, 3, "8100003").await;
        let cid = connector(&t, "manual", &mts_url, json!({})).await;

        let (st, run) = t
            .post(
                &format!("/api/v1/mts/connectors/{cid}/runs"),
                &t.admin,
                json!({"registrant_ids": [a]}),
            )
            .await;
        assert_eq!(st, 202, "{run}");
        assert_eq!(run["kind"], "manual");
        t.drain_jobs().await;
        let done = wait_run(&t, run["id"].as_i64().expect("id")).await;
        assert_eq!(done["sent"], 1, "{done}");
        assert!(has_token(&t, a).await && !has_token(&t, b).await);

        let r = t
            .request(
                reqwest::Method::POST,
                &format!("/api/v1/mts/connectors/{cid}/runs"),
                Some(&t.admin),
            )
            .header("content-type", "text/csv")
            .body(format!("registrant_id\n{b}\n"))
            .send()
            .await
            .expect("upload");
        let (st, run) = TestApp::parse(r).await;
        assert_eq!(st, 202, "{run}");
        t.drain_jobs().await;
        let done = wait_run(&t, run["id"].as_i64().expect("id")).await;
        assert_eq!(done["sent"], 1, "{done}");
        assert!(has_token(&t, b).await && !has_token(&t, c).await);

        // A bad CSV names its line; nothing is queued.
        let r = t
            .request(
                reqwest::Method::POST,
                &format!("/api/v1/mts/connectors/{cid}/runs"),
                Some(&t.admin),
            )
            .header("content-type", "text/csv")
            .body(format!("{c}\nnot-an-id\n"))
            .send()
            .await
            .expect("upload");
        let (st, v) = TestApp::parse(r).await;
        assert_eq!(st, 422, "{v}");
        assert!(v.to_string().contains("csv.line_2"), "{v}");
        // A registrar may not run connectors.
        let (st, _) = t
            .post(
                &format!("/api/v1/mts/connectors/{cid}/runs"),
                &t.registrar,
                json!({}),
            )
            .await;
        assert_eq!(st, 403);
        t.stop().await;
    }
    mts.shutdown().await;
}

/// Two nodes on one PostgreSQL database: runs asked for at once from both (API, schedule
/// ticks) and workers on both never send a registrant twice.
#[tokio::test]
async fn two_nodes_on_one_postgres_never_submit_a_registrant_twice() {
    let Some(t) = TestApp::spawn(g2p_store::Backend::Postgres).await else {
        return; // no PostgreSQL here (CI requires it: spawn fails there instead)
    };
    let other = g2p::App::start(&t.cfg, None).await.expect("second node");
    let (mts, mts_url) = start_mts().await;
    let n = 120;
    let mut people = Vec::new();
    for i in 0..n {
        people.push(person(&t, i, &format!("82{i:05}")).await);
    }
    let cid = connector(
        &t,
        "two nodes",
        &mts_url,
        json!({"chunk_size": 10, "job_type": "recurring", "interval_minutes": 60,
               "filter": [["family_name", "=", "Diaz"]]}),
    )
    .await;
    // Both nodes asked to run at the same moment: one run, one 409.
    let path = format!("/api/v1/mts/connectors/{cid}/runs");
    let a = t
        .client
        .post(t.url(&path))
        .bearer_auth(&t.admin)
        .json(&json!({}))
        .send();
    let b = t
        .client
        .post(format!("{}{path}", other.url()))
        .bearer_auth(&t.admin)
        .json(&json!({}))
        .send();
    let (a, b) = tokio::join!(a, b);
    let mut codes = [
        a.expect("a").status().as_u16(),
        b.expect("b").status().as_u16(),
    ];
    codes.sort_unstable();
    assert_eq!(codes, [202, 409]);
    t.app
        .store
        .set_mts_connector_state(
            cid,
            g2p_store::mts::ConnectorState::Running,
            &g2p_store::audit::Actor::system("test"),
        )
        .await
        .expect("running");
    for _ in 0..2 {
        enqueue(&t, "mts.tick", json!({"connector_id": cid})).await;
    }
    // Workers on both nodes.
    let ra = g2p::job_runner(t.app.store.clone(), &t.cfg, t.app.state.secrets.clone())
        .expect("job runner");
    let rb = g2p::job_runner(other.store.clone(), &t.cfg, other.state.secrets.clone())
        .expect("job runner");
    let (x, y) = tokio::join!(ra.drain_until_idle(), rb.drain_until_idle());
    x.expect("drain a");
    y.expect("drain b");
    for id in &people {
        wait_token(&t, *id).await;
    }
    let (_, runs) = t
        .get(&format!("/api/v1/mts/connectors/{cid}/runs"), &t.viewer)
        .await;
    let sent: i64 = runs
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["sent"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(sent, n as i64, "each registrant sent once: {runs}");
    other.stop().await;
    t.stop().await;
    mts.shutdown().await;
}
