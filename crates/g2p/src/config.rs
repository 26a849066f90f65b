//! Configuration: defaults, then `g2p.toml` (or the file named by `--config` / `G2P_CONFIG`),
//! then `G2P_*` environment variables (`__` for nesting). Secrets may be given as files
//! (`G2P_SESSION_SECRET_FILE`, `G2P_SECRET_KEY_FILE`), and `Debug` never prints them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use g2p_store::secrets::SecretBox;
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
    /// Key that encrypts connector secrets at rest (passwords, bearer tokens): 64 hex characters
    /// or base64 of 32 bytes. Every node of a deployment needs the same one; see
    /// [`Config::secret_box`] for what happens when it is unset.
    #[serde(skip_serializing)]
    pub secret_key: Option<SecretString>,
    /// Mark cookies `Secure` (set when serving behind TLS).
    pub secure_cookies: bool,
    /// Run the job worker inside `serve` (turn off when running dedicated `g2p worker`s).
    pub run_worker: bool,
    /// Jobs run concurrently by one worker process.
    pub worker_concurrency: usize,
    /// Seconds after submitting a chunk to MTS before its missing callbacks are looked into
    /// (status polling; lost callbacks are re-sent).
    pub mts_callback_deadline_secs: u64,
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
            secret_key: None,
            secure_cookies: false,
            run_worker: true,
            worker_concurrency: 4,
            mts_callback_deadline_secs: 600,
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
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
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
        keys.push("secret_key".into());
        keys
    }
}

/// Environment variables that may name a file holding the real value (`…_FILE`).
const FILE_SECRETS: &[&str] = &["SESSION_SECRET", "SECRET_KEY", "DATABASE_URL"];

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
                    "SECRET_KEY" => cfg.secret_key = Some(SecretString::from(value)),
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

    /// The key that encrypts connector secrets at rest, by one rule:
    ///
    /// - `secret_key` (`G2P_SECRET_KEY`, `G2P_SECRET_KEY_FILE` or `secret_key` in `g2p.toml`)
    ///   when set, whatever the database;
    /// - otherwise, for a SQLite database file, the key file [`SECRET_KEY_FILE`] next to it,
    ///   created (random, mode 0600) when missing;
    /// - for an in-memory SQLite database, a random key that ends with the process (so does the
    ///   data), with a warning;
    /// - for PostgreSQL, an error: every node must share the key, so it must be configured.
    pub fn secret_box(&self, database_url: &str) -> anyhow::Result<SecretBox> {
        if let Some(key) = &self.secret_key {
            return SecretBox::from_key_text(key.expose_secret())
                .context("invalid secret_key (G2P_SECRET_KEY or G2P_SECRET_KEY_FILE)");
        }
        if database_url.starts_with("postgres:") || database_url.starts_with("postgresql:") {
            anyhow::bail!(
                "G2P_SECRET_KEY (or G2P_SECRET_KEY_FILE) must be set when the database is \
                 PostgreSQL: every node must share it (64 hex characters, e.g. from \
                 `openssl rand -hex 32`)"
            );
        }
        if !database_url.starts_with("sqlite:") {
            anyhow::bail!(
                "unsupported database URL {:?}: use sqlite://FILE or postgres://…",
                g2p_store::db::redact_url(database_url)
            );
        }
        let Some(db_file) = sqlite_file(database_url)? else {
            tracing::warn!(
                "in-memory SQLite database and no secret_key: connector secrets are encrypted \
                 with a random key that ends with this process"
            );
            return Ok(SecretBox::ephemeral());
        };
        let key_file = match db_file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(SECRET_KEY_FILE),
            _ => PathBuf::from(SECRET_KEY_FILE),
        };
        let (secrets, created) = SecretBox::load_or_create_key_file(&key_file)
            .context("cannot set up the key for connector secrets")?;
        if created {
            tracing::info!(
                path = %key_file.display(),
                "created a new key for connector secrets; back it up with the database"
            );
        }
        Ok(secrets)
    }

    /// The database URL with any password hidden, for messages.
    pub fn database_url_redacted(&self) -> String {
        g2p_store::db::redact_url(&self.database_url)
    }
}

/// Name of the key file kept next to a SQLite database when no `secret_key` is configured.
pub const SECRET_KEY_FILE: &str = "g2p-secret.key";

/// The database file of a `sqlite:` URL, or `None` for an in-memory database.
fn sqlite_file(database_url: &str) -> anyhow::Result<Option<PathBuf>> {
    use std::str::FromStr;
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(database_url)
        .with_context(|| format!("invalid SQLite URL {database_url:?}"))?;
    let file = opts.get_filename();
    let memory_mode = database_url
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|p| p == "mode=memory"));
    // sqlx names `sqlite::memory:` databases `file:sqlx-in-memory-N`.
    let in_memory = memory_mode
        || file.as_os_str().is_empty()
        || file.as_os_str() == ":memory:"
        || file.to_string_lossy().starts_with("file:sqlx-in-memory-");
    Ok((!in_memory).then(|| file.to_path_buf()))
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

    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    /// A value sealed with [`KEY_HEX`], to check which key a box holds.
    fn sealed_with_test_key() -> String {
        SecretBox::from_key_text(KEY_HEX)
            .and_then(|b| b.seal("test:1:password", "hunter2"))
            .expect("seal")
    }

    fn opens(b: &SecretBox, sealed: &str) -> bool {
        b.open("test:1:password", sealed)
            .is_ok_and(|s| s.expose_secret() == "hunter2")
    }

    #[test]
    fn secret_key_from_file_env_or_toml() {
        let sealed = sealed_with_test_key();
        figment::Jail::expect_with(|jail| {
            jail.create_file("key.txt", &format!("{KEY_HEX}\n"))?;
            jail.set_env("G2P_SECRET_KEY_FILE", "key.txt");
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            // With a key set, PostgreSQL is fine and no key file is made.
            let b = cfg
                .secret_box("postgres://g2p:pw@db/g2p")
                .map_err(|e| format!("{e:#}"))?;
            assert!(opens(&b, &sealed));
            // The configured key wins over a SQLite key file too.
            let b = cfg
                .secret_box("sqlite://g2p.sqlite")
                .map_err(|e| format!("{e:#}"))?;
            assert!(opens(&b, &sealed));
            assert!(!jail.directory().join(SECRET_KEY_FILE).exists());
            // Debug never shows it.
            let dbg = format!("{cfg:?}");
            assert!(dbg.contains("secret_key: Some(\"***\")"), "{dbg}");
            assert!(!dbg.contains(KEY_HEX), "{dbg}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("G2P_SECRET_KEY", KEY_HEX);
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            let b = cfg
                .secret_box("postgres://db/g2p")
                .map_err(|e| e.to_string())?;
            assert!(opens(&b, &sealed));
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.create_file("g2p.toml", &format!("secret_key = \"{KEY_HEX}\"\n"))?;
            let cfg = Config::load(None).map_err(|e| e.to_string())?;
            let b = cfg
                .secret_box("postgres://db/g2p")
                .map_err(|e| e.to_string())?;
            assert!(opens(&b, &sealed));
            Ok(())
        });
    }

    #[test]
    fn postgres_without_secret_key_fails() {
        let cfg = Config::default();
        let err = cfg
            .secret_box("postgres://g2p:hunter2@db/g2p")
            .expect_err("PostgreSQL needs a configured key");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("G2P_SECRET_KEY (or G2P_SECRET_KEY_FILE) must be set"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn bad_secret_key_is_a_clear_error() {
        let cfg = Config {
            secret_key: Some(SecretString::from("not-a-real-key-value")),
            ..Config::default()
        };
        let msg = format!(
            "{:#}",
            cfg.secret_box("sqlite::memory:").expect_err("bad key")
        );
        assert!(msg.contains("G2P_SECRET_KEY"), "{msg}");
        assert!(!msg.contains("not-a-real-key-value"), "{msg}");
        assert!(!format!("{cfg:?}").contains("not-a-real-key-value"));
    }

    #[test]
    fn sqlite_key_file_next_to_the_database() {
        let dir = std::env::temp_dir().join(format!("g2p_cfg_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.join("reg.sqlite").display());
        let cfg = Config::default();
        let b = cfg.secret_box(&url).expect("key file made");
        let key_file = dir.join(SECRET_KEY_FILE);
        assert!(key_file.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = b.seal("c", "x").expect("seal");
        // The next start reads the same key.
        let again = cfg.secret_box(&url).expect("key file read");
        assert_eq!(
            again.open("c", &sealed).expect("same key").expose_secret(),
            "x"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn in_memory_sqlite_gets_an_ephemeral_key() {
        let cfg = Config::default();
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://x.db?mode=memory",
        ] {
            let a = cfg.secret_box(url).expect("ephemeral key");
            let b = cfg.secret_box(url).expect("ephemeral key");
            let sealed = a.seal("c", "x").expect("seal");
            assert!(b.open("c", &sealed).is_err(), "{url}: keys must differ");
        }
        assert!(cfg.secret_box("mysql://db/x").is_err());
    }
}
