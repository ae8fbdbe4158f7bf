//! Azure Blob Storage sink (the GA `azure_storage_blob` crate).
//!
//! - Create-if-absent: uploads carry `If-None-Match: *`; Azure answers 409 BlobAlreadyExists
//!   (or 412 for a concurrent commit), reported as [`PutOutcome::AlreadyExists`]. A file
//!   larger than one block goes up as staged blocks, `parallel_blocks` at a time through the
//!   sink kit's upload driver (as S3 parts and GCS chunks do), committed once.
//! - Auth: a SAS token (`"auth": "sas"`), or Entra ID (`"auth": "entra"`) with a managed
//!   identity, workload identity, client secret or developer tools credential.
//! - A SAS token never appears in `describe()`, errors or logs.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use auditsync_core::{
    ConfigError, ObjectKey, ObjectMeta, PutOptions, PutOutcome, Sink, SinkError, SinkOp,
};
use auditsync_sink_kit::classify::{sink_error, Failure};
use auditsync_sink_kit::listing::ObjectList;
use auditsync_sink_kit::upload::upload_parts;
use auditsync_sink_kit::Secret as KitSecret;
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, RetryOptions, Url};
use azure_storage_blob::models::{
    BlobClientUploadOptions, BlobContainerClientListBlobsOptions,
    BlockBlobClientCommitBlockListOptions, BlockLookupList,
};
use azure_storage_blob::{BlobContainerClient, BlobServiceClient, BlobServiceClientOptions};
use bytes::Bytes;
use futures::TryStreamExt;

/// How the sink authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// A SAS token in `sas_token`.
    Sas,
    /// An Entra ID token from `credential`.
    Entra,
}

/// Which Entra ID credential to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntraCredential {
    /// The managed identity of the VM, App Service or container (default).
    #[default]
    ManagedIdentity,
    /// Kubernetes workload identity (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_FEDERATED_TOKEN_FILE`).
    WorkloadIdentity,
    /// A service principal's secret: `tenant_id`, `client_id`, `client_secret`.
    ClientSecret,
    /// The Azure CLI or Azure Developer CLI login (for development).
    DeveloperTools,
}

/// Options of a `{"type": "azure"}` destination.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// The account's blob endpoint, e.g. `https://acct.blob.core.windows.net`.
    pub account_url: String,
    /// The container.
    pub container: String,
    /// `sas` or `entra` (default: `sas` when a `sas_token` is set, else `entra`).
    #[serde(default)]
    pub auth: Option<Auth>,
    /// A SAS token (with or without the leading `?`), for `"auth": "sas"`.
    #[serde(default)]
    pub sas_token: Option<KitSecret>,
    /// The Entra ID credential, for `"auth": "entra"`.
    #[serde(default)]
    pub credential: EntraCredential,
    /// Tenant id (client secret).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Client id (client secret; optional for a user-assigned managed identity).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Client secret.
    #[serde(default)]
    pub client_secret: Option<KitSecret>,
    /// Size of each staged block of a large upload (default 8 MiB).
    #[serde(default = "default_block")]
    pub block_size_bytes: u64,
    /// Blocks uploaded at once (default 4).
    #[serde(default = "default_parallel")]
    pub parallel_blocks: usize,
}

fn default_block() -> u64 {
    8 * 1024 * 1024
}
fn default_parallel() -> usize {
    4
}

impl std::fmt::Debug for AzureConfig {
    // Hand-written so that secrets never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureConfig")
            .field("account_url", &self.account_url)
            .field("container", &self.container)
            .field("auth", &self.auth)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

/// The Azure Blob sink.
pub struct AzureSink {
    config: AzureConfig,
    container: BlobContainerClient,
    /// Strings to cut out of any message (the SAS token and its signature).
    secrets: Vec<String>,
}

impl std::fmt::Debug for AzureSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn invalid(key: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::invalid(key, e.to_string())
}

impl AzureSink {
    /// A sink for `config`.
    pub fn new(config: AzureConfig) -> Result<Self, ConfigError> {
        if config.container.is_empty() {
            return Err(ConfigError::invalid("container", "must not be empty"));
        }
        if config.block_size_bytes == 0 || config.parallel_blocks == 0 {
            return Err(ConfigError::invalid(
                "block_size_bytes",
                "block_size_bytes and parallel_blocks must be at least 1",
            ));
        }
        // Azurite answers 400 to a service URL with a trailing slash.
        let base = config.account_url.trim_end_matches('/');
        let auth = config.auth.unwrap_or(if config.sas_token.is_some() {
            Auth::Sas
        } else {
            Auth::Entra
        });
        let mut secrets = Vec::new();
        let (url, credential): (String, Option<Arc<dyn TokenCredential>>) = match auth {
            Auth::Sas => {
                let sas = config
                    .sas_token
                    .as_ref()
                    .map(|t| t.expose().trim_start_matches('?'))
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        ConfigError::invalid("sas_token", "is required with \"auth\": \"sas\"")
                    })?;
                secrets.push(sas.to_string());
                if let Some(sig) = sas.split('&').find_map(|p| p.strip_prefix("sig=")) {
                    secrets.push(sig.to_string());
                }
                (format!("{base}?{sas}"), None)
            }
            Auth::Entra => (base.to_string(), Some(entra_credential(&config)?)),
        };
        let url = Url::parse(&url).map_err(|e| invalid("account_url", e))?;
        let options = BlobServiceClientOptions {
            client_options: ClientOptions {
                // Retries are the job of the engine's retry layer, around every sink alike.
                retry: RetryOptions::none(),
                ..ClientOptions::default()
            },
            ..BlobServiceClientOptions::default()
        };
        let service = BlobServiceClient::new(url, credential, Some(options))
            .map_err(|e| invalid("account_url", e))?;
        let container = service.blob_container_client(&config.container);
        Ok(Self {
            config,
            container,
            secrets,
        })
    }

    /// The container client (for tests and tools, e.g. to create the container).
    pub fn container_client(&self) -> &BlobContainerClient {
        &self.container
    }

    fn scrub(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |t, secret| {
            t.replace(secret.as_str(), "***")
        })
    }

    /// The outcome of a create-if-absent upload or block commit: 409 BlobAlreadyExists, or
    /// 412 when another writer committed first, means the object is already there.
    fn created_or_exists(
        &self,
        key: &ObjectKey,
        result: azure_core::Result<()>,
    ) -> Result<PutOutcome, SinkError> {
        let e = match result {
            Ok(()) => return Ok(PutOutcome::Created),
            Err(e) => e,
        };
        if matches!(e.http_status().map(u16::from), Some(409 | 412)) {
            let code = match e.kind() {
                azure_core::error::ErrorKind::HttpResponse { error_code, .. } => error_code.clone(),
                _ => None,
            };
            if matches!(
                code.as_deref(),
                None | Some("BlobAlreadyExists" | "ConditionNotMet")
            ) {
                return Ok(PutOutcome::AlreadyExists);
            }
        }
        Err(self.error(SinkOp::Put, key.as_str(), e))
    }

    /// Maps an SDK error, keeping Azure's error code and request id, without any secret.
    fn error(&self, op: SinkOp, key: &str, err: azure_core::Error) -> SinkError {
        use azure_core::error::ErrorKind as Az;
        let (status, code, request_id, transport) = match err.kind() {
            Az::HttpResponse {
                status,
                error_code,
                raw_response,
            } => {
                let request_id = raw_response.as_ref().and_then(|r| {
                    r.headers()
                        .get_optional_str(&azure_core::http::headers::HeaderName::from_static(
                            "x-ms-request-id",
                        ))
                        .map(str::to_string)
                });
                (
                    Some(u16::from(*status)),
                    error_code.clone(),
                    request_id,
                    false,
                )
            }
            Az::Connection | Az::Io => (None, None, None, true),
            Az::Credential => (None, Some("Credential".to_string()), None, false),
            _ => (None, None, None, false),
        };
        let failure = Failure {
            status,
            code: code.as_deref(),
            transport,
        };
        let place = format!("container {}", self.config.container);
        let mut error = sink_error(op, key, failure, &place, &err);
        error.message = self.scrub(&error.message);
        error.request_id = request_id;
        error
    }
}

fn entra_credential(config: &AzureConfig) -> Result<Arc<dyn TokenCredential>, ConfigError> {
    use azure_identity::{
        ClientSecretCredential, DeveloperToolsCredential, ManagedIdentityCredential,
        ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    };
    let credential: Arc<dyn TokenCredential> = match config.credential {
        EntraCredential::ManagedIdentity => {
            let options = config
                .client_id
                .clone()
                .map(|id| ManagedIdentityCredentialOptions {
                    user_assigned_id: Some(UserAssignedId::ClientId(id)),
                    ..ManagedIdentityCredentialOptions::default()
                });
            ManagedIdentityCredential::new(options).map_err(|e| invalid("credential", e))?
        }
        EntraCredential::WorkloadIdentity => {
            WorkloadIdentityCredential::new(None).map_err(|e| invalid("credential", e))?
        }
        EntraCredential::ClientSecret => {
            let need = |v: Option<&str>, key: &str| {
                v.map(str::to_string).ok_or_else(|| {
                    ConfigError::invalid(key, "is required with \"credential\": \"client_secret\"")
                })
            };
            let tenant = need(config.tenant_id.as_deref(), "tenant_id")?;
            let client = need(config.client_id.as_deref(), "client_id")?;
            let secret = need(
                config.client_secret.as_ref().map(KitSecret::expose),
                "client_secret",
            )?;
            ClientSecretCredential::new(&tenant, client, Secret::new(secret), None)
                .map_err(|e| invalid("tenant_id", e))?
        }
        EntraCredential::DeveloperTools => {
            DeveloperToolsCredential::new(None).map_err(|e| invalid("credential", e))?
        }
    };
    Ok(credential)
}

#[async_trait]
impl Sink for AzureSink {
    fn describe(&self) -> String {
        format!(
            "azure:{}/{}",
            self.config.account_url.trim_end_matches('/'),
            self.config.container
        )
    }

    async fn put(&self, key: &ObjectKey, body: Bytes) -> Result<PutOutcome, SinkError> {
        self.put_opts(key, body, &PutOptions::default()).await
    }

    async fn put_opts(
        &self,
        key: &ObjectKey,
        body: Bytes,
        put: &PutOptions,
    ) -> Result<PutOutcome, SinkError> {
        // Azure metadata names are C# identifiers: `-` becomes `_`.
        let metadata: Option<HashMap<String, String>> = (!put.metadata.is_empty()).then(|| {
            put.metadata
                .iter()
                .map(|(k, v)| (k.replace('-', "_"), v.clone()))
                .collect()
        });
        let blob = self.container.blob_client(key.as_str());
        if body.len() as u64 <= self.config.block_size_bytes {
            // One request (Put Blob).
            let options = BlobClientUploadOptions {
                blob_content_type: put.content_type.clone(),
                metadata,
                ..BlobClientUploadOptions::default()
            }
            .if_not_exists();
            let result = blob.upload(body.into(), Some(options)).await;
            return self.created_or_exists(key, result.map(drop));
        }
        let blocks = blob.block_blob_client();
        let ids = upload_parts(
            &body,
            self.config.block_size_bytes as usize,
            self.config.parallel_blocks,
            |part| {
                let blocks = &blocks;
                async move {
                    // Random ids: a concurrent writer of the same key stages blocks of its
                    // own, so its bytes can never be mixed into this commit.
                    let id = uuid::Uuid::new_v4().as_bytes().to_vec();
                    blocks
                        .stage_block(&id, part.body.len() as u64, part.body.into(), None)
                        .await
                        .map_err(|e| self.error(SinkOp::Put, key.as_str(), e))?;
                    Ok(id)
                }
            },
        )
        .await?;
        let list = BlockLookupList {
            latest: Some(ids),
            ..BlockLookupList::default()
        };
        let options = BlockBlobClientCommitBlockListOptions {
            if_none_match: Some("*".into()),
            blob_content_type: put.content_type.clone(),
            metadata,
            ..BlockBlobClientCommitBlockListOptions::default()
        };
        let committed = match list.try_into() {
            Ok(list) => blocks.commit_block_list(list, Some(options)).await,
            Err(e) => Err(e),
        };
        self.created_or_exists(key, committed.map(drop))
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, SinkError> {
        let download = self
            .container
            .blob_client(key.as_str())
            .download(None)
            .await
            .map_err(|e| self.error(SinkOp::Get, key.as_str(), e))?;
        download
            .body
            .collect()
            .await
            .map_err(|e| self.error(SinkOp::Get, key.as_str(), e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, SinkError> {
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            ..BlobContainerClientListBlobsOptions::default()
        };
        let mut pager = self
            .container
            .list_blobs(Some(options))
            .map_err(|e| self.error(SinkOp::List, prefix, e))?;
        let mut list = ObjectList::default();
        while let Some(item) = pager
            .try_next()
            .await
            .map_err(|e| self.error(SinkOp::List, prefix, e))?
        {
            let size = item
                .properties
                .and_then(|p| p.content_length)
                .unwrap_or_default();
            if let Some(name) = item.name {
                list.push(name, i64::try_from(size).unwrap_or(i64::MAX));
            }
        }
        Ok(list.finish())
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), SinkError> {
        match self.container.blob_client(key.as_str()).delete(None).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status().map(u16::from) == Some(404) => Ok(()),
            Err(e) => Err(self.error(SinkOp::Delete, key.as_str(), e)),
        }
    }
}

/// Signs an account SAS (service version 2021-08-06) for the blob service with an account
/// key, e.g. Azurite's public development key. Returns the query string, without `?`.
#[cfg(feature = "sas-signing")]
pub fn account_sas(
    account: &str,
    key_base64: &str,
    permissions: &str,
    expiry: &str,
) -> Result<String, String> {
    let version = "2021-08-06";
    let (services, resource_types, protocol) = ("b", "sco", "https,http");
    let to_sign = format!(
        "{account}\n{permissions}\n{services}\n{resource_types}\n\n{expiry}\n\n{protocol}\n{version}\n\n"
    );
    let signature = azure_core::hmac::hmac_sha256(&to_sign, &Secret::new(key_base64.to_string()))
        .map_err(|e| e.to_string())?;
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    Ok(format!(
        "sv={version}&ss={services}&srt={resource_types}&sp={permissions}&se={}&spr={}&sig={}",
        encode(expiry),
        encode(protocol),
        encode(&signature)
    ))
}

auditsync_sink_kit::register_sink! {
    name: "azure",
    summary: "Azure Blob Storage (azure_storage_blob), SAS or Entra ID",
    config: AzureConfig,
    open: AzureSink::new,
    url_schemes: &[auditsync_core::UrlScheme {
        scheme: "az",
        query: &["endpoint"],
        parse: parse_url,
    }],
}

/// `az://ACCOUNT/CONTAINER/prefix?endpoint=`: a SAS from `AZURE_STORAGE_SAS_TOKEN`, else
/// Entra ID; an explicit endpoint (Azurite, a sovereign cloud) replaces the account URL.
fn parse_url(
    url: &auditsync_core::SinkUrlParts,
) -> Result<auditsync_core::SinkUrlTarget, auditsync_core::SinkUrlError> {
    let mut options = serde_json::Map::new();
    let account = url.required_host("account", "az://ACCOUNT/container/prefix")?;
    let container = url
        .segments
        .first()
        .ok_or_else(|| url.fail("container", "missing: az://account/CONTAINER/prefix"))?;
    options.insert(
        "account_url".into(),
        format!("https://{account}.blob.core.windows.net").into(),
    );
    options.insert("container".into(), container.clone().into());
    if let Ok(sas) = std::env::var("AZURE_STORAGE_SAS_TOKEN") {
        options.insert("sas_token".into(), sas.into());
    }
    for (name, value) in &url.query {
        if name == "endpoint" {
            options.insert("account_url".into(), value.clone().into());
        }
    }
    Ok(auditsync_core::SinkUrlTarget {
        options,
        prefix: url.prefix_after(1),
    })
}
