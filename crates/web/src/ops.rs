//! Liveness, readiness and Prometheus metrics. The probes are unauthenticated (kubelets do not
//! sign in) and answer only "ok"/"ready"; metrics need a key with a reading role (Prometheus
//! sends it with `authorization: {credentials_file: …}`).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    match s.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}

async fn metrics(
    State(s): State<AppState>,
    c: crate::auth::Caller,
) -> Result<impl IntoResponse, crate::ApiError> {
    c.require_read()?;
    Ok(match &s.metrics {
        Some(h) => (StatusCode::OK, h.render()),
        None => (StatusCode::NOT_FOUND, "metrics are disabled".to_owned()),
    })
}
