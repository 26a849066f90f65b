//! Shared state of the HTTP application.

use std::sync::Arc;
use std::time::Duration;

use g2p_store::Store;
use g2p_store::secrets::SecretBox;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::KeyCache;

#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Largest JSON body accepted (413 above it). Imports have their own limit.
    pub max_body_bytes: usize,
    /// Largest import upload; the import streams, so this bounds work, not memory.
    pub max_import_bytes: u64,
    pub request_timeout: Duration,
    /// Mark the console session cookie `Secure` (behind TLS).
    pub secure_cookies: bool,
    /// Key for signing console session cookies. All nodes of a deployment must share it.
    pub session_key: Arc<[u8]>,
    pub session_ttl: Duration,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_import_bytes: 10 << 30,
            request_timeout: crate::DEFAULT_REQUEST_TIMEOUT,
            secure_cookies: false,
            session_key: Arc::from(uuid::Uuid::new_v4().as_bytes().to_vec()),
            session_ttl: Duration::from_secs(8 * 3600),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub settings: Arc<WebSettings>,
    pub metrics: Option<PrometheusHandle>,
    pub keys: Arc<KeyCache>,
    /// Encrypts connector secrets (passwords, bearer tokens) at rest; see
    /// `g2p_store::secrets`. `g2p::App::start` sets the configured key with
    /// [`AppState::with_secrets`].
    pub secrets: SecretBox,
}

impl AppState {
    /// State with a throwaway key for connector secrets: anything sealed with it is unreadable
    /// after the process ends. Real servers chain [`AppState::with_secrets`].
    pub fn new(store: Store, settings: WebSettings, metrics: Option<PrometheusHandle>) -> Self {
        Self {
            store,
            settings: Arc::new(settings),
            metrics,
            keys: Arc::new(KeyCache::default()),
            secrets: SecretBox::ephemeral(),
        }
    }

    /// Uses `secrets` (the deployment's configured key) for connector secrets.
    pub fn with_secrets(mut self, secrets: SecretBox) -> Self {
        self.secrets = secrets;
        self
    }
}
