//! The `[server]` configuration section.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where and how the gateway listens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Address of the HTTP API (and the S3 front, on the same port).
    pub listen: String,
    /// Where the catalogue, the credentials file, the secret key and the built-in backends live.
    pub data_dir: PathBuf,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsConfig>,
    /// A request taking longer than this is answered 503 and dropped.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The largest JSON body the HTTP API accepts.
    pub max_api_body_bytes: usize,
    /// Requests handled at once; more wait for a slot (back pressure, not growth).
    pub max_concurrent_requests: usize,
    /// The largest XML body an S3 request may carry (CompleteMultipartUpload, DeleteObjects).
    pub max_s3_xml_body_bytes: usize,
    /// Base domain for virtual-hosted-style S3 requests (`bucket.DOMAIN`); path style always
    /// works.
    pub domain: Option<String>,
    /// The most a request forwarded to a peer gateway (a reduction of its data) may take,
    /// its whole answer included.
    #[serde(with = "humantime_serde")]
    pub peer_timeout: Duration,
    /// The largest array answer (cutout, binned image) accepted from a peer gateway; it
    /// streams through without being held in memory.
    pub max_peer_answer_bytes: u64,
    /// The most gateways a reduction may have passed on its way here: one forwarded more
    /// often is refused (`PeerHopLimit`), as one that comes back to a site it passed is
    /// (`PeerLoop`).
    pub peer_max_hops: u32,
    /// How often the catalogues of linked peer gateways (`archway catalog peer add`) are read
    /// again.
    #[serde(with = "humantime_serde")]
    pub peer_refresh_interval: Duration,
    /// Load balancers and proxies (addresses or CIDR networks) whose `X-Forwarded-For` names
    /// the client. Empty: the header is never believed, the connection's peer is the client.
    pub trusted_proxies: Vec<crate::client_addr::TrustedProxy>,
    /// One log line per request (target `archway::access`, level info): client, method, path
    /// without the query (which may hold a presigned URL's signature), status, duration.
    pub access_log: bool,
    /// A connection whose request head (request line and headers) has not arrived in this
    /// time is closed: slow clients cannot hold connections.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Connections open at once; further ones wait in the listen queue until one closes.
    pub max_connections: usize,
    /// Failed authentications a source may make before its requests with credentials are
    /// held off (S3 503 `SlowDown`, API 429); 0: no limit.
    pub auth_failure_burst: u32,
    /// How fast a source's allowance of failed authentications refills.
    pub auth_failures_per_minute: u32,
    /// How long a web-page sign-in (`/ui/login`) lasts; the token behind it is checked on
    /// every page, so a revoked or expired token ends the session at once.
    #[serde(with = "humantime_serde")]
    pub ui_session_lifetime: Duration,
    /// Memory for the web pages' rendered quick-looks (PNG bytes, least recently used go).
    pub quicklook_cache_bytes: u64,
    /// The most a quick-look or a histogram of the web pages may take to compute.
    #[serde(with = "humantime_serde")]
    pub quicklook_timeout: Duration,
    /// How often the workspaces' science index is brought up to date with what users wrote
    /// (new and changed FITS objects read, gone ones dropped); `0s`: never (scan by hand).
    #[serde(with = "humantime_serde")]
    pub science_refresh_interval: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9000".into(),
            data_dir: PathBuf::from("./archway-data"),
            tls: None,
            request_timeout: Duration::from_secs(300),
            max_api_body_bytes: 1024 * 1024,
            max_concurrent_requests: 1024,
            max_s3_xml_body_bytes: 4 * 1024 * 1024,
            domain: None,
            peer_timeout: Duration::from_secs(600),
            max_peer_answer_bytes: 4 * 1024 * 1024 * 1024,
            peer_max_hops: 8,
            peer_refresh_interval: Duration::from_secs(600),
            trusted_proxies: Vec::new(),
            access_log: false,
            header_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
            auth_failure_burst: 20,
            auth_failures_per_minute: 10,
            ui_session_lifetime: Duration::from_secs(12 * 3600),
            quicklook_cache_bytes: 64 * 1024 * 1024,
            quicklook_timeout: Duration::from_secs(60),
            science_refresh_interval: Duration::from_secs(300),
        }
    }
}

impl ServerConfig {
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen.parse().map_err(|_| {
            format!(
                "`{}` is not HOST:PORT with a numeric host (for example 127.0.0.1:9000 or [::]:9000)",
                self.listen
            )
        })
    }

    /// Problems with this section, as (key within the section, message). Blocking (it looks
    /// for the TLS files): for start-up and `archway config check`.
    #[allow(clippy::disallowed_methods)] // blocking by contract, see above
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Err(e) = self.listen_addr() {
            out.push(("listen".into(), e));
        }
        if self.data_dir.as_os_str().is_empty() {
            out.push(("data_dir".into(), "may not be empty".into()));
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if !path.is_file() {
                    out.push((
                        key.into(),
                        format!("{} is not a readable file", path.display()),
                    ));
                }
            }
        }
        if self.request_timeout.is_zero() {
            out.push(("request_timeout".into(), "must be longer than zero".into()));
        }
        if self.max_api_body_bytes < 1024 {
            out.push(("max_api_body_bytes".into(), "must be at least 1024".into()));
        }
        if let Some(d) = &self.domain
            && let Err(e) = crate::s3::BucketDomain::new(d)
        {
            out.push(("domain".into(), e));
        }
        if self.max_s3_xml_body_bytes < 64 * 1024 {
            out.push((
                "max_s3_xml_body_bytes".into(),
                "must be at least 65536".into(),
            ));
        }
        if self.peer_timeout.is_zero() {
            out.push(("peer_timeout".into(), "must be longer than zero".into()));
        }
        if self.max_peer_answer_bytes == 0 {
            out.push(("max_peer_answer_bytes".into(), "must be at least 1".into()));
        }
        if self.peer_refresh_interval < Duration::from_secs(1) {
            out.push(("peer_refresh_interval".into(), "must be at least 1s".into()));
        }
        if !(1..=32).contains(&self.peer_max_hops) {
            out.push(("peer_max_hops".into(), "must be 1 to 32".into()));
        }
        if self.header_read_timeout.is_zero() {
            out.push((
                "header_read_timeout".into(),
                "must be longer than zero".into(),
            ));
        }
        if self.max_connections == 0 {
            out.push(("max_connections".into(), "must be at least 1".into()));
        }
        if self.auth_failure_burst > 0 && self.auth_failures_per_minute == 0 {
            out.push((
                "auth_failures_per_minute".into(),
                "must be at least 1 while auth_failure_burst limits failures (a source would \
                 be held off for good)"
                    .into(),
            ));
        }
        if self.ui_session_lifetime < Duration::from_secs(60) {
            out.push(("ui_session_lifetime".into(), "must be at least 1m".into()));
        }
        if !self.science_refresh_interval.is_zero()
            && self.science_refresh_interval < Duration::from_secs(10)
        {
            out.push((
                "science_refresh_interval".into(),
                "must be 0s (off) or at least 10s".into(),
            ));
        }
        if self.quicklook_timeout.is_zero() {
            out.push((
                "quicklook_timeout".into(),
                "must be longer than zero".into(),
            ));
        }
        if self.max_concurrent_requests == 0 {
            out.push((
                "max_concurrent_requests".into(),
                "must be at least 1".into(),
            ));
        }
        out
    }
}
