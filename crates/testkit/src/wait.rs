//! Waiting for a condition with a deadline, instead of sleeping "long enough" for another task
//! to make progress: the test goes on as soon as the condition holds, and fails with a message
//! naming it when the deadline passes.

use std::future::Future;
use std::time::Duration;

/// How long [`wait_until`] waits by default: generous, because it is only reached when the
/// test is failing (or the machine is badly overloaded).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Re-checks `cond` every few milliseconds until it returns true; panics naming `what` if
/// that has not happened within `deadline`. The polling interval is not a wait for time to
/// pass: any interval would do, it only bounds how often the condition is queried.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
