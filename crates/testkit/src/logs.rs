//! Capturing log events in a test, so it can wait for a component to reach a state that it
//! only reports by logging (e.g. "job runner stopping"), instead of sleeping and hoping it got
//! there.
//!
//! The capture is installed for the current thread only (`tracing::subscriber::set_default`):
//! it sees the tasks of a current-thread runtime (the `#[tokio::test]` default), not a
//! multi-thread runtime's workers, and never touches the global subscriber.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// The messages logged on this thread since [`capture`] was called.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    messages: Arc<Mutex<Vec<String>>>,
}

impl Logs {
    /// Every message so far, in order.
    pub fn messages(&self) -> Vec<String> {
        self.messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn contains(&self, message: &str) -> bool {
        self.messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|m| m == message)
    }

    /// Waits until `message` has been logged; panics after `deadline`.
    pub async fn wait_for(&self, message: &str, deadline: Duration) {
        let what = format!("{message:?} is logged");
        crate::wait::wait_until(&what, deadline, || async { self.contains(message) }).await;
    }
}

struct Capture(Logs);

struct MessageVisitor<'a>(&'a mut Option<String>);

impl Visit for MessageVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            *self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut message = None;
        event.record(&mut MessageVisitor(&mut message));
        if let Some(m) = message {
            self.0
                .messages
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(m);
        }
    }
}

/// Starts capturing this thread's log events until the guard is dropped.
pub fn capture() -> (DefaultGuard, Logs) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::registry().with(Capture(logs.clone()));
    (tracing::subscriber::set_default(subscriber), logs)
}
