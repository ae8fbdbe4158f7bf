//! Ed25519 keys: the private key that signs manifests (PKCS#8 PEM, as `openssl genpkey
//! -algorithm ed25519` writes it) and the public keys a verifier trusts (SPKI PEM, as
//! `openssl pkey -pubout` writes it). A key is named by its id: the first 16 hex digits of
//! the SHA-256 of its 32 raw public-key bytes.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// A key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not a key of the expected kind. The message never quotes the key.
    #[error("{what} is not an Ed25519 {kind} key in PEM ({problem})")]
    Unreadable {
        /// Where the key came from (a file name or an environment variable's name).
        what: String,
        /// `private` or `public`.
        kind: &'static str,
        /// Why, without the key's bytes.
        problem: String,
    },
}

/// The id of a public key: the first 16 hex digits of SHA-256 over its raw 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The private key that signs manifests. Its `Debug` shows only its id: the key never
/// reaches a log.
pub struct ManifestSigner {
    key: SigningKey,
    id: String,
}

impl std::fmt::Debug for ManifestSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ManifestSigner({})", self.id)
    }
}

impl ManifestSigner {
    /// A new random key (from the operating system's generator).
    pub fn generate() -> Self {
        Self::from_key(SigningKey::generate(&mut rand_core::OsRng))
    }

    fn from_key(key: SigningKey) -> Self {
        let id = key_id(&key.verifying_key());
        Self { key, id }
    }

    /// Reads a PKCS#8 PEM private key; `what` names its source in the error.
    pub fn from_pem(pem: &str, what: &str) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(pem.trim())
            .map(Self::from_key)
            .map_err(|e| KeyError::Unreadable {
                what: what.to_string(),
                kind: "private",
                problem: e.to_string(),
            })
    }

    /// The key as PKCS#8 PEM, for `auditsync key new` to write.
    pub fn to_pem(&self) -> String {
        self.key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map(|pem| pem.to_string())
            .expect("an Ed25519 key always encodes")
    }

    /// Its id.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// Its public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_key(self.key.verifying_key())
    }

    /// The base64 Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        BASE64.encode(self.key.sign(message).to_bytes())
    }
}

/// A public key a verifier trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: String,
}

impl PublicKey {
    fn from_key(key: VerifyingKey) -> Self {
        Self {
            id: key_id(&key),
            key,
        }
    }

    /// Reads an SPKI PEM public key; `what` names its source in the error.
    pub fn from_pem(pem: &str, what: &str) -> Result<Self, KeyError> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(Self::from_key)
            .map_err(|e| KeyError::Unreadable {
                what: what.to_string(),
                kind: "public",
                problem: e.to_string(),
            })
    }

    /// Reads the base64 of the 32 raw key bytes (how a manifest announces the next key).
    pub fn from_base64(text: &str, what: &str) -> Result<Self, KeyError> {
        let fail = |problem: String| KeyError::Unreadable {
            what: what.to_string(),
            kind: "public",
            problem,
        };
        let raw: [u8; 32] = BASE64
            .decode(text)
            .map_err(|e| fail(e.to_string()))?
            .try_into()
            .map_err(|_| fail("not 32 bytes".into()))?;
        VerifyingKey::from_bytes(&raw)
            .map(Self::from_key)
            .map_err(|e| fail(e.to_string()))
    }

    /// The key as SPKI PEM.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .expect("an Ed25519 key always encodes")
    }

    /// The base64 of its 32 raw bytes.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.key.as_bytes())
    }

    /// Its id.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// Whether `signature` (base64) is this key's Ed25519 signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Ok(bytes) = BASE64.decode(signature) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&bytes) else {
            return false;
        };
        self.key.verify(message, &signature).is_ok()
    }
}

/// The public keys a verifier trusts, by id.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, PublicKey>,
}

impl KeyRing {
    /// A ring of these keys.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        let mut ring = Self::default();
        for key in keys {
            ring.add(key);
        }
        ring
    }

    /// Trusts one more key.
    pub fn add(&mut self, key: PublicKey) {
        self.keys.insert(key.id.clone(), key);
    }

    /// The key with this id, if trusted.
    pub fn get(&self, id: &str) -> Option<&PublicKey> {
        self.keys.get(id)
    }

    /// The ids of the trusted keys, in order.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_pem_and_signs_what_its_public_half_verifies() {
        let signer = ManifestSigner::generate();
        let again = ManifestSigner::from_pem(&signer.to_pem(), "test").unwrap();
        assert_eq!(again.key_id(), signer.key_id());
        let public = PublicKey::from_pem(&signer.public_key().to_pem(), "test").unwrap();
        assert_eq!(public.key_id(), signer.key_id());
        let sig = again.sign(b"header");
        assert!(public.verifies(b"header", &sig));
        assert!(!public.verifies(b"header!", &sig));
        assert!(!public.verifies(b"header", "not base64"));
        let other = ManifestSigner::generate().public_key();
        assert!(!other.verifies(b"header", &sig));
        assert_eq!(
            PublicKey::from_base64(&public.to_base64(), "next").unwrap(),
            public
        );
        assert!(!format!("{signer:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_bad_key_is_named_by_its_source_and_never_quoted() {
        let err = ManifestSigner::from_pem(
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----",
            "AUDITSYNC_SIGNING_KEY",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("AUDITSYNC_SIGNING_KEY"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
        let public = ManifestSigner::generate().public_key().to_pem();
        assert!(ManifestSigner::from_pem(&public, "k.pem").is_err());
        assert!(PublicKey::from_pem("nope", "pub.pem")
            .unwrap_err()
            .to_string()
            .contains("pub.pem"));
    }
}
