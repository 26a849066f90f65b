//! Executes queued jobs with registered handlers: claim, run, heartbeat, record the outcome.
//!
//! A handler is a plain async function `(JobContext, payload) -> Result<Value, JobError>`
//! registered per kind. The runner claims only the kinds it has handlers for, runs up to
//! `concurrency` handlers at once, each on its own task (a panic is caught through the
//! `JoinHandle` and counts as a retryable failure) and extends the lease every `lease / 3` while
//! the handler runs. If a heartbeat finds the job taken over by another worker, the handler is
//! aborted: the other worker redoes the job and this one's result would be refused anyway.
//!
//! Two kinds of time: what is due, when a lease ends and when a schedule ticks are read from
//! the store's [`Clock`](g2p_domain::Clock), so a test moves them; how often the runner polls
//! when idle and how often it heartbeats are tokio timers, a cadence that decides nothing.
//!
//! It must not interpret payloads, and logs only job id, kind, attempt and outcome.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Job, RetryPolicy};
use crate::Store;
use crate::error::{Result, StoreError};

/// A failed attempt. `retryable` failures are retried with backoff while attempts remain;
/// permanent ones make the job dead at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    pub message: String,
    pub retryable: bool,
}

impl JobError {
    /// A transient failure (timeout, upstream 503, lost connection): try again later.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that retrying cannot fix (invalid payload, rejected by the upstream).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

/// A storage failure says itself whether it may pass (a deleted run will still be deleted).
impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError {
            retryable: e.is_retryable(),
            message: e.to_string(),
        }
    }
}

/// A payload that does not deserialise will not deserialise next time either.
impl From<serde_json::Error> for JobError {
    fn from(e: serde_json::Error) -> Self {
        JobError::permanent(format!("invalid payload: {e}"))
    }
}

/// What a handler gets besides its payload.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub store: Store,
    pub job_id: i64,
    pub kind: String,
    pub worker_id: String,
    /// 1-based number of this attempt.
    pub attempt: i32,
    pub max_attempts: i32,
    /// Cancelled when the runner is shutting down; long handlers may stop at a checkpoint and
    /// return a retryable error. The runner waits for handlers either way.
    pub shutdown: CancellationToken,
}

impl JobContext {
    /// Records progress (shown by the console). Fails when the job was taken over by another
    /// worker, so a long handler can stop with `?`.
    pub async fn progress(&self, done: u64, total: u64) -> Result<(), JobError> {
        if self
            .store
            .set_progress(self.job_id, &self.worker_id, done, total)
            .await?
        {
            Ok(())
        } else {
            Err(JobError::retryable(
                "job lease lost: another worker has taken it over",
            ))
        }
    }

    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, JobError>> + Send>>;
type Handler = Arc<dyn Fn(JobContext, Value) -> HandlerFuture + Send + Sync>;

/// Counts of what [`JobRunner::drain_until_idle`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    pub succeeded: usize,
    /// Failed attempts put back in the queue with backoff.
    pub retried: usize,
    pub dead: usize,
    /// Attempts whose outcome was refused because another worker had taken the job over.
    pub lost: usize,
}

impl DrainReport {
    pub fn attempts(&self) -> usize {
        self.succeeded + self.retried + self.dead + self.lost
    }

    fn record(&mut self, o: Outcome) {
        match o {
            Outcome::Succeeded => self.succeeded += 1,
            Outcome::Retrying => self.retried += 1,
            Outcome::Dead => self.dead += 1,
            Outcome::Lost => self.lost += 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Retrying,
    Dead,
    Lost,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Retrying => "retrying",
            Outcome::Dead => "dead",
            Outcome::Lost => "lost",
        }
    }
}

/// Runs jobs of the registered kinds. Build with [`JobRunner::new`] and the setters, then
/// [`run`](JobRunner::run) until shutdown (worker process) or
/// [`drain_until_idle`](JobRunner::drain_until_idle) (tests, demo).
pub struct JobRunner {
    store: Store,
    worker_id: String,
    handlers: HashMap<String, Handler>,
    concurrency: usize,
    poll_interval: Duration,
    lease: Duration,
    retry: RetryPolicy,
    fire_schedules: bool,
}

impl std::fmt::Debug for JobRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRunner")
            .field("worker_id", &self.worker_id)
            .field("kinds", &self.kinds())
            .field("concurrency", &self.concurrency)
            .field("poll_interval", &self.poll_interval)
            .field("lease", &self.lease)
            .field("retry", &self.retry)
            .field("fire_schedules", &self.fire_schedules)
            .finish()
    }
}

impl JobRunner {
    /// Defaults: concurrency 4, poll every second, 60 s lease, [`RetryPolicy::default`], fires
    /// due schedules. `worker_id` must be unique among running workers (e.g. `host:pid`).
    pub fn new(store: Store, worker_id: impl Into<String>) -> Self {
        Self {
            store,
            worker_id: worker_id.into(),
            handlers: HashMap::new(),
            concurrency: 4,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            fire_schedules: true,
        }
    }

    /// Registers the handler for `kind` (replacing any previous one).
    pub fn handler<F, Fut>(mut self, kind: impl Into<String>, f: F) -> Self
    where
        F: Fn(JobContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, JobError>> + Send + 'static,
    {
        let h: Handler = Arc::new(move |ctx, payload| Box::pin(f(ctx, payload)));
        self.handlers.insert(kind.into(), h);
        self
    }

    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// How long a claim holds without a heartbeat; a crashed worker's jobs are taken over
    /// after this.
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d;
        self
    }

    pub fn retry_policy(mut self, p: RetryPolicy) -> Self {
        self.retry = p;
        self
    }

    /// Whether this runner also fires due schedules (default true; firing is safe on every
    /// node at once).
    pub fn fire_schedules(mut self, yes: bool) -> Self {
        self.fire_schedules = yes;
        self
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The kinds this runner claims, sorted.
    pub fn kinds(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    /// Polls and runs jobs until `shutdown` is cancelled, then stops claiming and waits for
    /// the running handlers. Storage errors are logged and retried after `poll_interval`.
    pub async fn run(&self, shutdown: CancellationToken) {
        let kinds = self.kinds();
        tracing::info!(worker = %self.worker_id, ?kinds, concurrency = self.concurrency,
            "job runner started");
        let mut tasks: JoinSet<Result<Outcome>> = JoinSet::new();
        let mut next_schedule_check = Instant::now();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            while let Some(r) = tasks.try_join_next() {
                log_task_result(r);
            }
            if self.fire_schedules && Instant::now() >= next_schedule_check {
                next_schedule_check = Instant::now() + self.poll_interval;
                if let Err(e) = self.store.fire_due_schedules(self.store.now()).await {
                    tracing::error!(error = %e, "firing due schedules failed");
                }
            }
            let mut idle = false;
            while tasks.len() < self.concurrency {
                match self.store.claim(&self.worker_id, &kinds, self.lease).await {
                    Ok(Some(job)) => {
                        tasks.spawn(self.execution(job, shutdown.clone()));
                    }
                    Ok(None) => {
                        idle = true;
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "claiming a job failed");
                        idle = true;
                        break;
                    }
                }
            }
            // Full: wait for a slot. Idle: wait for the poll interval (or a slot).
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(r) = tasks.join_next(), if !tasks.is_empty() => log_task_result(r),
                () = tokio::time::sleep(self.poll_interval), if idle => {}
            }
        }
        tracing::info!(worker = %self.worker_id, running = tasks.len(),
            "job runner stopping: waiting for running jobs");
        while let Some(r) = tasks.join_next().await {
            log_task_result(r);
        }
        tracing::info!(worker = %self.worker_id, "job runner stopped");
    }

    /// Runs every job that is due now (firing due schedules first), in batches of
    /// `concurrency`, until none is due. Jobs waiting for their backoff (`run_at` in the
    /// future) are left alone, so a test sees exactly one attempt per retry step.
    pub async fn drain_until_idle(&self) -> Result<DrainReport> {
        let kinds = self.kinds();
        let mut report = DrainReport::default();
        let never = CancellationToken::new();
        loop {
            if self.fire_schedules {
                self.store.fire_due_schedules(self.store.now()).await?;
            }
            let mut tasks: JoinSet<Result<Outcome>> = JoinSet::new();
            while tasks.len() < self.concurrency {
                match self
                    .store
                    .claim(&self.worker_id, &kinds, self.lease)
                    .await?
                {
                    Some(job) => {
                        tasks.spawn(self.execution(job, never.clone()));
                    }
                    None => break,
                }
            }
            if tasks.is_empty() {
                return Ok(report);
            }
            while let Some(r) = tasks.join_next().await {
                match r {
                    Ok(outcome) => report.record(outcome?),
                    // Only a bug in `execute` itself gets here (handler panics are caught
                    // there): surface it to the test.
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(e) => {
                        return Err(StoreError::Database(sqlx::Error::Protocol(format!(
                            "job task failed: {e}"
                        ))));
                    }
                }
            }
        }
    }

    fn execution(
        &self,
        job: Job,
        shutdown: CancellationToken,
    ) -> impl Future<Output = Result<Outcome>> + Send + 'static {
        let exec = Execution {
            store: self.store.clone(),
            worker_id: self.worker_id.clone(),
            handler: self.handlers.get(&job.kind).cloned(),
            lease: self.lease,
            retry: self.retry,
        };
        let span = tracing::info_span!("job", job_id = job.id, kind = %job.kind,
            attempt = job.attempts, worker = %self.worker_id);
        exec.execute(job, shutdown).instrument(span)
    }
}

fn log_task_result(r: Result<Result<Outcome>, JoinError>) {
    match r {
        Ok(Ok(_)) => {}
        // The job stays running until its lease expires, then another claim retries it.
        Ok(Err(e)) => tracing::error!(error = %e, "recording a job outcome failed"),
        Err(e) => tracing::error!(error = %e, "job supervisor task failed"),
    }
}

struct Execution {
    store: Store,
    worker_id: String,
    handler: Option<Handler>,
    lease: Duration,
    retry: RetryPolicy,
}

impl Execution {
    async fn execute(self, job: Job, shutdown: CancellationToken) -> Result<Outcome> {
        let started = Instant::now();
        tracing::info!("job started");
        let Some(handler) = self.handler.clone() else {
            // Unreachable: only kinds with a handler are claimed.
            return self.fail(job.id, "no handler for this kind", false).await;
        };
        let ctx = JobContext {
            store: self.store.clone(),
            job_id: job.id,
            kind: job.kind.clone(),
            worker_id: self.worker_id.clone(),
            attempt: job.attempts,
            max_attempts: job.max_attempts,
            shutdown,
        };
        let mut handle =
            tokio::spawn(handler(ctx, job.payload).instrument(tracing::Span::current()));
        let period = (self.lease / 3).max(Duration::from_millis(1));
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let joined = loop {
            tokio::select! {
                r = &mut handle => break Some(r),
                _ = beat.tick() => {
                    match self.store.heartbeat(job.id, &self.worker_id, self.lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!("job lease lost to another worker: aborting handler");
                            handle.abort();
                            break None;
                        }
                        // Transient: the lease may still hold; try again at the next beat.
                        Err(e) => tracing::warn!(error = %e, "job heartbeat failed"),
                    }
                }
            }
        };
        let outcome = match joined {
            None => Outcome::Lost,
            Some(Ok(Ok(result))) => {
                match self.store.succeed(job.id, &self.worker_id, &result).await? {
                    Some(_) => Outcome::Succeeded,
                    None => Outcome::Lost,
                }
            }
            Some(Ok(Err(e))) => {
                tracing::warn!(error = %e.message, retryable = e.retryable, "job attempt failed");
                self.fail(job.id, &e.message, e.retryable).await?
            }
            Some(Err(e)) => {
                let message = panic_message(e);
                tracing::error!(error = %message, "job handler panicked");
                self.fail(job.id, &message, true).await?
            }
        };
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if outcome == Outcome::Lost {
            tracing::warn!(
                outcome = outcome.as_str(),
                elapsed_ms,
                "job finished but another worker owns it now: outcome not recorded"
            );
        } else {
            tracing::info!(outcome = outcome.as_str(), elapsed_ms, "job finished");
        }
        Ok(outcome)
    }

    async fn fail(&self, id: i64, message: &str, retryable: bool) -> Result<Outcome> {
        let job = self
            .store
            .fail(id, &self.worker_id, message, retryable, &self.retry)
            .await?;
        Ok(match job.map(|j| j.status) {
            Some(super::JobStatus::Queued) => Outcome::Retrying,
            Some(_) => Outcome::Dead,
            None => Outcome::Lost,
        })
    }
}

fn panic_message(e: JoinError) -> String {
    if !e.is_panic() {
        return format!("handler task cancelled: {e}");
    }
    let p = e.into_panic();
    let detail = p
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned());
    match detail {
        Some(d) => format!("handler panicked: {d}"),
        None => "handler panicked".to_owned(),
    }
}
