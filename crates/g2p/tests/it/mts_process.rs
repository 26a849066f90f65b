//! `g2p mts serve` as a real process: killed with SIGKILL, or stopped with SIGTERM, in the
//! middle of its work and started again on the same queue database, it authenticates and calls
//! back every record; flooded with hostile outputFormats, it stays within fixed bounds of
//! threads, memory and jq workers, and keeps serving.

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
    spawn_mts_with(db, &[])
}

/// [`spawn_mts`] with more flags.
fn spawn_mts_with(db: &str, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_g2p"))
        .args(["mts", "serve", "--listen", "127.0.0.1:0", "--database", db])
        // Slow enough that the kill lands while records are being authenticated.
        .args(["--mock-latency-ms", "40", "--concurrency", "4"])
        .args(["--callback-backoff-ms", "100"])
        .args(extra)
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
    let ids = submit_numbered(&http, &base, &cb_url, requests, per).await;

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

/// Sends SIGTERM to `child` and waits (at most `bound`) for it to exit; returns its status.
/// Async, so the callback receiver on this test's runtime keeps answering the deliveries the
/// process finishes while it stops.
async fn sigterm_and_wait(child: &mut Child, bound: Duration) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {pid} failed");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            panic!("g2p mts did not exit within {bound:?} of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Submits `requests` requests of `per` records (refs 0…) with per-record callbacks to `cb_url`.
async fn submit_numbered(
    http: &reqwest::Client,
    base: &str,
    cb_url: &str,
    requests: usize,
    per: usize,
) -> Vec<String> {
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
    ids
}

/// SIGTERM in the middle of the work: the process exits 0 promptly, leaves no record claimed
/// (with no grace, the batch being authenticated is handed back), and after a restart on the
/// same queue every record is called back exactly once, with the right token.
async fn sigterm_mid_work(grace_ms: &str) {
    let dir = tempfile_dir();
    let db = format!("sqlite://{}/queue.sqlite", dir.display());
    let (cb_url, got) = receiver().await;
    let http = reqwest::Client::new();
    let (mut child, base) = spawn_mts_with(&db, &["--shutdown-grace-ms", grace_ms]);
    let (requests, per) = (4, 60);
    let ids = submit_numbered(&http, &base, &cb_url, requests, per).await;

    let start = Instant::now();
    while got.lock().expect("lock").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no callback came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exit = sigterm_and_wait(&mut child, Duration::from_secs(15)).await;
    assert!(exit.success(), "exit status after SIGTERM: {exit:?}");
    let before = got.lock().expect("lock").len();
    assert!(
        before < requests * per,
        "SIGTERM came too late to test anything: {before} callbacks already"
    );

    // What the process left in its queue: unfinished work, none of it still claimed.
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&db)
            .await
            .expect("open queue");
        let (waiting,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM mts_records WHERE status = 'submitted'")
                .fetch_one(&mut conn)
                .await
                .expect("count");
        assert!(waiting > 0, "all records were done before SIGTERM");
        let (still_claimed,): (i64,) = sqlx::query_as(
            // A claim mark past a record still waiting means that record is claimed (the mark
            // may pass number_total once a request is done: claims take whole batches).
            "SELECT COUNT(*) FROM mts_requests r WHERE claimed_upto > (SELECT \
             MIN(d.line_no) - 1 FROM mts_records d WHERE d.request_id = r.id \
             AND d.status = 'submitted')",
        )
        .fetch_one(&mut conn)
        .await
        .expect("claims");
        assert_eq!(
            still_claimed, 0,
            "records left claimed after a graceful stop"
        );
        let (owed,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM mts_deliveries WHERE status = 'delivered'")
                .fetch_one(&mut conn)
                .await
                .expect("deliveries");
        assert_eq!(
            usize::try_from(owed).expect("count"),
            before,
            "every callback received is recorded as delivered, and only those"
        );
        conn.close().await.expect("close");
    }

    let (mut child, base) = spawn_mts_with(&db, &["--shutdown-grace-ms", grace_ms]);
    let start = Instant::now();
    loop {
        let n = got.lock().expect("lock").len();
        if n >= requests * per {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{n} of {} records called back after the restart",
            requests * per
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in &ids {
        assert_eq!(status(&http, &base, id).await, "processed");
    }
    let exit = sigterm_and_wait(&mut child, Duration::from_secs(15)).await;
    assert!(exit.success(), "{exit:?}");
    let mut by_ref: HashMap<i64, usize> = HashMap::new();
    for v in got.lock().expect("lock").iter() {
        assert_eq!(v["status"], "processed", "{v}");
        let n = v["ref"].as_i64().expect("ref");
        assert_eq!(
            v["token"],
            g2p_mts::mock_token(&format!("7{n:05}"), "mpartner-default-mosip")
        );
        *by_ref.entry(n).or_default() += 1;
    }
    assert_eq!(by_ref.len(), requests * per);
    let twice: Vec<_> = by_ref.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "called back more than once: {twice:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sigterm_hands_back_unfinished_work() {
    sigterm_mid_work("0").await;
}

#[tokio::test]
async fn sigterm_finishes_the_batch_within_the_grace_period() {
    sigterm_mid_work("10000").await;
}

/// `Threads` and `VmRSS` (bytes) of a process, from /proc.
fn proc_status(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = s.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("Threads:")?, field("VmRSS:")? * 1024))
}

/// The live children of `pid`, with their RSS.
fn children(pid: u32) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(s) = std::fs::read_to_string(format!("/proc/{child}/status")) else {
            continue;
        };
        let ppid = s
            .lines()
            .find(|l| l.starts_with("PPid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let zombie = s
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        if ppid == Some(pid) && !zombie {
            let rss = proc_status(child).map_or(0, |(_, r)| r);
            out.push((child, rss));
        }
    }
    out
}

/// A flood of hostile outputFormats against the real process: its threads, its memory and its
/// jq workers stay within fixed bounds, every record comes back as a clear error, and a normal
/// request afterwards is served.
#[tokio::test]
async fn hostile_output_formats_stay_bounded() {
    const HOSTILE: [&str; 2] = [
        "reduce ([0,1]|combinations(40)) as $x (0; .+1)",
        ".input.vid | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. \
         | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. \
         | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+. | .+.",
    ];
    // Measured: 8 threads and 29 MiB at peak; the old pool added a thread per timeout (20 here).
    const MAX_THREADS: u64 = 20;
    const MAX_RSS: u64 = 200 << 20;
    const JQ_WORKERS: usize = 2;
    // Each worker: its start-up size plus the 128 MiB budget, far below the 1.1 GB of old.
    const MAX_WORKER_RSS: u64 = 400 << 20;
    let dir = tempfile_dir();
    let db = format!("sqlite://{}/queue.sqlite", dir.display());
    let (cb_url, got) = receiver().await;
    let http = reqwest::Client::new();
    let (mut child, base) = spawn_mts_with(
        &db,
        &[
            "--jq-workers",
            "2",
            "--jq-timeout-ms",
            "1000",
            "--jq-memory-mb",
            "128",
        ],
    );
    let pid = child.id();

    // Watch the process while the flood runs.
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let watching = watching.clone();
        std::thread::spawn(move || {
            let (mut threads, mut rss, mut workers, mut worker_rss) = (0, 0, 0, 0);
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some((t, r)) = proc_status(pid) {
                    threads = threads.max(t);
                    rss = rss.max(r);
                }
                let kids = children(pid);
                workers = workers.max(kids.len());
                worker_rss = worker_rss.max(kids.iter().map(|k| k.1).max().unwrap_or(0));
                std::thread::sleep(Duration::from_millis(25));
            }
            (threads, rss, workers, worker_rss)
        })
    };

    let per_program = 20;
    let mut submits = Vec::new();
    for program in HOSTILE {
        for i in 0..per_program {
            let http = http.clone();
            let (base, cb_url) = (base.clone(), cb_url.clone());
            submits.push(async move {
                let body = json!({"id": "string", "version": "string", "metadata": "string",
                    "requesttime": "2024-01-01T10:00:00.000Z", "request": {
                        "output": "json", "deliverytype": "callback",
                        "authdata": [{"vid": format!("6{i:05}"), "name": "Ana Diaz",
                            "gender": "Female", "dob": "1990-01-31", "fullAddress": "Main St"}],
                        "outputFormat": program,
                        "callbackProperties": {"url": cb_url, "callInBulk": false}}});
                let r = http
                    .post(format!("{base}/authtoken/json"))
                    .json(&body)
                    .send()
                    .await
                    .expect("submit");
                assert_eq!(r.status(), 200);
                let b: Value = r.json().await.expect("json");
                assert!(b["errors"].is_null(), "{program}: {b}");
            });
        }
    }
    futures::future::join_all(submits).await;

    let total = HOSTILE.len() * per_program;
    let start = Instant::now();
    while got.lock().expect("lock").len() < total {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{} of {total} hostile records called back",
            got.lock().expect("lock").len()
        );
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "g2p mts died"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for v in got.lock().expect("lock").iter() {
        assert_eq!(v["status"], "error", "{v}");
        assert_eq!(v["errorCode"], "ATS-REQ-103", "{v}");
        let msg = v["errorMessage"].as_str().unwrap_or("");
        assert!(
            msg.contains("timed out") || msg.contains("memory or CPU limit"),
            "unclear error: {v}"
        );
        // The authentication itself succeeded: only the formatting failed.
        assert!(v["token"].is_string(), "{v}");
    }

    // A normal request afterwards, with a format that needs jq, is served correctly.
    got.lock().expect("lock").clear();
    let ids = submit_numbered(&http, &base, &cb_url, 1, 3).await;
    let start = Instant::now();
    while got.lock().expect("lock").len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "normal request not called back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status(&http, &base, &ids[0]).await, "processed");
    for v in got.lock().expect("lock").iter() {
        let n = v["ref"].as_i64().expect("ref");
        assert_eq!(v["status"], "processed", "{v}");
        assert_eq!(
            v["token"],
            g2p_mts::mock_token(&format!("7{n:05}"), "mpartner-default-mosip")
        );
    }

    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let (threads, rss, workers, worker_rss) = watcher.join().expect("watcher");
    eprintln!(
        "peak: {threads} threads, {} MiB RSS, {workers} jq workers, {} MiB per worker",
        rss >> 20,
        worker_rss >> 20
    );
    assert!(threads <= MAX_THREADS, "{threads} threads");
    assert!(rss <= MAX_RSS, "{} MiB RSS", rss >> 20);
    assert!(workers <= JQ_WORKERS, "{workers} jq workers at once");
    assert!(
        worker_rss <= MAX_WORKER_RSS,
        "a jq worker reached {} MiB",
        worker_rss >> 20
    );
    let exit = sigterm_and_wait(&mut child, Duration::from_secs(15)).await;
    assert!(exit.success(), "{exit:?}");
    let _ = std::fs::remove_dir_all(dir);
}
