//! `g2p mts serve` and `g2p sim odk`: the built-in counterparts of MOSIP Token Seeder and ODK
//! Central, run as their own servers (the demo and the tests mount them in-process instead).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use clap::{Args, Subcommand};
use g2p_mts::{MtsService, MtsSettings};
use g2p_sim::odk::OdkSim;
use serde::Serialize;

use crate::shutdown_signal;

/// `g2p mts …`: the MOSIP Token Seeder compatible service, a product of its own (crate
/// `g2p-mts`) with its own settings; g2p's configuration is not read.
// Parsed once at start-up and moved once: the size of the flags' variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum MtsCommand {
    /// Serve the MTS API (/authtoken/json, csv, odk, status, file, authfields, ping).
    Serve(MtsServeArgs),
    /// A jq worker process of `g2p mts serve` (started by it; JSON lines on stdin/stdout).
    #[command(hide = true)]
    JqWorker(g2p_mts::jq::WorkerArgs),
}

/// Explicit flags of `g2p mts serve`. Each one overrides the same key of the configuration
/// file and of the `G2P_MTS_*` environment (see crates/mts/README.md); absent flags are not
/// serialised, so they override nothing.
#[derive(Args, Debug, Default, Serialize)]
pub struct MtsServeArgs {
    /// Address to listen on [default: 127.0.0.1:8090].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// The queue's database: sqlite://FILE (default sqlite://mts-queue.sqlite) or postgres://… .
    #[arg(long = "database")]
    #[serde(rename = "database_url", skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Partner id (enters the mock token formula) [default: mpartner-default-mosip].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<String>,
    /// Server-wide mandatory fields, comma-separated (name, gender, dob, phoneNumber, emailId,
    /// fullAddress) [default: name,gender,dob,fullAddress].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mandatory_fields: Option<String>,
    /// Language used when a request names none [default: eng].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_lang: Option<String>,
    /// Authentications run at the same time [default: 8].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Requests whose callbacks are delivered at the same time (each request's callbacks go
    /// out in input order) [default: 8].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_concurrency: Option<usize>,
    /// Seconds a delivered request is kept for status and download [default: 21600].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_seconds: Option<u64>,
    /// Callback attempts in total before a delivery is given up [default: 8].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_attempts: Option<u32>,
    /// First callback retry delay, milliseconds (doubles each time) [default: 1000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_backoff_ms: Option<u64>,
    /// Largest request body, bytes [default: 67108864].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<usize>,
    /// Make VIDs starting with 9999 fail demographic authentication (IDA-DEA-001) and those
    /// starting with 8888 be unknown (for demos of error paths).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mock_failures: bool,
    /// Milliseconds the mock authenticator takes per record (to rehearse a slow IDA) [default: 0].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mock_latency_ms: Option<u64>,
    /// Milliseconds workers may go on with their batch after SIGTERM before handing it back
    /// to the queue [default: 10000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_ms: Option<u64>,
    /// jq worker processes evaluating outputFormats [default: 2].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jq_workers: Option<usize>,
    /// Wall-clock bound of one outputFormat evaluation, milliseconds [default: 2000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jq_timeout_ms: Option<u64>,
    /// Memory a jq worker may use above its start-up size, MiB [default: 256].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jq_memory_mb: Option<u64>,
}

/// Runs a `g2p mts` command. `config` is the global `--config` (for `serve`: a g2p mts
/// settings file). The jq worker starts no runtime and no logging: it only answers jobs.
pub fn mts_main(command: MtsCommand, config: Option<&Path>) -> anyhow::Result<()> {
    match command {
        MtsCommand::JqWorker(args) => {
            g2p_mts::jq::worker_main(&args).map_err(|e| anyhow::anyhow!(e))
        }
        MtsCommand::Serve(args) => {
            let settings = MtsSettings::load(config, &args)?;
            crate::telemetry::init_logging(&settings.log_format, false);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(mts_serve(settings))
        }
    }
}

pub async fn mts_serve(settings: MtsSettings) -> anyhow::Result<()> {
    tracing::debug!(?settings, "g2p mts settings");
    let cfg = settings.mts_config()?;
    let auth = settings.authenticator();
    let svc = MtsService::start(cfg, &settings.database_url, Arc::new(auth))
        .await
        .with_context(|| {
            format!(
                "cannot open the MTS queue database {}",
                g2p_mts::redact_url(&settings.database_url)
            )
        })?;
    let (addr, _server) = svc.serve(settings.listen).await.context("cannot listen")?;
    println!("g2p mts (MOSIP Token Seeder compatible) on http://{addr}/  (mock authenticator)");
    shutdown_signal().await;
    tracing::info!("g2p mts: shutting down");
    svc.shutdown().await;
    Ok(())
}

#[derive(Args, Debug)]
pub struct OdkSimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8091")]
    pub listen: SocketAddr,
    /// Load forms and submissions from this JSON file instead of generating them.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Submissions to generate (one every 10 minutes, ending now).
    #[arg(long, default_value_t = 100)]
    pub submissions: usize,
    /// Seed of the generator (same seed, same people).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub async fn odk_sim(a: OdkSimArgs) -> anyhow::Result<()> {
    let sim = match &a.data {
        Some(p) => {
            OdkSim::from_json_file(p).with_context(|| format!("cannot load {}", p.display()))?
        }
        None => {
            let interval = TimeDelta::minutes(10);
            let start = Utc::now() - interval * i32::try_from(a.submissions).unwrap_or(i32::MAX);
            OdkSim::generate(a.seed, a.submissions, start, interval)
        }
    };
    let (addr, server) = g2p_sim::odk::serve(sim, a.listen)
        .await
        .context("cannot listen")?;
    println!("g2p sim odk (ODK Central simulator) on http://{addr}/");
    println!(
        "  sign in: POST /v1/sessions with {} / {}",
        g2p_sim::odk::DEFAULT_EMAIL,
        g2p_sim::odk::DEFAULT_PASSWORD
    );
    shutdown_signal().await;
    server.abort();
    Ok(())
}
