//! Job queue, runner and schedules, on SQLite and (when reachable) PostgreSQL.
//!
//! No test sleeps for queue time to pass: tests that need a job to become due, a lease to
//! expire or a schedule to tick give the store a `ManualClock` and move it. Where a test waits
//! for another task (a runner, a handler), it waits for a condition with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use g2p_store::db::ConnectOptions;
use g2p_store::jobs::schedules::schedule_dedupe_key;
use g2p_store::jobs::{
    JobContext, JobError, JobQuery, JobRunner, JobStatus, NewJob, RetryPolicy, ScheduleSpec,
};
use g2p_store::{Backend, Store, StoreError};
use g2p_testkit::{Clock, DEFAULT_DEADLINE, PgDatabase, manual_clock, wait_until};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_secs(30);

fn no_jitter(base_ms: u64) -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(base_ms),
        max: Duration::from_secs(1),
        jitter: 0.0,
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap()
}

/// Drains, failing instead of hanging when a broken queue keeps jobs due forever.
async fn drain(runner: &JobRunner) -> g2p_store::jobs::DrainReport {
    tokio::time::timeout(Duration::from_secs(30), runner.drain_until_idle())
        .await
        .expect("drain_until_idle did not finish in 30 s")
        .unwrap()
}

/// Moves a schedule's next tick, as if time had passed (only the test does this).
async fn set_next_run_at(store: &Store, name: &str, at: DateTime<Utc>) {
    g2p_store::with_db!(store, write, p => {
        sqlx::query("UPDATE schedules SET next_run_at = $1 WHERE name = $2")
            .bind(at)
            .bind(name)
            .execute(p)
            .await
            .unwrap();
    });
}

async fn ok(_ctx: JobContext, payload: Value) -> Result<Value, JobError> {
    Ok(json!({ "echo": payload }))
}

// ---------------------------------------------------------------------------------------------
// Queue basics

#[tokio::test]
async fn enqueue_claim_progress_succeed() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        let job = store
            .enqueue(NewJob::new("import", json!({"form": "f1"})).max_attempts(3))
            .await
            .unwrap();
        assert_eq!(job.status, JobStatus::Queued, "{b}");
        assert_eq!((job.attempts, job.max_attempts), (0, 3), "{b}");
        assert_eq!(job.payload, json!({"form": "f1"}), "{b}");

        // Only the requested kinds are claimed.
        assert!(
            store
                .claim("w1", &["other"], LEASE)
                .await
                .unwrap()
                .is_none(),
            "{b}"
        );
        assert!(
            store.claim("w1", &[], LEASE).await.unwrap().is_none(),
            "{b}"
        );

        let claimed = store
            .claim("w1", &["other", "import"], LEASE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, job.id, "{b}");
        assert_eq!(claimed.status, JobStatus::Running, "{b}");
        assert_eq!(claimed.attempts, 1, "{b}");
        assert_eq!(claimed.locked_by.as_deref(), Some("w1"), "{b}");
        let until = claimed.locked_until.unwrap();
        assert!(
            until > Utc::now() + TimeDelta::seconds(25),
            "{b}: lease {until}"
        );
        // A running job with a live lease is not claimed again.
        assert!(
            store
                .claim("w2", &["import"], LEASE)
                .await
                .unwrap()
                .is_none(),
            "{b}"
        );

        // Progress: only the owner may write it.
        assert!(
            !store.set_progress(job.id, "w2", 9, 9).await.unwrap(),
            "{b}"
        );
        assert!(
            store.set_progress(job.id, "w1", 40, 100).await.unwrap(),
            "{b}"
        );
        let read = store.get_job(job.id).await.unwrap();
        assert_eq!(
            (read.progress_done, read.progress_total),
            (Some(40), Some(100)),
            "{b}"
        );

        let done = store
            .succeed(job.id, "w1", &json!({"rows": 100}))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.status, JobStatus::Succeeded, "{b}");
        assert_eq!(done.result, Some(json!({"rows": 100})), "{b}");
        assert!(
            done.finished_at.is_some() && done.locked_until.is_none(),
            "{b}"
        );
        let read = store.get_job(job.id).await.unwrap();
        assert_eq!(read.status, JobStatus::Succeeded, "{b}");
        assert_eq!(read.progress_done, Some(40), "{b}");
        // Finished: nothing left to claim, and a second succeed is refused.
        assert!(
            store
                .claim("w1", &["import"], LEASE)
                .await
                .unwrap()
                .is_none(),
            "{b}"
        );
        assert!(
            store
                .succeed(job.id, "w1", &json!(null))
                .await
                .unwrap()
                .is_none(),
            "{b}"
        );

        assert!(matches!(
            store.get_job(job.id + 1000).await,
            Err(StoreError::NotFound { .. })
        ));
    }
}

#[tokio::test]
async fn enqueue_validates() {
    let store = g2p_testkit::sqlite_store().await;
    for bad in [
        NewJob::new("", json!({})),
        NewJob::new("k", json!({})).max_attempts(0),
        NewJob::new("k", json!({})).dedupe_key(""),
    ] {
        assert!(matches!(
            store.enqueue(bad).await,
            Err(StoreError::Validation(_))
        ));
    }
}

#[tokio::test]
async fn dedupe_key_makes_enqueue_idempotent() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        let first = store
            .enqueue(NewJob::new("send", json!({"batch": 1})).dedupe_key("batch-1"))
            .await
            .unwrap();
        let again = store
            .enqueue(NewJob::new("send", json!({"batch": 1, "x": 2})).dedupe_key("batch-1"))
            .await
            .unwrap();
        assert_eq!(again.id, first.id, "{b}");
        assert_eq!(
            again.payload,
            json!({"batch": 1}),
            "{b}: the existing job is returned"
        );
        // Still deduplicated once the job has finished.
        store.claim("w", &["send"], LEASE).await.unwrap().unwrap();
        store
            .succeed(first.id, "w", &json!(1))
            .await
            .unwrap()
            .unwrap();
        let after = store
            .enqueue(NewJob::new("send", json!({})).dedupe_key("batch-1"))
            .await
            .unwrap();
        assert_eq!(
            (after.id, after.status),
            (first.id, JobStatus::Succeeded),
            "{b}"
        );
        // Other keys and no key create new jobs.
        let other = store
            .enqueue(NewJob::new("send", json!({})).dedupe_key("batch-2"))
            .await
            .unwrap();
        let n1 = store.enqueue(NewJob::new("send", json!({}))).await.unwrap();
        let n2 = store.enqueue(NewJob::new("send", json!({}))).await.unwrap();
        let ids: std::collections::HashSet<i64> = [first.id, other.id, n1.id, n2.id].into();
        assert_eq!(ids.len(), 4, "{b}");
        assert_eq!(store.count_by_status().await.unwrap().queued, 3, "{b}");
    }
}

#[tokio::test]
async fn claims_oldest_due_first_and_not_future_jobs() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        let later = store
            .enqueue(NewJob::new("k", json!({})).run_at(Utc::now() + TimeDelta::hours(1)))
            .await
            .unwrap();
        let old = store
            .enqueue(NewJob::new("k", json!({})).run_at(Utc::now() - TimeDelta::minutes(5)))
            .await
            .unwrap();
        let now = store.enqueue(NewJob::new("k", json!({}))).await.unwrap();
        let a = store.claim("w", &["k"], LEASE).await.unwrap().unwrap();
        let c = store.claim("w", &["k"], LEASE).await.unwrap().unwrap();
        assert_eq!((a.id, c.id), (old.id, now.id), "{b}");
        assert!(
            store.claim("w", &["k"], LEASE).await.unwrap().is_none(),
            "{b}: {later:?}"
        );
    }
}

#[tokio::test]
async fn list_cancel_retry_and_counts() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        let mut ids = Vec::new();
        for i in 0..5 {
            let kind = if i % 2 == 0 { "even" } else { "odd" };
            ids.push(
                store
                    .enqueue(NewJob::new(kind, json!({ "i": i })))
                    .await
                    .unwrap()
                    .id,
            );
        }
        // Newest first, keyset paging.
        let page1 = store
            .list_jobs(&JobQuery {
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            page1.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![ids[4], ids[3]],
            "{b}"
        );
        let page2 = store
            .list_jobs(&JobQuery {
                limit: 2,
                after_id: Some(ids[3]),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            page2.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![ids[2], ids[1]],
            "{b}"
        );
        let even = store
            .list_jobs(&JobQuery {
                kind: Some("even".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            even.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![ids[4], ids[2], ids[0]]
        );

        let cancelled = store.cancel_job(ids[0]).await.unwrap();
        assert_eq!(cancelled.status, JobStatus::Cancelled, "{b}");
        assert!(matches!(
            store.cancel_job(ids[0]).await,
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            store.cancel_job(999_999).await,
            Err(StoreError::NotFound { .. })
        ));
        // A queued job cannot be "retried"; a cancelled one can.
        assert!(matches!(
            store.retry_job(ids[1]).await,
            Err(StoreError::Conflict { .. })
        ));
        let running = store.claim("w", &["odd"], LEASE).await.unwrap().unwrap();
        assert!(matches!(
            store.cancel_job(running.id).await,
            Err(StoreError::Conflict { .. })
        ));

        let by_status = store
            .list_jobs(&JobQuery {
                status: Some(JobStatus::Cancelled),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            by_status.iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![ids[0]],
            "{b}"
        );
        let counts = store.count_by_status().await.unwrap();
        assert_eq!(
            (counts.queued, counts.running, counts.cancelled),
            (3, 1, 1),
            "{b}"
        );
        assert_eq!((counts.succeeded, counts.dead), (0, 0), "{b}");

        let back = store.retry_job(ids[0]).await.unwrap();
        assert_eq!((back.status, back.attempts), (JobStatus::Queued, 0), "{b}");
        assert!(back.finished_at.is_none(), "{b}");
        assert_eq!(store.count_by_status().await.unwrap().queued, 4, "{b}");
    }
}

// ---------------------------------------------------------------------------------------------
// Retries, backoff, dead jobs

#[test]
fn backoff_is_exponential_capped_and_jittered() {
    let p = RetryPolicy {
        base: Duration::from_millis(100),
        max: Duration::from_secs(1),
        jitter: 0.0,
    };
    let delays: Vec<u128> = (1..=6).map(|a| p.delay(a).as_millis()).collect();
    assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
    assert_eq!(p.backoff(3), Duration::from_millis(400));
    assert_eq!(p.delay(i32::MAX), Duration::from_secs(1), "no overflow");

    let j = RetryPolicy { jitter: 0.5, ..p };
    let samples: Vec<Duration> = (0..200).map(|_| j.backoff(3)).collect();
    assert!(
        samples
            .iter()
            .all(|d| *d > Duration::from_millis(200) && *d <= Duration::from_millis(400))
    );
    let distinct: std::collections::HashSet<_> = samples.iter().collect();
    assert!(distinct.len() > 10, "jitter must vary the delay");
}

#[tokio::test]
async fn failing_twice_then_succeeding_retries_with_backoff() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        // The clock stands still during a drain, so the retry cannot become due while
        // drain_until_idle looks again right after the failure, however loaded the machine.
        let clock = manual_clock();
        let store = store.with_clock(clock.clone());
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let runner = JobRunner::new(store.clone(), "w1")
            .retry_policy(no_jitter(100))
            .handler("flaky", move |ctx: JobContext, _payload| {
                let c = c.clone();
                async move {
                    let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                    assert_eq!(ctx.attempt as usize, n);
                    if n < 3 {
                        Err(JobError::retryable(format!("boom {n}")))
                    } else {
                        ctx.progress(10, 10).await?;
                        Ok(json!({"attempt": n}))
                    }
                }
            });
        let job = store
            .enqueue(NewJob::new("flaky", json!({})))
            .await
            .unwrap();

        for (attempt, backoff_ms) in [(1, 100), (2, 200)] {
            let report = drain(&runner).await;
            assert_eq!(report.retried, 1, "{b}: attempt {attempt}: {report:?}");
            let j = store.get_job(job.id).await.unwrap();
            assert_eq!(j.status, JobStatus::Queued, "{b}");
            assert_eq!(j.attempts, attempt, "{b}");
            assert_eq!(
                j.last_error.as_deref(),
                Some(format!("boom {attempt}").as_str()),
                "{b}"
            );
            // run_at = time of failure (the store's clock) + base * 2^(attempt-1), exactly
            // (no jitter).
            assert_eq!(j.updated_at, clock.now(), "{b}");
            assert_eq!(
                j.run_at - j.updated_at,
                TimeDelta::milliseconds(backoff_ms),
                "{b}"
            );
            assert!(j.locked_until.is_none(), "{b}");
            // A millisecond before run_at the retry is not due yet...
            clock.set(j.run_at - TimeDelta::milliseconds(1));
            let early = drain(&runner).await;
            assert_eq!(
                early.attempts(),
                0,
                "{b}: attempt {attempt}: ran early: {early:?}"
            );
            // ...at run_at it is.
            clock.set(j.run_at);
        }
        let report = drain(&runner).await;
        assert_eq!(report.succeeded, 1, "{b}: {report:?}");
        let j = store.get_job(job.id).await.unwrap();
        assert_eq!(j.status, JobStatus::Succeeded, "{b}");
        assert_eq!(j.attempts, 3, "{b}");
        assert_eq!(j.result, Some(json!({"attempt": 3})), "{b}");
        assert_eq!(
            (j.progress_done, j.progress_total),
            (Some(10), Some(10)),
            "{b}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3, "{b}");
    }
}

#[tokio::test]
async fn backoff_delays_the_next_attempt() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        let clock = manual_clock();
        let store = store.with_clock(clock.clone());
        let runner = JobRunner::new(store.clone(), "w1")
            .retry_policy(RetryPolicy {
                max: Duration::from_secs(3600),
                ..no_jitter(60_000)
            })
            .handler("k", |_ctx, _p| async {
                Err::<Value, _>(JobError::retryable("nope"))
            });
        let job = store.enqueue(NewJob::new("k", json!({}))).await.unwrap();
        let report = drain(&runner).await;
        assert_eq!(
            report.attempts(),
            1,
            "{b}: the job is not run again before run_at"
        );
        let j = store.get_job(job.id).await.unwrap();
        assert_eq!(j.run_at, clock.now() + TimeDelta::seconds(60), "{b}");
        // 59.999 s later: still waiting; at 60 s: run again.
        clock.advance(Duration::from_millis(59_999));
        assert_eq!(drain(&runner).await.attempts(), 0, "{b}: run before run_at");
        clock.advance(Duration::from_millis(1));
        let report = drain(&runner).await;
        assert_eq!(report.retried, 1, "{b}: {report:?}");
        assert_eq!(store.get_job(job.id).await.unwrap().attempts, 2, "{b}");
    }
}

#[tokio::test]
async fn permanent_errors_and_exhausted_retries_are_dead_until_retried() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        let healed = Arc::new(AtomicUsize::new(0));
        let h = healed.clone();
        let runner = JobRunner::new(store.clone(), "w1")
            .retry_policy(no_jitter(0))
            .handler("perm", |_ctx, _p| async {
                Err::<Value, _>(JobError::permanent("bad data"))
            })
            .handler("transient", move |_ctx, _p| {
                let h = h.clone();
                async move {
                    if h.load(Ordering::SeqCst) > 0 {
                        Ok(json!("ok"))
                    } else {
                        Err(JobError::retryable("upstream 503"))
                    }
                }
            });
        let perm = store
            .enqueue(NewJob::new("perm", json!({})).max_attempts(5))
            .await
            .unwrap();
        let tr = store
            .enqueue(NewJob::new("transient", json!({})).max_attempts(3))
            .await
            .unwrap();

        // Zero backoff: the transient job is due again at once, so one drain runs all attempts.
        let report = drain(&runner).await;
        assert_eq!(
            (report.dead, report.retried, report.succeeded),
            (2, 2, 0),
            "{b}: {report:?}"
        );

        let p = store.get_job(perm.id).await.unwrap();
        assert_eq!((p.status, p.attempts), (JobStatus::Dead, 1), "{b}");
        assert_eq!(p.last_error.as_deref(), Some("bad data"), "{b}");
        assert!(p.finished_at.is_some(), "{b}");
        let t = store.get_job(tr.id).await.unwrap();
        assert_eq!((t.status, t.attempts), (JobStatus::Dead, 3), "{b}");
        assert_eq!(t.last_error.as_deref(), Some("upstream 503"), "{b}");
        assert_eq!(store.count_by_status().await.unwrap().dead, 2, "{b}");

        // Dead jobs are never claimed again.
        assert_eq!(drain(&runner).await.attempts(), 0, "{b}");

        healed.store(1, Ordering::SeqCst);
        let back = store.retry_job(tr.id).await.unwrap();
        assert_eq!((back.status, back.attempts), (JobStatus::Queued, 0), "{b}");
        assert_eq!(
            back.last_error.as_deref(),
            Some("upstream 503"),
            "{b}: history kept"
        );
        let report = drain(&runner).await;
        assert_eq!(report.succeeded, 1, "{b}: {report:?}");
        let t = store.get_job(tr.id).await.unwrap();
        assert_eq!((t.status, t.attempts), (JobStatus::Succeeded, 1), "{b}");
    }
}

#[tokio::test]
async fn a_panicking_handler_is_a_retryable_failure() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let runner = JobRunner::new(store.clone(), "w1")
            .retry_policy(no_jitter(0))
            .handler("boom", move |_ctx, _p| {
                let c = c.clone();
                async move {
                    if c.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("kaboom");
                    }
                    Ok(json!("second time lucky"))
                }
            })
            .handler("ok", ok);
        let job = store.enqueue(NewJob::new("boom", json!({}))).await.unwrap();
        let other = store.enqueue(NewJob::new("ok", json!(1))).await.unwrap();
        let report = drain(&runner).await;
        assert_eq!(
            (report.retried, report.succeeded),
            (1, 2),
            "{b}: {report:?}"
        );
        let j = store.get_job(job.id).await.unwrap();
        assert_eq!((j.status, j.attempts), (JobStatus::Succeeded, 2), "{b}");
        assert!(j.last_error.unwrap().contains("kaboom"), "{b}");
        let o = store.get_job(other.id).await.unwrap();
        assert_eq!(o.result, Some(json!({"echo": 1})), "{b}");
    }
}

#[tokio::test]
async fn unknown_kinds_are_left_for_other_workers() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        let runner = JobRunner::new(store.clone(), "w1").handler("known", ok);
        let unknown = store
            .enqueue(NewJob::new("unknown", json!({})))
            .await
            .unwrap();
        let known = store
            .enqueue(NewJob::new("known", json!({})))
            .await
            .unwrap();
        let report = drain(&runner).await;
        assert_eq!(report.succeeded, 1, "{b}");
        assert_eq!(
            store.get_job(known.id).await.unwrap().status,
            JobStatus::Succeeded
        );
        let u = store.get_job(unknown.id).await.unwrap();
        assert_eq!((u.status, u.attempts), (JobStatus::Queued, 0), "{b}");
    }
}

// ---------------------------------------------------------------------------------------------
// Leases

#[tokio::test]
async fn expired_lease_is_taken_over_and_the_late_worker_is_refused() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        let clock = manual_clock();
        let store = store.with_clock(clock.clone());
        let job = store.enqueue(NewJob::new("k", json!({}))).await.unwrap();
        let first = store.claim("w1", &["k"], LEASE).await.unwrap().unwrap();
        assert_eq!(first.id, job.id);
        let until = first.locked_until.unwrap();
        assert_eq!(until, clock.now() + delta(LEASE), "{b}");
        // The lease holds up to its last instant...
        clock.set(until);
        assert!(
            store.claim("w2", &["k"], LEASE).await.unwrap().is_none(),
            "{b}: taken over before the lease ended"
        );
        // ...and has expired just after it (w1 died without a word).
        clock.advance(Duration::from_millis(1));

        let second = store.claim("w2", &["k"], LEASE).await.unwrap().unwrap();
        assert_eq!(second.id, job.id, "{b}");
        assert_eq!(
            (second.attempts, second.locked_by.as_deref()),
            (2, Some("w2")),
            "{b}"
        );

        // w1 comes back: every state change is refused.
        assert!(!store.heartbeat(job.id, "w1", LEASE).await.unwrap(), "{b}");
        assert!(
            !store.set_progress(job.id, "w1", 1, 1).await.unwrap(),
            "{b}"
        );
        assert!(
            store
                .succeed(job.id, "w1", &json!("w1"))
                .await
                .unwrap()
                .is_none(),
            "{b}"
        );
        assert!(
            store
                .fail(job.id, "w1", "late", false, &RetryPolicy::default())
                .await
                .unwrap()
                .is_none(),
            "{b}"
        );
        let j = store.get_job(job.id).await.unwrap();
        assert_eq!(
            (j.status, j.locked_by.as_deref()),
            (JobStatus::Running, Some("w2")),
            "{b}"
        );
        assert!(j.last_error.is_none(), "{b}");

        let done = store
            .succeed(job.id, "w2", &json!("w2"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (done.status, done.result),
            (JobStatus::Succeeded, Some(json!("w2"))),
            "{b}"
        );
    }
}

#[tokio::test]
async fn heartbeat_extends_the_lease() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        let clock = manual_clock();
        let store = store.with_clock(clock.clone());
        let job = store.enqueue(NewJob::new("k", json!({}))).await.unwrap();
        store
            .claim("w1", &["k"], Duration::from_millis(1))
            .await
            .unwrap()
            .unwrap();
        assert!(store.heartbeat(job.id, "w1", LEASE).await.unwrap(), "{b}");
        assert_eq!(
            store.get_job(job.id).await.unwrap().locked_until,
            Some(clock.now() + delta(LEASE)),
            "{b}"
        );
        // Well past the 1 ms lease of the claim.
        clock.advance(Duration::from_millis(20));
        assert!(
            store.claim("w2", &["k"], LEASE).await.unwrap().is_none(),
            "{b}"
        );
        assert!(
            store
                .succeed(job.id, "w1", &json!(null))
                .await
                .unwrap()
                .is_some(),
            "{b}"
        );
    }
}

#[tokio::test]
async fn a_job_whose_worker_dies_on_the_last_attempt_ends_dead() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        let clock = manual_clock();
        let store = store.with_clock(clock.clone());
        let job = store
            .enqueue(NewJob::new("k", json!({})).max_attempts(1))
            .await
            .unwrap();
        store
            .claim("w1", &["k"], Duration::from_millis(1))
            .await
            .unwrap()
            .unwrap();
        // Still within the 1 ms lease: the job is left alone.
        assert!(
            store.claim("w2", &["k"], LEASE).await.unwrap().is_none(),
            "{b}"
        );
        assert_eq!(
            store.get_job(job.id).await.unwrap().status,
            JobStatus::Running,
            "{b}"
        );
        clock.advance(Duration::from_millis(20));
        assert!(
            store.claim("w2", &["k"], LEASE).await.unwrap().is_none(),
            "{b}"
        );
        let j = store.get_job(job.id).await.unwrap();
        assert_eq!((j.status, j.attempts), (JobStatus::Dead, 1), "{b}");
        assert!(j.last_error.unwrap().contains("lease expired"), "{b}");
    }
}

#[tokio::test]
async fn runner_heartbeats_while_a_handler_runs() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        let clock = manual_clock();
        let store = store.with_clock(clock.clone());
        // The lease is clock time; the runner beats every lease / 3 = 100 ms of tokio time.
        let lease = Duration::from_millis(300);
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let r = release.clone();
        let runner =
            JobRunner::new(store.clone(), "w1")
                .lease(lease)
                .handler("slow", move |_ctx, _p| {
                    let r = r.clone();
                    async move {
                        // Runs until the test releases it, however long that takes.
                        r.acquire()
                            .await
                            .map_err(|e| JobError::retryable(e.to_string()))?
                            .forget();
                        Ok(json!("done"))
                    }
                });
        let job = store.enqueue(NewJob::new("slow", json!({}))).await.unwrap();
        let drain = tokio::spawn(async move { runner.drain_until_idle().await });
        wait_until("the job is claimed", DEFAULT_DEADLINE, || async {
            store.get_job(job.id).await.unwrap().status == JobStatus::Running
        })
        .await;
        let first_until = store.get_job(job.id).await.unwrap().locked_until.unwrap();
        for step in 1..=3 {
            clock.advance(Duration::from_millis(200));
            // Only a heartbeat that read the moved clock writes this lease end.
            let expected = clock.now() + delta(lease);
            wait_until(
                &format!("{b}: step {step}: a heartbeat extends the lease"),
                DEFAULT_DEADLINE,
                || async { store.get_job(job.id).await.unwrap().locked_until == Some(expected) },
            )
            .await;
            // From step 2 on, the claim's own lease has ended: only heartbeats keep the job.
            assert_eq!(clock.now() > first_until, step >= 2, "{b}");
            assert!(
                store.claim("w2", &["slow"], LEASE).await.unwrap().is_none(),
                "{b}: step {step}"
            );
        }
        release.add_permits(1);
        let report = tokio::time::timeout(DEFAULT_DEADLINE, drain)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(report.succeeded, 1, "{b}");
        assert_eq!(store.get_job(job.id).await.unwrap().attempts, 1, "{b}");
    }
}

// ---------------------------------------------------------------------------------------------
// run() and shutdown

#[tokio::test]
async fn run_processes_jobs_and_waits_for_running_handlers_on_shutdown() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        // run() reports that it saw the shutdown only in its log; the test waits for that.
        // Current-thread runtime: the runner's task logs on this thread, where the capture is.
        let (_capture, logs) = g2p_testkit::logs::capture();
        let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let r = release.clone();
        let runner = JobRunner::new(store.clone(), "w1")
            .poll_interval(Duration::from_millis(10))
            // One slot: while `a` runs the runner claims nothing, so the job enqueued after
            // the shutdown signal can only stay queued if run() stops claiming.
            .concurrency(1)
            .handler("k", move |ctx: JobContext, _p| {
                let tx = started_tx.clone();
                let r = r.clone();
                async move {
                    let _ = tx.send(ctx.job_id);
                    r.acquire()
                        .await
                        .map_err(|e| JobError::retryable(e.to_string()))?
                        .forget();
                    Ok(json!("released"))
                }
            });
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handle = tokio::spawn(async move { runner.run(token).await });

        let a = store.enqueue(NewJob::new("k", json!({}))).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), started_rx.recv()).await;
        assert_eq!(got.unwrap(), Some(a.id), "{b}");

        shutdown.cancel();
        let b_job = store.enqueue(NewJob::new("k", json!({}))).await.unwrap();
        // Instead of sleeping for run() to react: wait until it has seen the shutdown. On this
        // single thread, the runner's task has then run up to its next await, so a run() that
        // did not wait for its handler would already have finished.
        logs.wait_for(
            "job runner stopping: waiting for running jobs",
            DEFAULT_DEADLINE,
        )
        .await;
        assert!(
            !handle.is_finished(),
            "{b}: run() returned with a handler still running"
        );
        release.add_permits(1);
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .unwrap()
            .unwrap();

        assert_eq!(
            store.get_job(a.id).await.unwrap().status,
            JobStatus::Succeeded,
            "{b}"
        );
        let later = store.get_job(b_job.id).await.unwrap();
        assert_eq!(
            later.status,
            JobStatus::Queued,
            "{b}: nothing claimed after shutdown"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: several workers, several nodes

/// Two nodes on one new database; the guard drops it at the end of the test.
async fn two_pg_stores() -> Option<(PgDatabase, Store, Store)> {
    let db = PgDatabase::create().await?;
    let opts = ConnectOptions {
        max_connections: 6,
        ..Default::default()
    };
    let a = Store::open(db.url(), &opts).await.unwrap();
    let b = Store::open(db.url(), &opts).await.unwrap();
    assert_eq!(
        (a.backend(), b.backend()),
        (Backend::Postgres, Backend::Postgres)
    );
    Some((db, a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_two_runners_run_every_job_exactly_once() {
    let Some((_db, s1, s2)) = two_pg_stores().await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..300 {
        ids.push(
            s1.enqueue(NewJob::new("count", json!({ "i": i })))
                .await
                .unwrap()
                .id,
        );
    }
    let runs: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    // The nodes that have started a job. Each handler waits until both have, so neither node
    // can drain the queue alone before the other claims (a sleep in the handler only made
    // that unlikely): a job claimed twice would then show in `runs`.
    let (started, _) = tokio::sync::watch::channel(std::collections::BTreeSet::<String>::new());
    let started = Arc::new(started);
    let runner = |store: Store, worker: &str| {
        let runs = runs.clone();
        let started = started.clone();
        JobRunner::new(store, worker)
            .concurrency(4)
            .handler("count", move |ctx: JobContext, _p| {
                let runs = runs.clone();
                let started = started.clone();
                async move {
                    *runs.lock().unwrap().entry(ctx.job_id).or_default() += 1;
                    started.send_modify(|s| {
                        s.insert(ctx.worker_id.clone());
                    });
                    let mut seen = started.subscribe();
                    tokio::time::timeout(DEFAULT_DEADLINE, seen.wait_for(|s| s.len() == 2))
                        .await
                        .map_err(|_| JobError::permanent("the other node never started a job"))?
                        .map_err(|e| JobError::permanent(e.to_string()))?;
                    Ok(json!(ctx.worker_id))
                }
            })
    };
    let (r1, r2) = (runner(s1.clone(), "node-1"), runner(s2.clone(), "node-2"));
    let both = async { tokio::join!(r1.drain_until_idle(), r2.drain_until_idle()) };
    let (a, b) = tokio::time::timeout(Duration::from_secs(60), both)
        .await
        .unwrap();
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.succeeded + b.succeeded, 300, "{a:?} {b:?}");
    assert_eq!(a.attempts() + b.attempts(), 300, "{a:?} {b:?}");
    assert!(
        a.succeeded > 0 && b.succeeded > 0,
        "both nodes must have worked: {a:?} {b:?}"
    );

    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 300);
    assert!(
        ids.iter().all(|id| runs.get(id) == Some(&1)),
        "a job ran twice or never"
    );
    let counts = s2.count_by_status().await.unwrap();
    assert_eq!(
        (counts.succeeded, counts.queued, counts.running),
        (300, 0, 0)
    );
    for id in [ids[0], ids[150], ids[299]] {
        assert_eq!(s1.get_job(id).await.unwrap().attempts, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_concurrent_fire_enqueues_each_tick_once() {
    let Some((_db, s1, s2)) = two_pg_stores().await else {
        return;
    };
    for i in 0..20 {
        let name = format!("tick-{i}");
        let kind = format!("kind-{i}");
        let s = s1
            .upsert_schedule(&name, &kind, json!({"i": i}), ScheduleSpec::EveryMinutes(5))
            .await
            .unwrap();
        let now = s.next_run_at + TimeDelta::seconds(1);
        let (a, b) = tokio::join!(s1.fire_due_schedules(now), s2.fire_due_schedules(now));
        let fired = a.unwrap() + b.unwrap();
        assert_eq!(fired, 1, "round {i}: both nodes fired the same tick");
        let jobs = s1
            .list_jobs(&JobQuery {
                kind: Some(kind.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1, "round {i}");
        assert_eq!(
            jobs[0].dedupe_key.as_deref(),
            Some(schedule_dedupe_key(&name, s.next_run_at).as_str())
        );
        let after = s2.get_schedule(&name).await.unwrap();
        assert_eq!(
            after.next_run_at,
            s.next_run_at + TimeDelta::minutes(5),
            "round {i}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Schedules

#[test]
fn every_minutes_ticks_on_multiples_of_the_period() {
    let spec = ScheduleSpec::EveryMinutes(15);
    assert_eq!(
        spec.next_after(utc(2026, 3, 1, 10, 7, 30)),
        utc(2026, 3, 1, 10, 15, 0)
    );
    // Strictly after: on a tick, the next one.
    assert_eq!(
        spec.next_after(utc(2026, 3, 1, 10, 15, 0)),
        utc(2026, 3, 1, 10, 30, 0)
    );
    assert_eq!(
        spec.next_after(utc(2026, 3, 1, 23, 59, 59)),
        utc(2026, 3, 2, 0, 0, 0)
    );
    let just_after = utc(2026, 3, 1, 10, 15, 0) + TimeDelta::milliseconds(1);
    assert_eq!(spec.next_after(just_after), utc(2026, 3, 1, 10, 30, 0));
    assert_eq!(
        ScheduleSpec::EveryMinutes(60).next_after(utc(2026, 3, 1, 10, 0, 1)),
        utc(2026, 3, 1, 11, 0, 0)
    );
    assert_eq!(
        ScheduleSpec::EveryMinutes(1).next_after(utc(2026, 3, 1, 10, 0, 0)),
        utc(2026, 3, 1, 10, 1, 0)
    );
}

#[test]
fn daily_at_ticks_once_a_day_in_utc() {
    let spec = ScheduleSpec::DailyAt {
        hour: 6,
        minute: 30,
    };
    assert_eq!(
        spec.next_after(utc(2026, 3, 1, 5, 0, 0)),
        utc(2026, 3, 1, 6, 30, 0)
    );
    assert_eq!(
        spec.next_after(utc(2026, 3, 1, 6, 30, 0)),
        utc(2026, 3, 2, 6, 30, 0)
    );
    assert_eq!(
        spec.next_after(utc(2026, 3, 1, 6, 31, 0)),
        utc(2026, 3, 2, 6, 30, 0)
    );
    // Month and year ends.
    assert_eq!(
        spec.next_after(utc(2026, 2, 28, 7, 0, 0)),
        utc(2026, 3, 1, 6, 30, 0)
    );
    assert_eq!(
        spec.next_after(utc(2026, 12, 31, 23, 0, 0)),
        utc(2027, 1, 1, 6, 30, 0)
    );
    let midnight = ScheduleSpec::DailyAt { hour: 0, minute: 0 };
    assert_eq!(
        midnight.next_after(utc(2026, 3, 1, 0, 0, 0)),
        utc(2026, 3, 2, 0, 0, 0)
    );
}

#[test]
fn schedule_spec_json_shape() {
    assert_eq!(
        serde_json::to_value(ScheduleSpec::EveryMinutes(5)).unwrap(),
        json!({"every_minutes": 5})
    );
    assert_eq!(
        serde_json::to_value(ScheduleSpec::DailyAt { hour: 6, minute: 0 }).unwrap(),
        json!({"daily_at": {"hour": 6, "minute": 0}})
    );
    assert_eq!(
        serde_json::to_value(JobStatus::Dead).unwrap(),
        json!("dead")
    );
}

#[tokio::test]
async fn schedules_fire_once_per_due_tick_without_catch_up_bursts() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        // A clock that stands still: the real one could cross a 15-minute tick mid-test.
        let clock = manual_clock();
        let store = store.with_clock(clock.clone());
        let s = store
            .upsert_schedule(
                "reconcile",
                "reconcile",
                json!({"p": 1}),
                ScheduleSpec::EveryMinutes(15),
            )
            .await
            .unwrap();
        assert!(s.enabled && s.last_run_at.is_none(), "{b}");
        assert!(
            s.next_run_at > clock.now() && s.next_run_at <= clock.now() + TimeDelta::minutes(15),
            "{b}"
        );
        assert_eq!(s.next_run_at.timestamp() % (15 * 60), 0, "{b}");

        // Not due yet.
        assert_eq!(
            store.fire_due_schedules(clock.now()).await.unwrap(),
            0,
            "{b}"
        );

        // All nodes were down for 3 hours: one job, next tick in the future.
        let tick = s.next_run_at;
        let now = tick + TimeDelta::hours(3) + TimeDelta::seconds(10);
        assert_eq!(store.fire_due_schedules(now).await.unwrap(), 1, "{b}");
        assert_eq!(
            store.fire_due_schedules(now).await.unwrap(),
            0,
            "{b}: tick fired twice"
        );
        let after = store.get_schedule("reconcile").await.unwrap();
        assert_eq!(
            after.next_run_at,
            tick + TimeDelta::hours(3) + TimeDelta::minutes(15),
            "{b}"
        );
        assert_eq!(after.last_run_at, Some(now), "{b}");

        let jobs = store
            .list_jobs(&JobQuery {
                kind: Some("reconcile".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1, "{b}");
        assert_eq!(jobs[0].payload, json!({"p": 1}), "{b}");
        assert_eq!(jobs[0].run_at, now, "{b}");
        assert_eq!(
            jobs[0].dedupe_key.as_deref(),
            Some(format!("schedule:reconcile:{}", tick.format("%Y-%m-%dT%H:%M:%SZ")).as_str()),
            "{b}"
        );

        // The next tick fires again.
        let now2 = after.next_run_at + TimeDelta::seconds(1);
        assert_eq!(store.fire_due_schedules(now2).await.unwrap(), 1, "{b}");
        assert_eq!(store.count_by_status().await.unwrap().queued, 2, "{b}");
    }
}

#[tokio::test]
async fn disabled_schedules_do_not_fire() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        let s = store
            .upsert_schedule(
                "nightly",
                "export",
                json!({}),
                ScheduleSpec::DailyAt { hour: 2, minute: 0 },
            )
            .await
            .unwrap();
        let off = store.set_schedule_enabled("nightly", false).await.unwrap();
        assert!(!off.enabled, "{b}");
        let far = s.next_run_at + TimeDelta::days(2);
        assert_eq!(store.fire_due_schedules(far).await.unwrap(), 0, "{b}");
        assert_eq!(store.count_by_status().await.unwrap().queued, 0, "{b}");

        // Re-declaring it (e.g. at start-up) does not re-enable it.
        let again = store
            .upsert_schedule(
                "nightly",
                "export",
                json!({"v": 2}),
                ScheduleSpec::DailyAt { hour: 2, minute: 0 },
            )
            .await
            .unwrap();
        assert!(!again.enabled, "{b}");
        assert_eq!(again.payload, json!({"v": 2}), "{b}");

        let on = store.set_schedule_enabled("nightly", true).await.unwrap();
        assert!(on.enabled, "{b}");
        assert_eq!(store.fire_due_schedules(far).await.unwrap(), 1, "{b}");

        assert!(matches!(
            store.set_schedule_enabled("missing", true).await,
            Err(StoreError::NotFound { .. })
        ));
    }
}

#[tokio::test]
async fn upsert_list_delete_schedules() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        let a = store
            .upsert_schedule(
                "b-hourly",
                "sync",
                json!({}),
                ScheduleSpec::EveryMinutes(60),
            )
            .await
            .unwrap();
        // Same spec: next_run_at kept, so an overdue tick is not skipped by a restart.
        let overdue = utc(2020, 1, 1, 0, 0, 0);
        set_next_run_at(&store, "b-hourly", overdue).await;
        let same = store
            .upsert_schedule(
                "b-hourly",
                "sync2",
                json!({"x": 1}),
                ScheduleSpec::EveryMinutes(60),
            )
            .await
            .unwrap();
        assert_eq!((same.id, same.next_run_at), (a.id, overdue), "{b}");
        assert_eq!(same.kind, "sync2", "{b}");
        // Changed spec: next_run_at recomputed.
        let daily = store
            .upsert_schedule(
                "b-hourly",
                "sync2",
                json!({}),
                ScheduleSpec::DailyAt {
                    hour: 23,
                    minute: 59,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            daily.spec,
            ScheduleSpec::DailyAt {
                hour: 23,
                minute: 59
            },
            "{b}"
        );
        assert_eq!(
            daily.next_run_at.format("%H:%M").to_string(),
            "23:59",
            "{b}"
        );
        store
            .upsert_schedule("a-first", "k", json!({}), ScheduleSpec::EveryMinutes(5))
            .await
            .unwrap();
        let names: Vec<String> = store
            .list_schedules()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, vec!["a-first", "b-hourly"], "{b}");

        for bad in [
            ScheduleSpec::EveryMinutes(0),
            ScheduleSpec::DailyAt {
                hour: 24,
                minute: 0,
            },
            ScheduleSpec::DailyAt {
                hour: 1,
                minute: 60,
            },
        ] {
            assert!(
                matches!(
                    store.upsert_schedule("bad", "k", json!({}), bad).await,
                    Err(StoreError::Validation(_))
                ),
                "{b}: {bad:?}"
            );
        }

        assert!(store.delete_schedule("a-first").await.unwrap(), "{b}");
        assert!(!store.delete_schedule("a-first").await.unwrap(), "{b}");
        assert_eq!(store.list_schedules().await.unwrap().len(), 1, "{b}");
    }
}

#[tokio::test]
async fn drain_fires_due_schedules() {
    for store in g2p_testkit::backends().await {
        let b = store.backend().name();
        let clock = manual_clock();
        let store = store.with_clock(clock.clone());
        let s = store
            .upsert_schedule("s", "ping", json!({"n": 1}), ScheduleSpec::EveryMinutes(1))
            .await
            .unwrap();
        assert_eq!(s.next_run_at, clock.now() + TimeDelta::minutes(1), "{b}");
        let runner = JobRunner::new(store.clone(), "w").handler("ping", ok);
        // Not due yet: nothing to do, up to the last second before the tick.
        assert_eq!(drain(&runner).await.attempts(), 0, "{b}");
        clock.set(s.next_run_at - TimeDelta::seconds(1));
        assert_eq!(drain(&runner).await.attempts(), 0, "{b}");
        assert_eq!(
            store.count_by_status().await.unwrap(),
            Default::default(),
            "{b}"
        );
        // The tick: the runner reads the store's clock, fires it and drains the job, once.
        clock.set(s.next_run_at);
        let report = drain(&runner).await;
        assert_eq!(report.succeeded, 1, "{b}: {report:?}");
        assert_eq!(drain(&runner).await.attempts(), 0, "{b}");
        let after = store.get_schedule("s").await.unwrap();
        assert_eq!(
            after.next_run_at,
            s.next_run_at + TimeDelta::minutes(1),
            "{b}"
        );
        assert_eq!(after.last_run_at, Some(s.next_run_at), "{b}");
    }
}
