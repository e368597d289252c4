//! Named backends: configuration, validation, and the `object_store` each one becomes.
//!
//! This is the one place that names concrete stores. Everyone else sees `Arc<dyn ObjectStore>`.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::limit::LimitStore;
use object_store::list::PaginatedListStore;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::DataplaneError;

/// A string that never shows itself in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// One `[backends.NAME]` section. Which keys apply depends on the URL's scheme:
///
/// | scheme | what | keys |
/// |---|---|---|
/// | `file:///dir` | a local or NFS archive tree | `links` |
/// | `memory://` | in-process store (tests, scratch) | — |
/// | `s3://bucket/prefix` | S3 or S3-compatible bucket | `endpoint`, `region`, `access_key_id`, `secret_access_key`, `session_token`, `path_style`, `anonymous` |
/// | `gs://bucket/prefix` | Google Cloud Storage | `service_account_path`, `anonymous` |
/// | `az://container/prefix` | Azure Blob Storage | `account`, `access_key`, `anonymous` |
/// | `http(s)://host/path` | HTTP / WebDAV archive | — |
/// | `archway+http(s)://host:port` | a peer Archway gateway (its S3 front) | `access_key_id`, `secret_access_key`, `session_token`, `token`, `region`, `anonymous` |
///
/// Unset credentials fall back to the standard environment of each SDK (`AWS_*`,
/// `GOOGLE_*`, `AZURE_*`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendConfig {
    pub url: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// Path-style requests (`endpoint/bucket/key`); default true when `endpoint` is set.
    #[serde(default)]
    pub path_style: Option<bool>,
    /// Send unsigned requests (public buckets).
    #[serde(default)]
    pub anonymous: bool,
    /// File backends: what symbolic links in the tree are — `skip` (default: never followed,
    /// never listed) or `inside` (followed while they stay beneath the backend's folder).
    #[serde(default)]
    pub links: crate::posix::Links,
    #[serde(default)]
    pub service_account_path: Option<PathBuf>,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub access_key: Option<Secret>,
    /// API token at a peer gateway (for forwarded compute requests).
    #[serde(default)]
    pub token: Option<Secret>,
    /// How many times a failed request is retried. Default 3.
    #[serde(default)]
    pub max_retries: Option<usize>,
    /// Per-request timeout. Default 60s.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

/// What kind of store a backend URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    File,
    Memory,
    S3,
    Gcs,
    Azure,
    Http,
    Peer,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::File => "file",
            BackendKind::Memory => "memory",
            BackendKind::S3 => "s3",
            BackendKind::Gcs => "gcs",
            BackendKind::Azure => "azure",
            BackendKind::Http => "http",
            BackendKind::Peer => "peer",
        }
    }
}

impl BackendConfig {
    pub fn kind(&self) -> Result<BackendKind, String> {
        let url = Url::parse(&self.url).map_err(|e| format!("`{}` is not a URL: {e}", self.url))?;
        let kind = match url.scheme() {
            "file" => BackendKind::File,
            "memory" => BackendKind::Memory,
            "s3" | "s3a" => BackendKind::S3,
            "gs" => BackendKind::Gcs,
            "az" | "azure" | "abfs" | "abfss" => BackendKind::Azure,
            "http" | "https" => BackendKind::Http,
            "archway+http" | "archway+https" => BackendKind::Peer,
            other => {
                return Err(format!(
                    "unsupported scheme `{other}` in `{}`: use file, memory, s3, gs, az, http(s) \
                     or archway+http(s)",
                    self.url
                ));
            }
        };
        let needs_host = matches!(
            kind,
            BackendKind::S3
                | BackendKind::Gcs
                | BackendKind::Azure
                | BackendKind::Http
                | BackendKind::Peer
        );
        if needs_host && url.host_str().is_none_or(str::is_empty) {
            return Err(format!(
                "`{}` names no {}",
                self.url,
                match kind {
                    BackendKind::S3 | BackendKind::Gcs => "bucket",
                    BackendKind::Azure => "container",
                    _ => "host",
                }
            ));
        }
        if kind == BackendKind::File
            && (url.path().is_empty() || url.path() == "/")
            && url.host_str().is_some_and(|h| !h.is_empty())
        {
            return Err(format!(
                "`{}`: write file:///absolute/path (three slashes)",
                self.url
            ));
        }
        Ok(kind)
    }

    /// Problems with this section, as (key within the section, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let kind = match self.kind() {
            Ok(k) => k,
            Err(e) => {
                out.push(("url".into(), e));
                return out;
            }
        };
        let mut only = |key: &str, set: bool, kinds: &[BackendKind]| {
            if set && !kinds.contains(&kind) {
                out.push((
                    key.to_string(),
                    format!("does not apply to a {} backend", kind.as_str()),
                ));
            }
        };
        use BackendKind::*;
        only("endpoint", self.endpoint.is_some(), &[S3]);
        only("region", self.region.is_some(), &[S3, Peer]);
        only("access_key_id", self.access_key_id.is_some(), &[S3, Peer]);
        only(
            "secret_access_key",
            self.secret_access_key.is_some(),
            &[S3, Peer],
        );
        only("session_token", self.session_token.is_some(), &[S3, Peer]);
        only("path_style", self.path_style.is_some(), &[S3]);
        only("anonymous", self.anonymous, &[S3, Gcs, Azure, Peer]);
        only("links", self.links != crate::posix::Links::Skip, &[File]);
        only(
            "service_account_path",
            self.service_account_path.is_some(),
            &[Gcs],
        );
        only("account", self.account.is_some(), &[Azure]);
        only("access_key", self.access_key.is_some(), &[Azure]);
        only("token", self.token.is_some(), &[Peer]);
        if let Some(endpoint) = &self.endpoint
            && let Err(e) = Url::parse(endpoint)
        {
            out.push(("endpoint".into(), format!("`{endpoint}` is not a URL: {e}")));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            out.push((
                "secret_access_key".into(),
                "access_key_id and secret_access_key go together".into(),
            ));
        }
        if kind == Peer && self.access_key_id.is_none() && !self.anonymous {
            out.push((
                "access_key_id".into(),
                "a peer gateway needs the access key Archway uses there".into(),
            ));
        }
        out
    }
}

/// A backend ready for use: its store (for bucket-per-URL kinds) and its base path.
pub(crate) struct Backend {
    pub name: String,
    pub kind: BackendKind,
    config: BackendConfig,
    /// The store at the root of the backend's bucket / tree; None for peers, whose buckets are
    /// the peer's volumes and are opened per volume.
    store: Option<Arc<dyn ObjectStore>>,
    /// The path inside `store` that the URL points at.
    base: Path,
    /// A file backend's tree, for its upkeep ([`crate::posix::PosixStore::sweep_staging`]).
    pub(crate) posix: Option<Arc<crate::posix::PosixStore>>,
    peer_stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    concurrency: usize,
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// Builds the backend; at most `concurrency` requests go to it at once. Blocking (it
    /// checks a file backend's directory): the dataplane builds backends on a blocking thread.
    #[allow(clippy::disallowed_methods)] // blocking by contract, see above
    pub fn new(
        name: &str,
        config: &BackendConfig,
        concurrency: usize,
    ) -> Result<Self, DataplaneError> {
        let fail = |message: String| DataplaneError::Backend {
            backend: name.to_string(),
            message,
        };
        let kind = config.kind().map_err(fail)?;
        let url = Url::parse(&config.url).map_err(|e| fail(e.to_string()))?;
        let url_path = url.path().trim_matches('/').to_string();
        let base = Path::parse(&url_path).map_err(|e| fail(e.to_string()))?;
        let mut posix = None;
        let (store, base): (Option<Arc<dyn ObjectStore>>, Path) = match kind {
            BackendKind::File => {
                let dir = url
                    .to_file_path()
                    .map_err(|_| fail(format!("`{}` is not a local path", config.url)))?;
                if !dir.is_dir() {
                    return Err(fail(format!("directory {} does not exist", dir.display())));
                }
                let fs = crate::posix::PosixStore::new(&dir, config.links)
                    .map_err(|e| fail(format!("{}: {e}", dir.display())))?;
                let fs = Arc::new(fs);
                posix = Some(fs.clone());
                (Some(fs as Arc<dyn ObjectStore>), Path::default())
            }
            BackendKind::Memory => (Some(Arc::new(InMemory::new())), base),
            BackendKind::S3 => {
                let bucket = url.host_str().unwrap_or_default();
                (
                    Some(build_s3(config, bucket, config.endpoint.as_deref()).map_err(fail)?),
                    base,
                )
            }
            BackendKind::Gcs => {
                let mut b = GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(url.host_str().unwrap_or_default())
                    .with_retry(retry(config))
                    .with_client_options(client_options(config));
                if let Some(path) = &config.service_account_path {
                    b = b.with_service_account_path(path.display().to_string());
                }
                if config.anonymous {
                    b = b.with_skip_signature(true);
                }
                (
                    Some(Arc::new(b.build().map_err(|e| fail(e.to_string()))?)),
                    base,
                )
            }
            BackendKind::Azure => {
                let mut b = MicrosoftAzureBuilder::from_env()
                    .with_container_name(url.host_str().unwrap_or_default())
                    .with_retry(retry(config))
                    .with_client_options(client_options(config));
                if let Some(account) = &config.account {
                    b = b.with_account(account);
                }
                if let Some(key) = &config.access_key {
                    b = b.with_access_key(&key.0);
                }
                if config.anonymous {
                    b = b.with_skip_signature(true);
                }
                (
                    Some(Arc::new(b.build().map_err(|e| fail(e.to_string()))?)),
                    base,
                )
            }
            BackendKind::Http => {
                let store = HttpBuilder::new()
                    .with_url(config.url.clone())
                    .with_retry(retry(config))
                    .with_client_options(client_options(config))
                    .with_http_connector(RangeAnswers)
                    .build()
                    .map_err(|e| fail(e.to_string()))?;
                (Some(Arc::new(store)), Path::default())
            }
            BackendKind::Peer => (None, Path::default()),
        };
        let store = store.map(|s| limited(s, concurrency));
        Ok(Self {
            name: name.to_string(),
            kind,
            concurrency,
            config: config.clone(),
            store,
            base,
            posix,
            peer_stores: Mutex::new(HashMap::new()),
        })
    }

    /// Whether this backend's listings come back in lexicographic key order, so a page can be
    /// cut without reading the rest.
    pub fn lists_sorted(&self) -> bool {
        matches!(
            self.kind,
            BackendKind::File
                | BackendKind::S3
                | BackendKind::Gcs
                | BackendKind::Azure
                | BackendKind::Memory
                | BackendKind::Peer
        )
    }

    /// Whether folder markers (keys ending in '/') can be written here: not through a peer
    /// gateway, whose S3 client (object_store's) cannot name a key that ends in '/', and not
    /// to read-only HTTP archives.
    pub fn holds_folder_markers(&self) -> bool {
        !matches!(self.kind, BackendKind::Peer | BackendKind::Http)
    }

    /// An ETag condition in the form this store compares against. HTTP stores send it on as
    /// a header, so it is quoted; file and memory stores compare it to their own ETag text,
    /// quoted in some answers and bare in others, so both forms go in the list.
    pub fn store_etag(&self, etag: &str) -> String {
        let bare = etag.trim_matches('"');
        match self.kind {
            _ if bare == "*" => bare.to_string(),
            BackendKind::File | BackendKind::Memory => format!("\"{bare}\", {bare}"),
            _ => format!("\"{bare}\""),
        }
    }

    /// Whether the store keeps object attributes such as Content-Type (the file store keeps
    /// them in an extended attribute of the file; HTTP archives are read-only).
    pub fn keeps_attributes(&self) -> bool {
        !matches!(self.kind, BackendKind::Http)
    }

    /// The store rooted at a volume's prefix inside this backend.
    pub fn volume_store(&self, prefix: &str) -> Result<Arc<dyn ObjectStore>, DataplaneError> {
        let fail = |message: String| DataplaneError::Backend {
            backend: self.name.clone(),
            message,
        };
        let (store, root) = match &self.store {
            Some(store) => {
                let prefix = Path::parse(prefix).map_err(|e| fail(e.to_string()))?;
                let root: Path = self.base.parts().chain(prefix.parts()).collect();
                (store.clone(), root)
            }
            None => {
                // A peer's buckets are its volumes: the first segment of the prefix.
                let (bucket, rest) = prefix.split_once('/').unwrap_or((prefix, ""));
                if bucket.is_empty() {
                    return Err(fail(
                        "a volume on a peer gateway needs prefix = \"<volume at the peer>[/path]\""
                            .into(),
                    ));
                }
                let store = self.peer_store(bucket).map_err(fail)?;
                (store, Path::parse(rest).map_err(|e| fail(e.to_string()))?)
            }
        };
        if root.as_ref().is_empty() {
            Ok(store)
        } else {
            Ok(Arc::new(PrefixStore::new(store, root)))
        }
    }

    fn peer_store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
        let mut stores = self
            .peer_stores
            .lock()
            .map_err(|_| "peer store table poisoned".to_string())?;
        if let Some(s) = stores.get(bucket) {
            return Ok(s.clone());
        }
        let endpoint = self
            .config
            .url
            .strip_prefix("archway+")
            .unwrap_or(&self.config.url)
            .trim_end_matches('/')
            .to_string();
        let peer = crate::peer::PeerStore::new(s3_store(&self.config, bucket, Some(&endpoint))?);
        let store = limited(Arc::new(peer), self.concurrency);
        stores.insert(bucket.to_string(), store.clone());
        Ok(store)
    }

    /// The API token configured for a peer gateway.
    pub fn peer_token(&self) -> Option<String> {
        self.config.token.as_ref().map(|t| t.0.clone())
    }

    /// The peer gateway's base URL (for forwarding API requests), if this backend is a peer.
    pub fn peer_url(&self) -> Option<String> {
        (self.kind == BackendKind::Peer).then(|| {
            self.config
                .url
                .strip_prefix("archway+")
                .unwrap_or(&self.config.url)
                .trim_end_matches('/')
                .to_string()
        })
    }
}

fn limited(store: Arc<dyn ObjectStore>, concurrency: usize) -> Arc<dyn ObjectStore> {
    Arc::new(LimitStore::new(store, concurrency.max(1)))
}

fn retry(config: &BackendConfig) -> RetryConfig {
    RetryConfig {
        max_retries: config.max_retries.unwrap_or(3),
        retry_timeout: Duration::from_secs(60),
        ..Default::default()
    }
}

fn client_options(config: &BackendConfig) -> ClientOptions {
    ClientOptions::new()
        .with_timeout(config.timeout.unwrap_or(Duration::from_secs(60)))
        .with_connect_timeout(Duration::from_secs(10))
}

fn build_s3(
    config: &BackendConfig,
    bucket: &str,
    endpoint: Option<&str>,
) -> Result<Arc<dyn ObjectStore>, String> {
    Ok(Arc::new(s3_store(config, bucket, endpoint)?))
}

/// A volume of another Archway gateway: the store, and the same store for listing page by
/// page (what `archway mount` needs for huge directories).
pub struct GatewayVolume {
    pub store: Arc<dyn ObjectStore>,
    pub lister: Arc<dyn PaginatedListStore>,
}

impl fmt::Debug for GatewayVolume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayVolume").finish_non_exhaustive()
    }
}

/// A volume of another Archway gateway through its S3 front, as a peer backend reaches one:
/// `config` is an `archway+http(s)://` backend with its credentials.
pub fn gateway_volume(
    config: &BackendConfig,
    volume: &str,
) -> Result<GatewayVolume, DataplaneError> {
    let fail = |message: String| DataplaneError::Backend {
        backend: config.url.clone(),
        message,
    };
    if config.kind().map_err(fail)? != BackendKind::Peer {
        return Err(fail(
            "a gateway is reached by an archway+http(s):// URL".into(),
        ));
    }
    let endpoint = config
        .url
        .strip_prefix("archway+")
        .unwrap_or(&config.url)
        .trim_end_matches('/');
    let s3 = Arc::new(crate::peer::PeerStore::new(
        s3_store(config, volume, Some(endpoint)).map_err(fail)?,
    ));
    Ok(GatewayVolume {
        store: s3.clone(),
        lister: s3,
    })
}

/// object_store's HTTP client for S3-compatible and HTTP backends, taking a ranged GET's
/// answer for what it is when a server says `200 OK` with the `Content-Range` of the range
/// asked for, where HTTP says `206 Partial Content`: `rclone serve s3` (and other servers on
/// the gofakes3 library) answer every ranged GET so, and object_store refuses such an answer
/// ("Received non-partial response when range requested"), which made every block read of a
/// cached archive on them fail. A `200` without `Content-Range` is left as it is (a server
/// that ignored the range sent the whole object, and is refused as before).
#[derive(Debug, Clone, Copy, Default)]
struct RangeAnswers;

impl object_store::client::HttpConnector for RangeAnswers {
    fn connect(
        &self,
        options: &ClientOptions,
    ) -> object_store::Result<object_store::client::HttpClient> {
        let inner = object_store::client::ReqwestConnector::default().connect(options)?;
        Ok(object_store::client::HttpClient::new(RangeAnswered(inner)))
    }
}

#[derive(Debug)]
struct RangeAnswered(object_store::client::HttpClient);

#[async_trait::async_trait]
impl object_store::client::HttpService for RangeAnswered {
    async fn call(
        &self,
        request: object_store::client::HttpRequest,
    ) -> Result<object_store::client::HttpResponse, object_store::client::HttpError> {
        let ranged = request.headers().contains_key(http::header::RANGE);
        let mut response = self.0.execute(request).await?;
        if ranged
            && response.status() == http::StatusCode::OK
            && response.headers().contains_key(http::header::CONTENT_RANGE)
        {
            *response.status_mut() = http::StatusCode::PARTIAL_CONTENT;
        }
        Ok(response)
    }
}

fn s3_store(
    config: &BackendConfig,
    bucket: &str,
    endpoint: Option<&str>,
) -> Result<object_store::aws::AmazonS3, String> {
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_region(config.region.clone().unwrap_or_else(|| "us-east-1".into()))
        .with_retry(retry(config));
    let mut options = client_options(config);
    if let Some(endpoint) = endpoint {
        b = b.with_endpoint(endpoint);
        if endpoint.starts_with("http://") {
            options = options.with_allow_http(true);
        }
        b = b.with_virtual_hosted_style_request(!config.path_style.unwrap_or(true));
    } else if let Some(path_style) = config.path_style {
        b = b.with_virtual_hosted_style_request(!path_style);
    }
    b = b
        .with_client_options(options)
        .with_http_connector(RangeAnswers);
    if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        b = b.with_access_key_id(id).with_secret_access_key(&secret.0);
    }
    if let Some(token) = &config.session_token {
        b = b.with_token(&token.0);
    }
    if config.anonymous {
        b = b.with_skip_signature(true);
    }
    b.build().map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> BackendConfig {
        BackendConfig {
            url: url.into(),
            ..Default::default()
        }
    }

    #[test]
    fn kinds_from_urls() {
        assert_eq!(cfg("file:///data").kind().unwrap(), BackendKind::File);
        assert_eq!(cfg("s3://bucket/p").kind().unwrap(), BackendKind::S3);
        assert_eq!(cfg("gs://b").kind().unwrap(), BackendKind::Gcs);
        assert_eq!(cfg("az://c").kind().unwrap(), BackendKind::Azure);
        assert_eq!(
            cfg("https://archive.example/x/").kind().unwrap(),
            BackendKind::Http
        );
        assert_eq!(
            cfg("archway+http://127.0.0.1:9000").kind().unwrap(),
            BackendKind::Peer
        );
        assert!(
            cfg("ftp://x")
                .kind()
                .unwrap_err()
                .contains("unsupported scheme `ftp`")
        );
        assert!(cfg("not a url").kind().unwrap_err().contains("not a URL"));
        assert!(cfg("s3:///nobucket").kind().unwrap_err().contains("bucket"));
        assert!(
            cfg("file://data")
                .kind()
                .unwrap_err()
                .contains("three slashes")
        );
    }

    #[test]
    fn keys_that_do_not_apply_are_named() {
        let mut c = cfg("file:///data");
        c.endpoint = Some("http://x".into());
        let problems = c.problems();
        assert_eq!(problems[0].0, "endpoint");
        let mut c = cfg("s3://b");
        c.access_key_id = Some("AK".into());
        assert_eq!(c.problems()[0].0, "secret_access_key");
        let c = cfg("archway+http://peer:9000");
        assert_eq!(c.problems()[0].0, "access_key_id");
    }

    #[test]
    fn secrets_do_not_debug() {
        let mut c = cfg("s3://b");
        c.secret_access_key = Some(Secret("hunter2".into()));
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn missing_directories_are_reported() {
        let err = Backend::new("arch", &cfg("file:///no/such/dir/anywhere"), 4).unwrap_err();
        assert!(err.to_string().contains("arch"), "{err}");
        assert!(err.to_string().contains("/no/such/dir/anywhere"), "{err}");
    }
}
