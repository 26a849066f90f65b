//! `g2p bench mts`: end-to-end throughput of the MTS-compatible token seeder
//! ([`g2p_mts`]) with callback delivery, and its peak memory.
//!
//! Each phase runs in a child process (`g2p bench mts-phase`, hidden) so that the peak RSS it
//! reports (`VmHWM`) belongs to that phase alone. A phase starts, in that process, the MTS
//! service (mock authenticator, a FRESH queue database) on `127.0.0.1:0` and a callback
//! receiver on `127.0.0.1:0`, then submits N records through `POST /authtoken/json` in chunks
//! (a few requests in flight), with `deliverytype: callback`, `authType: none` and the default
//! `outputFormat`. The rate is N / (first submission → last record received by the receiver).
//! The receiver checks that every VID arrives exactly once, with status `processed`.
//!
//! Phase (a) uses `callInBulk: false` (one call per record, spec §4.3), phase (b)
//! `callInBulk: true` (one call per request whose body is the JSON array of its results).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use futures::StreamExt;
use g2p_mts::{MockAuthenticator, MtsConfig, MtsService, format_time};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::bench::{RESULT_PREFIX, with_database};
/// Targets on the reference 2-core machine, in records per second.
pub const TARGET_PER_RECORD: f64 = 5_000.0;
pub const TARGET_BULK: f64 = 50_000.0;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchMtsArgs {
    /// Records submitted per phase.
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Records per `POST /authtoken/json` request.
    #[arg(long, default_value_t = 1000)]
    pub chunk: usize,
    /// MTS workers authenticating at the same time (`MtsConfig::concurrency`).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Submission requests in flight at the same time.
    #[arg(long, default_value_t = 4)]
    pub in_flight: usize,
    /// Idle poll interval of the MTS workers and deliverer, in milliseconds
    /// (`MtsConfig::poll_interval`).
    #[arg(long, default_value_t = 100)]
    pub poll_ms: u64,
    /// MTS queue database: `sqlite` (a fresh temporary file per phase), `postgres` (a fresh
    /// database per phase on the local server), `postgres://…` (fresh databases on that
    /// server) or `sqlite://FILE` (used as it is; must be fresh).
    #[arg(long, default_value = "sqlite")]
    pub database: String,
    /// per-record, bulk or both.
    #[arg(long, default_value = "both", value_parser = ["per-record", "bulk", "both"])]
    pub phase: String,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
}

#[derive(clap::Args, Debug)]
pub struct MtsPhaseArgs {
    /// Bulk callbacks (`callInBulk: true`).
    #[arg(long)]
    pub bulk: bool,
    /// The queue database URL for this phase.
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub records: u64,
    #[arg(long)]
    pub chunk: usize,
    #[arg(long)]
    pub concurrency: usize,
    #[arg(long)]
    pub in_flight: usize,
    #[arg(long)]
    pub poll_ms: u64,
    #[arg(long)]
    pub timeout: u64,
}

/// What a child phase reports back (one line on stdout, after [`RESULT_PREFIX`]).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct PhaseResult {
    pub records: u64,
    /// Distinct expected VIDs received.
    pub received: u64,
    pub duplicates: u64,
    pub unexpected: u64,
    /// Records whose callback status was not `processed`.
    pub not_processed: u64,
    /// Callback HTTP calls received.
    pub calls: u64,
    /// Seconds from the first submission until every chunk was accepted.
    pub submit_secs: f64,
    /// Seconds from the first submission to the first callback.
    pub first_callback_secs: f64,
    /// Seconds from the first submission to the last record received.
    pub secs: f64,
    pub timed_out: bool,
    pub peak_rss_kb: u64,
}

impl PhaseResult {
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.received as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Every record arrived exactly once, processed.
    pub fn exact(&self) -> bool {
        self.received == self.records
            && self.duplicates == 0
            && self.unexpected == 0
            && self.not_processed == 0
            && !self.timed_out
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic records
// ---------------------------------------------------------------------------------------------

const GIVEN: &[&str] = &[
    "Amina", "Grace", "Fatima", "Maria", "John", "Ibrahim", "Samuel", "Peter", "Aisha", "Joy",
];
const FAMILY: &[&str] = &[
    "Okafor", "Mensah", "Banda", "Mwangi", "Diallo", "Kamara", "Phiri", "Ndlovu", "Otieno",
];
const PLACES: &[&str] = &[
    "Riverside",
    "Hilltop",
    "Lakeview",
    "Green Valley",
    "Eastfield",
];

const VID_SPAN: u128 = 1_000_000_000_000_000; // 10^15
/// Coprime with 10, so `i * VID_MULT mod 10^15` is a bijection: distinct VIDs.
const VID_MULT: u128 = 614_889_782_588_491;

/// The VID of record `i` of a phase (`salt` 1..=7 is its leading digit): 16 digits, distinct
/// for every `i < 10^15`, never starting with the mock's failure prefixes `8888` or `9999`.
pub fn vid(salt: u8, i: u64) -> String {
    let lead = u128::from(salt.clamp(1, 7));
    let body = (u128::from(i) * VID_MULT) % VID_SPAN;
    format!("{}", lead * VID_SPAN + body)
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One `authdata` object with the server's mandatory fields (name, gender, dob, fullAddress).
pub fn record(salt: u8, i: u64) -> Value {
    let h = mix(i);
    let pick = |xs: &[&'static str], shift: u32| xs[((h >> shift) % xs.len() as u64) as usize];
    json!({
        "vid": vid(salt, i),
        "name": format!("{} {}", pick(GIVEN, 0), pick(FAMILY, 8)),
        "gender": if h & 1 == 0 { "Female" } else { "Male" },
        "dob": format!("{}/{:02}/{:02}", 1940 + (h >> 16) % 65, (h >> 24) % 12 + 1, (h >> 32) % 28 + 1),
        "fullAddress": format!("{} {}, District", (h >> 40) % 500 + 1, pick(PLACES, 48)),
    })
}

/// The `POST /authtoken/json` envelope for records `from..to` (spec §1.1, §1.4, §4.2).
pub fn request_body(salt: u8, from: u64, to: u64, callback_url: &str, bulk: bool) -> Value {
    let authdata: Vec<Value> = (from..to).map(|i| record(salt, i)).collect();
    json!({
        "id": "string",
        "version": "string",
        "metadata": "string",
        "requesttime": format_time(chrono::Utc::now()),
        "request": {
            "output": "json",
            "deliverytype": "callback",
            "callbackProperties": {
                "url": callback_url,
                "httpMethod": "POST",
                "timeoutSeconds": 60,
                "callInBulk": bulk,
                "authType": "none",
            },
            "authdata": authdata,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (the g2p crate has no HTTP client dependency)
// ---------------------------------------------------------------------------------------------

/// Status and body of a `Connection: close` HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> Option<(u16, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, &raw[end + 4..]))
}

async fn post_json(addr: SocketAddr, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let (status, body) = parse_response(&raw).context("malformed HTTP response")?;
    Ok((status, body.to_vec()))
}

// ---------------------------------------------------------------------------------------------
// The callback receiver
// ---------------------------------------------------------------------------------------------

struct Receiver {
    inner: Mutex<Tally>,
    done: Notify,
}

struct Tally {
    /// Times each expected VID was received.
    counts: HashMap<String, u32>,
    remaining: u64,
    duplicates: u64,
    unexpected: u64,
    not_processed: u64,
    calls: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Receiver {
    fn new(salt: u8, records: u64) -> Arc<Self> {
        let counts = (0..records).map(|i| (vid(salt, i), 0)).collect();
        Arc::new(Self {
            inner: Mutex::new(Tally {
                counts,
                remaining: records,
                duplicates: 0,
                unexpected: 0,
                not_processed: 0,
                calls: 0,
                first: None,
                last: None,
            }),
            done: Notify::new(),
        })
    }

    fn tally(&self, v: &Value, t: &mut Tally) {
        if v["status"] != "processed" {
            t.not_processed += 1;
        }
        match v["vid"].as_str().and_then(|vid| t.counts.get_mut(vid)) {
            Some(n) => {
                *n += 1;
                if *n == 1 {
                    t.remaining -= 1;
                } else {
                    t.duplicates += 1;
                }
            }
            None => t.unexpected += 1,
        }
    }
}

async fn receive(State(rx): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Ok(mut t) = rx.inner.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    t.calls += 1;
    t.first.get_or_insert(now);
    let before = t.remaining;
    match &parsed {
        Value::Array(items) => {
            for v in items {
                rx.tally(v, &mut t);
            }
        }
        v => rx.tally(v, &mut t),
    }
    if t.remaining < before {
        t.last = Some(now);
        if t.remaining == 0 {
            rx.done.notify_one();
        }
    }
    StatusCode::OK
}

// ---------------------------------------------------------------------------------------------
// A phase (child process)
// ---------------------------------------------------------------------------------------------

/// Peak resident set size of this process, in KiB.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub async fn run_phase(args: &MtsPhaseArgs) -> anyhow::Result<PhaseResult> {
    let salt: u8 = if args.bulk { 2 } else { 1 };
    let chunk = args.chunk.max(1);
    let defaults = MtsConfig::default();
    let cfg = MtsConfig {
        concurrency: args.concurrency.max(1),
        poll_interval: Duration::from_millis(args.poll_ms.max(1)),
        max_records: defaults.max_records.max(chunk),
        ..defaults
    };
    let auth = Arc::new(MockAuthenticator::new(&cfg.partner_id));
    let svc = MtsService::start(cfg, &args.url, auth)
        .await
        .context("cannot start the MTS service")?;
    let (mts_addr, _) = svc.serve(SocketAddr::from(([127, 0, 0, 1], 0))).await?;

    let rx = Receiver::new(salt, args.records);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let cb_addr = listener.local_addr()?;
    let app = Router::new()
        .route("/cb", post(receive))
        .layer(DefaultBodyLimit::disable())
        .with_state(rx.clone());
    let receiver = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("callback receiver stopped: {e}");
        }
    });
    let callback_url = format!("http://{cb_addr}/cb");

    // Bodies are built before the clock starts: the client's JSON work is not the service's.
    let bodies: Vec<Vec<u8>> = (0..args.records)
        .step_by(chunk)
        .map(|from| {
            let to = (from + chunk as u64).min(args.records);
            serde_json::to_vec(&request_body(salt, from, to, &callback_url, args.bulk))
        })
        .collect::<Result<_, _>>()?;

    let t0 = Instant::now();
    let outcome: anyhow::Result<PhaseResult> = async {
        let mut submits = futures::stream::iter(bodies.iter())
            .map(|b| post_json(mts_addr, "/authtoken/json", b))
            .buffer_unordered(args.in_flight.max(1));
        while let Some(r) = submits.next().await {
            let (status, body) = r.context("submission failed")?;
            let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if status != 200 || answer["response"]["request_identifier"].as_str().is_none() {
                bail!(
                    "submission answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
        let submit_secs = t0.elapsed().as_secs_f64();
        let timed_out =
            tokio::time::timeout(Duration::from_secs(args.timeout.max(1)), rx.done.notified())
                .await
                .is_err();
        if !timed_out {
            // Late duplicates would show up here; not counted in the time.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let t = rx
            .inner
            .lock()
            .map_err(|_| anyhow::anyhow!("receiver state poisoned"))?;
        let since = |i: Option<Instant>| i.map(|i| (i - t0).as_secs_f64()).unwrap_or(0.0);
        Ok(PhaseResult {
            records: args.records,
            received: args.records - t.remaining,
            duplicates: t.duplicates,
            unexpected: t.unexpected,
            not_processed: t.not_processed,
            calls: t.calls,
            submit_secs,
            first_callback_secs: since(t.first),
            secs: since(t.last),
            timed_out,
            peak_rss_kb: 0,
        })
    }
    .await;
    svc.shutdown().await;
    receiver.abort();
    let mut result = outcome?;
    result.peak_rss_kb = peak_rss_kb();
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

async fn child(args: &BenchMtsArgs, bulk: bool, url: &str) -> anyhow::Result<PhaseResult> {
    let exe = std::env::current_exe().context("cannot find the g2p executable")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["bench", "mts-phase", "--url", url])
        .args(["--records", &args.records.to_string()])
        .args(["--chunk", &args.chunk.to_string()])
        .args(["--concurrency", &args.concurrency.to_string()])
        .args(["--in-flight", &args.in_flight.to_string()])
        .args(["--poll-ms", &args.poll_ms.to_string()])
        .args(["--timeout", &args.timeout.to_string()]);
    if bulk {
        cmd.arg("--bulk");
    }
    crate::bench::spawn_phase(cmd, "mts").await
}

/// Where a phase keeps its queue, and how to clean it up.
enum Queue {
    SqliteTemp(std::path::PathBuf),
    Given,
    Postgres { admin: sqlx::PgPool, name: String },
}

impl Queue {
    async fn create(database: &str, tag: &str, phase: &str) -> anyhow::Result<(Self, String)> {
        if database == "sqlite" {
            let path = std::env::temp_dir().join(format!("g2p_bench_mts_{tag}_{phase}.sqlite"));
            let url = format!("sqlite://{}", path.display());
            return Ok((Self::SqliteTemp(path), url));
        }
        let server = match database {
            "postgres" => crate::bench::DEFAULT_PG_URL,
            u if u.starts_with("postgres://") || u.starts_with("postgresql://") => u,
            u => return Ok((Self::Given, u.to_owned())),
        };
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(server)
            .await
            .with_context(|| {
                format!(
                    "cannot reach PostgreSQL at {}",
                    g2p_store::db::redact_url(server)
                )
            })?;
        let name = format!("g2p_bench_mts_{tag}_{}", phase.replace('-', "_"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await?;
        let url = with_database(server, &name);
        Ok((Self::Postgres { admin, name }, url))
    }

    async fn remove(self) {
        match self {
            Self::SqliteTemp(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Self::Given => {}
            Self::Postgres { admin, name } => {
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await {
                    eprintln!("could not drop {name}: {e}");
                }
                admin.close().await;
            }
        }
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "OK" } else { "MISSED" }
}

pub async fn bench_mts(args: BenchMtsArgs) -> anyhow::Result<()> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let tag = &tag[..12];
    let mut phases: Vec<(&str, bool)> = Vec::new();
    if args.phase != "bulk" {
        phases.push(("per-record", false));
    }
    if args.phase != "per-record" {
        phases.push(("bulk", true));
    }
    let mut table: Vec<(&str, PhaseResult)> = Vec::new();
    for (phase, bulk) in phases {
        let (queue, url) = Queue::create(&args.database, tag, phase).await?;
        eprintln!(
            "mts {phase}: {} records in chunks of {} …",
            args.records, args.chunk
        );
        let r = child(&args, bulk, &url).await;
        queue.remove().await;
        let r = r?;
        eprintln!(
            "mts {phase}: {:.0} records/s ({} of {} received)",
            r.rate(),
            r.received,
            r.records
        );
        table.push((phase, r));
    }

    println!();
    println!(
        "g2p bench mts: {} records per phase, chunks of {} ({} in flight), MTS concurrency {}, \
         poll {} ms, queue {}",
        args.records,
        args.chunk,
        args.in_flight,
        args.concurrency,
        args.poll_ms,
        g2p_store::db::redact_url(&args.database)
    );
    println!(
        "{:<11} {:>8} {:>8} {:>5} {:>7} {:>9} {:>9} {:>8} {:>10} {:>9}",
        "callbacks",
        "records",
        "received",
        "dup",
        "calls",
        "submit s",
        "1st cb s",
        "total s",
        "records/s",
        "peak RSS"
    );
    for (phase, r) in &table {
        println!(
            "{:<11} {:>8} {:>8} {:>5} {:>7} {:>9.2} {:>9.2} {:>8.2} {:>10.0} {:>6.0} MB{}",
            phase,
            r.records,
            r.received,
            r.duplicates,
            r.calls,
            r.submit_secs,
            r.first_callback_secs,
            r.secs,
            r.rate(),
            r.peak_rss_kb as f64 / 1024.0,
            if r.timed_out { "  (timed out)" } else { "" }
        );
    }
    println!();
    for (phase, r) in &table {
        let target = if *phase == "bulk" {
            TARGET_BULK
        } else {
            TARGET_PER_RECORD
        };
        println!(
            "target  {phase} >= {target:.0} records/s: {:.0} {}",
            r.rate(),
            mark(r.rate() >= target)
        );
        println!(
            "check   {phase}: every record received exactly once, processed: {}",
            if r.exact() {
                "OK".to_owned()
            } else {
                format!(
                    "FAILED (received {}/{}, {} duplicates, {} unexpected, {} not processed)",
                    r.received, r.records, r.duplicates, r.unexpected, r.not_processed
                )
            }
        );
    }
    if let Some((phase, _)) = table.iter().find(|(_, r)| !r.exact()) {
        bail!("mts {phase}: not every record was received exactly once");
    }
    Ok(())
}

/// Prints a phase's result line (the hidden `mts-phase` subcommand).
pub async fn phase_main(args: MtsPhaseArgs) -> anyhow::Result<()> {
    let result = run_phase(&args).await?;
    println!("{RESULT_PREFIX}{}", serde_json::to_string(&result)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn vids_are_distinct_sixteen_digits_and_never_fail_in_the_mock() {
        let mut seen = HashSet::new();
        for salt in [1, 2] {
            for i in 0..200_000 {
                let v = vid(salt, i);
                assert_eq!(v.len(), 16, "{v}");
                assert!(v.bytes().all(|b| b.is_ascii_digit()));
                assert!(!v.starts_with("8888") && !v.starts_with("9999"));
                assert!(seen.insert(v));
            }
        }
        assert_eq!(vid(1, 0), "1000000000000000");
    }

    #[test]
    fn records_carry_the_mandatory_fields() {
        let r = record(1, 42);
        assert_eq!(r["vid"], vid(1, 42));
        for k in ["name", "gender", "dob", "fullAddress"] {
            assert!(r[k].as_str().is_some_and(|s| !s.is_empty()), "{k}: {r}");
        }
        let dob = r["dob"].as_str().unwrap_or_default();
        assert!(
            chrono::NaiveDate::parse_from_str(dob, "%Y/%m/%d").is_ok(),
            "{dob}"
        );
        let body = request_body(2, 0, 3, "http://127.0.0.1:1/cb", true);
        assert_eq!(
            body["request"]["authdata"].as_array().map(Vec::len),
            Some(3)
        );
        assert_eq!(body["request"]["callbackProperties"]["callInBulk"], true);
        assert!(g2p_mts::valid_requesttime(
            body["requesttime"].as_str().unwrap_or_default()
        ));
    }

    #[test]
    fn parses_http_responses() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(raw), Some((200, &b"{}"[..])));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n"), None);
    }

    #[test]
    fn database_flag_shadows_the_global_one() {
        #[derive(clap::Parser)]
        struct Cli {
            #[arg(long, global = true)]
            database: Option<String>,
            #[command(subcommand)]
            command: crate::bench::BenchCommand,
        }
        use clap::{CommandFactory, Parser};
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["g2p", "mts", "--database", "postgres", "--records", "5"])
            .map_err(|e| e.to_string());
        match cli.map(|c| c.command) {
            Ok(crate::bench::BenchCommand::Mts(a)) => {
                assert_eq!((a.database.as_str(), a.records), ("postgres", 5));
            }
            other => panic!("{:?}", other.err()),
        }
    }
}
