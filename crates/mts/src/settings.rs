//! Settings of `g2p mts serve`, layered as g2p's own are: defaults, then a TOML file
//! (`--config FILE`, or `G2P_MTS_CONFIG`, or `./g2p-mts.toml` when present), then `G2P_MTS_*`
//! environment variables, then what the caller passes last (the command line's explicit flags).
//! Owns the keys, their defaults and their translation into [`MtsConfig`] and the mock
//! authenticator; it starts nothing. `Debug` never prints a password inside the database URL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::auth::MockAuthenticator;
use crate::config::{AuthField, DEFAULT_DATABASE_URL, MtsConfig};
use crate::jq::JqSettings;

/// The configuration file read when none is named.
pub const DEFAULT_CONFIG_FILE: &str = "g2p-mts.toml";
/// Prefix of the environment variables.
pub const ENV_PREFIX: &str = "G2P_MTS_";

/// Every setting of `g2p mts serve`; see the crate README for the table.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MtsSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The queue's database: `sqlite://FILE` (embedded) or `postgres://…`.
    pub database_url: String,
    /// Partner id (enters the mock token formula).
    pub partner_id: String,
    /// Server-wide mandatory fields, comma-separated (name, gender, dob, phoneNumber, emailId,
    /// fullAddress).
    pub mandatory_fields: String,
    /// Language used when a request names none.
    pub default_lang: String,
    /// Pod ordinal: the first two digits of every request identifier.
    pub pod_ordinal: u8,
    /// Authentications run at the same time.
    pub concurrency: usize,
    /// Requests whose callbacks are delivered at the same time.
    pub callback_concurrency: usize,
    /// Seconds a delivered request is kept for status and download.
    pub retention_seconds: u64,
    /// Callback attempts in total before a delivery is given up.
    pub callback_attempts: u32,
    /// First callback retry delay, milliseconds (doubles each time).
    pub callback_backoff_ms: u64,
    /// Largest request body, bytes.
    pub max_request_bytes: usize,
    /// Largest number of records in one request.
    pub max_records: usize,
    /// MTS sync mode: `/authtoken/json` authenticates one record inside the call.
    pub sync_mode: bool,
    /// VIDs starting with 9999 fail demographic authentication, 8888 are unknown.
    pub mock_failures: bool,
    /// Milliseconds the mock authenticator takes per record.
    pub mock_latency_ms: u64,
    /// Milliseconds a worker may go on authenticating its batch after a shutdown signal;
    /// after that its unfinished records go back to the queue.
    pub shutdown_grace_ms: u64,
    /// jq worker processes (outputFormat evaluation).
    pub jq_workers: usize,
    /// Wall-clock bound of one outputFormat evaluation (a batch), milliseconds.
    pub jq_timeout_ms: u64,
    /// Memory a jq worker may use above its start-up size, MiB.
    pub jq_memory_mb: u64,
    /// The jq worker program; unset: this executable.
    pub jq_worker_program: Option<PathBuf>,
    /// Arguments that make `jq_worker_program` a worker (`mts jq-worker` for g2p).
    pub jq_worker_args: Vec<String>,
    /// Log format: `text` or `json`.
    pub log_format: String,
}

impl Default for MtsSettings {
    fn default() -> Self {
        let cfg = MtsConfig::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            database_url: DEFAULT_DATABASE_URL.into(),
            partner_id: cfg.partner_id,
            mandatory_fields: "name,gender,dob,fullAddress".into(),
            default_lang: cfg.default_lang,
            pod_ordinal: cfg.pod_ordinal,
            concurrency: cfg.concurrency,
            callback_concurrency: cfg.callback_concurrency,
            retention_seconds: cfg.retention.as_secs(),
            callback_attempts: cfg.callback_retry.max_attempts,
            callback_backoff_ms: 1000,
            max_request_bytes: cfg.max_request_bytes,
            max_records: cfg.max_records,
            sync_mode: cfg.sync_mode,
            mock_failures: false,
            mock_latency_ms: 0,
            shutdown_grace_ms: millis(cfg.shutdown_grace),
            jq_workers: cfg.jq.workers,
            jq_timeout_ms: millis(cfg.jq.timeout),
            jq_memory_mb: cfg.jq.memory_bytes >> 20,
            jq_worker_program: None,
            jq_worker_args: cfg.jq.worker_args,
            log_format: "text".into(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl std::fmt::Debug for MtsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field but the database URL is printed as it is: none of them is a secret.
        let mut shown = self.clone();
        shown.database_url = redact_url(&self.database_url);
        let v = serde_json::to_value(&shown).map_err(|_| std::fmt::Error)?;
        write!(f, "MtsSettings {v}")
    }
}

/// `scheme://user:password@host/…` with the password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration file {0} not found")]
    MissingFile(PathBuf),
    #[error("invalid g2p mts configuration: {0}")]
    Invalid(Box<figment::Error>),
    #[error("cannot read {var} ({file}): {source}")]
    SecretFile {
        var: String,
        file: String,
        source: std::io::Error,
    },
    #[error(
        "unknown mandatory field {0:?}: use name, gender, dob, phoneNumber, emailId or fullAddress"
    )]
    MandatoryField(String),
    #[error("log_format must be text or json, not {0:?}")]
    LogFormat(String),
}

/// `G2P_MTS_*` variables that are not keys.
const NOT_KEYS: &[&str] = &["config", "database_url_file"];

impl MtsSettings {
    fn known_keys() -> Vec<String> {
        match serde_json::to_value(MtsSettings::default()) {
            Ok(serde_json::Value::Object(m)) => {
                let mut keys: Vec<String> = m.keys().cloned().collect();
                // `None` is serialised too, but say it explicitly: the loop below relies on it.
                if !keys.iter().any(|k| k == "jq_worker_program") {
                    keys.push("jq_worker_program".into());
                }
                keys
            }
            _ => Vec::new(),
        }
    }

    /// Loads defaults → file → `G2P_MTS_*` → `overrides` (the explicit command-line flags: a
    /// serialisable struct whose absent flags are skipped; a map, so not `()`). `path` is
    /// `--config`; without it `G2P_MTS_CONFIG`, then `./g2p-mts.toml` if present. The database
    /// URL may come from a file: `G2P_MTS_DATABASE_URL_FILE` (below explicit flags).
    pub fn load(path: Option<&Path>, overrides: impl Serialize) -> Result<Self, SettingsError> {
        let path = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(format!("{ENV_PREFIX}CONFIG")).map(PathBuf::from));
        let mut fig = Figment::from(Serialized::defaults(MtsSettings::default()));
        match &path {
            Some(p) if !p.exists() => return Err(SettingsError::MissingFile(p.clone())),
            Some(p) => fig = fig.merge(Toml::file(p)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                fig = fig.merge(Toml::file(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        let known = Self::known_keys();
        for (name, _) in std::env::vars() {
            if let Some(key) = name.strip_prefix(ENV_PREFIX) {
                let key = key.to_ascii_lowercase();
                if !known.contains(&key) && !NOT_KEYS.contains(&key.as_str()) {
                    // Logging is not set up yet: it depends on these settings.
                    eprintln!("warning: ignoring {name}: not a g2p mts setting");
                }
            }
        }
        if let Ok(file) = std::env::var(format!("{ENV_PREFIX}DATABASE_URL_FILE")) {
            let url =
                std::fs::read_to_string(&file).map_err(|source| SettingsError::SecretFile {
                    var: format!("{ENV_PREFIX}DATABASE_URL_FILE"),
                    file: file.clone(),
                    source,
                })?;
            fig = fig.merge(Serialized::default("database_url", url.trim().to_owned()));
        }
        // Only keys are taken from the environment, so G2P_MTS_CONFIG or a typo cannot make
        // start-up fail (the typo was warned about above).
        fig = fig.merge(
            Env::prefixed(ENV_PREFIX)
                .filter(move |k| known.iter().any(|n| k.as_str().eq_ignore_ascii_case(n))),
        );
        fig = fig.merge(Serialized::defaults(overrides));
        let s: MtsSettings = fig
            .extract()
            .map_err(|e| SettingsError::Invalid(Box::new(e)))?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), SettingsError> {
        self.mandatory()?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(SettingsError::LogFormat(self.log_format.clone()));
        }
        Ok(())
    }

    fn mandatory(&self) -> Result<Vec<AuthField>, SettingsError> {
        self.mandatory_fields
            .split(',')
            .filter(|f| !f.trim().is_empty())
            .map(|f| AuthField::parse(f).ok_or_else(|| SettingsError::MandatoryField(f.into())))
            .collect()
    }

    /// The service's configuration.
    pub fn mts_config(&self) -> Result<MtsConfig, SettingsError> {
        let mut cfg = MtsConfig {
            partner_id: self.partner_id.clone(),
            mandatory_fields: self.mandatory()?,
            default_lang: self.default_lang.clone(),
            pod_ordinal: self.pod_ordinal,
            concurrency: self.concurrency.max(1),
            retention: Duration::from_secs(self.retention_seconds),
            callback_concurrency: self.callback_concurrency.max(1),
            max_request_bytes: self.max_request_bytes,
            max_records: self.max_records,
            sync_mode: self.sync_mode,
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            jq: JqSettings {
                workers: self.jq_workers.max(1),
                timeout: Duration::from_millis(self.jq_timeout_ms.max(1)),
                memory_bytes: self.jq_memory_mb.saturating_mul(1 << 20),
                worker_program: self.jq_worker_program.clone(),
                worker_args: self.jq_worker_args.clone(),
            },
            ..MtsConfig::default()
        };
        cfg.callback_retry.max_attempts = self.callback_attempts.max(1);
        cfg.callback_retry.initial_backoff = Duration::from_millis(self.callback_backoff_ms);
        Ok(cfg)
    }

    /// The mock authenticator these settings describe.
    pub fn authenticator(&self) -> MockAuthenticator {
        let mut auth = MockAuthenticator::new(&self.partner_id);
        if self.mock_failures {
            auth = auth.with_default_failures();
        }
        auth.latency = Duration::from_millis(self.mock_latency_ms);
        auth
    }
}

#[cfg(test)]
// figment's Jail closures return its (large) error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    /// Explicit flags as a binary would pass them: absent ones are skipped.
    #[derive(Serialize, Default)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        concurrency: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        database_url: Option<String>,
    }

    #[test]
    fn layers_defaults_file_environment_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "g2p-mts.toml",
                "listen = \"0.0.0.0:9000\"\nconcurrency = 2\npartner_id = \"from-file\"\n\
                 callback_attempts = 3\njq_workers = 5\n",
            )?;
            jail.set_env("G2P_MTS_CONCURRENCY", "7");
            jail.set_env("G2P_MTS_PARTNER_ID", "from-env");
            jail.set_env("G2P_MTS_MOCK_FAILURES", "true");
            let s = MtsSettings::load(None, Flags::default()).map_err(|e| e.to_string())?;
            assert_eq!(s.listen, "0.0.0.0:9000".parse().unwrap()); // file over default
            assert_eq!(s.callback_attempts, 3);
            assert_eq!(s.concurrency, 7); // environment over file
            assert_eq!(s.partner_id, "from-env");
            assert!(s.mock_failures);
            assert_eq!(s.default_lang, "eng"); // default kept
            assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
            let cfg = s.mts_config().map_err(|e| e.to_string())?;
            assert_eq!(cfg.jq.workers, 5);
            assert_eq!(cfg.concurrency, 7);
            // Explicit flags win over everything.
            let flags = Flags {
                concurrency: Some(11),
                ..Flags::default()
            };
            let s = MtsSettings::load(None, flags).map_err(|e| e.to_string())?;
            assert_eq!(s.concurrency, 11);
            assert_eq!(s.partner_id, "from-env"); // an absent flag changes nothing
            Ok(())
        });
    }

    #[test]
    fn config_file_from_flag_or_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("g2p-mts.toml", "concurrency = 2\n")?;
            jail.create_file("other.toml", "concurrency = 3\n")?;
            jail.create_file("env.toml", "concurrency = 4\n")?;
            jail.set_env("G2P_MTS_CONFIG", "env.toml");
            let s = MtsSettings::load(None, Flags::default()).map_err(|e| e.to_string())?;
            assert_eq!(s.concurrency, 4);
            let s = MtsSettings::load(Some(Path::new("other.toml")), Flags::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(s.concurrency, 3);
            let err =
                MtsSettings::load(Some(Path::new("nope.toml")), Flags::default()).unwrap_err();
            assert!(err.to_string().contains("nope.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("g2p-mts.toml", "concurency = 2\n")?;
            let err = MtsSettings::load(None, Flags::default()).unwrap_err();
            assert!(err.to_string().contains("concurency"), "{err}");
            jail.create_file("g2p-mts.toml", "mandatory_fields = \"name,shoeSize\"\n")?;
            let err = MtsSettings::load(None, Flags::default()).unwrap_err();
            assert!(err.to_string().contains("shoeSize"), "{err}");
            jail.create_file("g2p-mts.toml", "")?;
            jail.set_env("G2P_MTS_LISTEN", "not an address");
            assert!(MtsSettings::load(None, Flags::default()).is_err());
            // A typo in the environment is warned about, not fatal.
            jail.set_env("G2P_MTS_LISTEN", "127.0.0.1:1");
            jail.set_env("G2P_MTS_CONCURENCY", "2");
            assert!(MtsSettings::load(None, Flags::default()).is_ok());
            Ok(())
        });
    }

    #[test]
    fn database_url_from_file_and_never_printed() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("db.txt", "postgres://mts:hunter2@db/mts\n")?;
            jail.set_env("G2P_MTS_DATABASE_URL_FILE", "db.txt");
            let s = MtsSettings::load(None, Flags::default()).map_err(|e| e.to_string())?;
            assert_eq!(s.database_url, "postgres://mts:hunter2@db/mts");
            let shown = format!("{s:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("postgres://mts:***@db/mts"), "{shown}");
            // An explicit flag still wins over the file.
            let flags = Flags {
                database_url: Some("sqlite::memory:".into()),
                ..Flags::default()
            };
            let s = MtsSettings::load(None, flags).map_err(|e| e.to_string())?;
            assert_eq!(s.database_url, "sqlite::memory:");
            Ok(())
        });
    }

    #[test]
    fn redaction() {
        assert_eq!(redact_url("sqlite://mts.sqlite"), "sqlite://mts.sqlite");
        assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact_url("postgres://u:p@ss@h/d"), "postgres://u:***@h/d");
    }

    #[test]
    fn settings_make_the_service_config() {
        let s = MtsSettings {
            mandatory_fields: "name,dob".into(),
            callback_backoff_ms: 250,
            jq_memory_mb: 64,
            mock_latency_ms: 5,
            mock_failures: true,
            ..MtsSettings::default()
        };
        let cfg = s.mts_config().unwrap();
        assert_eq!(cfg.mandatory_fields, [AuthField::Name, AuthField::Dob]);
        assert_eq!(
            cfg.callback_retry.initial_backoff,
            Duration::from_millis(250)
        );
        assert_eq!(cfg.jq.memory_bytes, 64 << 20);
        let auth = s.authenticator();
        assert_eq!(auth.latency, Duration::from_millis(5));
        assert_eq!(auth.failures.len(), 2);
    }
}
