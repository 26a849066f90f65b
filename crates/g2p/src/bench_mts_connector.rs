//! `g2p bench mts-connector`: the Registry MTS Connector on PostgreSQL, end to end and at its
//! callback receiver, against raw PostgreSQL `COPY` of equivalent rows.
//!
//! Each phase runs in a child process (`g2p bench mts-connector-phase`, hidden) on a FRESH
//! `g2p_bench_mtsc_*` database that the driver creates and drops (unless `--keep`). The phase
//! seeds the registrants itself (not measured), then starts the processes it measures as real
//! processes of this executable: `g2p serve` (the receiver, the worker and PostgreSQL's client)
//! and, end to end, `g2p mts serve` (mock authenticator, its own SQLite queue in a temporary
//! directory). Their peak RSS is their `VmHWM`, read just before they are stopped; their CPU
//! time, and that of every `postgres` process, is read from `/proc` around each measured step.
//!
//! - **e2e**: N registrants with a `MOSIP VID`; a connector created through the API (static
//!   bearer callbacks in bulk to the spawned `g2p serve`, one-time job); a run requested with
//!   `POST /api/v1/mts/connectors/{id}/runs`; timed until the run is `completed`. Every
//!   registrant must then hold the right `MOSIP AUTH TOKEN` and no VID.
//! - **ingest**: 2N registrants claimed for one run through the worker's own store calls
//!   (`claim_mts_chunk`, `mark_mts_chunk_submitted`), which yields the real opaque references;
//!   then the bench plays MTS: the first N come back as one callback per record over
//!   `--connections` connections, the other N as arrays of `--bulk-size` records. The baseline
//!   `COPY`s N rows of (ref, registrant_id, token) into a plain table of the same database.
//!
//! Request bodies are serialised before the clock starts: the client shares the two cores with
//! the server and PostgreSQL, and its JSON work is not the receiver's.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use g2p_domain::filter::Domain;
use g2p_domain::{Role, compose_name};
use g2p_store::Store;
use g2p_store::audit::Actor;
use g2p_store::db::ConnectOptions;
use g2p_store::import::{ImportFormat, ImportOptions};
use g2p_store::mts::{MtsSelection, RunKind, RunStatus};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolCopyExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::bench::{DEFAULT_PG_URL, RESULT_PREFIX, with_database};

/// Targets of the issue, on the reference 2-core machine.
pub const TARGET_PER_RECORD: f64 = 10_000.0;
pub const TARGET_BULK: f64 = 100_000.0;
/// 1,000,000 records end to end in under 5 minutes.
pub const TARGET_E2E_RATE: f64 = 1_000_000.0 / 300.0;
pub const TARGET_SERVE_RSS_KB: u64 = 500 * 1024;

const VID_TYPE: &str = "MOSIP VID";
const TOKEN_TYPE: &str = "MOSIP AUTH TOKEN";
/// `g2p mts serve`'s default partner id: the mock token is a function of it and the VID.
const PARTNER_ID: &str = "mpartner-default-mosip";
const COPY_BUFFER: usize = 1 << 20;
/// Linux reports process CPU time in clock ticks of 1/100 s (`CLK_TCK`, fixed on x86-64 and
/// arm64).
const TICKS_PER_SEC: f64 = 100.0;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchMtsConnectorArgs {
    /// Registrants tokenised end to end.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Records of each callback ingest step (per-record, bulk) and of the COPY baseline.
    #[arg(long, default_value_t = 100_000)]
    pub ingest_records: u64,
    /// Server on which fresh `g2p_bench_mtsc_*` databases are created (the URL's database is
    /// only used to create and drop them).
    #[arg(long, default_value = DEFAULT_PG_URL)]
    pub pg_url: String,
    /// The connector's chunk size: records per MTS request (and per claim in ingest).
    #[arg(long, default_value_t = 1000)]
    pub chunk_size: u32,
    /// Connections sending per-record callbacks at the same time.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Records per bulk callback.
    #[arg(long, default_value_t = 1000)]
    pub bulk_size: usize,
    /// Bulk callbacks in flight at the same time.
    #[arg(long, default_value_t = 4)]
    pub bulk_in_flight: usize,
    /// `g2p mts serve --concurrency`: authentications at the same time.
    #[arg(long, default_value_t = 8)]
    pub mts_concurrency: usize,
    /// `g2p mts serve --callback-concurrency`: MTS requests whose callbacks are delivered at
    /// the same time (with bulk callbacks, callback calls in flight).
    #[arg(long, default_value_t = 4)]
    pub callback_concurrency: usize,
    /// `g2p serve`'s database pool (`G2P_DB_MAX_CONNECTIONS`); its configured default when
    /// unset.
    #[arg(long)]
    pub db_max_connections: Option<u32>,
    /// How registrants are seeded (not measured): `copy` straight into `registrants` and
    /// `reg_ids`, or `import` through `Store::import_registrants` (validated, audited).
    #[arg(long, default_value = "copy", value_parser = ["copy", "import"])]
    pub seed: String,
    /// all, e2e or ingest.
    #[arg(long, default_value = "all", value_parser = ["all", "e2e", "ingest"])]
    pub phase: String,
    /// Give up on the end-to-end run after this many seconds.
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
    /// Keep the benchmark databases (and the MTS queue directory).
    #[arg(long)]
    pub keep: bool,
}

#[derive(clap::Args, Debug)]
pub struct MtsConnectorPhaseArgs {
    #[command(flatten)]
    pub bench: BenchMtsConnectorArgs,
    /// The fresh database of this phase.
    #[arg(long)]
    pub url: String,
}

/// CPU seconds spent during a measured step.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Cpu {
    pub serve: f64,
    pub mts: f64,
    /// Every `postgres` process of the machine (the benchmark is alone on the server).
    pub postgres: f64,
    /// The bench process itself (the client).
    pub client: f64,
}

/// One line of the result table.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    pub records: u64,
    /// Records that ended processed (tokenised).
    pub processed: u64,
    pub failed: u64,
    /// HTTP calls made by the client, where it made them.
    pub calls: u64,
    pub secs: f64,
    /// Peak RSS so far of `g2p serve` / `g2p mts`, KiB (0: not running in this step).
    pub serve_rss_kb: u64,
    pub mts_rss_kb: u64,
    pub cpu: Option<Cpu>,
    /// Whether it counts as measured (seeding and set-up rows do not).
    pub measured: bool,
}

impl Row {
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.records as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// A correctness check of a phase.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// What a child phase reports back (one line on stdout, after [`RESULT_PREFIX`]).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct PhaseResult {
    pub phase: String,
    pub rows: Vec<Row>,
    pub checks: Vec<Check>,
    /// End to end: seconds from the run request until the last chunk was accepted by MTS, and
    /// until the last callback was applied.
    pub submitted_secs: f64,
    pub last_callback_secs: f64,
    pub timed_out: bool,
    pub serve_peak_rss_kb: u64,
    pub mts_peak_rss_kb: u64,
}

// ---------------------------------------------------------------------------------------------
// Synthetic registrants
// ---------------------------------------------------------------------------------------------

const GIVEN: &[&str] = &[
    "Amina", "Grace", "Fatima", "Maria", "John", "Ibrahim", "Samuel", "Peter", "Aisha", "Joy",
    "Musa", "David", "Esther", "Joseph", "Ali", "Mercy",
];
const FAMILY: &[&str] = &[
    "Okafor", "Mensah", "Banda", "Mwangi", "Diallo", "Kamara", "Phiri", "Ndlovu", "Otieno",
    "Traore", "Santos", "Hassan",
];
const PLACES: &[&str] = &[
    "Riverside",
    "Hilltop",
    "Lakeview",
    "Green Valley",
    "Eastfield",
];

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Registrant `i` (from 0): what the default connector sends and MTS requires (name from
/// given and family name, gender, birthdate, address) and a distinct VID.
struct Person {
    key: String,
    given: &'static str,
    family: &'static str,
    gender: &'static str,
    birthdate: String,
    address: String,
    vid: String,
}

/// The VID of registrant `i` (distinct, 16 digits, never a mock failure prefix).
fn vid(i: u64) -> String {
    crate::bench_mts::vid(3, i)
}

/// Registrant `i`'s external key; [`index_of_key`] is its inverse.
fn key(i: u64) -> String {
    format!("bmc-{i:09}")
}

fn index_of_key(key: &str) -> Option<u64> {
    key.strip_prefix("bmc-")?.parse().ok()
}

fn person(i: u64) -> Person {
    let h = mix(i);
    let pick = |xs: &[&'static str], shift: u32| xs[((h >> shift) % xs.len() as u64) as usize];
    Person {
        key: key(i),
        given: pick(GIVEN, 0),
        family: pick(FAMILY, 8),
        gender: if h & 1 == 0 { "female" } else { "male" },
        birthdate: format!(
            "{}-{:02}-{:02}",
            1940 + (h >> 16) % 65,
            (h >> 24) % 12 + 1,
            (h >> 32) % 28 + 1
        ),
        address: format!("{} {}, District", (h >> 40) % 500 + 1, pick(PLACES, 48)),
        vid: vid(i),
    }
}

/// Escapes a value for COPY's text format.
fn copy_text(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

fn copy_line(out: &mut Vec<u8>, fields: &[&str]) {
    for (k, f) in fields.iter().enumerate() {
        if k > 0 {
            out.push(b'\t');
        }
        copy_text(out, f);
    }
    out.push(b'\n');
}

/// Seeds registrants `0..count` (ids `1..=count` with `copy`), each with a `MOSIP VID`, then
/// refreshes the planner's statistics as a live registry would have them.
async fn seed(store: &Store, how: &str, count: u64) -> anyhow::Result<()> {
    match how {
        "import" => seed_import(store, count).await?,
        _ => seed_copy(store, count).await?,
    }
    let pool = store.pg_pool().context("the benchmark needs PostgreSQL")?;
    sqlx::query("ANALYZE registrants").execute(pool).await?;
    sqlx::query("ANALYZE reg_ids").execute(pool).await?;
    Ok(())
}

async fn seed_copy(store: &Store, count: u64) -> anyhow::Result<()> {
    let pool = store.pg_pool().context("the benchmark needs PostgreSQL")?;
    let types = store.load_id_types().await?;
    let vid_type = types
        .get(VID_TYPE)
        .context("no MOSIP VID type")?
        .id
        .to_string();
    let now = "2026-01-01 00:00:00+00";
    let mut copy = pool
        .copy_in_raw(
            "COPY registrants (id, external_key, is_group, name, given_name, family_name, \
             gender, birthdate, address, registration_date, created_at, updated_at, version) \
             FROM STDIN",
        )
        .await?;
    let mut buf = Vec::with_capacity(COPY_BUFFER + 4096);
    for i in 0..count {
        let p = person(i);
        let name = compose_name(Some(p.family), Some(p.given), None);
        let id = (i + 1).to_string();
        copy_line(
            &mut buf,
            &[
                &id,
                &p.key,
                "f",
                &name,
                p.given,
                p.family,
                p.gender,
                &p.birthdate,
                &p.address,
                "2024-01-01",
                now,
                now,
                "1",
            ],
        );
        if buf.len() >= COPY_BUFFER {
            copy.send(std::mem::take(&mut buf)).await?;
            buf.reserve(COPY_BUFFER + 4096);
        }
    }
    copy.send(std::mem::take(&mut buf)).await?;
    copy.finish().await?;

    let mut copy = pool
        .copy_in_raw(
            "COPY reg_ids (registrant_id, id_type_id, value, status, created_at, updated_at) \
             FROM STDIN",
        )
        .await?;
    for i in 0..count {
        let id = (i + 1).to_string();
        copy_line(&mut buf, &[&id, &vid_type, &vid(i), "valid", now, now]);
        if buf.len() >= COPY_BUFFER {
            copy.send(std::mem::take(&mut buf)).await?;
            buf.reserve(COPY_BUFFER + 4096);
        }
    }
    copy.send(std::mem::take(&mut buf)).await?;
    copy.finish().await?;
    // Ids were chosen here: the identity moves past them for registrants created later.
    sqlx::query("SELECT setval(pg_get_serial_sequence('registrants', 'id'), $1)")
        .bind(i64::try_from(count.max(1))?)
        .execute(pool)
        .await?;
    Ok(())
}

/// The import path of the API and the CLI, fed NDJSON through a pipe (no file).
async fn seed_import(store: &Store, count: u64) -> anyhow::Result<()> {
    let (mut tx, rx) = tokio::io::duplex(1 << 20);
    let writer = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(1 << 18);
        for i in 0..count {
            let p = person(i);
            let v = json!({
                "external_key": p.key, "given_name": p.given, "family_name": p.family,
                "gender": p.gender, "birthdate": p.birthdate, "address": p.address,
                "registration_date": "2024-01-01",
                "ids": [{"id_type": VID_TYPE, "value": p.vid}],
            });
            serde_json::to_writer(&mut buf, &v)?;
            buf.push(b'\n');
            if buf.len() >= 1 << 18 {
                tx.write_all(&buf).await?;
                buf.clear();
            }
        }
        tx.write_all(&buf).await?;
        tx.shutdown().await?;
        anyhow::Ok(())
    });
    let report = store
        .import_registrants(
            rx,
            ImportFormat::Ndjson,
            &ImportOptions::default(),
            &Actor::system("bench"),
        )
        .await;
    writer.await??;
    let report = report?;
    ensure!(
        report.created == count,
        "the import created {} of {count} registrants ({} failed)",
        report.created,
        report.failed
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A value in KiB from `/proc/<pid>/status` (`VmHWM:`, `VmRSS:`).
fn proc_status_kb(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of a process so far, in clock ticks.
fn cpu_ticks(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the file (utime, stime); `rest` starts at field 3.
    let tick = |k: usize| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    tick(11) + tick(12)
}

/// CPU ticks of every `postgres` process.
fn postgres_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|pid| cpu_ticks(&pid))
        .sum()
}

/// A child process of this executable, killed when dropped (every error path).
struct Proc {
    child: tokio::process::Child,
    pid: String,
}

impl Proc {
    fn spawn(mut cmd: tokio::process::Command) -> anyhow::Result<Self> {
        let child = cmd
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a g2p process")?;
        let pid = child
            .id()
            .context("the process exited at once")?
            .to_string();
        Ok(Self { child, pid })
    }

    fn peak_rss_kb(&self) -> u64 {
        proc_status_kb(&self.pid, "VmHWM:")
    }

    fn ticks(&self) -> u64 {
        cpu_ticks(&self.pid)
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// CPU counters at the start of a measured step.
struct CpuMark {
    serve: u64,
    mts: u64,
    postgres: u64,
    client: u64,
}

impl CpuMark {
    fn take(serve: &Proc, mts: Option<&Proc>) -> Self {
        Self {
            serve: serve.ticks(),
            mts: mts.map_or(0, Proc::ticks),
            postgres: postgres_ticks(),
            client: cpu_ticks("self"),
        }
    }

    fn since(&self, serve: &Proc, mts: Option<&Proc>) -> Cpu {
        let now = Self::take(serve, mts);
        let secs = |a: u64, b: u64| a.saturating_sub(b) as f64 / TICKS_PER_SEC;
        Cpu {
            serve: secs(now.serve, self.serve),
            mts: secs(now.mts, self.mts),
            postgres: secs(now.postgres, self.postgres),
            client: secs(now.client, self.client),
        }
    }
}

/// A fresh directory for the children: their working directory (so no stray `g2p.toml` is
/// read) and the MTS queue.
fn temp_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "g2p_bench_mtsc_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the g2p executable")
}

/// A command of this executable with a clean configuration: no `g2p.toml` (it runs in `dir`),
/// no `G2P_CONFIG`, warnings only.
fn g2p_command(dir: &Path) -> anyhow::Result<tokio::process::Command> {
    let mut cmd = tokio::process::Command::new(exe()?);
    cmd.current_dir(dir)
        .env_remove("G2P_CONFIG")
        .env("G2P_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    Ok(cmd)
}

/// `g2p mts serve` on a free port with a fresh SQLite queue in `dir`; its base URL from the
/// banner it prints.
async fn spawn_mts(dir: &Path, args: &BenchMtsConnectorArgs) -> anyhow::Result<(Proc, String)> {
    let db = format!("sqlite://{}", dir.join("mts-queue.sqlite").display());
    let mut cmd = g2p_command(dir)?;
    cmd.args(["mts", "serve", "--listen", "127.0.0.1:0", "--database", &db])
        .args(["--concurrency", &args.mts_concurrency.to_string()])
        .args([
            "--callback-concurrency",
            &args.callback_concurrency.to_string(),
        ])
        .stdout(Stdio::piped());
    let mut proc = Proc::spawn(cmd)?;
    let stdout = proc.child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(w) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                return Ok(w.trim_end_matches('/').to_owned());
            }
        }
        bail!("g2p mts serve exited before listening")
    })
    .await
    .context("g2p mts serve did not start within 30 s")??;
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((proc, base))
}

/// A port nobody listens on now (the child binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// `g2p serve` (receiver and worker) on the phase database; its base URL once `/healthz`
/// answers.
async fn spawn_serve(
    dir: &Path,
    url: &str,
    secret_key: &str,
    args: &BenchMtsConnectorArgs,
    http: &reqwest::Client,
) -> anyhow::Result<(Proc, String)> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = g2p_command(dir)?;
    cmd.args(["serve", "--listen", &addr])
        .env("G2P_DATABASE_URL", url)
        .env("G2P_SECRET_KEY", secret_key)
        .stdout(Stdio::null());
    if let Some(n) = args.db_max_connections {
        cmd.env("G2P_DB_MAX_CONNECTIONS", n.to_string());
    }
    let mut proc = Proc::spawn(cmd)?;
    let base = format!("http://{addr}");
    let started = Instant::now();
    loop {
        if let Some(status) = proc.exited() {
            bail!("g2p serve exited ({status}) before answering");
        }
        let up = http
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            return Ok((proc, base));
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "g2p serve did not answer within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 64 hex characters: a fresh `G2P_SECRET_KEY`, or a callback secret.
fn random_hex64() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn http_client(connections: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(connections.max(8))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(300))
        .build()?)
}

/// The answer of a JSON call, or an error naming the call and the body.
async fn call(req: reqwest::RequestBuilder, what: &str, expect: u16) -> anyhow::Result<Value> {
    let resp = req
        .send()
        .await
        .with_context(|| format!("{what}: no answer"))?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await?;
    ensure!(
        status == expect,
        "{what}: HTTP {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A connector created through the API (as an operator would): registry input, every
/// registrant, static bearer callbacks in bulk to this `g2p serve`, one-time job.
async fn create_connector(
    http: &reqwest::Client,
    base: &str,
    api_key: &str,
    mts_url: &str,
    chunk_size: u32,
    callback_secret: &str,
) -> anyhow::Result<i64> {
    let auth = format!("Bearer {api_key}");
    let body = json!({
        "name": "bench",
        "mts_url": mts_url,
        "input_type": "registry",
        "job_type": "one_time",
        // The receiver's path holds the connector id, known once it exists.
        "callback_url": format!("{base}/api/v1/mts/callbacks/0"),
        "callback_auth_type": "staticBearer",
        "callback_password": callback_secret,
        "callback_timeout_seconds": 60,
        "call_in_bulk": true,
        "chunk_size": chunk_size,
    });
    let c = call(
        http.post(format!("{base}/api/v1/mts/connectors"))
            .header(AUTHORIZATION, &auth)
            .json(&body),
        "create connector",
        201,
    )
    .await?;
    let id = c["id"].as_i64().context("the connector has no id")?;
    call(
        http.patch(format!("{base}/api/v1/mts/connectors/{id}"))
            .header(AUTHORIZATION, &auth)
            .json(&json!({"callback_url": format!("{base}/api/v1/mts/callbacks/{id}")})),
        "point the connector at its receiver",
        200,
    )
    .await?;
    Ok(id)
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

async fn count(store: &Store, sql: &'static str, bind: &str) -> anyhow::Result<u64> {
    let pool = store.pg_pool().context("not PostgreSQL")?;
    let (n,): (i64,) = sqlx::query_as(sql).bind(bind).fetch_one(pool).await?;
    Ok(u64::try_from(n)?)
}

const COUNT_OF_TYPE: &str = "SELECT COUNT(*) FROM reg_ids \
    WHERE id_type_id = (SELECT id FROM id_types WHERE lower(name) = lower($1))";

/// Tokens stored, and how many of them are the mock's token of the registrant's VID.
async fn tokens(store: &Store) -> anyhow::Result<(u64, u64)> {
    const SQL: &str = "SELECT r.external_key, t.value FROM reg_ids t \
        JOIN registrants r ON r.id = t.registrant_id \
        WHERE t.id_type_id = (SELECT id FROM id_types WHERE lower(name) = lower($1))";
    let pool = store.pg_pool().context("not PostgreSQL")?;
    let mut rows = sqlx::query_as::<_, (Option<String>, String)>(SQL)
        .bind(TOKEN_TYPE)
        .fetch(pool);
    let (mut total, mut right) = (0u64, 0u64);
    while let Some((key, token)) = rows.try_next().await? {
        total += 1;
        let expected = key
            .as_deref()
            .and_then(index_of_key)
            .map(|i| g2p_mts::mock_token(&vid(i), PARTNER_ID));
        if expected.as_deref() == Some(token.as_str()) {
            right += 1;
        }
    }
    Ok((total, right))
}

async fn records_by_state(store: &Store, connector: i64) -> anyhow::Result<(u64, u64, u64)> {
    let pool = store.pg_pool().context("not PostgreSQL")?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, COUNT(*) FROM mts_records WHERE connector_id = $1 GROUP BY state",
    )
    .bind(connector)
    .fetch_all(pool)
    .await?;
    let get = |s: &str| {
        rows.iter()
            .find(|r| r.0 == s)
            .map_or(0, |r| u64::try_from(r.1).unwrap_or(0))
    };
    Ok((get("processed"), get("failed"), get("sent")))
}

/// Every registrant tokenised with the right token, no VID left, every record processed.
async fn verify(
    store: &Store,
    connector: i64,
    expected: u64,
    checks: &mut Vec<Check>,
) -> anyhow::Result<()> {
    let (processed, failed, sent) = records_by_state(store, connector).await?;
    checks.push(Check {
        name: "every record processed".into(),
        ok: processed == expected && failed == 0 && sent == 0,
        detail: format!("{processed} processed, {failed} failed, {sent} still sent, of {expected}"),
    });
    let (total, right) = tokens(store).await?;
    checks.push(Check {
        name: "every registrant holds its MOSIP AUTH TOKEN".into(),
        ok: total == expected && right == expected,
        detail: format!("{total} tokens, {right} equal to the mock's token of the VID"),
    });
    let vids = count(store, COUNT_OF_TYPE, VID_TYPE).await?;
    checks.push(Check {
        name: "no MOSIP VID left".into(),
        ok: vids == 0,
        detail: format!("{vids} VIDs left"),
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phase e2e
// ---------------------------------------------------------------------------------------------

async fn open(url: &str) -> anyhow::Result<Store> {
    let opts = ConnectOptions {
        max_connections: 4,
        ..ConnectOptions::default()
    };
    Store::open(url, &opts)
        .await
        .with_context(|| format!("cannot open {}", g2p_store::db::redact_url(url)))
}

async fn seed_row(store: &Store, args: &BenchMtsConnectorArgs, n: u64) -> anyhow::Result<Row> {
    eprintln!("mts-connector: seeding {n} registrants ({}) …", args.seed);
    let t = Instant::now();
    seed(store, &args.seed, n).await?;
    let row = Row {
        name: format!("seed ({}, not measured)", args.seed),
        records: n,
        secs: t.elapsed().as_secs_f64(),
        ..Row::default()
    };
    eprintln!(
        "mts-connector: seeded in {:.1} s ({:.0}/s)",
        row.secs,
        row.rate()
    );
    Ok(row)
}

async fn phase_e2e(args: &BenchMtsConnectorArgs, url: &str) -> anyhow::Result<PhaseResult> {
    let n = args.records;
    let store = open(url).await?;
    let mut out = PhaseResult {
        phase: "e2e".into(),
        ..PhaseResult::default()
    };
    out.rows.push(seed_row(&store, args, n).await?);
    let (_, api_key) = store
        .create_api_key("bench", Role::Admin, &Actor::system("bench"))
        .await?;
    let dir = temp_dir()?;
    let http = http_client(8)?;
    let outcome = async {
        let (mts, mts_url) = spawn_mts(&dir, args).await?;
        let (serve, base) = spawn_serve(&dir, url, &random_hex64(), args, &http).await?;
        let live = Live {
            store: &store,
            http: &http,
            api_key: &api_key,
            serve: &serve,
            base: &base,
        };
        let r = run_e2e(args, &live, &mts, &mts_url, &mut out).await;
        out.serve_peak_rss_kb = serve.peak_rss_kb();
        out.mts_peak_rss_kb = mts.peak_rss_kb();
        serve.stop().await;
        mts.stop().await;
        r
    }
    .await;
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    store.close().await;
    outcome?;
    Ok(out)
}

/// What a phase's measured steps work with.
struct Live<'a> {
    store: &'a Store,
    http: &'a reqwest::Client,
    /// An admin API key of the phase database.
    api_key: &'a str,
    serve: &'a Proc,
    /// `g2p serve`'s base URL.
    base: &'a str,
}

async fn run_e2e(
    args: &BenchMtsConnectorArgs,
    live: &Live<'_>,
    mts: &Proc,
    mts_url: &str,
    out: &mut PhaseResult,
) -> anyhow::Result<()> {
    let Live {
        store,
        http,
        api_key,
        serve,
        base,
    } = *live;
    let n = args.records;
    let secret = random_hex64();
    let cid = create_connector(http, base, api_key, mts_url, args.chunk_size, &secret).await?;
    let auth = format!("Bearer {api_key}");
    eprintln!(
        "mts-connector e2e: tokenising {n} registrants through {mts_url} (chunks of {}) …",
        args.chunk_size
    );

    let cpu = CpuMark::take(serve, Some(mts));
    let t0 = Instant::now();
    let t0_utc = Utc::now();
    let run = call(
        http.post(format!("{base}/api/v1/mts/connectors/{cid}/runs"))
            .header(AUTHORIZATION, &auth),
        "start a run",
        202,
    )
    .await?;
    let run_id = run["id"].as_i64().context("the run has no id")?;
    // Polled through the store, as `GET /api/v1/mts/runs/{id}` does but without its per-state
    // counts (a GROUP BY over the run's records every second would load PostgreSQL); the API
    // view is read every 15 s for progress, and at the end.
    let view = |what: &'static str| {
        call(
            http.get(format!("{base}/api/v1/mts/runs/{run_id}"))
                .header(AUTHORIZATION, &auth),
            what,
            200,
        )
    };
    let mut last_report = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = store.get_mts_run(run_id).await?;
        match r.status {
            RunStatus::Completed => break,
            RunStatus::Failed | RunStatus::Stopped => bail!(
                "run {run_id} ended {}: {}",
                r.status,
                r.error.unwrap_or_default()
            ),
            _ => {}
        }
        if t0.elapsed() > Duration::from_secs(args.timeout) {
            out.timed_out = true;
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(15) {
            last_report = Instant::now();
            let v = view("run progress").await?;
            eprintln!(
                "mts-connector e2e: {:>4.0} s  {}  sent {}  processed {}  failed {}  pending {}",
                t0.elapsed().as_secs_f64(),
                v["status"].as_str().unwrap_or("?"),
                v["sent"],
                v["progress"]["processed"],
                v["progress"]["failed"],
                v["progress"]["pending"]
            );
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu.since(serve, Some(mts));
    let v = view("run view").await?;
    let processed = v["progress"]["processed"].as_u64().unwrap_or(0);
    let failed = v["progress"]["failed"].as_u64().unwrap_or(0);

    let pool = store.pg_pool().context("not PostgreSQL")?;
    let (submitted, last_cb): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT (SELECT MAX(updated_at) FROM mts_chunks WHERE run_id = $1), \
                (SELECT MAX(updated_at) FROM mts_records WHERE run_id = $1)",
    )
    .bind(run_id)
    .fetch_one(pool)
    .await?;
    let since = |t: Option<DateTime<Utc>>| {
        t.map_or(0.0, |t| {
            (t - t0_utc).num_milliseconds().max(0) as f64 / 1000.0
        })
    };
    out.submitted_secs = since(submitted);
    out.last_callback_secs = since(last_cb);
    out.rows.push(Row {
        name: "e2e: run -> completed (bulk callbacks)".into(),
        records: n,
        processed,
        failed,
        calls: 0,
        secs,
        serve_rss_kb: serve.peak_rss_kb(),
        mts_rss_kb: mts.peak_rss_kb(),
        cpu: Some(cpu),
        measured: true,
    });
    eprintln!(
        "mts-connector e2e: {n} records in {secs:.1} s ({:.0}/s); verifying …",
        n as f64 / secs.max(1e-9)
    );
    out.checks.push(Check {
        name: "run completed in time".into(),
        ok: !out.timed_out,
        detail: format!("status {}", v["status"].as_str().unwrap_or("?")),
    });
    verify(store, cid, n, &mut out.checks).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phase ingest
// ---------------------------------------------------------------------------------------------

/// A record claimed for the run: its opaque reference, registrant and the token MTS would
/// return.
struct Sent {
    reference: String,
    registrant_id: i64,
    token: String,
}

/// What the receiver answered to a series of calls.
#[derive(Default)]
struct Answers {
    calls: u64,
    applied: u64,
    ignored: u64,
    errors: u64,
    first_error: Option<String>,
}

#[derive(Deserialize)]
struct Report {
    applied: u64,
    ignored: u64,
}

async fn post_all(
    http: &reqwest::Client,
    url: &str,
    auth: &str,
    bodies: Vec<Vec<u8>>,
    in_flight: usize,
) -> Answers {
    let mut answers = Answers::default();
    let mut calls = futures::stream::iter(bodies)
        .map(|body| {
            let req = http
                .post(url)
                .header(AUTHORIZATION, auth)
                .header(CONTENT_TYPE, "application/json")
                .body(body);
            async move {
                let resp = req.send().await?;
                let status = resp.status();
                Ok::<_, reqwest::Error>((status, resp.bytes().await?))
            }
        })
        .buffer_unordered(in_flight.max(1));
    while let Some(r) = calls.next().await {
        answers.calls += 1;
        let error = match r {
            Ok((status, body)) if status.is_success() => {
                match serde_json::from_slice::<Report>(&body) {
                    Ok(rep) => {
                        answers.applied += rep.applied;
                        answers.ignored += rep.ignored;
                        None
                    }
                    Err(e) => Some(format!("unexpected answer: {e}")),
                }
            }
            Ok((status, body)) => Some(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )),
            Err(e) => Some(e.without_url().to_string()),
        };
        if let Some(e) = error {
            answers.errors += 1;
            answers.first_error.get_or_insert(e);
        }
    }
    answers
}

fn item(s: &Sent) -> Value {
    json!({"ref": s.reference, "status": "processed", "token": s.token,
           "errorCode": null, "errorMessage": null})
}

async fn phase_ingest(args: &BenchMtsConnectorArgs, url: &str) -> anyhow::Result<PhaseResult> {
    let n = args.ingest_records;
    let store = open(url).await?;
    let mut out = PhaseResult {
        phase: "ingest".into(),
        ..PhaseResult::default()
    };
    out.rows.push(seed_row(&store, args, 2 * n).await?);
    let (_, api_key) = store
        .create_api_key("bench", Role::Admin, &Actor::system("bench"))
        .await?;
    let dir = temp_dir()?;
    let http = http_client(args.connections)?;
    let outcome = async {
        let (serve, base) = spawn_serve(&dir, url, &random_hex64(), args, &http).await?;
        let live = Live {
            store: &store,
            http: &http,
            api_key: &api_key,
            serve: &serve,
            base: &base,
        };
        let r = run_ingest(args, &live, &mut out).await;
        out.serve_peak_rss_kb = serve.peak_rss_kb();
        serve.stop().await;
        r
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    store.close().await;
    outcome?;
    Ok(out)
}

/// Claims every seeded registrant for one run through the worker's store calls, as if MTS
/// had accepted each chunk.
async fn claim_all(
    store: &Store,
    connector: i64,
    chunk: i64,
    total: u64,
) -> anyhow::Result<Vec<Sent>> {
    let run = store
        .create_mts_run(connector, RunKind::Delta, None, None, "bench")
        .await?;
    store
        .set_mts_run_status(run.id, RunStatus::Running, None)
        .await?;
    let filter = Domain::from_json(&json!([]))?;
    let sel = MtsSelection {
        connector_id: connector,
        vid_id_type: VID_TYPE,
        token_id_type: TOKEN_TYPE,
        filter: &filter,
        targets_of_run: None,
        max_attempts: 3,
        ignore_retry_time: false,
    };
    let mut sent = Vec::with_capacity(usize::try_from(total)?);
    let mut cursor = 0;
    loop {
        let claim = store.claim_mts_chunk(run.id, cursor, &sel, chunk).await?;
        if let Some(chunk_id) = claim.chunk_id {
            let k = claim.records.len() as i64;
            // Far in the future: the watchdog must not look at these chunks meanwhile.
            let check_at = Utc::now() + chrono::Duration::hours(6);
            store
                .mark_mts_chunk_submitted(
                    chunk_id,
                    &format!("bench-{chunk_id}"),
                    check_at,
                    run.id,
                    claim.cursor,
                    k,
                )
                .await?;
            for r in claim.records {
                sent.push(Sent {
                    token: g2p_mts::mock_token(&r.vid, PARTNER_ID),
                    reference: r.reference,
                    registrant_id: r.registrant.id,
                });
            }
        }
        cursor = claim.cursor;
        if !claim.more {
            break;
        }
    }
    store
        .set_mts_run_status(run.id, RunStatus::Submitted, None)
        .await?;
    // What autovacuum does within a minute or so in a live registry. Without it the planner
    // still takes the table for empty (as it was when the seed was analysed), and may match
    // callbacks against every `sent` record instead of through the reference's index.
    let pool = store.pg_pool().context("not PostgreSQL")?;
    sqlx::query("ANALYZE mts_records").execute(pool).await?;
    ensure!(
        sent.len() as u64 == total,
        "claimed {} of {total} registrants",
        sent.len()
    );
    Ok(sent)
}

async fn run_ingest(
    args: &BenchMtsConnectorArgs,
    live: &Live<'_>,
    out: &mut PhaseResult,
) -> anyhow::Result<()> {
    let Live {
        store,
        http,
        api_key,
        serve,
        base,
    } = *live;
    let n = args.ingest_records;
    let secret = random_hex64();
    // MTS is never called: the bench plays its part.
    let cid = create_connector(
        http,
        base,
        api_key,
        "http://127.0.0.1:9",
        args.chunk_size,
        &secret,
    )
    .await?;
    eprintln!("mts-connector ingest: claiming {} registrants …", 2 * n);
    let t = Instant::now();
    let sent = claim_all(store, cid, i64::from(args.chunk_size.max(1)), 2 * n).await?;
    out.rows.push(Row {
        name: format!("claim + mark submitted ({}/chunk)", args.chunk_size),
        records: 2 * n,
        secs: t.elapsed().as_secs_f64(),
        ..Row::default()
    });
    let split = usize::try_from(n)?;
    let (one_by_one, in_bulk) = sent.split_at(split);
    let url = format!("{base}/api/v1/mts/callbacks/{cid}");
    let auth = format!("Bearer {secret}");

    // (a) One callback per record, over many connections.
    let bodies = one_by_one
        .iter()
        .map(|s| serde_json::to_vec(&item(s)))
        .collect::<Result<Vec<_>, _>>()?;
    eprintln!(
        "mts-connector ingest: {n} per-record callbacks over {} connections …",
        args.connections
    );
    let cpu = CpuMark::take(serve, None);
    let t = Instant::now();
    let a = post_all(http, &url, &auth, bodies, args.connections).await;
    let secs = t.elapsed().as_secs_f64();
    out.rows.push(Row {
        name: format!("per-record callbacks ({} conns)", args.connections),
        records: n,
        processed: a.applied,
        calls: a.calls,
        secs,
        serve_rss_kb: serve.peak_rss_kb(),
        cpu: Some(cpu.since(serve, None)),
        measured: true,
        ..Row::default()
    });
    out.checks
        .push(answers_check("per-record callbacks", &a, n));
    eprintln!(
        "mts-connector ingest: per-record {:.0} callbacks/s",
        n as f64 / secs.max(1e-9)
    );

    // (b) Arrays of --bulk-size records, a few calls in flight.
    let bodies = in_bulk
        .chunks(args.bulk_size.max(1))
        .map(|part| serde_json::to_vec(&part.iter().map(item).collect::<Vec<_>>()))
        .collect::<Result<Vec<_>, _>>()?;
    eprintln!(
        "mts-connector ingest: {n} records in bulk callbacks of {} ({} in flight) …",
        args.bulk_size, args.bulk_in_flight
    );
    let cpu = CpuMark::take(serve, None);
    let t = Instant::now();
    let b = post_all(http, &url, &auth, bodies, args.bulk_in_flight).await;
    let secs = t.elapsed().as_secs_f64();
    out.rows.push(Row {
        name: format!(
            "bulk callbacks ({}/call, {} in flight)",
            args.bulk_size, args.bulk_in_flight
        ),
        records: n,
        processed: b.applied,
        calls: b.calls,
        secs,
        serve_rss_kb: serve.peak_rss_kb(),
        cpu: Some(cpu.since(serve, None)),
        measured: true,
        ..Row::default()
    });
    out.checks.push(answers_check("bulk callbacks", &b, n));
    eprintln!(
        "mts-connector ingest: bulk {:.0} rows/s; verifying …",
        n as f64 / secs.max(1e-9)
    );
    verify(store, cid, 2 * n, &mut out.checks).await?;

    // The physical baseline: the same (ref, registrant, token) rows, raw COPY, no index.
    let mut data = Vec::with_capacity(one_by_one.len() * 100);
    for s in one_by_one {
        copy_line(
            &mut data,
            &[&s.reference, &s.registrant_id.to_string(), &s.token],
        );
    }
    let pool = store.pg_pool().context("not PostgreSQL")?;
    sqlx::query(
        "CREATE TABLE bench_copy_baseline (ref TEXT NOT NULL, registrant_id BIGINT NOT NULL, \
         token TEXT NOT NULL)",
    )
    .execute(pool)
    .await?;
    eprintln!("mts-connector ingest: COPY baseline of {n} rows …");
    let cpu = CpuMark::take(serve, None);
    let t = Instant::now();
    let mut copy = pool
        .copy_in_raw("COPY bench_copy_baseline (ref, registrant_id, token) FROM STDIN")
        .await?;
    for part in data.chunks(COPY_BUFFER) {
        copy.send(part).await?;
    }
    let copied = copy.finish().await?;
    let secs = t.elapsed().as_secs_f64();
    out.rows.push(Row {
        name: "COPY baseline (ref, id, token)".into(),
        records: copied,
        processed: copied,
        secs,
        cpu: Some(cpu.since(serve, None)),
        measured: true,
        ..Row::default()
    });
    sqlx::query("DROP TABLE bench_copy_baseline")
        .execute(pool)
        .await?;
    Ok(())
}

fn answers_check(name: &str, a: &Answers, n: u64) -> Check {
    Check {
        name: format!("{name}: every record applied once"),
        ok: a.errors == 0 && a.applied == n && a.ignored == 0,
        detail: format!(
            "{} calls, {} applied, {} ignored, {} errors{}",
            a.calls,
            a.applied,
            a.ignored,
            a.errors,
            a.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

/// Prints a phase's result line (the hidden `mts-connector-phase` subcommand).
pub async fn phase_main(args: MtsConnectorPhaseArgs) -> anyhow::Result<()> {
    let result = match args.bench.phase.as_str() {
        "e2e" => phase_e2e(&args.bench, &args.url).await?,
        "ingest" => phase_ingest(&args.bench, &args.url).await?,
        other => bail!("unknown phase {other:?}"),
    };
    println!("{RESULT_PREFIX}{}", serde_json::to_string(&result)?);
    Ok(())
}

async fn child(
    args: &BenchMtsConnectorArgs,
    phase: &str,
    url: &str,
) -> anyhow::Result<PhaseResult> {
    let a = args;
    let mut cmd = tokio::process::Command::new(exe()?);
    cmd.args([
        "bench",
        "mts-connector-phase",
        "--phase",
        phase,
        "--url",
        url,
    ])
    .args(["--records", &a.records.to_string()])
    .args(["--ingest-records", &a.ingest_records.to_string()])
    .args(["--pg-url", &a.pg_url])
    .args(["--chunk-size", &a.chunk_size.to_string()])
    .args(["--connections", &a.connections.to_string()])
    .args(["--bulk-size", &a.bulk_size.to_string()])
    .args(["--bulk-in-flight", &a.bulk_in_flight.to_string()])
    .args(["--mts-concurrency", &a.mts_concurrency.to_string()])
    .args([
        "--callback-concurrency",
        &a.callback_concurrency.to_string(),
    ])
    .args(["--seed", &a.seed])
    .args(["--timeout", &a.timeout.to_string()]);
    if let Some(n) = a.db_max_connections {
        cmd.args(["--db-max-connections", &n.to_string()]);
    }
    if a.keep {
        cmd.arg("--keep");
    }
    crate::bench::spawn_phase(cmd, phase).await
}

fn mb(kb: u64) -> String {
    if kb == 0 {
        String::new()
    } else {
        format!("{:.0} MB", kb as f64 / 1024.0)
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "OK" } else { "MISSED" }
}

pub async fn bench_mts_connector(args: BenchMtsConnectorArgs) -> anyhow::Result<()> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let tag = &tag[..12];
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&args.pg_url)
        .await
        .with_context(|| {
            format!(
                "cannot reach PostgreSQL at {}",
                g2p_store::db::redact_url(&args.pg_url)
            )
        })?;
    let version: (String,) = sqlx::query_as("SHOW server_version")
        .fetch_one(&admin)
        .await?;
    let mut phases = Vec::new();
    if args.phase != "ingest" {
        phases.push("e2e");
    }
    if args.phase != "e2e" {
        phases.push("ingest");
    }
    let mut results: Vec<PhaseResult> = Vec::new();
    let mut failure = None;
    for phase in phases {
        let name = format!("g2p_bench_mtsc_{tag}_{phase}");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await?;
        let url = with_database(&args.pg_url, &name);
        eprintln!("mts-connector {phase}: database {name}");
        let r = child(&args, phase, &url).await;
        if args.keep {
            eprintln!("mts-connector {phase}: kept database {name}");
        } else {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await {
                eprintln!("could not drop {name}: {e}");
            }
        }
        match r {
            Ok(r) => results.push(r),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    admin.close().await;

    if !results.is_empty() {
        print_report(&args, &version.0, &results);
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(c) = results.iter().flat_map(|r| r.checks.iter()).find(|c| !c.ok) {
        bail!("check failed: {}: {}", c.name, c.detail);
    }
    Ok(())
}

fn print_report(args: &BenchMtsConnectorArgs, version: &str, results: &[PhaseResult]) {
    println!();
    println!(
        "g2p bench mts-connector: PostgreSQL {version}, seed {}, chunks of {}, mts concurrency \
         {} / callback concurrency {}, g2p serve pool {}",
        args.seed,
        args.chunk_size,
        args.mts_concurrency,
        args.callback_concurrency,
        args.db_max_connections
            .map_or_else(|| "default".to_owned(), |n| n.to_string())
    );
    println!(
        "{:<6} {:<40} {:>8} {:>9} {:>6} {:>7} {:>8} {:>10} {:>9} {:>8}   \
         CPU s: serve / mts / postgres / client",
        "phase",
        "step",
        "records",
        "processed",
        "failed",
        "calls",
        "seconds",
        "records/s",
        "serve RSS",
        "mts RSS",
    );
    for r in results {
        for row in &r.rows {
            let cpu = row
                .cpu
                .map(|c| {
                    format!(
                        "{:.1} / {:.1} / {:.1} / {:.1}",
                        c.serve, c.mts, c.postgres, c.client
                    )
                })
                .unwrap_or_default();
            let opt = |v: u64, shown: bool| if shown { v.to_string() } else { String::new() };
            println!(
                "{:<6} {:<40} {:>8} {:>9} {:>6} {:>7} {:>8.2} {:>10.0} {:>9} {:>8}   {}",
                r.phase,
                row.name,
                row.records,
                opt(row.processed, row.measured),
                opt(row.failed, row.measured),
                opt(row.calls, row.calls > 0),
                row.secs,
                row.rate(),
                mb(row.serve_rss_kb),
                mb(row.mts_rss_kb),
                cpu
            );
        }
    }
    println!();
    for r in results {
        match r.phase.as_str() {
            "e2e" => {
                if let Some(row) = r.rows.iter().find(|x| x.measured) {
                    let rate = row.rate();
                    println!(
                        "info    e2e: last chunk accepted by MTS at {:.1} s, last callback \
                         applied at {:.1} s",
                        r.submitted_secs, r.last_callback_secs
                    );
                    println!(
                        "target  e2e 1,000,000 records < 300 s (>= {TARGET_E2E_RATE:.0} \
                         records/s): {rate:.0} records/s, 1,000,000 in {:.0} s {}",
                        1_000_000.0 / rate.max(1e-9),
                        mark(rate >= TARGET_E2E_RATE && !r.timed_out)
                    );
                }
                println!(
                    "target  e2e g2p serve peak RSS < 500 MB: {} {}  (g2p mts: {})",
                    mb(r.serve_peak_rss_kb),
                    mark(r.serve_peak_rss_kb < TARGET_SERVE_RSS_KB),
                    mb(r.mts_peak_rss_kb)
                );
            }
            _ => {
                let rate = |prefix: &str| {
                    r.rows
                        .iter()
                        .find(|x| x.name.starts_with(prefix))
                        .map_or(0.0, Row::rate)
                };
                let (per, bulk, copy) = (rate("per-record"), rate("bulk"), rate("COPY"));
                println!(
                    "target  per-record callbacks >= {TARGET_PER_RECORD:.0}/s: {per:.0} {}",
                    mark(per >= TARGET_PER_RECORD)
                );
                println!(
                    "target  bulk callbacks >= {TARGET_BULK:.0} rows/s: {bulk:.0} {}",
                    mark(bulk >= TARGET_BULK)
                );
                if copy > 0.0 {
                    println!(
                        "info    vs COPY baseline ({copy:.0} rows/s): per-record {:.1}%, bulk \
                         {:.1}%",
                        100.0 * per / copy,
                        100.0 * bulk / copy
                    );
                }
                println!(
                    "target  ingest g2p serve peak RSS < 500 MB: {} {}",
                    mb(r.serve_peak_rss_kb),
                    mark(r.serve_peak_rss_kb < TARGET_SERVE_RSS_KB)
                );
            }
        }
        for c in &r.checks {
            println!(
                "check   {} {}: {} ({})",
                r.phase,
                c.name,
                if c.ok { "OK" } else { "FAILED" },
                c.detail
            );
        }
    }
    println!();
    for r in results {
        if let Ok(line) = serde_json::to_string(r) {
            println!("{RESULT_PREFIX}{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn keys_round_trip_and_vids_are_distinct() {
        let mut seen = HashSet::new();
        for i in 0..10_000 {
            assert_eq!(index_of_key(&key(i)), Some(i));
            assert!(seen.insert(vid(i)));
        }
        assert_eq!(index_of_key("bench-000000001"), None);
    }

    #[test]
    fn people_have_what_mts_requires() {
        let p = person(17);
        assert!(!p.given.is_empty() && !p.family.is_empty() && !p.address.is_empty());
        assert!(chrono::NaiveDate::parse_from_str(&p.birthdate, "%Y-%m-%d").is_ok());
        assert_eq!(p.vid.len(), 16);
    }

    #[test]
    fn copy_lines_escape_their_fields() {
        let mut out = Vec::new();
        copy_line(&mut out, &["a\tb", "c\\d", "e\nf"]);
        assert_eq!(out, b"a\\tb\tc\\\\d\te\\nf\n");
    }

    #[test]
    fn reads_its_own_cpu_and_memory() {
        assert!(proc_status_kb("self", "VmHWM:") > 0);
        let _ = cpu_ticks("self");
    }

    #[test]
    fn phase_args_parse() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            command: crate::bench::BenchCommand,
        }
        use clap::{CommandFactory, Parser};
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "g2p",
            "mts-connector-phase",
            "--phase",
            "ingest",
            "--url",
            "postgres://x/y",
            "--ingest-records",
            "5",
        ])
        .map_err(|e| e.to_string());
        match cli.map(|c| c.command) {
            Ok(crate::bench::BenchCommand::MtsConnectorPhase(a)) => {
                assert_eq!(
                    (
                        a.bench.phase.as_str(),
                        a.bench.ingest_records,
                        a.url.as_str()
                    ),
                    ("ingest", 5, "postgres://x/y")
                );
            }
            other => panic!("{:?}", other.err()),
        }
    }
}
