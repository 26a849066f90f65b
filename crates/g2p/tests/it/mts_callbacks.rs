//! The MTS callback receiver against what real deliveries do: callbacks replayed, results of an
//! earlier send arriving after a newer one, and MTS down when a run submits. Over real HTTP
//! between g2p and `g2p_mts`, on SQLite and PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use g2p_mts::{MockAuthenticator, MtsConfig, MtsService};
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::mts_connector::{person, start_mts};

/// One callback as MTS delivered it.
#[derive(Clone)]
pub(crate) struct Delivery {
    method: Method,
    path: String,
    authorization: Option<String>,
    body: Bytes,
}

impl Delivery {
    fn body_json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON callback")
    }
}

type Seen = Arc<Mutex<Vec<Delivery>>>;

/// A relay between MTS and g2p that forwards every callback and keeps a copy, so that the test
/// can deliver it again later, in any order, exactly as MTS sent it.
pub(crate) struct Relay {
    pub(crate) base: String,
    seen: Seen,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub(crate) async fn start(target: &str) -> Relay {
        let seen: Seen = Arc::default();
        let state = (target.to_owned(), reqwest::Client::new(), seen.clone());
        let app = axum::Router::new().fallback(relay).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("relay");
        });
        Relay { base, seen, task }
    }

    pub(crate) fn take(&self) -> Vec<Delivery> {
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}

async fn relay(
    State((target, client, seen)): State<(String, reqwest::Client, Seen)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Bytes) {
    let d = Delivery {
        method,
        path: uri.path().to_owned(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    };
    seen.lock().expect("lock").push(d.clone());
    let (st, body) = deliver(&client, &target, &d).await;
    (StatusCode::from_u16(st).expect("status"), body)
}

pub(crate) async fn deliver(client: &reqwest::Client, base: &str, d: &Delivery) -> (u16, Bytes) {
    let mut req = client
        .request(d.method.clone(), format!("{base}{}", d.path))
        .header(header::CONTENT_TYPE, "application/json")
        .body(d.body.clone());
    if let Some(a) = &d.authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    let resp = req.send().await.expect("deliver");
    let st = resp.status().as_u16();
    (st, resp.bytes().await.expect("body"))
}

/// Everything a callback can change, as the API shows it: IDs, attributes, failures, audit.
async fn snapshot(t: &TestApp, cid: i64, people: &[i64]) -> Value {
    let mut out = vec![];
    for id in people {
        let (_, ids) = t
            .get(&format!("/api/v1/registrants/{id}/ids"), &t.viewer)
            .await;
        let (_, reg) = t.get(&format!("/api/v1/registrants/{id}"), &t.viewer).await;
        let (_, audit) = t
            .get(&format!("/api/v1/registrants/{id}/audit"), &t.viewer)
            .await;
        out.push(json!({"ids": ids, "attributes": reg["attributes"],
            "version": reg["version"], "audit": audit}));
    }
    let (_, failures) = t
        .get(&format!("/api/v1/mts/connectors/{cid}/failures"), &t.viewer)
        .await;
    json!({"registrants": out, "failures": failures})
}

async fn run_and_wait(t: &TestApp, path: &str) -> Value {
    let (st, run) = t.post(path, &t.admin, json!({})).await;
    assert_eq!(st, 202, "{run}");
    t.drain_jobs().await;
    crate::mts_connector::wait_run(t, run["id"].as_i64().expect("run id")).await
}

async fn connector_via(
    t: &TestApp,
    name: &str,
    mts_url: &str,
    receiver: &str,
    filter: Value,
) -> i64 {
    let (st, c) = t
        .post(
            "/api/v1/mts/connectors",
            &t.admin,
            json!({"name": name, "mts_url": mts_url,
                   "callback_url": format!("{receiver}/api/v1/mts/callbacks/0"),
                   "callback_password": "correct horse battery", "filter": filter,
                   "call_in_bulk": false}),
        )
        .await;
    assert_eq!(st, 201, "{c}");
    let cid = c["id"].as_i64().expect("id");
    let (st, c) = t
        .call(
            Method::PATCH,
            &format!("/api/v1/mts/connectors/{cid}"),
            &t.admin,
            Some(json!({"callback_url": format!("{receiver}/api/v1/mts/callbacks/{cid}")})),
        )
        .await;
    assert_eq!(st, 200, "{c}");
    cid
}

#[tokio::test]
async fn replayed_and_out_of_order_callbacks_change_nothing() {
    let (mts, mts_url) = start_mts().await;
    for t in TestApp::all().await {
        let relay = Relay::start(&t.base).await;
        let a = person(&t, 1, "6100001").await;
        // No address: MTS finds the record invalid until a registrar completes it.
        let b = t
            .create_individual(json!({
                "given_name": "Bo", "family_name": "Diaz", "gender": "Male",
                "birthdate": "1985-05-05",
                "ids": [{"id_type": "MOSIP VID", "value": "6100002"}],
            }))
            .await;
        let cid = connector_via(
            &t,
            "replay",
            &mts_url,
            &relay.base,
            json!([["id", "in", [a, b]]]),
        )
        .await;

        let done = run_and_wait(&t, &format!("/api/v1/mts/connectors/{cid}/runs")).await;
        assert_eq!(
            (&done["progress"]["processed"], &done["progress"]["failed"]),
            (&json!(1), &json!(1)),
            "{done}"
        );
        let first = relay.take();
        let bodies: Vec<Value> = first.iter().map(Delivery::body_json).collect();
        assert_eq!(first.len(), 2, "one callback per record: {bodies:?}");
        let ref_of = |d: &Delivery| d.body_json()["ref"].as_str().expect("ref").to_owned();
        let a_first = first
            .iter()
            .find(|d| d.body_json()["status"] == "processed")
            .expect("a's callback")
            .clone();
        let b_first = first
            .iter()
            .find(|d| d.body_json()["status"] != "processed")
            .expect("b's callback")
            .clone();

        // Every callback delivered again, in reverse order: acknowledged, nothing changes.
        let before = snapshot(&t, cid, &[a, b]).await;
        for d in first.iter().rev() {
            let (st, body) = deliver(&t.client, &t.base, d).await;
            assert_eq!(st, 200);
            let report: Value = serde_json::from_slice(&body).expect("report");
            assert_eq!(report, json!({"applied": 0, "ignored": 1}));
        }
        // A late, contradicting result for a record already tokenised changes nothing either.
        let contradiction = Delivery {
            body: Bytes::from(
                json!({"ref": ref_of(&a_first), "status": "failed", "token": null,
                       "errorCode": "IDA-MLC-018", "errorMessage": "late"})
                .to_string(),
            ),
            ..a_first.clone()
        };
        let (st, _) = deliver(&t.client, &t.base, &contradiction).await;
        assert_eq!(st, 200);
        assert_eq!(snapshot(&t, cid, &[a, b]).await, before);

        // The registrar completes b; a retry sends it again under a new reference.
        let (st, v) = t
            .call(
                Method::PATCH,
                &format!("/api/v1/registrants/{b}"),
                &t.registrar,
                Some(json!({"address": "2 Side St"})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        let done = run_and_wait(&t, &format!("/api/v1/mts/connectors/{cid}/retry-failed")).await;
        assert_eq!(done["progress"]["processed"], 1, "{done}");
        let second = relay.take();
        assert_eq!(second.len(), 1);
        assert_ne!(
            ref_of(&second[0]),
            ref_of(&b_first),
            "a fresh reference per send"
        );
        let after = snapshot(&t, cid, &[a, b]).await;
        assert_eq!(after["failures"], json!([]), "{after}");
        let b_ids = &after["registrants"][1]["ids"];
        assert_eq!(b_ids.as_array().map(Vec::len), Some(1), "{b_ids}");
        assert_eq!(b_ids[0]["id_type"], "MOSIP AUTH TOKEN", "{b_ids}");

        // The first send's failure arrives after the second send's success (MTS retrying a
        // callback that timed out), then the success again: b keeps its token.
        for d in [&b_first, &second[0]] {
            let (st, body) = deliver(&t.client, &t.base, d).await;
            assert_eq!(st, 200);
            let report: Value = serde_json::from_slice(&body).expect("report");
            assert_eq!(report["applied"], 0, "{report}");
        }
        assert_eq!(snapshot(&t, cid, &[a, b]).await, after);

        relay.task.abort();
        t.stop().await;
    }
    mts.shutdown().await;
}

/// MTS is down when the run submits: nothing is marked sent, the run shows why and stays
/// running; its job comes back after the backoff and, MTS being up again, the run completes.
#[tokio::test]
async fn a_run_retries_after_mts_was_down_at_submit() {
    for t in TestApp::all().await {
        // A port nothing listens on, where MTS comes up later.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let a = person(&t, 1, "5550001").await;
        let cid = connector_via(
            &t,
            "down",
            &format!("http://{addr}"),
            &t.base,
            json!([["id", "=", a]]),
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
        let run_id = run["id"].as_i64().expect("id");
        // The job's retry comes due when this clock says so, not after real time has passed.
        let clock = Arc::new(g2p_domain::clock::ManualClock::new(chrono::Utc::now()));
        let store = t.app.store.clone().with_clock(clock.clone());
        let runner = g2p::job_runner(store, &t.cfg, t.app.state.secrets.clone())
            .expect("job runner")
            .retry_policy(g2p_store::jobs::RetryPolicy {
                base: Duration::from_millis(300),
                max: Duration::from_millis(300),
                jitter: 0.0,
            });
        runner.drain_until_idle().await.expect("drain");
        let (_, v) = t
            .get(&format!("/api/v1/mts/runs/{run_id}"), &t.viewer)
            .await;
        assert_eq!(v["status"], "running", "{v}");
        assert_eq!(v["sent"], 0, "{v}");
        assert_eq!(v["progress"]["pending"], 0, "nothing stays sent: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap_or_default()
                .contains("MTS unreachable"),
            "{v}"
        );

        let mts = MtsService::start(
            MtsConfig {
                poll_interval: Duration::from_millis(50),
                jq: crate::mts_connector::jq_workers(),
                ..MtsConfig::default()
            },
            "sqlite::memory:",
            Arc::new(MockAuthenticator::new("mpartner-default-mosip")),
        )
        .await
        .expect("mts");
        mts.serve(addr).await.expect("serve on the same port");
        // Nothing is due before the backoff has passed on the store's clock.
        let early = runner.drain_until_idle().await.expect("drain");
        assert_eq!(early.attempts(), 0, "ran before its retry time");
        clock.advance(Duration::from_millis(400));
        runner.drain_until_idle().await.expect("drain");
        let done = crate::mts_connector::wait_run(&t, run_id).await;
        assert_eq!(done["sent"], 1, "{done}");
        assert_eq!(done["progress"]["processed"], 1, "{done}");
        mts.shutdown().await;
        t.stop().await;
    }
}
