//! `manifests`: signed, chained manifests beside every destination's files (see
//! docs/provability.md).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use auditsync_engine::manifests::ManifestSettings;
use auditsync_manifest::{ManifestSigner, PublicKey};
use serde::{Deserialize, Serialize};

/// `manifests` settings. Present means on: every export writes manifests signed by the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestsConfig {
    /// A file holding the Ed25519 private key (PKCS#8 PEM, as `auditsync key new` writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<PathBuf>,
    /// An environment variable holding that PEM instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_env: Option<String>,
    /// A manifest is written at least this often (seconds) even when no file was, so that a
    /// cut-off tail is bounded in time. Default 3600.
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// The next key's public half (SPKI PEM): announced in every manifest under the current
    /// key's signature, so verifiers trust it once the signing key is rotated to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_public_key_file: Option<PathBuf>,
}

fn default_interval_secs() -> u64 {
    3600
}

impl ManifestsConfig {
    /// Checks what serde cannot, without reading the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.signing_key_file.is_some() == self.signing_key_env.is_some() {
            bail!("config key `manifests`: set exactly one of `signing_key_file` and `signing_key_env`");
        }
        if self.interval_secs == 0 {
            bail!("config key `manifests.interval_secs`: must be at least 1");
        }
        Ok(())
    }

    /// Reads the signing key; errors name the config key and the source, never the key.
    pub fn signer(&self) -> anyhow::Result<ManifestSigner> {
        let (pem, what) = match (&self.signing_key_file, &self.signing_key_env) {
            (Some(path), None) => (
                std::fs::read_to_string(path).with_context(|| {
                    format!("config key `manifests.signing_key_file`: cannot read {}", path.display())
                })?,
                format!("config key `manifests.signing_key_file` ({})", path.display()),
            ),
            (None, Some(var)) => (
                std::env::var(var).map_err(|_| {
                    anyhow!("config key `manifests.signing_key_env`: environment variable {var} is not set (or not UTF-8)")
                })?,
                format!("config key `manifests.signing_key_env` ({var})"),
            ),
            _ => bail!("config key `manifests`: set exactly one of `signing_key_file` and `signing_key_env`"),
        };
        Ok(ManifestSigner::from_pem(&pem, &what)?)
    }

    /// The settings the exporter takes.
    pub fn settings(&self) -> anyhow::Result<ManifestSettings> {
        let next_key = match &self.next_public_key_file {
            None => None,
            Some(path) => {
                let what = format!(
                    "config key `manifests.next_public_key_file` ({})",
                    path.display()
                );
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("{what}: cannot read it"))?;
                Some(PublicKey::from_pem(&pem, &what)?)
            }
        };
        Ok(ManifestSettings {
            signer: Arc::new(self.signer()?),
            next_key,
            interval: Duration::from_secs(self.interval_secs),
        })
    }
}
