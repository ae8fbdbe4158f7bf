//! AWS S3 sink (and S3-compatible stores, with an endpoint URL and path-style addressing).
//!
//! - Create-if-absent: `PutObject` and `CompleteMultipartUpload` carry `If-None-Match: *`;
//!   a 412 means the key exists and is reported as [`PutOutcome::AlreadyExists`].
//! - Files at or over `multipart_threshold_bytes` go up in parts of `part_size_bytes`,
//!   `upload_concurrency` parts at once (the sink kit's upload driver).
//! - Credentials: static keys from the config (or its environment overrides), else the
//!   standard AWS provider chain (environment, profile, web identity, instance role). With
//!   `role_arn` (and `external_id`), those only assume the role, and the role's temporary
//!   credentials write: the cross-account pattern of a customer's bucket policy.
//! - Errors keep S3's code and request id and say whether a retry can help, by the sink
//!   kit's one classification: timeouts, connection failures, throttling and 5xx can;
//!   access and missing-bucket errors cannot.

use std::collections::HashMap;

use async_trait::async_trait;
use auditsync_core::{
    ConfigError, ErrorKind, ObjectKey, ObjectMeta, PutOptions, PutOutcome, Sink, SinkError, SinkOp,
};
use auditsync_sink_kit::classify::{sink_error, Failure};
use auditsync_sink_kit::listing::{collect_pages, Page};
use auditsync_sink_kit::upload::upload_parts;
use auditsync_sink_kit::Secret;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use bytes::Bytes;
use tokio::sync::OnceCell;

const MIB: u64 = 1024 * 1024;

/// Options of a `{"type": "s3"}` destination.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// Region (default: from the provider chain, else `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint URL of an S3-compatible store.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), for most S3-compatible stores.
    #[serde(default)]
    pub force_path_style: bool,
    /// Static access key id; with `secret_access_key`, replaces the provider chain.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Static secret access key.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// Session token for temporary static credentials.
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// A role to assume (STS `AssumeRole`) with the credentials above; its temporary
    /// credentials, refreshed before they expire, sign every request.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// The external id the role's trust policy asks for.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The assumed role's session name (default `auditsync`).
    #[serde(default)]
    pub role_session_name: Option<String>,
    /// Where `AssumeRole` goes (default: `endpoint` when set, as moto, MinIO and Ceph serve
    /// STS beside S3; else AWS's STS).
    #[serde(default)]
    pub sts_endpoint: Option<String>,
    /// Server-side encryption: `AES256` or `aws:kms`.
    #[serde(default)]
    pub sse: Option<String>,
    /// KMS key id for `aws:kms`.
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// Files this large or larger use multipart upload (default 64 MiB).
    #[serde(default = "default_threshold")]
    pub multipart_threshold_bytes: u64,
    /// Part size of multipart uploads (default 16 MiB; S3's minimum is 5 MiB).
    #[serde(default = "default_part_size")]
    pub part_size_bytes: u64,
    /// Parts of one multipart upload sent at once (default 4).
    #[serde(default = "default_upload_concurrency")]
    pub upload_concurrency: usize,
}

fn default_threshold() -> u64 {
    64 * MIB
}
fn default_part_size() -> u64 {
    16 * MIB
}
fn default_upload_concurrency() -> usize {
    4
}

impl std::fmt::Debug for S3Config {
    // Hand-written: the access key id is left out too (it names the account), and the
    // secrets are `Secret`s besides.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("force_path_style", &self.force_path_style)
            .field("static_credentials", &self.access_key_id.is_some())
            .field("role_arn", &self.role_arn)
            .field("sse", &self.sse)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    fn validate(&self) -> Result<Option<ServerSideEncryption>, ConfigError> {
        if self.bucket.is_empty() {
            return Err(ConfigError::invalid("bucket", "must not be empty"));
        }
        if self.role_arn.is_none()
            && (self.external_id.is_some()
                || self.role_session_name.is_some()
                || self.sts_endpoint.is_some())
        {
            return Err(ConfigError::invalid(
                "role_arn",
                "external_id, role_session_name and sts_endpoint need role_arn",
            ));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(ConfigError::invalid(
                "secret_access_key",
                "access_key_id and secret_access_key go together",
            ));
        }
        if self.part_size_bytes < 5 * MIB {
            return Err(ConfigError::invalid(
                "part_size_bytes",
                "must be at least 5 MiB (5242880)",
            ));
        }
        if self.upload_concurrency == 0 {
            return Err(ConfigError::invalid(
                "upload_concurrency",
                "must be at least 1",
            ));
        }
        if self.multipart_threshold_bytes < self.part_size_bytes {
            return Err(ConfigError::invalid(
                "multipart_threshold_bytes",
                "must be at least part_size_bytes",
            ));
        }
        let sse = match self.sse.as_deref() {
            None => None,
            Some("AES256") => Some(ServerSideEncryption::Aes256),
            Some("aws:kms") => Some(ServerSideEncryption::AwsKms),
            Some(other) => {
                return Err(ConfigError::invalid(
                    "sse",
                    format!("{other:?} is not one of \"AES256\", \"aws:kms\""),
                ))
            }
        };
        if self.kms_key_id.is_some() && sse != Some(ServerSideEncryption::AwsKms) {
            return Err(ConfigError::invalid(
                "kms_key_id",
                "needs \"sse\": \"aws:kms\"",
            ));
        }
        Ok(sse)
    }
}

/// What makes two sinks' clients interchangeable: everything the client is built from
/// (the bucket is not; it is named per request). No `Debug`: it holds the secrets.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    region: Option<String>,
    endpoint: Option<String>,
    force_path_style: bool,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    role: Option<[Option<String>; 4]>,
}

impl ClientKey {
    fn of(c: &S3Config) -> Self {
        Self {
            region: c.region.clone(),
            endpoint: c.endpoint.clone(),
            force_path_style: c.force_path_style,
            access_key_id: c.access_key_id.clone(),
            secret_access_key: c.secret_access_key.as_ref().map(|s| s.expose().to_string()),
            session_token: c.session_token.as_ref().map(|s| s.expose().to_string()),
            role: c.role_arn.as_ref().map(|arn| {
                [
                    Some(arn.clone()),
                    c.external_id.clone(),
                    c.role_session_name.clone(),
                    c.sts_endpoint.clone(),
                ]
            }),
        }
    }
}

/// The process's S3 clients by [`ClientKey`]: a thousand tenant destinations in a few
/// buckets of one account use one client and its connection pool, not a thousand.
static CLIENTS: std::sync::LazyLock<std::sync::Mutex<HashMap<ClientKey, aws_sdk_s3::Client>>> =
    std::sync::LazyLock::new(Default::default);

/// Whether sinks share clients ([`share_clients`]).
static SHARING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, sinks with the same account, region and endpoint share one SDK client and
/// its connection pool, for the rest of the process. Only for a process with one Tokio
/// runtime that lives as long as it (the `auditsync` binary calls it): a pooled connection
/// belongs to the runtime that opened it.
pub fn share_clients() {
    SHARING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The client for `config`: the shared one when sinks share ([`share_clients`]).
async fn shared_client(config: &S3Config) -> aws_sdk_s3::Client {
    if !SHARING.load(std::sync::atomic::Ordering::Relaxed) {
        return build_client(config).await;
    }
    let key = ClientKey::of(config);
    let cached = CLIENTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    if let Some(client) = cached {
        return client;
    }
    let built = build_client(config).await;
    CLIENTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_insert(built)
        .clone()
}

/// A new SDK client for `config`.
async fn build_client(c: &S3Config) -> aws_sdk_s3::Client {
    // Retries are the job of the engine's retry layer, around every sink alike.
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .operation_attempt_timeout(std::time::Duration::from_secs(600))
                .build(),
        );
    if let Some(region) = &c.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let (Some(id), Some(secret)) = (&c.access_key_id, &c.secret_access_key) {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            id.clone(),
            secret.expose().to_string(),
            c.session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            "auditsync-config",
        ));
    }
    let shared = loader.load().await;
    let mut builder =
        aws_sdk_s3::config::Builder::from(&shared).force_path_style(c.force_path_style);
    if shared.region().is_none() {
        builder = builder.region(aws_config::Region::new("us-east-1"));
    }
    if let Some(endpoint) = &c.endpoint {
        builder = builder.endpoint_url(endpoint.clone());
    }
    if let Some(role) = &c.role_arn {
        // STS goes where S3 goes when an endpoint is set (moto, MinIO and Ceph serve both),
        // unless it has its own.
        let mut sts_config = shared.to_builder();
        if let Some(endpoint) = c.sts_endpoint.as_ref().or(c.endpoint.as_ref()) {
            sts_config.set_endpoint_url(Some(endpoint.clone()));
        }
        let mut assume = aws_config::sts::AssumeRoleProvider::builder(role.clone())
            .configure(&sts_config.build())
            .session_name(c.role_session_name.as_deref().unwrap_or("auditsync"));
        if let Some(id) = &c.external_id {
            assume = assume.external_id(id.clone());
        }
        builder = builder.credentials_provider(assume.build().await);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// The S3 sink.
#[derive(Debug)]
pub struct S3Sink {
    config: S3Config,
    sse: Option<ServerSideEncryption>,
    client: OnceCell<aws_sdk_s3::Client>,
}

impl S3Sink {
    /// A sink for `config`; the client is built on first use.
    pub fn new(config: S3Config) -> Result<Self, ConfigError> {
        let sse = config.validate()?;
        Ok(Self {
            config,
            sse,
            client: OnceCell::new(),
        })
    }

    /// The sink's configuration.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// The SDK client, built once: static credentials when configured, else the chain.
    /// Sinks of the same account, region and endpoint share one (see `shared_client`).
    pub async fn client(&self) -> &aws_sdk_s3::Client {
        self.client
            .get_or_init(|| shared_client(&self.config))
            .await
    }

    async fn put_multipart(
        &self,
        key: &ObjectKey,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<PutOutcome, SinkError> {
        let client = self.client().await;
        let bucket = &self.config.bucket;
        self.abort_stale_uploads(key).await;
        let created = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key.as_str())
            .set_content_type(options.content_type.clone())
            .set_metadata(metadata(options))
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.config.kms_key_id.clone())
            .send()
            .await
            .map_err(|e| classify(SinkOp::Put, key.as_str(), &self.config.bucket, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = async {
            let part_size = self.config.part_size_bytes as usize;
            let parts = upload_parts(&body, part_size, self.config.upload_concurrency, |part| {
                let upload_id = &upload_id;
                async move {
                    let number = part.number as i32;
                    let sent = client
                        .upload_part()
                        .bucket(bucket)
                        .key(key.as_str())
                        .upload_id(upload_id)
                        .part_number(number)
                        .body(ByteStream::from(part.body))
                        .send()
                        .await
                        .map_err(|e| classify(SinkOp::Put, key.as_str(), bucket, e))?;
                    Ok(CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(sent.e_tag().map(str::to_string))
                        .build())
                }
            })
            .await?;
            let completed = client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key.as_str())
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .if_none_match("*")
                .send()
                .await;
            match completed {
                Ok(_) => Ok(PutOutcome::Created),
                Err(e) if status(&e) == Some(412) => Ok(PutOutcome::AlreadyExists),
                // A 200 whose body the SDK cannot read (some S3-compatible servers name the
                // root element differently) may be a success or an error in disguise: ask
                // the store whether the whole object is there.
                Err(e) if status(&e) == Some(200) => {
                    let head = client
                        .head_object()
                        .bucket(bucket)
                        .key(key.as_str())
                        .send()
                        .await;
                    let expected = i64::try_from(body.len()).unwrap_or(i64::MAX);
                    match head {
                        Ok(h) if h.content_length() == Some(expected) => Ok(PutOutcome::Created),
                        _ => Err(classify(SinkOp::Put, key.as_str(), bucket, e)),
                    }
                }
                Err(e) => Err(classify(SinkOp::Put, key.as_str(), bucket, e)),
            }
        }
        .await;
        if !matches!(result, Ok(PutOutcome::Created)) {
            // Best effort: an upload left open only costs storage until a lifecycle rule
            // removes it; the put's own outcome is what matters.
            let _ = client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key.as_str())
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

impl S3Sink {
    /// Aborts the incomplete multipart uploads of `key` that an earlier attempt left (a
    /// process killed mid-upload): their parts are billed until aborted, and a resumed
    /// batch starts a new upload under the same key. Keys are per batch and a batch is
    /// exported by one process at a time (its lease), so an open upload of this key is
    /// stale. Best effort: a failure here costs storage, not the put.
    pub async fn abort_stale_uploads(&self, key: &ObjectKey) -> usize {
        let client = self.client().await;
        let bucket = &self.config.bucket;
        let listed = client
            .list_multipart_uploads()
            .bucket(bucket)
            .prefix(key.as_str())
            .send()
            .await;
        let uploads = match listed {
            Ok(listed) => listed.uploads.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(key = %key, error = %DisplayErrorContext(&e), "cannot list stale multipart uploads");
                return 0;
            }
        };
        let mut aborted = 0;
        for upload in uploads {
            if upload.key() != Some(key.as_str()) {
                continue;
            }
            let Some(id) = upload.upload_id() else {
                continue;
            };
            match client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key.as_str())
                .upload_id(id)
                .send()
                .await
            {
                Ok(_) => {
                    aborted += 1;
                    tracing::info!(key = %key, upload_id = id, "aborted a stale multipart upload left by an earlier attempt");
                }
                Err(e) => {
                    tracing::warn!(key = %key, error = %DisplayErrorContext(&e), "cannot abort a stale multipart upload")
                }
            }
        }
        aborted
    }
}

/// User metadata as the SDK wants it (`x-amz-meta-*` headers), `None` when empty.
fn metadata(options: &PutOptions) -> Option<std::collections::HashMap<String, String>> {
    (!options.metadata.is_empty()).then(|| {
        options
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

fn status<E, R: HasStatus>(err: &SdkError<E, R>) -> Option<u16> {
    err.raw_response().map(HasStatus::status_code)
}

/// The HTTP status of a raw response (the SDK's response type).
trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Maps an SDK error to a [`SinkError`], keeping S3's code and request id.
fn classify<E>(
    op: SinkOp,
    key: &str,
    bucket: &str,
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> SinkError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().map(str::to_string);
    let request_id = err.request_id().map(str::to_string);
    let failure = Failure {
        status: status(&err),
        code: code.as_deref(),
        transport: matches!(
            err,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
    };
    let detail = err
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| DisplayErrorContext(&err).to_string());
    let mut error = sink_error(op, key, failure, &format!("bucket {bucket}"), detail);
    error.request_id = request_id;
    error.source = Some(Box::new(err));
    error
}

#[async_trait]
impl Sink for S3Sink {
    fn describe(&self) -> String {
        match &self.config.endpoint {
            Some(endpoint) => format!("s3://{} at {endpoint}", self.config.bucket),
            None => format!("s3://{}", self.config.bucket),
        }
    }

    async fn put(&self, key: &ObjectKey, body: Bytes) -> Result<PutOutcome, SinkError> {
        self.put_opts(key, body, &PutOptions::default()).await
    }

    async fn put_opts(
        &self,
        key: &ObjectKey,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<PutOutcome, SinkError> {
        if body.len() as u64 >= self.config.multipart_threshold_bytes {
            return self.put_multipart(key, body, options).await;
        }
        let result = self
            .client()
            .await
            .put_object()
            .bucket(&self.config.bucket)
            .key(key.as_str())
            .set_content_type(options.content_type.clone())
            .set_metadata(metadata(options))
            .body(ByteStream::from(body))
            .if_none_match("*")
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.config.kms_key_id.clone())
            .send()
            .await;
        match result {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) if status(&e) == Some(412) => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(classify(SinkOp::Put, key.as_str(), &self.config.bucket, e)),
        }
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, SinkError> {
        let output = self
            .client()
            .await
            .get_object()
            .bucket(&self.config.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| classify(SinkOp::Get, key.as_str(), &self.config.bucket, e))?;
        let body = output.body.collect().await.map_err(|e| {
            SinkError::new(
                SinkOp::Get,
                ErrorKind::Transient,
                format!("reading the body failed: {e}"),
            )
            .with_key(key.as_str())
        })?;
        Ok(body.into_bytes())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, SinkError> {
        let client = self.client().await;
        collect_pages(|token| async move {
            let page = client
                .list_objects_v2()
                .bucket(&self.config.bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| classify(SinkOp::List, prefix, &self.config.bucket, e))?;
            Ok(Page {
                objects: page
                    .contents()
                    .iter()
                    .filter_map(|o| Some((o.key()?.to_string(), o.size().unwrap_or_default())))
                    .collect(),
                next: page
                    .next_continuation_token()
                    .filter(|_| page.is_truncated() == Some(true))
                    .map(str::to_string),
            })
        })
        .await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), SinkError> {
        self.client()
            .await
            .delete_object()
            .bucket(&self.config.bucket)
            .key(key.as_str())
            .send()
            .await
            .map(drop)
            .map_err(|e| classify(SinkOp::Delete, key.as_str(), &self.config.bucket, e))
    }
}

auditsync_sink_kit::register_sink! {
    name: "s3",
    summary: "AWS S3 or an S3-compatible store (aws-sdk-s3)",
    config: S3Config,
    open: S3Sink::new,
    url_schemes: &[auditsync_core::UrlScheme {
        scheme: "s3",
        query: &["region", "endpoint", "force_path_style", "sse", "kms_key_id"],
        parse: parse_url,
    }],
}

/// `s3://BUCKET/prefix?region=&endpoint=&force_path_style=`: credentials come from the
/// AWS provider chain (the environment, a profile, ...), never from the URL.
fn parse_url(
    url: &auditsync_core::SinkUrlParts,
) -> Result<auditsync_core::SinkUrlTarget, auditsync_core::SinkUrlError> {
    auditsync_sink_kit::url::bucket_and_prefix(
        url,
        "bucket",
        "s3://BUCKET/prefix",
        &["force_path_style"],
    )
}
