//! A client of the HTTP API, over the network or in process.
//!
//! The CLI drives a remote gateway (`--gateway URL --token T`) and a local data directory with
//! the same code: locally, requests go straight into the API router with the local admin's
//! identity (whoever can read the data directory owns the catalogue anyway), so both paths share
//! every rule, message and status.

use axum::Router;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use http::{Method, Request, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use crate::auth::LocalIdentity;
use crate::error::ErrorBody;
use archway_catalog::Principal;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The answer was larger than the client accepts.
    #[error("the answer from {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    /// The gateway answered with an error.
    #[error("{message} (HTTP {status}, {code})")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        field: Option<String>,
    },
    #[error("cannot reach the gateway at {url}: {message}")]
    Transport { url: String, message: String },
    #[error("unexpected answer from the gateway: {0}")]
    Decode(String),
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Bounds on a remote call: how long it may take (the whole answer included) and how large
/// its answer may be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Option<std::time::Duration>,
    pub max_answer_bytes: Option<u64>,
}

enum Transport {
    Remote {
        base: String,
        token: Option<SecretString>,
        http: reqwest::Client,
        limits: Limits,
    },
    Local {
        router: Router,
        identity: Principal,
    },
}

/// The HTTP API, as a client sees it.
pub struct ApiClient {
    transport: Transport,
    /// Headers sent with every request (a forwarded reduction's chain).
    extra: http::HeaderMap,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.transport {
            Transport::Remote { base, .. } => write!(f, "ApiClient({base})"),
            Transport::Local { identity, .. } => write!(f, "ApiClient(local as {})", identity.user),
        }
    }
}

/// A streamed answer body.
pub type BodyStream = BoxStream<'static, Result<Bytes, ClientError>>;

impl ApiClient {
    /// A client of the gateway at `base` (e.g. `http://127.0.0.1:9000`).
    pub fn remote(base: &str, token: Option<SecretString>) -> Result<Self, ClientError> {
        Self::remote_with(base, token, Limits::default())
    }

    /// [`ApiClient::remote`], with bounds on every call (what a gateway uses for its peers).
    pub fn remote_with(
        base: &str,
        token: Option<SecretString>,
        limits: Limits,
    ) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
        if let Some(t) = limits.timeout {
            builder = builder.timeout(t);
        }
        let http = builder.build().map_err(|e| ClientError::Transport {
            url: base.to_string(),
            message: e.to_string(),
        })?;
        Ok(Self {
            transport: Transport::Remote {
                base: base.trim_end_matches('/').to_string(),
                token,
                http,
                limits,
            },
            extra: http::HeaderMap::new(),
        })
    }

    /// A client that calls `router` in process, as `identity`.
    pub fn local(router: Router, identity: Principal) -> Self {
        Self {
            transport: Transport::Local { router, identity },
            extra: http::HeaderMap::new(),
        }
    }

    /// The same client, sending `headers` with every request.
    pub fn with_headers(mut self, headers: http::HeaderMap) -> Self {
        self.extra = headers;
        self
    }

    /// Sends a request; `path` starts with `/` (e.g. `/api/v1/volumes?q=gaia`).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(StatusCode, BodyStream), ClientError> {
        let (status, _, stream) = self.send_full(method, path, body).await?;
        Ok((status, stream))
    }

    /// [`ApiClient::send`], with the answer's headers.
    pub async fn send_full(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(StatusCode, http::HeaderMap, BodyStream), ClientError> {
        let body = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| ClientError::Decode(e.to_string()))?),
            None => None,
        };
        let (status, headers, stream): (StatusCode, http::HeaderMap, BodyStream) =
            match &self.transport {
                Transport::Remote {
                    base,
                    token,
                    http,
                    limits,
                } => {
                    let url = format!("{base}{path}");
                    let mut req = http.request(method, &url).headers(self.extra.clone());
                    if let Some(t) = token {
                        req = req.bearer_auth(t.expose_secret());
                    }
                    if let Some(b) = body {
                        req = req
                            .header(http::header::CONTENT_TYPE, "application/json")
                            .body(b);
                    }
                    let resp = req.send().await.map_err(|e| ClientError::Transport {
                        url: base.clone(),
                        message: error_chain(&e),
                    })?;
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let url = base.clone();
                    let stream = resp
                        .bytes_stream()
                        .map_err(move |e| ClientError::Transport {
                            url: url.clone(),
                            message: error_chain(&e),
                        })
                        .boxed();
                    let stream = match limits.max_answer_bytes {
                        Some(limit) => bounded(stream, base.clone(), limit),
                        None => stream,
                    };
                    (status, headers, stream)
                }
                Transport::Local { router, identity } => {
                    let mut req = Request::builder().method(method).uri(path);
                    for (name, value) in &self.extra {
                        req = req.header(name, value);
                    }
                    if body.is_some() {
                        req = req.header(http::header::CONTENT_TYPE, "application/json");
                    }
                    let mut req = req
                        .body(axum::body::Body::from(body.unwrap_or_default()))
                        .map_err(|e| ClientError::Decode(e.to_string()))?;
                    req.extensions_mut().insert(LocalIdentity(identity.clone()));
                    let resp = router
                        .clone()
                        .oneshot(req)
                        .await
                        .map_err(|e| ClientError::Decode(e.to_string()))?;
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let stream = resp
                        .into_body()
                        .into_data_stream()
                        .map_err(|e| ClientError::Decode(e.to_string()))
                        .boxed();
                    (status, headers, stream)
                }
            };
        if status.is_success() {
            return Ok((status, headers, stream));
        }
        let bytes = collect(stream).await?;
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => ClientError::Api {
                status,
                code: e.error.code,
                message: e.error.message,
                field: e.error.field,
            },
            Err(_) => ClientError::Api {
                status,
                code: status.canonical_reason().unwrap_or("Error").to_string(),
                message: String::from_utf8_lossy(&bytes).trim().to_string(),
                field: None,
            },
        })
    }

    /// Sends a request and decodes a JSON answer.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let (_, stream) = self.send(method, path, body).await?;
        let bytes = collect(stream).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// [`ApiClient::json`], with the size of the answer's body in bytes.
    pub async fn json_sized<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(T, u64), ClientError> {
        let (_, stream) = self.send(method, path, body).await?;
        let bytes = collect(stream).await?;
        let value =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok((value, bytes.len() as u64))
    }

    /// Sends a request whose answer has no body worth reading (204 and the like).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<StatusCode, ClientError> {
        let (status, stream) = self.send(method, path, body).await?;
        collect(stream).await?;
        Ok(status)
    }
}

/// How long a connection may take to open.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The characters a path segment keeps as they are (RFC 3986 `pchar` minus sub-delims):
/// everything else, '/' included, is percent-encoded.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'@');

/// Percent-encodes one path segment.
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// Ends `stream` with [`ClientError::TooLarge`] once it has passed `limit` bytes.
fn bounded(stream: BodyStream, url: String, limit: u64) -> BodyStream {
    let mut seen = 0u64;
    stream
        .map(move |chunk| {
            let chunk = chunk?;
            seen = seen.saturating_add(chunk.len() as u64);
            if seen > limit {
                return Err(ClientError::TooLarge {
                    url: url.clone(),
                    limit,
                });
            }
            Ok(chunk)
        })
        .boxed()
}

async fn collect(mut stream: BodyStream) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("user:alice"), "user:alice");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }
}
