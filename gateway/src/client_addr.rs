//! Who the client is: the connection's peer, or — when the peer is a trusted load balancer or
//! proxy (`server.trusted_proxies`) — the address it names in `X-Forwarded-For`.
//!
//! The header is read from the right, as each proxy appends the address it saw: entries added
//! by trusted proxies are skipped, and the first one that is not trusted is the client. A
//! header from a peer that is not trusted is ignored (anyone can send one), as is anything to
//! the left of an entry that does not parse. Logs, and whatever counts or limits requests per
//! client, take [`ClientAddr`] from the request's extensions.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The TCP peer of the connection a request came on (set per connection by the server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The client a request is from, as resolved by [`resolve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An address or network whose `X-Forwarded-For` is believed: `10.0.0.0/8`, `127.0.0.1`,
/// `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedProxy(IpNet);

impl TrustedProxy {
    pub fn contains(&self, addr: &IpAddr) -> bool {
        self.0.contains(addr)
    }
}

impl FromStr for TrustedProxy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Self(net.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|a| Self(IpNet::from(a)))
            .map_err(|_| {
                format!(
                    "`{s}` is neither an IP address nor a network in CIDR notation \
                     (for example 10.0.0.0/8 or 127.0.0.1)"
                )
            })
    }
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for TrustedProxy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TrustedProxy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The most `X-Forwarded-For` entries looked at: a longer chain of proxies is not a real one.
const MAX_HOPS: usize = 32;

/// The client of a request that came from `peer` with `headers`, given the proxies trusted.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[TrustedProxy]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |a: &IpAddr| trusted.iter().any(|t| t.contains(a));
    if !is_trusted(&peer) {
        return peer;
    }
    // Several headers are one list, in order.
    let mut entries: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        entries.extend(text.split(','));
    }
    let mut client = peer;
    for entry in entries.iter().rev().take(MAX_HOPS) {
        let Some(addr) = parse_entry(entry) else {
            break;
        };
        client = addr;
        if !is_trusted(&addr) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(a) = entry.parse::<IpAddr>() {
        return Some(a.to_canonical());
    }
    entry
        .parse::<SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &[&str]) -> Vec<TrustedProxy> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_peer_that_is_not_trusted_is_the_client_whatever_it_claims() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(ip("192.0.2.9"), &headers(&["198.51.100.7"]), &t),
            ip("192.0.2.9")
        );
        assert_eq!(
            resolve(ip("192.0.2.9"), &headers(&[]), &[]),
            ip("192.0.2.9")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_spoofed_entries_to_its_left_are_ignored() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(ip("10.1.2.3"), &headers(&["192.0.2.9"]), &t),
            ip("192.0.2.9")
        );
        // The client sent its own header; the load balancer appended what it saw.
        assert_eq!(
            resolve(ip("10.1.2.3"), &headers(&["198.51.100.7, 192.0.2.9"]), &t),
            ip("192.0.2.9")
        );
        // Two proxies, both trusted; the entries in two headers form one list.
        assert_eq!(
            resolve(
                ip("10.1.2.3"),
                &headers(&["198.51.100.7, 192.0.2.9", "10.9.9.9"]),
                &t
            ),
            ip("192.0.2.9")
        );
    }

    #[test]
    fn garbage_stops_the_walk_and_a_missing_header_leaves_the_peer() {
        let t = trusted(&["10.0.0.0/8", "127.0.0.1"]);
        assert_eq!(resolve(ip("127.0.0.1"), &headers(&[]), &t), ip("127.0.0.1"));
        assert_eq!(
            resolve(
                ip("10.1.2.3"),
                &headers(&["192.0.2.1, not-an-address, 10.2.2.2"]),
                &t
            ),
            ip("10.2.2.2")
        );
        assert_eq!(
            resolve(
                ip("10.1.2.3"),
                &headers(&["192.0.2.9:5678", "[2001:db8::1]:443"]),
                &t
            ),
            ip("2001:db8::1")
        );
        // Every entry trusted: the leftmost is as far as anyone can tell.
        assert_eq!(
            resolve(ip("10.1.2.3"), &headers(&["10.7.7.7"]), &t),
            ip("10.7.7.7")
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks() {
        let t = trusted(&["127.0.0.0/8"]);
        assert_eq!(
            resolve(ip("::ffff:127.0.0.1"), &headers(&["192.0.2.9"]), &t),
            ip("192.0.2.9")
        );
    }

    #[test]
    fn trusted_proxies_parse_addresses_and_networks_and_name_what_does_not() {
        assert_eq!(trusted(&["10.1.2.3/8"])[0].to_string(), "10.0.0.0/8");
        assert_eq!(trusted(&["127.0.0.1"])[0].to_string(), "127.0.0.1/32");
        assert_eq!(trusted(&["fd00::/8"])[0].to_string(), "fd00::/8");
        let err = "10.0.0.0/33".parse::<TrustedProxy>().unwrap_err();
        assert!(
            err.contains("`10.0.0.0/33`") && err.contains("CIDR"),
            "{err}"
        );
        assert!("haproxy".parse::<TrustedProxy>().is_err());
    }
}
