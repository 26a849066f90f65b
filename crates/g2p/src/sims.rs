//! `g2p mts serve` and `g2p sim odk`: the built-in counterparts of MOSIP Token Seeder and ODK
//! Central, run as their own servers (the demo and the tests mount them in-process instead).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use clap::Args;
use g2p_mts::{AuthField, MockAuthenticator, MtsConfig, MtsService};
use g2p_sim::odk::OdkSim;

use crate::shutdown_signal;

#[derive(Args, Debug)]
pub struct MtsServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// The queue's database: sqlite://FILE (default, embedded) or postgres://… .
    #[arg(long = "database", default_value = g2p_mts::DEFAULT_DATABASE_URL, env = "G2P_MTS_DATABASE_URL")]
    pub database: String,
    /// Partner id (enters the mock token formula).
    #[arg(long, default_value = "mpartner-default-mosip")]
    pub partner_id: String,
    /// Server-wide mandatory fields, comma-separated (name, gender, dob, phoneNumber, emailId,
    /// fullAddress).
    #[arg(long, default_value = "name,gender,dob,fullAddress")]
    pub mandatory_fields: String,
    /// Language used when a request names none.
    #[arg(long, default_value = "eng")]
    pub default_lang: String,
    /// Authentications run at the same time.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Requests whose callbacks are delivered at the same time (each request's callbacks go
    /// out in input order).
    #[arg(long, default_value_t = 8)]
    pub callback_concurrency: usize,
    /// Seconds a delivered request is kept for status and download.
    #[arg(long, default_value_t = 6 * 3600)]
    pub retention_seconds: u64,
    /// Callback attempts in total before a delivery is given up.
    #[arg(long, default_value_t = 8)]
    pub callback_attempts: u32,
    /// First callback retry delay, milliseconds (doubles each time).
    #[arg(long, default_value_t = 1000)]
    pub callback_backoff_ms: u64,
    /// Largest request body, bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_request_bytes: usize,
    /// Make VIDs starting with 9999 fail demographic authentication (IDA-DEA-001) and those
    /// starting with 8888 be unknown (for demos of error paths).
    #[arg(long)]
    pub mock_failures: bool,
    /// Milliseconds the mock authenticator takes per record (to rehearse a slow IDA).
    #[arg(long, default_value_t = 0)]
    pub mock_latency_ms: u64,
}

pub async fn mts_serve(a: MtsServeArgs) -> anyhow::Result<()> {
    let mut mandatory = Vec::new();
    for f in a
        .mandatory_fields
        .split(',')
        .filter(|f| !f.trim().is_empty())
    {
        mandatory.push(AuthField::parse(f).with_context(|| {
            format!("unknown mandatory field {f:?}: use name, gender, dob, phoneNumber, emailId or fullAddress")
        })?);
    }
    let mut cfg = MtsConfig {
        partner_id: a.partner_id.clone(),
        mandatory_fields: mandatory,
        default_lang: a.default_lang,
        concurrency: a.concurrency.max(1),
        retention: Duration::from_secs(a.retention_seconds),
        callback_concurrency: a.callback_concurrency.max(1),
        max_request_bytes: a.max_request_bytes,
        ..MtsConfig::default()
    };
    cfg.callback_retry.max_attempts = a.callback_attempts.max(1);
    cfg.callback_retry.initial_backoff = Duration::from_millis(a.callback_backoff_ms);
    let mut auth = MockAuthenticator::new(&a.partner_id);
    if a.mock_failures {
        auth = auth.with_default_failures();
    }
    auth.latency = Duration::from_millis(a.mock_latency_ms);
    let svc = MtsService::start(cfg, &a.database, Arc::new(auth))
        .await
        .with_context(|| {
            format!(
                "cannot open the MTS queue database {}",
                g2p_store::db::redact_url(&a.database)
            )
        })?;
    let (addr, server) = svc.serve(a.listen).await.context("cannot listen")?;
    println!("g2p mts (MOSIP Token Seeder compatible) on http://{addr}/  (mock authenticator)");
    shutdown_signal().await;
    server.abort();
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
