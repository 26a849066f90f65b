//! A MOSIP Token Seeder (MTS 1.1 "develop") compatible service, written from
//! `shared/specs/mts-api.md`. It owns the MTS wire format, its own persistent queue (its own
//! database, never g2p's) and a pool of workers; it must not depend on g2p's connector types.
//!
//! Public API: [`MtsConfig`], [`MtsService::start`] (database URL + authenticator),
//! [`MtsService::router`], [`MtsService::serve`], [`MtsService::abort`], the
//! [`MtsService::deliveries`], the [`Authenticator`] trait and [`MockAuthenticator`] (the
//! `mts-mock` token of spec §6.2, with [`FailureRule`]s and latency).
//!
//! Deliberate divergences from MTS are listed, with reasons, in `docs/mts-compat.md`.
//!
//! The queue database is SQLite by default ([`DEFAULT_DATABASE_URL`], an embedded file) or
//! PostgreSQL (`postgres://…`; claims with `FOR UPDATE SKIP LOCKED`); migrations per dialect
//! in `crates/sim/migrations/mts/`.
//!
//! Sync mode (§4.6) is `MtsConfig::sync_mode`: `POST /authtoken/json` authenticates one record
//! in the call, csv and odk are not routed; an IDA failure's message gets MTS's `". "` suffix
//! (the mock has no action message).
//!
//! Not yet implemented: the IDA demo-auth authenticator (§7; only the `mts-mock`
//! authenticator exists). `g2p mts serve` runs this service from the command line.
//!
//! Known limit of the `outputFormat` bound: a program that passes the static screen but
//! iterates combinatorially (nested `.[]` over a large record) is cut off by the wall-clock
//! limit for its record, but its evaluation thread cannot be cancelled and keeps one core busy
//! until it finishes; a fresh thread replaces it in the pool.

mod auth;
mod config;
mod deliver;
mod http;
mod mapping;
mod odk;
mod output;
mod store;
mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use auth::{
    AuthOutcome, AuthRequest, Authenticator, FailureRule, MockAuthenticator, mock_token,
};
pub use config::{AuthField, DEFAULT_DATABASE_URL, MtsConfig, RetryPolicy};
pub use wire::{ApiError, format_time, valid_requesttime};

pub use store::DeliveryRow as Delivery;
use store::{Db, RecordRow, status};

/// The axum router of spec §1 for `svc` (same as [`MtsService::router`]).
pub fn router(svc: MtsService) -> axum::Router {
    http::router(svc)
}

/// Binds `addr` (port 0 for any) and serves `svc` on it (same as [`MtsService::serve`]).
pub async fn serve(
    svc: &MtsService,
    addr: SocketAddr,
) -> Result<(SocketAddr, JoinHandle<()>), StartError> {
    svc.serve(addr).await
}

/// The running service: configuration, database, authenticator and worker tasks. Cheap to
/// clone; every clone shares the same state.
#[derive(Clone)]
pub struct MtsService {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: MtsConfig,
    db: Db,
    auth: Arc<dyn Authenticator>,
    wake: Notify,
    deliver_wake: Notify,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    servers: Mutex<Vec<tokio::task::AbortHandle>>,
}

/// Error starting the service.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("mts database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("mts listener: {0}")]
    Io(#[from] std::io::Error),
}

impl MtsService {
    /// Opens (and migrates) the database at `database_url` (`sqlite://FILE`, `sqlite::memory:`,
    /// `postgres://…`),
    /// re-queues records a dead process left `processing`, finalises finished requests, and
    /// starts `cfg.concurrency` workers.
    pub async fn start(
        cfg: MtsConfig,
        database_url: &str,
        auth: Arc<dyn Authenticator>,
    ) -> Result<Self, StartError> {
        let db = Db::open(database_url).await?;
        let requeued = db.requeue_abandoned().await?;
        if requeued > 0 {
            tracing::info!(
                requeued,
                "mts: re-queued records left processing by a previous run"
            );
        }
        let svc = Self {
            inner: Arc::new(Inner {
                cfg,
                db,
                auth,
                wake: Notify::new(),
                deliver_wake: Notify::new(),
                tasks: Mutex::new(Vec::new()),
                servers: Mutex::new(Vec::new()),
            }),
        };
        svc.finish_ready().await;
        let mut handles = Vec::new();
        for _ in 0..svc.inner.cfg.concurrency.max(1) {
            let s = svc.clone();
            handles.push(tokio::spawn(async move { s.work().await }));
        }
        let s = svc.clone();
        handles.push(tokio::spawn(async move { s.purge_loop().await }));
        let s = svc.clone();
        handles.push(tokio::spawn(async move { s.deliver_loop().await }));
        if let Ok(mut t) = svc.inner.tasks.lock() {
            t.extend(handles);
        }
        Ok(svc)
    }

    pub fn config(&self) -> &MtsConfig {
        &self.inner.cfg
    }

    /// The axum router of spec §1.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Binds `addr` and serves until the task is dropped; returns the bound address and the
    /// server task.
    pub async fn serve(
        &self,
        addr: SocketAddr,
    ) -> Result<(SocketAddr, JoinHandle<()>), StartError> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let app = self.router();
        let handle = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "mts: server stopped");
            }
        });
        if let Ok(mut t) = self.inner.servers.lock() {
            t.push(handle.abort_handle());
        }
        Ok((local, handle))
    }

    /// Stops every task of this service at once, as a crash would (records being
    /// authenticated stay `processing` until the next start), and closes the database.
    pub async fn abort(&self) {
        let tasks: Vec<JoinHandle<()>> = match self.inner.tasks.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        if let Ok(mut servers) = self.inner.servers.lock() {
            for s in servers.drain(..) {
                s.abort();
            }
        }
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        self.inner.db.close().await;
    }

    /// A request identifier (spec §5.1): the pod ordinal on two digits, then a UUID4 without
    /// its first two characters.
    fn new_request_id(&self) -> String {
        let u = uuid::Uuid::new_v4().to_string();
        format!("{:02}{}", self.inner.cfg.pod_ordinal % 100, &u[2..])
    }

    async fn work(&self) {
        loop {
            // Registered before the claim so a submission between the claim and the wait is
            // not missed.
            let notified = self.inner.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.inner.db.claim().await {
                Ok(Some(rec)) => self.process(rec).await,
                Ok(None) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep(self.inner.cfg.poll_interval) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "mts: claim failed");
                    tokio::time::sleep(self.inner.cfg.poll_interval).await;
                }
            }
        }
    }

    /// Authenticates one claimed record, formats its result and stores both.
    async fn process(&self, rec: RecordRow) {
        let demographics = rec
            .demographics
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or(Value::Null);
        let vid = rec.vid.clone().unwrap_or_default();
        let req = AuthRequest {
            vid: vid.clone(),
            demographics,
        };
        let outcome = self.inner.auth.authenticate(&req).await;
        let (mut st, token, mut code, mut message) = match outcome {
            AuthOutcome::Token(t) => (status::PROCESSED, Some(t), None, None),
            AuthOutcome::Failed { code, message } => (status::ERROR, None, Some(code), message),
        };
        let program = match self.inner.db.request(&rec.request_id).await {
            Ok(Some(r)) => r.output_format,
            Ok(None) => return, // purged meanwhile
            Err(e) => {
                tracing::warn!(error = %e, "mts: request lookup failed");
                String::new()
            }
        };
        let received: Value = serde_json::from_str(&rec.received).unwrap_or(Value::Null);
        let out = json!({"vid": vid, "status": st, "token": token, "errorCode": code,
                         "errorMessage": message});
        let input = json!({"input": received, "output": out});
        let res = output::format_batch(&program, vec![input], self.inner.cfg.jq_timeout)
            .await
            .pop()
            .unwrap_or(Ok(None));
        let result = match res {
            Err(e) => {
                st = status::ERROR;
                code = Some("ATS-REQ-103".into());
                message = Some(e);
                json!({"vid": vid, "status": st, "token": token, "errorCode": code,
                       "errorMessage": message})
                .to_string()
            }
            ok => http::result_text(ok, &Value::Null),
        };
        match self
            .inner
            .db
            .complete(
                &rec.request_id,
                rec.line_no,
                st,
                token.as_deref(),
                code.as_deref(),
                message.as_deref(),
                Some(&result),
            )
            .await
        {
            Ok(true) => self.on_finished(&rec.request_id).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "mts: storing a result failed"),
        }
    }

    /// Finalises requests with nothing left to authenticate.
    async fn finish_ready(&self) {
        match self.inner.db.finalize_ready().await {
            Ok(ids) => {
                for id in ids {
                    self.on_finished(&id).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "mts: finalising requests failed"),
        }
    }

    /// A request reached `processed` or `processed_with_errors`. Download needs nothing more
    /// (the file is built from the records when asked for); callbacks were queued in the same
    /// transaction, so only the deliverer needs waking.
    async fn on_finished(&self, id: &str) {
        tracing::debug!(request = id, "mts: request processed");
        self.inner.deliver_wake.notify_waiters();
    }

    /// The callback deliveries of a request (an addition: MTS exposes nothing, §13 #12).
    pub async fn deliveries(&self, request_id: &str) -> Result<Vec<Delivery>, ApiError> {
        Ok(self.inner.db.deliveries(request_id).await?)
    }

    async fn purge_loop(&self) {
        loop {
            let retention = self.inner.cfg.retention;
            let cutoff = chrono::Utc::now()
                - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(1));
            if let Err(e) = self.inner.db.purge_before(&format_time(cutoff)).await {
                tracing::warn!(error = %e, "mts: purge failed");
            }
            tokio::time::sleep(
                retention
                    .min(std::time::Duration::from_secs(3600))
                    .max(std::time::Duration::from_secs(1)),
            )
            .await;
        }
    }
}
