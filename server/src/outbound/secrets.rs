//! Secrets the server must read back — the HMAC keys it signs webhook and hook
//! calls with — stored sealed with the server's key (AES-256-GCM through ring,
//! a random 96-bit nonce per seal): `v1:<base64url(nonce | ciphertext | tag)>`.
//! A copy of the database alone gives none of them away, and a sealed value
//! that was altered, or sealed under another key, fails to open.
//!
//! The key (`--secrets-key`, base64 of 32 bytes, or `--secrets-key-file`) must
//! be the same on every node of a cluster. Without one, a SQLite server makes
//! its own beside the database file (mode 0600) on first start; a PostgreSQL
//! server has none, and refuses to create a webhook or hook until the
//! operator sets one (see `node::Node::secrets`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};

/// The key's length in bytes.
pub const KEY_LEN: usize = 32;
const PREFIX: &str = "v1:";
/// Binds a sealed value to its use: a ciphertext made for anything else under
/// the same key does not open here.
const AAD: &[u8] = b"mkondo secret v1";

/// Seals and opens secrets with the server's key.
#[derive(Clone)]
pub struct SecretBox {
    key: Arc<LessSafeKey>,
    /// Signs links the server hands out and checks when they come back (file
    /// uploads and downloads): an HMAC-SHA256 key derived from the same key,
    /// so no sealed value and no signature can stand for the other.
    links: ring::hmac::Key,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<redacted>)")
    }
}

impl SecretBox {
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        let derived = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            b"mkondo link signing v1",
        );
        let links = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref());
        let key = UnboundKey::new(&AES_256_GCM, key).expect("AES-256-GCM takes a 32-byte key");
        Self {
            key: Arc::new(LessSafeKey::new(key)),
            links,
        }
    }

    /// A link's signature: base64url of HMAC-SHA256 over `parts`, each
    /// length-prefixed so no two lists of parts sign the same bytes.
    pub fn sign_link<S: AsRef<str>>(&self, parts: &[S]) -> String {
        URL_SAFE_NO_PAD.encode(ring::hmac::sign(&self.links, &link_bytes(parts)))
    }

    /// Whether `signature` is [`sign_link`](Self::sign_link) of `parts`
    /// (compared in constant time).
    pub fn verify_link<S: AsRef<str>>(&self, parts: &[S], signature: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        ring::hmac::verify(&self.links, &link_bytes(parts), &tag).is_ok()
    }

    /// `"v1:" + base64url(nonce | ciphertext | tag)`.
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source");
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        sealed.extend_from_slice(&nonce);
        let mut in_out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut in_out,
            )
            .expect("a secret is far below AES-GCM's length limit");
        sealed.extend_from_slice(&in_out);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The plaintext of a value [`seal`](Self::seal) made with this key.
    /// Anything else — altered, truncated, sealed under another key — is
    /// `internal` (logged without the value): the stored secret is unusable
    /// until it is set again or the right key is given back.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>> {
        let unusable = |why: &str| {
            tracing::error!(
                why,
                "a sealed secret does not open: altered, or sealed under another --secrets-key"
            );
            Error::internal()
        };
        let encoded = sealed
            .strip_prefix(PREFIX)
            .ok_or_else(|| unusable("unknown format"))?;
        let mut bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| unusable("not base64url"))?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(unusable("too short"));
        }
        let mut in_out = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| unusable("nonce"))?;
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(AAD), &mut in_out)
            .map_err(|_| unusable("authentication failed"))?;
        Ok(plaintext.to_vec())
    }
}

fn link_bytes<S: AsRef<str>>(parts: &[S]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.as_ref().len() + 4).sum());
    for part in parts {
        let part = part.as_ref();
        bytes.extend_from_slice(&(part.len() as u32).to_be_bytes());
        bytes.extend_from_slice(part.as_bytes());
    }
    bytes
}

/// A new signing secret, handed out once: `"whsec_" + base64url(32 random bytes)`.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source");
    format!("whsec_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Reads a key: base64 (standard or URL-safe, padded or not) of 32 bytes.
pub fn parse_key(text: &str) -> anyhow::Result<[u8; KEY_LEN]> {
    let text = text.trim();
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .map_err(|_| anyhow::anyhow!("the secrets key is not base64"))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        anyhow::anyhow!(
            "the secrets key must be {KEY_LEN} bytes (base64 of 32 random bytes, e.g. \
             `openssl rand -base64 32`), not {}",
            b.len()
        )
    })
}

/// Where the server's key comes from (`--secrets-key`, `--secrets-key-file`).
#[derive(Clone, Debug, Default)]
pub enum KeySource {
    /// Neither given: a SQLite server keeps its own beside the database.
    #[default]
    Unset,
    Inline(crate::config::Secret),
    File(PathBuf),
}

/// The server's [`SecretBox`] from its settings; `None` on PostgreSQL without
/// a key (several nodes must share one, so none is made up).
pub fn load(source: &KeySource, database: &str) -> anyhow::Result<Option<SecretBox>> {
    let key = match source {
        KeySource::Inline(secret) => parse_key(secret.expose())?,
        KeySource::File(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--secrets-key-file {}: {e}", path.display()))?;
            parse_key(&text)
                .map_err(|e| anyhow::anyhow!("--secrets-key-file {}: {e}", path.display()))?
        }
        KeySource::Unset => match sqlite_key_file(database) {
            None => return Ok(None),
            Some(None) => random_key(),
            Some(Some(path)) => key_beside_database(&path)?,
        },
    };
    Ok(Some(SecretBox::new(&key)))
}

fn random_key() -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .expect("the system's random source");
    key
}

/// `None`: not SQLite. `Some(None)`: SQLite in memory (a key for this process
/// alone). `Some(Some(path))`: the key file beside the database file.
fn sqlite_key_file(database: &str) -> Option<Option<PathBuf>> {
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        return None;
    }
    let path = database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))
        .unwrap_or(database);
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Some(None);
    }
    Some(Some(PathBuf::from(format!("{path}.secrets-key"))))
}

/// Reads the key file, or creates it (mode 0600) with a random key. Two
/// processes starting together agree: only one creation succeeds.
fn key_beside_database(path: &Path) -> anyhow::Result<[u8; KEY_LEN]> {
    let read = |path: &Path| -> anyhow::Result<[u8; KEY_LEN]> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading the secrets key {}: {e}", path.display()))?;
        parse_key(&text).map_err(|e| anyhow::anyhow!("the secrets key {}: {e}", path.display()))
    };
    if path.exists() {
        return read(path);
    }
    let key = random_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            use std::io::Write;
            writeln!(file, "{}", STANDARD.encode(key))
                .and_then(|()| file.sync_all())
                .map_err(|e| anyhow::anyhow!("writing the secrets key {}: {e}", path.display()))?;
            tracing::info!(
                file = %path.display(),
                "made the secrets key that seals webhook and hook secrets; back it up with the database"
            );
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(anyhow::anyhow!(
            "creating the secrets key {}: {e}",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_verifies_with_its_key_and_parts_only() {
        let links = SecretBox::new(&random_key());
        let sig = links.sign_link(&["download", "app", "upl_1", "100"]);
        assert!(links.verify_link(&["download", "app", "upl_1", "100"], &sig));
        assert!(!links.verify_link(&["download", "app", "upl_1", "101"], &sig));
        assert!(!links.verify_link(&["download", "app", "upl_2", "100"], &sig));
        // Parts are length-prefixed: moving a boundary changes the signature.
        assert!(!links.verify_link(&["download", "appu", "pl_1", "100"], &sig));
        assert!(
            !SecretBox::new(&random_key()).verify_link(&["download", "app", "upl_1", "100"], &sig)
        );
        assert!(!links.verify_link(&["download", "app", "upl_1", "100"], "not base64!"));
    }

    #[test]
    fn a_sealed_secret_opens_with_its_key_only() {
        let key = random_key();
        let sealed_box = SecretBox::new(&key);
        let sealed = sealed_box.seal(b"whsec_abc");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(sealed_box.open(&sealed).unwrap(), b"whsec_abc");
        assert_ne!(
            sealed,
            sealed_box.seal(b"whsec_abc"),
            "a fresh nonce each time"
        );
        let other = SecretBox::new(&random_key());
        assert!(other.open(&sealed).is_err(), "another key");
    }

    #[test]
    fn a_tampered_seal_does_not_open() {
        let sealed_box = SecretBox::new(&random_key());
        let sealed = sealed_box.seal(b"secret");
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
        for at in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[at] ^= 1;
            let tampered = format!("v1:{}", URL_SAFE_NO_PAD.encode(&bytes));
            assert!(sealed_box.open(&tampered).is_err(), "byte {at}");
            bytes[at] ^= 1;
        }
        for bad in ["", "v1:", "v2:abc", "v1:!!!", &sealed[..sealed.len() - 4]] {
            assert!(sealed_box.open(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_secrets_are_random_and_prefixed() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with("whsec_"));
        assert_eq!(URL_SAFE_NO_PAD.decode(&a[6..]).unwrap().len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn keys_are_base64_of_32_bytes() {
        let key = random_key();
        assert_eq!(parse_key(&STANDARD.encode(key)).unwrap(), key);
        assert_eq!(parse_key(&URL_SAFE_NO_PAD.encode(key)).unwrap(), key);
        assert_eq!(
            parse_key(&format!("{}\n", STANDARD.encode(key))).unwrap(),
            key
        );
        assert!(parse_key(&STANDARD.encode([1u8; 16])).is_err());
        assert!(parse_key("not base64 at all!").is_err());
    }

    #[test]
    fn sqlite_keeps_a_key_file_beside_the_database_and_postgres_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("chat.db");
        let db = db.to_str().unwrap();
        let first = load(&KeySource::Unset, db).unwrap().unwrap();
        let file = dir.path().join("chat.db.secrets-key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = load(&KeySource::Unset, &format!("sqlite://{db}"))
            .unwrap()
            .unwrap();
        assert_eq!(again.open(&first.seal(b"x")).unwrap(), b"x", "the same key");
        assert!(load(&KeySource::Unset, "postgres://u@h/db")
            .unwrap()
            .is_none());
        let given = KeySource::Inline(STANDARD.encode([7u8; 32]).parse().unwrap());
        let inline = load(&given, "postgres://u@h/db").unwrap().unwrap();
        let from_file = KeySource::File(file);
        let filed = load(&from_file, "postgres://u@h/db").unwrap().unwrap();
        assert_eq!(filed.open(&first.seal(b"y")).unwrap(), b"y");
        assert!(inline.open(&first.seal(b"y")).is_err());
    }
}
