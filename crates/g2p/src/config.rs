//! Configuration: defaults, then `g2p.toml` (or the file named by `--config` / `G2P_CONFIG`),
//! then `G2P_*` environment variables (`__` for nesting). Secrets may be given as files
//! (`G2P_SESSION_SECRET_FILE`), and `Debug` never prints them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://FILE` (embedded default) or `postgres://user:pass@host/db`.
    pub database_url: String,
    /// Address `serve` listens on.
    pub listen: String,
    /// Connections in the database pool.
    pub db_max_connections: u32,
    /// Largest JSON request body, bytes.
    pub max_body_bytes: usize,
    /// Largest bulk import upload, bytes (the import streams: this bounds work, not memory).
    pub max_import_bytes: u64,
    /// Seconds before an ordinary request is abandoned with 408 (imports are exempt).
    pub request_timeout_seconds: u64,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// Key that signs console sessions; every node of a deployment needs the same one. When
    /// unset, a random key is made at start-up (sessions then end with the process).
    #[serde(skip_serializing)]
    pub session_secret: Option<SecretString>,
    /// Mark cookies `Secure` (set when serving behind TLS).
    pub secure_cookies: bool,
    /// Run the job worker inside `serve` (turn off when running dedicated `g2p worker`s).
    pub run_worker: bool,
    /// Jobs run concurrently by one worker process.
    pub worker_concurrency: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite://g2p.sqlite".into(),
            listen: "127.0.0.1:8080".into(),
            db_max_connections: 10,
            max_body_bytes: 1 << 20,
            max_import_bytes: 10 << 30,
            request_timeout_seconds: 60,
            log_format: "text".into(),
            session_secret: None,
            secure_cookies: false,
            run_worker: true,
            worker_concurrency: 4,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &self.database_url_redacted())
            .field("listen", &self.listen)
            .field("db_max_connections", &self.db_max_connections)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_import_bytes", &self.max_import_bytes)
            .field("request_timeout_seconds", &self.request_timeout_seconds)
            .field("log_format", &self.log_format)
            .field(
                "session_secret",
                &self.session_secret.as_ref().map(|_| "***"),
            )
            .field("secure_cookies", &self.secure_cookies)
            .field("run_worker", &self.run_worker)
            .field("worker_concurrency", &self.worker_concurrency)
            .finish()
    }
}

/// `G2P_*` variables that are not configuration keys (tests and logging).
const NOT_CONFIG: &[&str] = &[
    "test_pg_url",
    "require_pg",
    "require_browser",
    "config",
    "log",
];

impl Config {
    /// Every key a configuration file or `G2P_*` variable may set.
    fn known_keys() -> Vec<String> {
        let mut keys: Vec<String> = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        keys.push("session_secret".into());
        keys
    }
}

/// Environment variables that may name a file holding the real value (`…_FILE`).
const FILE_SECRETS: &[&str] = &["SESSION_SECRET", "DATABASE_URL"];

impl Config {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let default_path = PathBuf::from("g2p.toml");
        let path = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("G2P_CONFIG").map(PathBuf::from));
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match &path {
            Some(p) => {
                anyhow::ensure!(p.exists(), "configuration file {} not found", p.display());
                fig = fig.merge(Toml::file(p));
            }
            None if default_path.exists() => fig = fig.merge(Toml::file(&default_path)),
            None => {}
        }
        let known = Self::known_keys();
        for (name, _) in std::env::vars() {
            if let Some(key) = name.strip_prefix("G2P_") {
                let key = key.to_ascii_lowercase();
                let used = known.contains(&key)
                    || FILE_SECRETS
                        .iter()
                        .any(|f| key == format!("{}_file", f.to_ascii_lowercase()))
                    || NOT_CONFIG.contains(&key.as_str());
                if !used {
                    // Logging is not set up yet (it depends on this configuration).
                    eprintln!("warning: ignoring unknown configuration variable {name}");
                }
            }
        }
        // Only configuration keys are taken from the environment: other G2P_* variables (test
        // switches, typos) must not make start-up fail.
        fig = fig.merge(
            Env::prefixed("G2P_")
                .split("__")
                .filter(move |k| known.iter().any(|n| k.as_str().eq_ignore_ascii_case(n))),
        );
        let mut cfg: Config = fig.extract().context("invalid configuration")?;
        for name in FILE_SECRETS {
            if let Ok(file) = std::env::var(format!("G2P_{name}_FILE")) {
                let value = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read G2P_{name}_FILE ({file})"))?;
                let value = value.trim().to_owned();
                match *name {
                    "SESSION_SECRET" => cfg.session_secret = Some(SecretString::from(value)),
                    "DATABASE_URL" => cfg.database_url = value,
                    _ => {}
                }
            }
        }
        Ok(cfg)
    }

    pub fn session_key(&self) -> Vec<u8> {
        match &self.session_secret {
            Some(s) => s.expose_secret().as_bytes().to_vec(),
            None => uuid::Uuid::new_v4().as_bytes().to_vec(),
        }
    }

    /// The database URL with any password hidden, for messages.
    pub fn database_url_redacted(&self) -> String {
        g2p_store::db::redact_url(&self.database_url)
    }
}

#[cfg(test)]
// figment's Jail closures return its (large) error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn layers_defaults_file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "g2p.toml",
                "listen = \"0.0.0.0:9000\"\nworker_concurrency = 2\nlog_format = \"json\"\n",
            )?;
            jail.set_env("G2P_WORKER_CONCURRENCY", "7");
            // Not configuration: must be ignored, not rejected.
            jail.set_env("G2P_REQUIRE_BROWSER", "1");
            jail.create_file("secret.txt", "s3cret\n")?;
            jail.set_env("G2P_SESSION_SECRET_FILE", "secret.txt");
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(cfg.listen, "0.0.0.0:9000"); // file over default
            assert_eq!(cfg.worker_concurrency, 7); // environment over file
            assert_eq!(cfg.log_format, "json");
            assert_eq!(cfg.database_url, "sqlite://g2p.sqlite"); // default kept
            assert_eq!(cfg.session_key(), b"s3cret".to_vec()); // from the _FILE, trimmed
            // Debug never shows the secret.
            assert!(!format!("{cfg:?}").contains("s3cret"));
            Ok(())
        });
    }

    #[test]
    fn rejects_unknown_keys_and_missing_files() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("g2p.toml", "lisen = \"typo\"\n")?;
            let err = Config::load(None).expect_err("unknown key must fail");
            assert!(format!("{err:#}").contains("lisen"), "{err:#}");
            let err = Config::load(Some(Path::new("nope.toml"))).expect_err("missing file");
            assert!(err.to_string().contains("nope.toml"));
            Ok(())
        });
    }

    #[test]
    fn redacts_database_password() {
        let cfg = Config {
            database_url: "postgres://g2p:hunter2@db/g2p".into(),
            ..Config::default()
        };
        assert!(!cfg.database_url_redacted().contains("hunter2"));
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }
}
