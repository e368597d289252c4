//! Reductions forwarded to the peer gateway that holds the data, so that only the answer
//! travels. Every call is bounded: `server.peer_timeout` for the whole call, JSON answers at
//! [`MAX_PEER_JSON_BYTES`], streamed array answers at `server.max_peer_answer_bytes`.
//!
//! A peer whose volume is itself on a peer forwards again, hop by hop, until the request
//! reaches the gateway that holds the data. The request carries its [`Chain`]: the site ids of
//! the gateways it passed (`X-Archway-Via`), so that one coming back to a site it passed is
//! refused as a loop, and longer chains than `server.peer_max_hops` are refused; and the time
//! left for the whole chain (`X-Archway-Deadline-Ms`), which shrinks along it so the hop that
//! runs out of time is the one that says so.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use archway_compute::{Hop, ReduceRequest, Reduction};
use archway_dataplane::PeerLocation;

use crate::ServerConfig;
use crate::client::{ApiClient, ClientError, Limits};
use crate::error::ApiError;

/// The largest JSON answer (a reduction's numbers) read from a peer: far above any real one,
/// small enough that a misbehaving peer cannot fill this gateway's memory.
pub const MAX_PEER_JSON_BYTES: u64 = 16 * 1024 * 1024;

/// The site ids of the gateways a forwarded reduction passed, oldest first, comma-separated.
pub const VIA_HEADER: &str = "x-archway-via";
/// Milliseconds left for the whole chain when the request was sent.
pub const DEADLINE_HEADER: &str = "x-archway-deadline-ms";

/// The most site ids a chain may carry (far above any `peer_max_hops`).
const MAX_VIA: usize = 64;

/// Where a reduction has been, and until when it may run.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    /// The site ids of the gateways that forwarded it here, oldest first.
    pub via: Vec<String>,
    /// When the whole chain's time is up (None: asked here, by a client).
    pub deadline: Option<Instant>,
}

impl Chain {
    /// The chain a request carries in its headers; a malformed one is refused.
    pub fn from_headers(headers: &HeaderMap) -> Result<Chain, ApiError> {
        let text = |name: &str| -> Result<Option<&str>, ApiError> {
            headers
                .get(name)
                .map(|v| {
                    v.to_str().map_err(|_| {
                        ApiError::bad_request(None, format!("the `{name}` header is not text"))
                    })
                })
                .transpose()
        };
        let via: Vec<String> = match text(VIA_HEADER)? {
            None => Vec::new(),
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        };
        if via.len() > MAX_VIA
            || via
                .iter()
                .any(|s| s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(ApiError::bad_request(
                None,
                format!("the `{VIA_HEADER}` header is not a list of at most {MAX_VIA} site ids"),
            ));
        }
        let deadline = match text(DEADLINE_HEADER)? {
            None => None,
            Some(ms) => {
                let ms: u64 = ms.trim().parse().map_err(|_| {
                    ApiError::bad_request(
                        None,
                        format!("the `{DEADLINE_HEADER}` header is not a number of milliseconds"),
                    )
                })?;
                Some(Instant::now() + Duration::from_millis(ms))
            }
        };
        Ok(Chain { via, deadline })
    }

    /// Refuses a reduction that came back to `site` (a loop among peer volumes), or that
    /// passed `max_hops` gateways already.
    pub fn check(&self, site: &str, max_hops: u32) -> Result<(), ApiError> {
        if self.via.iter().any(|s| s == site) {
            return Err(ApiError::new(
                StatusCode::LOOP_DETECTED,
                "PeerLoop",
                format!(
                    "the reduction came back to this gateway (site {site}) after {} hops \
                     through sites {}: the peer volumes form a loop; point one of them at the \
                     gateway that holds the data",
                    self.via.len(),
                    self.via.join(" → ")
                ),
            ));
        }
        if self.via.len() >= max_hops as usize {
            return Err(ApiError::new(
                StatusCode::LOOP_DETECTED,
                "PeerHopLimit",
                format!(
                    "the reduction has already been forwarded {} times (through sites {}), \
                     and this gateway's `server.peer_max_hops` is {max_hops}",
                    self.via.len(),
                    self.via.join(" → ")
                ),
            ));
        }
        Ok(())
    }

    /// The time left, within `limit`; an error naming the volume when it is up.
    pub fn time_left(&self, limit: Duration, req: &ReduceRequest) -> Result<Duration, ApiError> {
        let left = match self.deadline {
            None => limit,
            Some(d) => d.saturating_duration_since(Instant::now()).min(limit),
        };
        if left < Duration::from_millis(1) {
            return Err(deadline_passed(req));
        }
        Ok(left)
    }

    /// The headers for the next hop: this chain with `site` added, and the time it has
    /// (`left`, less a margin so that it gives up before this gateway does).
    fn next_hop(&self, site: &str, left: Duration) -> HeaderMap {
        let margin = (left / 20).max(Duration::from_millis(50)).min(left / 2);
        let mut via = self.via.clone();
        via.push(site.to_string());
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&via.join(",")) {
            h.insert(VIA_HEADER, v);
        }
        h.insert(
            DEADLINE_HEADER,
            HeaderValue::from((left - margin).as_millis() as u64),
        );
        h
    }
}

/// The chain's time ran out for `req`.
pub fn deadline_passed(req: &ReduceRequest) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "PeerDeadline",
        format!(
            "`{}` in volume `{}`: the time the forwarding gateway gave this reduction ran out",
            req.key, req.volume
        ),
    )
}

/// A forwarded reduction's failure, in this gateway's words: client errors keep their status
/// (the file is bad, the HDU is missing); a peer that cannot serve is a bad gateway here.
fn peer_error(req: &ReduceRequest, peer: &PeerLocation, e: ClientError) -> ApiError {
    let message = format!(
        "`{}` in volume `{}`: the peer gateway {} ",
        req.key, req.volume, peer.url
    );
    match e {
        ClientError::Api {
            status,
            code,
            message: m,
            ..
        } => {
            // What the request or the chain got wrong stays what it is along the chain.
            let status = if status.is_client_error()
                || status == StatusCode::NOT_IMPLEMENTED
                || status == StatusCode::LOOP_DETECTED
                || status == StatusCode::GATEWAY_TIMEOUT
            {
                status
            } else {
                StatusCode::BAD_GATEWAY
            };
            // The chain's own refusals keep their names along it.
            let code = match code.as_str() {
                "PeerLoop" => "PeerLoop",
                "PeerHopLimit" => "PeerHopLimit",
                "PeerDeadline" => "PeerDeadline",
                "PeerCannotCompute" => "PeerCannotCompute",
                _ => "PeerError",
            };
            ApiError::new(status, code, format!("{message}answered: {m}"))
        }
        other @ (ClientError::Transport { .. }
        | ClientError::Decode(_)
        | ClientError::TooLarge { .. }) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "PeerUnreachable",
            format!("{message}could not compute: {other}"),
        ),
    }
}

/// The request as the peer names it, and a bounded client with the token configured for the
/// peer (without one the peer cannot be asked — and the data is not pulled here instead).
fn peer_request(
    server: &ServerConfig,
    hop: &Forward<'_>,
    req: &ReduceRequest,
    peer: &PeerLocation,
    max_answer_bytes: u64,
) -> Result<(ApiClient, ReduceRequest), ApiError> {
    let Some(token) = &peer.token else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "PeerCannotCompute",
            format!(
                "volume `{}` lives on the peer gateway {}, and backend `{}` has no `token` to \
                 ask it to reduce there (the data is not pulled here instead)",
                req.volume, peer.url, peer.backend
            ),
        ));
    };
    let forwarded = ReduceRequest {
        volume: peer.volume.clone(),
        key: peer.key.clone(),
        ..req.clone()
    };
    let left = hop.chain.time_left(server.peer_timeout, req)?;
    let limits = Limits {
        timeout: Some(left),
        max_answer_bytes: Some(max_answer_bytes),
    };
    let client = ApiClient::remote_with(&peer.url, Some(token.clone().into()), limits)
        .map(|c| c.with_headers(hop.chain.next_hop(hop.site, left)))
        .map_err(|e| {
            ApiError::internal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "BackendMisconfigured",
                format!(
                    "the peer gateway of volume `{}` cannot be reached",
                    req.volume
                ),
                &e,
            )
        })?;
    Ok((client, forwarded))
}

/// What a forwarding gateway adds to a request it sends on: its own site id and the chain
/// the request came with.
#[derive(Clone, Copy, Debug)]
pub struct Forward<'a> {
    pub site: &'a str,
    pub chain: &'a Chain,
}

/// Sends a reduction to the peer gateway that holds the data (or the next one towards it).
/// The answer keeps the `site` that computed it, and its `sites` begin with this link.
pub async fn reduce(
    server: &ServerConfig,
    hop: Forward<'_>,
    req: &ReduceRequest,
    peer: &PeerLocation,
) -> Result<Reduction, ApiError> {
    let (client, forwarded) = peer_request(server, &hop, req, peer, MAX_PEER_JSON_BYTES)?;
    let bytes_in = serde_json::to_vec(&forwarded).map_or(0, |b| b.len() as u64);
    let (mut r, bytes_out): (Reduction, u64) = client
        .json_sized(http::Method::POST, "/api/v1/reduce", Some(&forwarded))
        .await
        .map_err(|e| peer_error(req, peer, e))?;
    if r.site.is_none() {
        r.site = Some(peer.url.clone());
    }
    r.sites.insert(
        0,
        Hop {
            url: peer.url.clone(),
            bytes_in,
            bytes_out,
            pulled: false,
        },
    );
    r.bytes_returned = 0;
    Ok(r)
}

/// An array answer (cutout, bin) computed by the peer, streamed through as it arrives, with
/// its X-Archway-* headers and the peer named in X-Archway-Site.
pub async fn reduce_to_array(
    server: &ServerConfig,
    hop: Forward<'_>,
    req: &ReduceRequest,
    peer: &PeerLocation,
) -> Result<Response, ApiError> {
    let (client, forwarded) = peer_request(server, &hop, req, peer, server.max_peer_answer_bytes)?;
    let (_, headers, stream) = client
        .send_full(http::Method::POST, "/api/v1/reduce", Some(&forwarded))
        .await
        .map_err(|e| peer_error(req, peer, e))?;
    let mut out = axum::http::HeaderMap::new();
    for (name, value) in &headers {
        let n = name.as_str();
        if n == "content-type" || n == "content-length" || n.starts_with("x-archway-") {
            out.insert(name.clone(), value.clone());
        }
    }
    // The gateway that computed, as the last hop named it.
    if !out.contains_key("x-archway-site")
        && let Ok(v) = HeaderValue::from_str(&peer.url)
    {
        out.insert("x-archway-site", v);
    }
    let body = stream.map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
    Ok((out, Body::from_stream(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_chain_is_read_from_its_headers_and_malformed_ones_are_refused() {
        let c = Chain::from_headers(&headers(&[
            (VIA_HEADER, "aa01, bb02"),
            (DEADLINE_HEADER, "5000"),
        ]))
        .unwrap();
        assert_eq!(c.via, ["aa01", "bb02"]);
        let left = c
            .deadline
            .unwrap()
            .saturating_duration_since(Instant::now());
        assert!(left > Duration::from_millis(4000) && left <= Duration::from_millis(5000));
        assert!(
            Chain::from_headers(&HeaderMap::new())
                .unwrap()
                .via
                .is_empty()
        );
        for bad in [
            (VIA_HEADER, "a b"),
            (VIA_HEADER, "x;y"),
            (DEADLINE_HEADER, "soon"),
            (DEADLINE_HEADER, "-5"),
        ] {
            let e = Chain::from_headers(&headers(&[bad])).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(e.message.contains(bad.0), "{}", e.message);
        }
        let long = vec!["ab"; MAX_VIA + 1].join(",");
        assert!(Chain::from_headers(&headers(&[(VIA_HEADER, &long)])).is_err());
    }

    #[test]
    fn a_loop_and_a_long_chain_are_refused_by_name() {
        let c = Chain {
            via: vec!["aa".into(), "bb".into()],
            deadline: None,
        };
        assert!(c.check("cc", 3).is_ok());
        let e = c.check("aa", 8).unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::LOOP_DETECTED, "PeerLoop"));
        assert!(e.message.contains("aa → bb"), "{}", e.message);
        let e = c.check("cc", 2).unwrap_err();
        assert_eq!(e.code, "PeerHopLimit");
        assert!(e.message.contains("peer_max_hops"), "{}", e.message);
    }

    #[test]
    fn the_next_hop_carries_this_site_and_less_time() {
        let c = Chain {
            via: vec!["aa".into()],
            deadline: None,
        };
        let req = ReduceRequest::new("v", "k.fits", archway_compute::Op::Sum);
        let left = c.time_left(Duration::from_secs(10), &req).unwrap();
        assert_eq!(left, Duration::from_secs(10));
        let h = c.next_hop("bb", left);
        assert_eq!(h[VIA_HEADER], "aa,bb");
        assert_eq!(h[DEADLINE_HEADER], "9500");
        // The next gateway reads it back with the deadline it was given.
        let next = Chain::from_headers(&h).unwrap();
        assert_eq!(next.via, ["aa", "bb"]);
        // A chain whose time is up refuses to go on.
        let spent = Chain {
            via: vec![],
            deadline: Some(Instant::now()),
        };
        let e = spent.time_left(Duration::from_secs(10), &req).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::GATEWAY_TIMEOUT, "PeerDeadline")
        );
    }
}
