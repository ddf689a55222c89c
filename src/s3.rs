//! A thin S3 client for model fetch and clip archive, working with S3-compatible stores too.

use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use crate::config::S3Config;

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("object s3://{bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
    /// 401/403, a key id or signature the store does not accept: the credentials are wrong.
    #[error("S3 refused the credentials: {0}")]
    Auth(String),
    /// No connection, or one that failed: worth retrying later.
    #[error("S3 unreachable: {0}")]
    Network(String),
    /// Connected, then no answer in time (`s3.read-timeout`, `s3.timeout`).
    #[error("S3 timed out: {0}")]
    Timeout(String),
    /// 5xx, 429, or a response that makes no sense: the store is failing; retry later.
    #[error("S3 is failing: {0}")]
    Server(String),
    /// Rejected for good (400, no such bucket): retrying will not help without a change.
    #[error("S3 refused the request: {0}")]
    Rejected(String),
    /// The object was fetched but its content is unusable.
    #[error("{0}")]
    Invalid(String),
}

impl S3Error {
    pub fn is_transient(&self) -> bool {
        matches!(self, S3Error::Network(_) | S3Error::Timeout(_) | S3Error::Server(_))
    }

    /// Every value of [`S3Error::class`].
    pub const CLASSES: [&'static str; 5] = ["auth", "network", "timeout", "server", "rejected"];

    /// Label for `edgewatch_archive_errors_total{class}`.
    pub fn class(&self) -> &'static str {
        match self {
            S3Error::Auth(_) => "auth",
            S3Error::Network(_) => "network",
            S3Error::Timeout(_) => "timeout",
            S3Error::Server(_) => "server",
            S3Error::NotFound { .. } | S3Error::Rejected(_) | S3Error::Invalid(_) => "rejected",
        }
    }
}

fn classify<E>(e: SdkError<E, HttpResponse>) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // DisplayErrorContext prints the whole cause chain; credentials are never part of it.
    let text = format!("{}", DisplayErrorContext(&e));
    match &e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or_default();
            if matches!(status, 401 | 403)
                || matches!(code, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" | "ExpiredToken")
            {
                S3Error::Auth(text)
            } else if status >= 500 || status == 429 || status == 408 {
                S3Error::Server(text)
            } else {
                S3Error::Rejected(text)
            }
        }
        SdkError::TimeoutError(_) => S3Error::Timeout(text),
        SdkError::DispatchFailure(d) if d.is_timeout() => S3Error::Timeout(text),
        SdkError::DispatchFailure(_) => S3Error::Network(text),
        SdkError::ResponseError(_) => S3Error::Server(text),
        _ => S3Error::Network(text),
    }
}

/// What an upload produced.
#[derive(Debug, Clone)]
pub struct PutResult {
    pub etag: Option<String>,
    pub parts: usize,
}

#[derive(Clone, Debug)]
pub struct S3Client {
    client: aws_sdk_s3::Client,
}

impl S3Client {
    /// Builds a client from the `[s3]` section: static keys when given, else the AWS credential chain.
    pub async fn new(cfg: &S3Config) -> S3Client {
        // Connect, first byte of the answer, and the whole request, each bounded; one attempt
        // per call, so a timeout is reported (and retried by the caller's backoff) at once
        // instead of after the SDK's own silent retries.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(cfg.connect_timeout.min(cfg.timeout))
            .read_timeout(cfg.read_timeout.min(cfg.timeout))
            .operation_attempt_timeout(cfg.timeout)
            .operation_timeout(cfg.timeout)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .timeout_config(timeouts)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1));
        if let (Some(ak), Some(sk)) = (&cfg.access_key_id, &cfg.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                ak.expose(),
                sk.expose(),
                cfg.session_token.as_ref().map(|t| t.expose().to_string()),
                None,
                "edgewatch-config",
            ));
        }
        let shared = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&shared).force_path_style(cfg.force_path_style);
        if !cfg.endpoint.is_empty() {
            b = b.endpoint_url(&cfg.endpoint);
        }
        S3Client { client: aws_sdk_s3::Client::from_conf(b.build()) }
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, S3Error> {
        let out = match self.client.get_object().bucket(bucket).key(key).send().await {
            Ok(o) => o,
            Err(e) => {
                if let Some(se) = e.as_service_error() {
                    if se.is_no_such_key() {
                        return Err(S3Error::NotFound { bucket: bucket.into(), key: key.into() });
                    }
                }
                if let SdkError::ServiceError(se) = &e {
                    if se.raw().status().as_u16() == 404 {
                        return Err(S3Error::NotFound { bucket: bucket.into(), key: key.into() });
                    }
                }
                return Err(classify(e));
            }
        };
        let body = out.body.collect().await.map_err(|e| S3Error::Network(format!("reading body: {e}")))?;
        Ok(body.into_bytes().to_vec())
    }

    /// Whether the bucket exists and these credentials may use it (`check-config --online`).
    pub async fn head_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        self.client.head_bucket().bucket(bucket).send().await.map(|_| ()).map_err(classify)
    }

    /// Whether an object exists (HEAD), for idempotent retries.
    pub async fn exists(&self, bucket: &str, key: &str) -> Result<bool, S3Error> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                if let SdkError::ServiceError(se) = &e {
                    if se.raw().status().as_u16() == 404 {
                        return Ok(false);
                    }
                }
                Err(classify(e))
            }
        }
    }

    /// Uploads `data`; above `multipart_threshold` in parts of `part_size`.
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        data: Bytes,
        content_type: &str,
        multipart_threshold: usize,
        part_size: usize,
    ) -> Result<PutResult, S3Error> {
        if data.len() <= multipart_threshold {
            let out = self
                .client
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(data))
                .send()
                .await
                .map_err(classify)?;
            return Ok(PutResult { etag: out.e_tag, parts: 1 });
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(classify)?;
        let upload_id = created.upload_id.ok_or_else(|| S3Error::Invalid("multipart upload without an id".into()))?;
        let result = self.put_parts(bucket, key, &upload_id, data, part_size).await;
        if result.is_err() {
            // Abandoned parts cost storage; abort best-effort (the whole upload is retried later).
            let _ = self.client.abort_multipart_upload().bucket(bucket).key(key).upload_id(&upload_id).send().await;
        }
        result
    }

    async fn put_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        data: Bytes,
        part_size: usize,
    ) -> Result<PutResult, S3Error> {
        let mut parts = Vec::new();
        let mut offset = 0;
        let mut number = 1;
        while offset < data.len() {
            let end = (offset + part_size).min(data.len());
            let out = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(data.slice(offset..end)))
                .send()
                .await
                .map_err(classify)?;
            parts.push(CompletedPart::builder().set_e_tag(out.e_tag).part_number(number).build());
            offset = end;
            number += 1;
        }
        let count = parts.len();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(classify)?;
        Ok(PutResult { etag: out.e_tag, parts: count })
    }

    /// A presigned GET URL, for clips too large to attach to an email.
    pub async fn presign_get(&self, bucket: &str, key: &str, expires: Duration) -> Result<String, S3Error> {
        let conf = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires)
            .map_err(|e| S3Error::Invalid(format!("presign expiry: {e}")))?;
        let req = self.client.get_object().bucket(bucket).key(key).presigned(conf).await.map_err(classify)?;
        Ok(req.uri().to_string())
    }

    /// Lists keys under a prefix (tests and tooling).
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, S3Error> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(classify)?;
            keys.extend(out.contents().iter().filter_map(|o| o.key().map(String::from)));
            match out.next_continuation_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        Ok(keys)
    }

    /// Creates a bucket (tests and first-time setup); an existing bucket is fine.
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        match self.client.create_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let code = e.as_service_error().and_then(|s| s.code().map(String::from));
                if matches!(code.as_deref(), Some("BucketAlreadyOwnedByYou") | Some("BucketAlreadyExists")) {
                    Ok(())
                } else {
                    Err(classify(e))
                }
            }
        }
    }
}
