//! Encryption at rest for connector secrets: passwords and bearer tokens that g2p must later send
//! in clear to other systems, so they are encrypted (AES-256-GCM), not hashed.
//!
//! A sealed value is `v1:` followed by base64url (no padding) of a fresh 12-byte random nonce and
//! the ciphertext with its 16-byte tag. The caller's `context` (for example
//! `mts_connector:7:callback_password`) is the associated data: a ciphertext copied to another
//! row or column does not open there.
//!
//! Nothing here ever puts a key or a plaintext into an error message, a log line or `Debug`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use rand::TryRng;
use rand::rngs::SysRng;
use secrecy::SecretString;
use secrecy::zeroize::Zeroize;

/// Prefix of the current sealed format.
const V1: &str = "v1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Standard base64 alphabet, padding optional, for key text.
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key text or key file is not a usable key (the message never quotes the key).
    #[error("invalid secret key: {0}")]
    BadKey(String),
    #[error("secret key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The system random source failed (making a key or a nonce).
    #[error("system random source failed: {0}")]
    Random(String),
    /// The cipher refused the plaintext (only past its 64 GiB limit).
    #[error("cannot encrypt secret: the plaintext is too long")]
    Encrypt,
    /// Not a value produced by [`SecretBox::seal`] (wrong prefix, bad base64, too short).
    #[error("sealed secret is malformed")]
    Malformed,
    /// Wrong key, wrong context, or tampered data.
    #[error("cannot decrypt secret: wrong key, wrong context or tampered data")]
    Decrypt,
}

/// AES-256-GCM with a 32-byte key. Cheap to clone (the expanded key is shared).
#[derive(Clone)]
pub struct SecretBox {
    cipher: Arc<Aes256Gcm>,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(***)")
    }
}

impl SecretBox {
    pub fn new(mut key: [u8; 32]) -> Self {
        let mut k = Key::<Aes256Gcm>::from(key);
        let cipher = Aes256Gcm::new(&k);
        key.zeroize();
        k.as_mut_slice().zeroize();
        Self {
            cipher: Arc::new(cipher),
        }
    }

    /// A box with a fresh random key that lives only as long as the process: for an in-memory
    /// database, tests and tools. Never use it for data that outlives the process.
    pub fn ephemeral() -> Self {
        // `ThreadRng` is a CSPRNG seeded from the operating system.
        let mut key: [u8; 32] = rand::random();
        let b = Self::new(key);
        key.zeroize();
        b
    }

    /// Parses a key given as 64 hex chars or standard base64 of 32 bytes (surrounding whitespace
    /// ignored); a clear error otherwise.
    pub fn from_key_text(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SecretError::BadKey("the key is empty".into()));
        }
        let mut bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| SecretError::BadKey(KEY_FORMS.into()))?
        } else {
            KEY_BASE64
                .decode(text)
                .map_err(|_| SecretError::BadKey(KEY_FORMS.into()))?
        };
        let key: Result<[u8; 32], _> = bytes.as_slice().try_into();
        let len = bytes.len();
        bytes.zeroize();
        match key {
            Ok(mut key) => {
                let b = Self::new(key);
                key.zeroize();
                Ok(b)
            }
            Err(_) => Err(SecretError::BadKey(format!(
                "{KEY_FORMS}; this one decodes to {len} bytes"
            ))),
        }
    }

    /// Loads the key file at `path`, or creates it (random key, hex, mode 0600 on unix, parent
    /// dir must exist) when missing. Returns (box, created).
    ///
    /// Creation is atomic: the key is written to a temporary file beside `path` and linked into
    /// place only if nothing is there yet, so two processes starting together agree on one key.
    pub fn load_or_create_key_file(path: &Path) -> Result<(Self, bool), SecretError> {
        match read_key_file(path) {
            Ok(b) => return Ok((b, false)),
            Err(SecretError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let io = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut key = random_key()?;
        let mut text = hex::encode(key);
        text.push('\n');
        let b = Self::new(key);
        key.zeroize();
        let written = write_new_key_file(path, text.as_bytes());
        text.zeroize();
        match written {
            Ok(()) => Ok((b, true)),
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                read_key_file(path).map(|b| (b, false))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// "v1:" + base64url-no-pad(nonce(12 random bytes) || ciphertext+tag), with `context` as the
    /// associated data.
    pub fn seal(&self, context: &str, plaintext: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        SysRng
            .try_fill_bytes(&mut nonce)
            .map_err(|e| SecretError::Random(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Encrypt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(format!("{V1}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens a value made by [`SecretBox::seal`] with the same key and `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<SecretString, SecretError> {
        let body = sealed.strip_prefix(V1).ok_or(SecretError::Malformed)?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SecretError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretError::Malformed)?;
        let plain = self
            .cipher
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Decrypt)?;
        match String::from_utf8(plain) {
            Ok(s) => Ok(SecretString::from(s)),
            Err(e) => {
                // Authentic but not text: `seal` never makes this. Wipe it all the same.
                e.into_bytes().zeroize();
                Err(SecretError::Malformed)
            }
        }
    }
}

const KEY_FORMS: &str = "expected 64 hexadecimal characters or standard base64 of 32 bytes";

fn random_key() -> Result<[u8; 32], SecretError> {
    let mut key = [0u8; 32];
    SysRng
        .try_fill_bytes(&mut key)
        .map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(key)
}

fn read_key_file(path: &Path) -> Result<SecretBox, SecretError> {
    let mut text = std::fs::read_to_string(path).map_err(|source| SecretError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let parsed = SecretBox::from_key_text(&text);
    text.zeroize();
    let b = parsed.map_err(|e| match e {
        SecretError::BadKey(why) => {
            SecretError::BadKey(format!("key file {}: {why}", path.display()))
        }
        other => other,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the secret key file is readable by other users; chmod 600 it"
            );
        }
    }
    Ok(b)
}

/// Writes `contents` to a new file at `path` (owner-only on unix), failing with `AlreadyExists`
/// if something is there. The file appears whole or not at all.
fn write_new_key_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        write_private(&tmp, contents)?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
            // A file system without hard links: write in place instead (a tiny window in
            // which a concurrent reader could see a partial file).
            Err(_) => write_private(path, contents),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key() -> [u8; 32] {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
        k
    }

    fn temp_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("g2p_secrets_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&d).expect("temp dir");
        d
    }

    #[test]
    fn round_trip() {
        let b = SecretBox::new(key());
        let sealed = b
            .seal("mts_connector:7:callback_password", "hunter2")
            .expect("seal");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("hunter2"));
        let opened = b
            .open("mts_connector:7:callback_password", &sealed)
            .expect("open");
        assert_eq!(opened.expose_secret(), "hunter2");
        // Fresh nonce each time.
        let again = b
            .seal("mts_connector:7:callback_password", "hunter2")
            .expect("seal");
        assert_ne!(sealed, again);
        // Empty and non-ASCII plaintexts.
        for p in ["", "pässwörd ✓"] {
            let s = b.seal("c", p).expect("seal");
            assert_eq!(b.open("c", &s).expect("open").expose_secret(), p);
        }
        // Clones share the key.
        let c = b.clone();
        assert_eq!(
            c.open("c", &b.seal("c", "x").expect("seal"))
                .expect("open")
                .expose_secret(),
            "x"
        );
    }

    #[test]
    fn wrong_context_fails() {
        let b = SecretBox::new(key());
        let sealed = b
            .seal("mts_connector:7:callback_password", "hunter2")
            .expect("seal");
        for ctx in [
            "mts_connector:8:callback_password",
            "mts_connector:7:token",
            "",
        ] {
            assert!(
                matches!(b.open(ctx, &sealed), Err(SecretError::Decrypt)),
                "{ctx}"
            );
        }
    }

    #[test]
    fn tampered_fails() {
        let b = SecretBox::new(key());
        let sealed = b.seal("ctx", "hunter2").expect("seal");
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed[3..]).expect("b64");
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            let bad = format!("v1:{}", URL_SAFE_NO_PAD.encode(&raw));
            assert!(
                matches!(b.open("ctx", &bad), Err(SecretError::Decrypt)),
                "byte {i}"
            );
            raw[i] ^= 1;
        }
        // Truncated by one byte: still long enough to try, fails authentication.
        let short = format!("v1:{}", URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1]));
        assert!(matches!(b.open("ctx", &short), Err(SecretError::Decrypt)));
        for bad in [
            "",
            "v1:",
            "v2:AAAA",
            "hunter2",
            "v1:!!!!",
            "v1:AAAAAAAAAAAAAAAA",
        ] {
            assert!(
                matches!(b.open("ctx", bad), Err(SecretError::Malformed)),
                "{bad}"
            );
        }
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = SecretBox::new(key()).seal("ctx", "hunter2").expect("seal");
        let other = SecretBox::ephemeral();
        let err = other.open("ctx", &sealed).expect_err("wrong key");
        assert!(matches!(err, SecretError::Decrypt));
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn hex_and_base64_keys() {
        let sealed = SecretBox::new(key()).seal("ctx", "s").expect("seal");
        let b64 = base64::engine::general_purpose::STANDARD.encode(key());
        let b64_no_pad = b64.trim_end_matches('=').to_owned();
        for text in [
            HEX.to_owned(),
            HEX.to_ascii_uppercase(),
            format!("  {HEX}\n"),
            b64.clone(),
            format!("\n{b64}\r\n"),
            b64_no_pad,
        ] {
            let b = SecretBox::from_key_text(&text).expect("key parses");
            assert_eq!(
                b.open("ctx", &sealed).expect("same key").expose_secret(),
                "s"
            );
        }
    }

    #[test]
    fn bad_key_text_errors() {
        let b64_16 = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        for text in [
            "",
            "   ",
            &HEX[..62],
            "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "not a key!",
            b64_16.as_str(),
        ] {
            let err = SecretBox::from_key_text(text).expect_err("must fail");
            assert!(matches!(err, SecretError::BadKey(_)), "{text:?}");
            let msg = err.to_string();
            assert!(msg.contains("invalid secret key"), "{msg}");
            if text.trim().len() > 3 {
                assert!(!msg.contains(text.trim()), "message quotes the key: {msg}");
            }
        }
        let msg = SecretBox::from_key_text(&b64_16)
            .expect_err("16 bytes")
            .to_string();
        assert!(msg.contains("16 bytes"), "{msg}");
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", SecretBox::new(key())), "SecretBox(***)");
    }

    #[test]
    fn key_file_created_then_reread() {
        let dir = temp_dir();
        let path = dir.join("g2p-secret.key");
        let (b, created) = SecretBox::load_or_create_key_file(&path).expect("create");
        assert!(created);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.trim().len(), 64);
        assert!(text.trim().bytes().all(|c| c.is_ascii_hexdigit()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = b.seal("ctx", "hunter2").expect("seal");
        let (again, created) = SecretBox::load_or_create_key_file(&path).expect("load");
        assert!(!created);
        assert_eq!(
            again
                .open("ctx", &sealed)
                .expect("same key")
                .expose_secret(),
            "hunter2"
        );
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn key_file_errors() {
        let dir = temp_dir();
        // Missing parent directory.
        let err =
            SecretBox::load_or_create_key_file(&dir.join("nope").join("k")).expect_err("no parent");
        assert!(matches!(err, SecretError::Io { .. }), "{err}");
        // A file that is not a key.
        let path = dir.join("bad.key");
        std::fs::write(&path, "not-a-key-at-all").expect("write");
        let err = SecretBox::load_or_create_key_file(&path).expect_err("bad key file");
        let msg = err.to_string();
        assert!(matches!(err, SecretError::BadKey(_)), "{msg}");
        assert!(
            msg.contains("bad.key") && !msg.contains("not-a-key-at-all"),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn concurrent_creation_agrees_on_one_key() {
        let dir = temp_dir();
        let path = dir.join("g2p-secret.key");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || SecretBox::load_or_create_key_file(&p))
            })
            .collect();
        let boxes: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("key"))
            .collect();
        assert_eq!(boxes.iter().filter(|(_, created)| *created).count(), 1);
        let sealed = boxes[0].0.seal("ctx", "x").expect("seal");
        for (b, _) in &boxes {
            assert_eq!(
                b.open("ctx", &sealed).expect("same key").expose_secret(),
                "x"
            );
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
