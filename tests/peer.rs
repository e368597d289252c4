//! The dataplane conformance suite on a peer backend: another Archway gateway (the real
//! binary on loopback) reached through its S3 front, as a federation's sites reach each other.
//! The suite's volumes live inside the peer's `workspace` volume.
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

mod common;

use archway_dataplane::conformance::{Capabilities, run, run_through_the_cache};
use archway_dataplane::{BackendConfig, Secret};
use common::Gateway;

fn peer(gw: &Gateway) -> BackendConfig {
    BackendConfig {
        url: format!("archway+{}", gw.url),
        access_key_id: Some(gw.credential("aws_access_key_id")),
        secret_access_key: Some(Secret(gw.credential("aws_secret_access_key"))),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&dir.path().join("peer"), &[]).await;
    let caps = Capabilities {
        root: "workspace/suite",
        md5_etags: true,
        expires: false,
        folder_markers: false,
        ..Default::default()
    };
    run(peer(&gw), caps).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_gateway_through_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&dir.path().join("peer"), &[]).await;
    let caps = Capabilities {
        root: "workspace/cached",
        md5_etags: true,
        expires: false,
        folder_markers: false,
        ..Default::default()
    };
    run_through_the_cache(peer(&gw), caps).await;
}
