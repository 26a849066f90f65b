//! A MOSIP Token Seeder (MTS 1.1 "develop") compatible service, written from
//! `shared/specs/mts-api.md`. It owns the MTS wire format, its own persistent queue (its own
//! database, never g2p's) and a pool of workers; it must not depend on g2p's connector types.
//!
//! Public API: [`MtsConfig`], [`MtsService::start`] (database URL + authenticator),
//! [`MtsService::router`], [`MtsService::serve`], [`MtsService::shutdown`] (graceful) and
//! [`MtsService::simulate_crash`] (for tests), [`MtsService::deliveries`], the
//! [`Authenticator`] trait and [`MockAuthenticator`] (the `mts-mock` token of spec §6.2, with
//! [`FailureRule`]s and latency), [`MtsSettings`] (the layered settings of `g2p mts serve`)
//! and the jq worker ([`jq::worker_main`]).
//!
//! Deliberate divergences from MTS are listed, with reasons, in `docs/mts-compat.md`.
//!
//! The queue database is SQLite by default ([`DEFAULT_DATABASE_URL`], an embedded file) or
//! PostgreSQL (`postgres://…`; claims with `FOR UPDATE SKIP LOCKED`); migrations per dialect
//! in `migrations/` of this crate.
//!
//! Sync mode (§4.6) is `MtsConfig::sync_mode`: `POST /authtoken/json` authenticates one record
//! in the call, csv and odk are not routed; an IDA failure's message gets MTS's `". "` suffix
//! (the mock has no action message).
//!
//! Not yet implemented: the IDA demo-auth authenticator (§7; only the `mts-mock`
//! authenticator exists). `g2p mts serve` runs this service from the command line.
//!
//! `outputFormat` programs run in a fixed-size pool of worker processes with memory, CPU, time
//! and output limits ([`jq`]); the default `.output` needs none.
//!
//! Shutdown ([`MtsService::shutdown`]): servers stop accepting and finish the requests in
//! flight; workers stop claiming, finish the batch they are authenticating within
//! `MtsConfig::shutdown_grace` or hand its unfinished records back to the queue; deliveries
//! stop between two callbacks (the rest stay queued for the next start); then the jq workers
//! and the database are closed.

mod auth;
mod config;
mod deliver;
mod http;
pub mod jq;
mod mapping;
mod odk;
mod output;
mod settings;
mod store;
mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use auth::{
    AuthOutcome, AuthRequest, Authenticator, FailureRule, MockAuthenticator, mock_token,
};
pub use config::{AuthField, DEFAULT_DATABASE_URL, MtsConfig, RetryPolicy};
pub use jq::JqSettings;
pub use settings::{MtsSettings, SettingsError, redact_url};
pub use wire::{ApiError, format_time, valid_requesttime};

pub use store::DeliveryRow as Delivery;
use store::{Db, RecordRow, status};

/// A record's authentication outcome before formatting: status, token, error code and
/// message, and the `.output` object jq sees.
type Part = (
    &'static str,
    Option<String>,
    Option<String>,
    Option<String>,
    Value,
);

/// Records a worker claims at once: one claim and one store transaction, and one jq run per
/// request, for the whole batch.
const CLAIM_BATCH: usize = 256;

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
    /// One permit per authentication allowed to run at once (`MtsConfig::concurrency`).
    auth_slots: tokio::sync::Semaphore,
    deliver_wake: Notify,
    /// Callback client shared by every request without a session (`odoo` needs a cookie jar
    /// of its own): one connection pool, and trust roots loaded once.
    http: reqwest::Client,
    /// outputFormat evaluation, in worker processes.
    jq: jq::JqPool,
    /// Workers, the deliverer and the purger.
    tasks: TaskTracker,
    /// HTTP servers started by [`MtsService::serve`].
    servers: TaskTracker,
    /// The tasks and the servers, for [`MtsService::simulate_crash`] (and servers still busy
    /// after the grace period).
    task_aborts: Mutex<Vec<AbortHandle>>,
    server_aborts: Mutex<Vec<AbortHandle>>,
    /// Cancelled by [`MtsService::shutdown`]: servers stop accepting, workers stop claiming,
    /// deliveries stop between two callbacks.
    stop: CancellationToken,
    /// Cancelled when the shutdown grace period is over: workers hand their unfinished batch
    /// back to the queue instead of finishing it.
    give_back: CancellationToken,
}

/// Error starting the service.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("mts database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("mts listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("mts callback client: {0}")]
    Http(#[from] reqwest::Error),
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
                "mts: re-queued records a previous run had claimed but not finished"
            );
        }
        let workers = 2 + cfg.concurrency / CLAIM_BATCH;
        let svc = Self {
            inner: Arc::new(Inner {
                auth_slots: tokio::sync::Semaphore::new(cfg.concurrency.max(1)),
                db,
                auth,
                wake: Notify::new(),
                deliver_wake: Notify::new(),
                http: reqwest::Client::builder().build()?,
                jq: jq::JqPool::new(cfg.jq.clone()),
                tasks: TaskTracker::new(),
                servers: TaskTracker::new(),
                task_aborts: Mutex::new(Vec::new()),
                server_aborts: Mutex::new(Vec::new()),
                stop: CancellationToken::new(),
                give_back: CancellationToken::new(),
                cfg,
            }),
        };
        svc.finish_ready().await;
        let mut handles = Vec::new();
        // Two workers keep the pipeline full: one authenticates while the other stores.
        for _ in 0..workers {
            let s = svc.clone();
            handles.push(svc.inner.tasks.spawn(async move { s.work().await }));
        }
        let s = svc.clone();
        handles.push(svc.inner.tasks.spawn(async move { s.purge_loop().await }));
        let s = svc.clone();
        handles.push(svc.inner.tasks.spawn(async move { s.deliver_loop().await }));
        if let Ok(mut t) = svc.inner.task_aborts.lock() {
            t.extend(handles.iter().map(JoinHandle::abort_handle));
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

    /// Binds `addr` and serves until [`MtsService::shutdown`] (which lets the requests in
    /// flight finish); returns the bound address and the server task.
    pub async fn serve(
        &self,
        addr: SocketAddr,
    ) -> Result<(SocketAddr, JoinHandle<()>), StartError> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let app = self.router();
        let stop = self.inner.stop.clone();
        let handle = self.inner.servers.spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = server.await {
                tracing::error!(error = %e, "mts: server stopped");
            }
        });
        if let Ok(mut t) = self.inner.server_aborts.lock() {
            t.push(handle.abort_handle());
        }
        Ok((local, handle))
    }

    /// Stops gracefully: servers stop accepting and finish their requests in flight; workers
    /// claim nothing new and finish the batch they are authenticating, or, once
    /// `shutdown_grace` has passed, hand its unfinished records back to the queue (so the next
    /// start, or another process on the same PostgreSQL, takes them at once); deliveries stop
    /// between two callbacks, the rest staying queued; then the jq workers and the database
    /// are closed. Servers still busy after the grace period are stopped.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stop.cancel();
        inner.tasks.close();
        inner.servers.close();
        let deadline = tokio::time::Instant::now() + inner.cfg.shutdown_grace;
        let servers_done = async {
            if tokio::time::timeout_at(deadline, inner.servers.wait())
                .await
                .is_err()
            {
                tracing::warn!("mts: requests still running after the grace period; stopping them");
                if let Ok(handles) = inner.server_aborts.lock() {
                    for h in handles.iter() {
                        h.abort();
                    }
                }
                inner.servers.wait().await;
            }
        };
        let tasks_done = async {
            if tokio::time::timeout_at(deadline, inner.tasks.wait())
                .await
                .is_err()
            {
                tracing::info!("mts: grace period over; handing unfinished records back");
                inner.give_back.cancel();
                inner.tasks.wait().await;
            }
        };
        tokio::join!(servers_done, tasks_done);
        inner.jq.close().await;
        inner.db.close().await;
        tracing::info!("mts: stopped");
    }

    /// Stops every task of this service at once, as a crash would (records being
    /// authenticated stay claimed until the next start re-queues them), and closes the
    /// database. For tests of crash recovery; use [`MtsService::shutdown`] otherwise.
    pub async fn simulate_crash(&self) {
        let inner = &self.inner;
        if let Ok(handles) = inner.task_aborts.lock() {
            for h in handles.iter() {
                h.abort();
            }
        }
        // The listeners close and idle keep-alive connections with them, as they would with
        // the process; a request still in flight gets a second to end.
        inner.stop.cancel();
        inner.tasks.close();
        inner.servers.close();
        inner.tasks.wait().await;
        if tokio::time::timeout(std::time::Duration::from_secs(1), inner.servers.wait())
            .await
            .is_err()
            && let Ok(handles) = inner.server_aborts.lock()
        {
            for h in handles.iter() {
                h.abort();
            }
        }
        inner.servers.wait().await;
        inner.jq.close().await;
        inner.db.close().await;
    }

    /// A request identifier (spec §5.1): the pod ordinal on two digits, then a UUID4 without
    /// its first two characters.
    fn new_request_id(&self) -> String {
        let u = uuid::Uuid::new_v4().to_string();
        format!("{:02}{}", self.inner.cfg.pod_ordinal % 100, &u[2..])
    }

    async fn work(&self) {
        let stop = &self.inner.stop;
        while !stop.is_cancelled() {
            // Registered before the claim so a submission between the claim and the wait is
            // not missed.
            let notified = self.inner.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.inner.db.claim_batch(CLAIM_BATCH).await {
                Ok(Some(rows)) => {
                    if !rows.is_empty() {
                        self.process_batch(rows).await;
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep(self.inner.cfg.poll_interval) => {}
                        _ = stop.cancelled() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "mts: claim failed");
                    tokio::select! {
                        _ = tokio::time::sleep(self.inner.cfg.poll_interval) => {}
                        _ = stop.cancelled() => {}
                    }
                }
            }
        }
    }

    /// Shutdown after the grace period: the claimed records of `rows` that have no result go
    /// back to the queue now, rather than at the next start.
    async fn give_back(&self, rows: &[RecordRow]) {
        let mut ids: Vec<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
        ids.dedup();
        for id in ids {
            match self.inner.db.hand_back(id).await {
                Ok(()) => tracing::info!(request = id, "mts: unfinished records handed back"),
                Err(e) => tracing::warn!(error = %e, request = id,
                    "mts: handing records back failed; the next start re-queues them"),
            }
        }
    }

    /// Authenticates a batch of claimed records (at most `concurrency` at a time across the
    /// service), formats their results with one jq run per request, and stores everything
    /// in one transaction.
    async fn process_batch(&self, rows: Vec<RecordRow>) {
        let requests: Vec<AuthRequest> = rows
            .iter()
            .map(|rec| AuthRequest {
                vid: rec.vid.clone().unwrap_or_default(),
                demographics: rec
                    .demographics
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or(Value::Null),
            })
            .collect();
        let inner = &self.inner;
        let authenticate_all = futures::stream::iter(requests)
            .map(|req| async move {
                // The semaphore is never closed; were it, the call would just run unbounded.
                let _slot = inner.auth_slots.acquire().await.ok();
                inner.auth.authenticate(&req).await
            })
            .buffered(CLAIM_BATCH)
            .collect::<Vec<AuthOutcome>>();
        // Authentication is the long part of a batch, and nothing of it is stored yet: on
        // shutdown past the grace period it is dropped and the records go back to the queue.
        let outcomes = tokio::select! {
            o = authenticate_all => o,
            _ = self.inner.give_back.cancelled() => {
                self.give_back(&rows).await;
                return;
            }
        };
        let mut stored = Vec::with_capacity(rows.len());
        let mut i = 0;
        // Rows come sorted by request: each run of one request is formatted together.
        while i < rows.len() {
            let request_id = &rows[i].request_id;
            let end = rows[i..]
                .iter()
                .position(|r| &r.request_id != request_id)
                .map_or(rows.len(), |n| i + n);
            let program = match self.inner.db.request(request_id).await {
                Ok(Some(r)) => Some(r.output_format),
                Ok(None) => None, // purged meanwhile
                Err(e) => {
                    tracing::warn!(error = %e, "mts: request lookup failed");
                    Some(String::new())
                }
            };
            if let Some(program) = program {
                self.format_run(&program, &rows[i..end], &outcomes[i..end], &mut stored)
                    .await;
            }
            i = end;
        }
        match self.inner.db.complete_batch(&stored).await {
            Ok(done) => {
                for id in done {
                    self.on_finished(&id).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "mts: storing results failed"),
        }
    }

    /// Evaluates `program` over `{input, output}` for each record of one request and appends
    /// the outcomes to `stored`. A failing evaluation turns the record into `ATS-REQ-103`.
    async fn format_run(
        &self,
        program: &str,
        rows: &[RecordRow],
        outcomes: &[AuthOutcome],
        stored: &mut Vec<store::Outcome>,
    ) {
        let parts: Vec<Part> = rows
            .iter()
            .zip(outcomes)
            .map(|(rec, outcome)| {
                let vid = rec.vid.clone().unwrap_or_default();
                let (st, token, code, message) = match outcome {
                    AuthOutcome::Token(t) => (status::PROCESSED, Some(t.clone()), None, None),
                    AuthOutcome::Failed { code, message } => {
                        (status::ERROR, None, Some(code.clone()), message.clone())
                    }
                };
                let out = json!({"vid": vid, "status": st, "token": token,
                                     "errorCode": code, "errorMessage": message});
                (st, token, code, message, out)
            })
            .collect();
        let inputs = rows
            .iter()
            .zip(&parts)
            .map(|(rec, p)| {
                let received: Value = serde_json::from_str(&rec.received).unwrap_or(Value::Null);
                json!({"input": received, "output": p.4})
            })
            .collect();
        let formatted = output::format_batch(&self.inner.jq, program, inputs).await;
        for ((rec, (st, token, code, message, _)), res) in rows.iter().zip(parts).zip(formatted) {
            let vid = rec.vid.clone().unwrap_or_default();
            let o = match res {
                Err(e) => {
                    let code = Some("ATS-REQ-103".to_owned());
                    let result = json!({"vid": vid, "status": status::ERROR, "token": token,
                                        "errorCode": code, "errorMessage": e})
                    .to_string();
                    store::Outcome {
                        request_id: rec.request_id.clone(),
                        line_no: rec.line_no,
                        status: status::ERROR,
                        token,
                        error_code: code,
                        error_message: Some(e),
                        result,
                    }
                }
                ok => store::Outcome {
                    request_id: rec.request_id.clone(),
                    line_no: rec.line_no,
                    status: st,
                    token,
                    error_code: code,
                    error_message: message,
                    result: http::result_text(ok, &Value::Null),
                },
            };
            stored.push(o);
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
        while !self.inner.stop.is_cancelled() {
            let retention = self.inner.cfg.retention;
            let cutoff = chrono::Utc::now()
                - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(1));
            if let Err(e) = self.inner.db.purge_before(&format_time(cutoff)).await {
                tracing::warn!(error = %e, "mts: purge failed");
            }
            let pause = retention
                .min(std::time::Duration::from_secs(3600))
                .max(std::time::Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.inner.stop.cancelled() => {}
            }
        }
    }
}
