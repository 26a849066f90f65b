//! Logging and metrics set-up. Logs never carry personal data: handlers and jobs log ids and
//! counts, not registrant fields, and HTTP spans record the path without the query string.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Logs go to stderr, so that stdout carries only what a command prints (banners, JSON
/// summaries, benchmark results). `quiet`: warnings and errors only, unless `G2P_LOG` says
/// otherwise.
pub fn init_logging(format: &str, quiet: bool) {
    let default = if quiet {
        "warn"
    } else {
        "info,sqlx=warn,tower_http=info"
    };
    let filter = EnvFilter::try_from_env("G2P_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    // A second initialisation (tests, demo re-entry) is harmless: keep the first.
    let _ = if format.eq_ignore_ascii_case("json") {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Installs the process-wide Prometheus recorder once; later calls return the same handle (the
/// tests start many applications in one process).
pub fn init_metrics() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .clone()
}
