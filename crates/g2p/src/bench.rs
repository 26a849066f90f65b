//! `g2p bench import`: how fast the bulk import is, against raw PostgreSQL `COPY` into the same
//! schema, how much memory it needs, and how fast the first page of an ID-type search is on the
//! result.
//!
//! It writes N synthetic registrants (two IDs each) to an NDJSON file, streamed, then for each
//! backend imports that file into a FRESH database through [`Store::import_registrants`] — the
//! code path of the API and the CLI. Each measured phase runs in a child process (`g2p bench
//! import-phase`, hidden) so that the peak RSS it reports (`VmHWM`) belongs to that phase alone.
//! Benchmark databases and the data file are removed afterwards unless `--keep`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{Duration as Days, NaiveDate};
use g2p_domain::compose_name;
use g2p_domain::filter::Domain;
use g2p_store::Store;
use g2p_store::audit::Actor;
use g2p_store::db::ConnectOptions;
use g2p_store::import::{DEFAULT_CHUNK_SIZE, ImportFormat, ImportOptions};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::postgres::PgPoolCopyExt;

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The search whose first page is timed.
const SEARCH_FILTER: &str = r#"[["reg_ids.id_type","=","MOSIP VID"]]"#;
pub(crate) const RESULT_PREFIX: &str = "G2P_BENCH_RESULT ";
const COPY_BUFFER: usize = 1 << 20;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Bulk import throughput vs raw PostgreSQL COPY, peak memory, first-page search latency.
    Import(BenchImportArgs),
    /// One measured phase of `bench import`, run as a child process.
    #[command(hide = true)]
    ImportPhase(PhaseArgs),
    /// MTS token seeder throughput with per-record and bulk callbacks, peak memory.
    Mts(crate::bench_mts::BenchMtsArgs),
    /// One measured phase of `bench mts`, run as a child process.
    #[command(hide = true)]
    MtsPhase(crate::bench_mts::MtsPhaseArgs),
    /// Registry MTS Connector on PostgreSQL: 1M registrants tokenised end to end through
    /// g2p serve and g2p mts, callback ingest (per-record and bulk) vs raw COPY, peak memory.
    MtsConnector(crate::bench_mts_connector::BenchMtsConnectorArgs),
    /// One measured phase of `bench mts-connector`, run as a child process.
    #[command(hide = true)]
    MtsConnectorPhase(crate::bench_mts_connector::MtsConnectorPhaseArgs),
}

#[derive(clap::Args, Debug)]
pub struct BenchImportArgs {
    /// Synthetic registrants to generate (two IDs each).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// postgres, sqlite or both.
    #[arg(long, default_value = "both", value_parser = ["postgres", "sqlite", "both"])]
    pub backend: String,
    /// Server on which fresh `g2p_bench_*` databases are created (the URL's database is only
    /// used to create and drop them).
    #[arg(long, default_value = DEFAULT_PG_URL)]
    pub pg_url: String,
    /// Rows per import transaction.
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE)]
    pub chunk_size: usize,
    /// Keep the benchmark databases and the data file.
    #[arg(long)]
    pub keep: bool,
}

#[derive(clap::Args, Debug)]
pub struct PhaseArgs {
    /// import, copy or search.
    #[arg(long)]
    pub phase: String,
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub rows: u64,
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE)]
    pub chunk_size: usize,
}

/// What a child phase reports back (one line on stdout, after [`RESULT_PREFIX`]).
#[derive(Debug, Default, Serialize, Deserialize)]
struct PhaseResult {
    rows: u64,
    secs: f64,
    created: u64,
    failed: u64,
    peak_rss_kb: u64,
    /// Search phase: median, min and max first-page latency, and rows on the page.
    p50_ms: f64,
    min_ms: f64,
    max_ms: f64,
    page_rows: usize,
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Import(args) => bench_import(args).await,
        BenchCommand::ImportPhase(args) => {
            let result = run_phase(&args).await?;
            println!("{RESULT_PREFIX}{}", serde_json::to_string(&result)?);
            Ok(())
        }
        BenchCommand::Mts(args) => crate::bench_mts::bench_mts(args).await,
        BenchCommand::MtsPhase(args) => crate::bench_mts::phase_main(args).await,
        BenchCommand::MtsConnector(args) => {
            crate::bench_mts_connector::bench_mts_connector(args).await
        }
        BenchCommand::MtsConnectorPhase(args) => crate::bench_mts_connector::phase_main(args).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic data
// ---------------------------------------------------------------------------------------------

const GIVEN: &[&str] = &[
    "Amina", "Grace", "Fatima", "Maria", "John", "Ibrahim", "Samuel", "Peter", "Aisha", "Joy",
    "Musa", "David", "Esther", "Joseph", "Ali", "Mercy", "Daniel", "Halima", "Rose", "Kofi",
];
const FAMILY: &[&str] = &[
    "Okafor", "Mensah", "Banda", "Mwangi", "Diallo", "Kamara", "Phiri", "Ndlovu", "Otieno",
    "Traore", "Santos", "Garcia", "Hassan", "Mohamed", "Tembo", "Abebe", "Kariuki", "Moyo",
];
const PLACES: &[&str] = &[
    "Riverside",
    "Hilltop",
    "Lakeview",
    "Green Valley",
    "Market Town",
    "Eastfield",
    "Northgate",
];

/// One synthetic registrant, a pure function of its index (same data for import and COPY).
struct Synth {
    key: String,
    given: &'static str,
    family: &'static str,
    gender: &'static str,
    birthdate: NaiveDate,
    phone: String,
    address: String,
    registration_date: NaiveDate,
    national_id: String,
    vid: String,
    household_size: u64,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64: cheap, well spread, deterministic.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn synth(i: u64) -> Synth {
    let h = mix(i);
    let pick =
        |xs: &'static [&'static str], shift: u32| xs[((h >> shift) % xs.len() as u64) as usize];
    let base = NaiveDate::from_ymd_opt(1940, 1, 1).unwrap_or_default();
    let reg_base = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap_or_default();
    Synth {
        key: format!("bench-{i:09}"),
        given: pick(GIVEN, 0),
        family: pick(FAMILY, 8),
        gender: if h & 1 == 0 { "female" } else { "male" },
        birthdate: base + Days::days(((h >> 16) % 25_000) as i64),
        phone: format!("+2547{:08}", (h >> 20) % 100_000_000),
        address: format!(
            "{} {}, {}",
            (h >> 40) % 500 + 1,
            pick(PLACES, 24),
            "District"
        ),
        registration_date: reg_base + Days::days(((h >> 32) % 1_500) as i64),
        national_id: format!("NID{i:010}"),
        vid: format!("{:016}", mix(i ^ 0xABCD) % 10_000_000_000_000_000),
        household_size: (h >> 50) % 9 + 1,
    }
}

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// Writes `rows` registrants as NDJSON, streamed through a buffer.
fn generate_ndjson(path: &Path, rows: u64) -> anyhow::Result<u64> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    for i in 0..rows {
        let s = synth(i);
        let v = json!({
            "external_key": s.key,
            "given_name": s.given,
            "family_name": s.family,
            "gender": s.gender,
            "birthdate": date(s.birthdate),
            "address": s.address,
            "phone_numbers": [{"phone_no": s.phone}],
            "registration_date": date(s.registration_date),
            "attributes": {"household_size": s.household_size},
            "ids": [
                {"id_type": "NATIONAL ID", "value": s.national_id},
                {"id_type": "MOSIP VID", "value": s.vid},
            ],
        });
        serde_json::to_writer(&mut w, &v)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

// ---------------------------------------------------------------------------------------------
// Phases (child processes)
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

async fn open(url: &str) -> anyhow::Result<Store> {
    let opts = ConnectOptions {
        max_connections: 4,
        ..ConnectOptions::default()
    };
    Store::open(url, &opts)
        .await
        .with_context(|| format!("cannot open {}", g2p_store::db::redact_url(url)))
}

async fn run_phase(args: &PhaseArgs) -> anyhow::Result<PhaseResult> {
    let store = open(&args.url).await?;
    let result = match args.phase.as_str() {
        "import" => phase_import(&store, args).await,
        "copy" => phase_copy(&store, args.rows).await,
        "search" => phase_search(&store).await,
        other => bail!("unknown phase {other:?}"),
    };
    store.close().await;
    let mut result = result?;
    result.peak_rss_kb = peak_rss_kb();
    Ok(result)
}

async fn phase_import(store: &Store, args: &PhaseArgs) -> anyhow::Result<PhaseResult> {
    let path = args.file.as_deref().context("--file is required")?;
    let file = tokio::fs::File::open(path).await?;
    let opts = ImportOptions {
        chunk_size: args.chunk_size,
        ..ImportOptions::default()
    };
    let t = Instant::now();
    let report = store
        .import_registrants(file, ImportFormat::Ndjson, &opts, &Actor::system("bench"))
        .await?;
    Ok(PhaseResult {
        rows: report.rows_total,
        secs: t.elapsed().as_secs_f64(),
        created: report.created,
        failed: report.failed,
        ..PhaseResult::default()
    })
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

/// The baseline: the same rows straight into `registrants` and `reg_ids` with `COPY … FROM
/// STDIN` (text format), no validation, ids chosen by the loader.
async fn phase_copy(store: &Store, rows: u64) -> anyhow::Result<PhaseResult> {
    let pool = store
        .pg_pool()
        .context("the COPY baseline needs PostgreSQL")?;
    let types = store.load_id_types().await?;
    let nid = types.get("NATIONAL ID").context("no NATIONAL ID type")?.id;
    let vid = types.get("MOSIP VID").context("no MOSIP VID type")?.id;
    let now = "2026-01-01 00:00:00+00";
    let t = Instant::now();

    let mut copy = pool
        .copy_in_raw(
            "COPY registrants (id, external_key, is_group, name, given_name, family_name, \
             gender, birthdate, birthdate_not_exact, address, phone, phone_numbers, \
             registration_date, disabled, attributes, created_at, updated_at, version) FROM STDIN",
        )
        .await?;
    let mut buf = Vec::with_capacity(COPY_BUFFER + 4096);
    for i in 0..rows {
        let s = synth(i);
        let name = compose_name(Some(s.family), Some(s.given), None);
        let phones = json!([{"phone_no": s.phone}]).to_string();
        let attrs = json!({"household_size": s.household_size}).to_string();
        let id = (i + 1).to_string();
        let fields: [&str; 18] = [
            &id,
            &s.key,
            "f",
            &name,
            s.given,
            s.family,
            s.gender,
            &date(s.birthdate),
            "f",
            &s.address,
            &s.phone,
            &phones,
            &date(s.registration_date),
            "f",
            &attrs,
            now,
            now,
            "1",
        ];
        for (k, f) in fields.iter().enumerate() {
            if k > 0 {
                buf.push(b'\t');
            }
            copy_text(&mut buf, f);
        }
        buf.push(b'\n');
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
    for i in 0..rows {
        let s = synth(i);
        let id = (i + 1).to_string();
        for (t, v) in [(nid, &s.national_id), (vid, &s.vid)] {
            let line = format!("{id}\t{t}\t{v}\tvalid\t{now}\t{now}\n");
            buf.extend_from_slice(line.as_bytes());
        }
        if buf.len() >= COPY_BUFFER {
            copy.send(std::mem::take(&mut buf)).await?;
            buf.reserve(COPY_BUFFER + 4096);
        }
    }
    copy.send(std::mem::take(&mut buf)).await?;
    copy.finish().await?;
    Ok(PhaseResult {
        rows,
        secs: t.elapsed().as_secs_f64(),
        created: rows,
        ..PhaseResult::default()
    })
}

async fn phase_search(store: &Store) -> anyhow::Result<PhaseResult> {
    let domain = Domain::parse_str(SEARCH_FILTER)?;
    for _ in 0..3 {
        store.search_registrants(&domain, None, 50).await?;
    }
    let mut times = Vec::new();
    let mut page_rows = 0;
    for _ in 0..21 {
        let t = Instant::now();
        let page = store.search_registrants(&domain, None, 50).await?;
        times.push(t.elapsed());
        page_rows = page.items.len();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(PhaseResult {
        p50_ms: ms(times[times.len() / 2]),
        min_ms: times.first().copied().map(ms).unwrap_or_default(),
        max_ms: times.last().copied().map(ms).unwrap_or_default(),
        page_rows,
        ..PhaseResult::default()
    })
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

async fn child(
    phase: &str,
    url: &str,
    file: &Path,
    rows: u64,
    chunk: usize,
) -> anyhow::Result<PhaseResult> {
    let exe = std::env::current_exe().context("cannot find the g2p executable")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["bench", "import-phase", "--phase", phase, "--url", url])
        .arg("--file")
        .arg(file)
        .args([
            "--rows",
            &rows.to_string(),
            "--chunk-size",
            &chunk.to_string(),
        ]);
    spawn_phase(cmd, phase).await
}

/// Runs a child phase and reads the result it printed. Not `output()`: tokio then pipes stderr
/// too, and the phase's progress and errors (and those of the processes it starts) would be
/// lost.
pub(crate) async fn spawn_phase<T: serde::de::DeserializeOwned>(
    mut cmd: tokio::process::Command,
    phase: &str,
) -> anyhow::Result<T> {
    use std::process::Stdio;
    let output = cmd
        .env("G2P_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the phase")?
        .wait_with_output()
        .await?;
    phase_result(&output, phase)
}

/// The result a child phase printed on its `RESULT_PREFIX` line.
pub(crate) fn phase_result<T: serde::de::DeserializeOwned>(
    output: &std::process::Output,
    phase: &str,
) -> anyhow::Result<T> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("phase {phase} failed ({}): {stdout}", output.status);
    }
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(RESULT_PREFIX))
        .with_context(|| format!("phase {phase} printed no result: {stdout}"))?;
    Ok(serde_json::from_str(line)?)
}

/// `url` with its database name replaced.
pub(crate) fn with_database(url: &str, db: &str) -> String {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    let (path_start, query) = match url[scheme_end..].find('/') {
        Some(i) => {
            let rest = &url[scheme_end + i..];
            let q = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
            (scheme_end + i, q)
        }
        None => (url.len(), ""),
    };
    format!("{}/{db}{query}", &url[..path_start])
}

struct PgServer {
    admin: Store,
    url: String,
}

impl PgServer {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        let admin = Store::connect(
            url,
            &ConnectOptions {
                max_connections: 2,
                ..Default::default()
            },
        )
        .await
        .with_context(|| {
            format!(
                "cannot reach PostgreSQL at {}",
                g2p_store::db::redact_url(url)
            )
        })?;
        Ok(Self {
            admin,
            url: url.to_owned(),
        })
    }

    async fn create(&self, name: &str) -> anyhow::Result<String> {
        let pool = self.admin.pg_pool().context("not PostgreSQL")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(pool)
            .await?;
        Ok(with_database(&self.url, name))
    }

    async fn drop(&self, name: &str) {
        if let Some(pool) = self.admin.pg_pool() {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await {
                eprintln!("could not drop {name}: {e}");
            }
        }
    }
}

struct Row {
    backend: &'static str,
    phase: &'static str,
    result: PhaseResult,
}

fn mb(kb: u64) -> String {
    format!("{:.0} MB", kb as f64 / 1024.0)
}

async fn bench_import(args: BenchImportArgs) -> anyhow::Result<()> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let tag = &tag[..12];
    let file = std::env::temp_dir().join(format!("g2p_bench_{tag}.ndjson"));
    eprintln!(
        "generating {} registrants into {} …",
        args.rows,
        file.display()
    );
    let t = Instant::now();
    let rows = args.rows;
    let path = file.clone();
    let size = tokio::task::spawn_blocking(move || generate_ndjson(&path, rows)).await??;
    eprintln!(
        "generated {:.0} MB in {:.1} s",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let mut table: Vec<Row> = Vec::new();
    let result = run_backends(&args, tag, &file, &mut table).await;
    if !args.keep {
        let _ = std::fs::remove_file(&file);
    }
    result?;

    println!();
    println!(
        "g2p bench import: {} registrants x 2 IDs, NDJSON {:.0} MB, chunk size {}",
        args.rows,
        size as f64 / 1e6,
        args.chunk_size
    );
    println!(
        "{:<9} {:<30} {:>10} {:>9} {:>10} {:>9}",
        "backend", "phase", "rows", "seconds", "rows/s", "peak RSS"
    );
    for r in &table {
        let p = &r.result;
        if r.phase.starts_with("search") {
            println!(
                "{:<9} {:<30} {:>10} {:>9} {:>10} {:>9}   p50 {:.2} ms (min {:.2}, max {:.2})",
                r.backend,
                r.phase,
                p.page_rows,
                "",
                "",
                mb(p.peak_rss_kb),
                p.p50_ms,
                p.min_ms,
                p.max_ms
            );
        } else {
            let rate = if p.secs > 0.0 {
                p.rows as f64 / p.secs
            } else {
                0.0
            };
            println!(
                "{:<9} {:<30} {:>10} {:>9.1} {:>10.0} {:>9}",
                r.backend,
                r.phase,
                p.rows,
                p.secs,
                rate,
                mb(p.peak_rss_kb)
            );
        }
    }
    let rate = |backend: &str, phase: &str| {
        table
            .iter()
            .find(|r| r.backend == backend && r.phase == phase)
            .map(|r| r.result.rows as f64 / r.result.secs.max(1e-9))
    };
    println!();
    if let (Some(i), Some(c)) = (
        rate("postgres", "import (validated, audited)"),
        rate("postgres", "COPY baseline (raw)"),
    ) {
        let pct = 100.0 * i / c;
        println!(
            "target  import >= 50% of COPY on PostgreSQL: {pct:.0}% {}",
            mark(pct >= 50.0)
        );
    }
    let peak = table
        .iter()
        .map(|r| r.result.peak_rss_kb)
        .max()
        .unwrap_or(0);
    println!(
        "target  peak RSS < 300 MB: {} {}",
        mb(peak),
        mark(peak < 300 * 1024)
    );
    for r in table.iter().filter(|r| r.phase.starts_with("search")) {
        println!(
            "target  first page < 50 ms ({}): {:.2} ms {}",
            r.backend,
            r.result.p50_ms,
            mark(r.result.p50_ms < 50.0)
        );
    }
    Ok(())
}

fn mark(ok: bool) -> &'static str {
    if ok { "OK" } else { "MISSED" }
}

async fn run_backends(
    args: &BenchImportArgs,
    tag: &str,
    file: &Path,
    table: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let chunk = args.chunk_size;
    if args.backend == "postgres" || args.backend == "both" {
        let server = PgServer::connect(&args.pg_url).await?;
        let import_db = format!("g2p_bench_{tag}");
        let copy_db = format!("g2p_bench_{tag}_copy");
        let outcome: anyhow::Result<()> = async {
            let url = server.create(&import_db).await?;
            eprintln!("postgres: importing into {import_db} …");
            let r = child("import", &url, file, args.rows, chunk).await?;
            anyhow::ensure!(
                r.created == args.rows,
                "import created {} of {} rows",
                r.created,
                args.rows
            );
            table.push(Row {
                backend: "postgres",
                phase: "import (validated, audited)",
                result: r,
            });
            eprintln!("postgres: searching …");
            let r = child("search", &url, file, args.rows, chunk).await?;
            table.push(Row {
                backend: "postgres",
                phase: "search first page (50)",
                result: r,
            });
            let url = server.create(&copy_db).await?;
            eprintln!("postgres: COPY baseline into {copy_db} …");
            let r = child("copy", &url, file, args.rows, chunk).await?;
            table.push(Row {
                backend: "postgres",
                phase: "COPY baseline (raw)",
                result: r,
            });
            Ok(())
        }
        .await;
        if !args.keep {
            server.drop(&import_db).await;
            server.drop(&copy_db).await;
        }
        server.admin.close().await;
        outcome?;
    }
    if args.backend == "sqlite" || args.backend == "both" {
        let db = std::env::temp_dir().join(format!("g2p_bench_{tag}.sqlite"));
        let url = format!("sqlite://{}", db.display());
        let outcome: anyhow::Result<()> = async {
            eprintln!("sqlite: importing into {} …", db.display());
            let r = child("import", &url, file, args.rows, chunk).await?;
            anyhow::ensure!(
                r.created == args.rows,
                "import created {} of {} rows",
                r.created,
                args.rows
            );
            table.push(Row {
                backend: "sqlite",
                phase: "import (validated, audited)",
                result: r,
            });
            eprintln!("sqlite: searching …");
            let r = child("search", &url, file, args.rows, chunk).await?;
            table.push(Row {
                backend: "sqlite",
                phase: "search first page (50)",
                result: r,
            });
            Ok(())
        }
        .await;
        if !args.keep {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
        }
        outcome?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }

    #[test]
    fn synthetic_rows_are_valid_and_deterministic() {
        let a = synth(7);
        let b = synth(7);
        assert_eq!((a.key, a.vid.len()), (b.key, 16));
        assert!(a.birthdate < a.registration_date);
    }
}
