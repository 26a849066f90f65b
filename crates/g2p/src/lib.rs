//! The g2p application, assembled. [`App::start`] is the one function that wires store, HTTP and
//! background work; `main`, `g2p demo` and the end-to-end tests all use it.

pub mod bench;
pub mod bench_mts;
pub mod bench_mts_connector;
pub mod config;
pub mod demo;
pub mod demo_odk;
pub mod import;
pub mod sims;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use g2p_app::mts::runs::MtsJobs;
use g2p_store::Store;
use g2p_store::db::ConnectOptions;
use g2p_store::jobs::runner::JobRunner;
use g2p_store::secrets::SecretBox;
use g2p_web::{AppState, WebSettings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// A running application: its store, address and a handle to stop it.
pub struct App {
    pub store: Store,
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let opts = ConnectOptions {
        max_connections: cfg.db_max_connections,
        ..Default::default()
    };
    Store::open(&cfg.database_url, &opts)
        .await
        .with_context(|| format!("cannot open database {}", cfg.database_url_redacted()))
}

pub fn web_settings(cfg: &Config) -> WebSettings {
    WebSettings {
        max_body_bytes: cfg.max_body_bytes,
        max_import_bytes: cfg.max_import_bytes,
        request_timeout: std::time::Duration::from_secs(cfg.request_timeout_seconds.max(1)),
        secure_cookies: cfg.secure_cookies,
        session_key: Arc::from(cfg.session_key()),
        ..WebSettings::default()
    }
}

/// A unique worker id for this process: host, pid and a random suffix.
pub fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    let rnd = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &rnd[..8])
}

/// The job runner with every job kind of the application (`g2p_app::jobs`). `secrets` opens
/// connector secrets (the same key as the web layer's).
pub fn job_runner(store: Store, cfg: &Config, secrets: SecretBox) -> anyhow::Result<JobRunner> {
    let mts = MtsJobs {
        secrets,
        // One client per external system: one connection pool, trust roots loaded once.
        mts: g2p_connectors::mts::MtsClient::new().context("cannot build the MTS client")?,
        odk: g2p_connectors::odk::OdkClient::new().context("cannot build the ODK client")?,
        callback_deadline: chrono::Duration::seconds(
            i64::try_from(cfg.mts_callback_deadline_secs).unwrap_or(600),
        ),
    };
    Ok(g2p_app::jobs::runner(store, worker_id(), mts).concurrency(cfg.worker_concurrency))
}

/// Schedules every instance declares at start (idempotent).
async fn declare_schedules(store: &Store) -> anyhow::Result<()> {
    g2p_app::jobs::declare_schedules(store).await?;
    Ok(())
}

/// `g2p worker`: runs jobs until SIGTERM / Ctrl-C, then finishes the running ones.
pub async fn run_worker(cfg: &Config) -> anyhow::Result<()> {
    let store = open_store(cfg).await?;
    let secrets = cfg.secret_box(&cfg.database_url)?;
    declare_schedules(&store).await?;
    let runner = job_runner(store.clone(), cfg, secrets)?;
    let token = CancellationToken::new();
    let stopper = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopper.cancel();
    });
    runner.run(token).await;
    store.close().await;
    Ok(())
}

impl App {
    /// Opens (and migrates) the store, binds `cfg.listen` (port 0 picks a free port) and serves
    /// until [`App::stop`].
    pub async fn start(
        cfg: &Config,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> anyhow::Result<App> {
        // Before the database: a PostgreSQL deployment without a key fails here, untouched.
        let secrets = cfg.secret_box(&cfg.database_url)?;
        let store = open_store(cfg).await?;
        declare_schedules(&store).await?;
        let state = AppState::new(store.clone(), web_settings(cfg), metrics).with_secrets(secrets);
        let listener = TcpListener::bind(&cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let router = g2p_web::app(state.clone());
        let token = shutdown.clone();
        let server = tokio::spawn(async move {
            let result = axum::serve(listener, router)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        let mut tasks = vec![server];
        if cfg.run_worker {
            let runner = job_runner(store.clone(), cfg, state.secrets.clone())?;
            let token = shutdown.clone();
            tasks.push(tokio::spawn(async move { runner.run(token).await }));
        }
        Ok(App {
            store,
            addr,
            state,
            shutdown,
            tasks,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Finishes in-flight requests, then returns.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.store.close().await;
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Resolves on Ctrl-C or SIGTERM (Kubernetes' stop signal).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
