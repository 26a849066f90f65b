//! `g2p mts serve` as a real process: killed with SIGKILL in the middle of its work and started
//! again on the same queue database, it authenticates and calls back every record.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};

type Received = Arc<Mutex<Vec<Value>>>;

/// A callback receiver on a free port: keeps every record it is sent.
async fn receiver() -> (String, Received) {
    async fn take(State(got): State<Received>, body: String) -> &'static str {
        let v: Value = serde_json::from_str(&body).expect("callback body is JSON");
        got.lock().expect("lock").push(v);
        "ok"
    }
    let got: Received = Arc::default();
    let app = Router::new()
        .route("/cb", post(take))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}/cb"), got)
}

/// Starts `g2p mts serve` on a free port and returns the child and its base URL.
fn spawn_mts(db: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_g2p"))
        .args(["mts", "serve", "--listen", "127.0.0.1:0", "--database", db])
        // Slow enough that the kill lands while records are being authenticated.
        .args(["--mock-latency-ms", "40", "--concurrency", "4"])
        .args(["--callback-backoff-ms", "100"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn g2p mts serve");
    let stdout = child.stdout.take().expect("stdout");
    // Log lines may come first; the banner names the address.
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the process printed no address")
            .expect("read stdout");
        if let Some(w) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break w.trim_end_matches('/').to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}

async fn status(http: &reqwest::Client, base: &str, id: &str) -> String {
    let b: Value = http
        .get(format!("{base}/authtoken/status/{id}"))
        .send()
        .await
        .expect("status call")
        .json()
        .await
        .expect("status json");
    b["response"]["status"].as_str().unwrap_or("").to_owned()
}

#[tokio::test]
async fn sigkill_mid_request_loses_no_record() {
    let dir = tempfile_dir();
    let db = format!("sqlite://{}/queue.sqlite", dir.display());
    let (cb_url, got) = receiver().await;
    let http = reqwest::Client::new();
    let (mut child, base) = spawn_mts(&db);

    // 4 requests of 60 records: at 4 × 25 records/s the whole job takes about 2.4 s.
    let (requests, per) = (4, 60);
    let mut ids = Vec::new();
    for r in 0..requests {
        let authdata: Vec<Value> = (0..per)
            .map(|i| {
                let n = r * per + i;
                json!({"ref": n, "vid": format!("7{n:05}"), "name": "Ana Diaz",
                       "gender": "Female", "dob": "1990-01-31", "fullAddress": "Main St"})
            })
            .collect();
        let body = json!({"id": "string", "version": "string", "metadata": "string",
            "requesttime": "2024-01-01T10:00:00.000Z", "request": {
                "output": "json", "deliverytype": "callback", "authdata": authdata,
                "outputFormat": "{ref: .input.ref, token: .output.token, status: .output.status}",
                "callbackProperties": {"url": cb_url, "callInBulk": false}}});
        let b: Value = http
            .post(format!("{base}/authtoken/json"))
            .json(&body)
            .send()
            .await
            .expect("submit")
            .json()
            .await
            .expect("submit json");
        ids.push(
            b["response"]["request_identifier"]
                .as_str()
                .unwrap_or_else(|| panic!("no request id: {b}"))
                .to_owned(),
        );
    }

    // Kill once some work is done and some is not.
    let start = Instant::now();
    loop {
        let n = got.lock().expect("lock").len();
        if n > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no callback came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last_before = status(&http, &base, &ids[requests - 1]).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let before = got.lock().expect("lock").len();
    assert!(
        before < requests * per,
        "the kill came too late to test anything: {before} callbacks already"
    );
    assert_ne!(last_before, "processed", "killed after the work was done");

    let (mut child, base) = spawn_mts(&db);
    let start = Instant::now();
    let by_ref = loop {
        let mut by_ref: HashMap<i64, Value> = HashMap::new();
        for v in got.lock().expect("lock").iter() {
            by_ref.insert(v["ref"].as_i64().expect("ref"), v.clone());
        }
        if by_ref.len() == requests * per {
            break by_ref;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} of {} records called back after the restart",
            by_ref.len(),
            requests * per
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (n, v) in &by_ref {
        assert_eq!(v["status"], "processed", "{v}");
        let vid = format!("7{n:05}");
        assert_eq!(
            v["token"],
            g2p_mts::mock_token(&vid, "mpartner-default-mosip")
        );
    }
    for id in &ids {
        assert_eq!(status(&http, &base, id).await, "processed");
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("g2p-mts-kill-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
