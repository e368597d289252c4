//! The `gateway_requests` fuzz target's world and one request, shared with
//! `tests/fuzz_replay.rs`, which replays the seeds and the inputs that once failed in the test
//! command.
//!
//! The real router over a real SQLite catalogue and file backends in a temporary directory.
//! An input: the first byte picks the method and whether the admin's bearer token is sent
//! (bit 7); then the request target (`/path?query`), a newline, header lines `name: value`, an
//! empty line, and the body. The world persists across inputs (what one request writes, the
//! next may read), as a gateway's does. A panic, a hang or an answer 500 — an error the
//! gateway did not expect, where bad input must get a clear 4xx — is a bug.
#![allow(clippy::disallowed_methods)] // a fuzz target and a test own their runtime and may block

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use archway_catalog::{Catalog, NewVolume, VolumeKind};
use archway_dataplane::Dataplane;
use archway_dataplane::audit::AuditLog;
use archway_gateway::{AppState, Metrics};
use axum::body::Body;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::BodyExt;

pub struct World {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    token: String,
    _dir: tempfile::TempDir,
}

pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let data = dir.path().to_path_buf();
        std::fs::create_dir_all(data.join("demo/sub")).expect("demo folder");
        std::fs::create_dir_all(data.join("workspaces/ws")).expect("workspace folder");
        std::fs::write(data.join("demo/a.txt"), b"hello").expect("demo file");
        std::fs::write(data.join("demo/sub/b.fits"), fits()).expect("demo FITS");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (router, token) = rt.block_on(async {
            let text = format!(
                "[server]\ndata_dir = \"{}\"\nrequest_timeout = \"5s\"\n\
                 [cache]\nmemory_bytes = 8388608\ndisk_bytes = 0\n",
                data.display()
            );
            let config = archway_config::Config::parse(&text, Vec::new())
                .expect("configuration")
                .with_builtin_backends(true);
            let catalog = Catalog::open(&config.catalog, &data)
                .await
                .expect("catalogue");
            let dataplane = Dataplane::new(catalog.clone(), config.dataplane())
                .await
                .expect("dataplane");
            catalog.create_user("admin", "", true).await.expect("admin");
            let token = catalog
                .create_token("admin", "fuzz", None)
                .await
                .expect("token")
                .secret;
            for (id, backend, kind, public) in [
                ("public", "demo", VolumeKind::Archive, true),
                ("workspace", "workspaces", VolumeKind::Workspace, false),
            ] {
                catalog
                    .create_volume(NewVolume {
                        id: id.into(),
                        backend: backend.into(),
                        prefix: if kind == VolumeKind::Workspace {
                            "ws".into()
                        } else {
                            String::new()
                        },
                        kind,
                        public_read: public,
                        owner: Some("admin".into()),
                        ..Default::default()
                    })
                    .await
                    .expect("volume");
            }
            let state = AppState {
                dataplane: Arc::new(dataplane),
                metrics: Arc::new(Metrics::new()),
                server: Arc::new(config.server.clone()),
                audit: AuditLog::disabled(),
                identity: Default::default(),
                site_id: Default::default(),
                // Off: the fuzzer's requests come from one source and mostly fail.
                auth_limit: std::sync::Arc::new(archway_gateway::auth_limit::AuthLimiter::new(
                    0, 0,
                )),
                ui: Default::default(),
            };
            (archway_gateway::router(state), token.to_string())
        });
        World {
            rt,
            router,
            token,
            _dir: dir,
        }
    })
}

/// A small valid FITS image (8×8 16-bit), so reductions go past the header.
fn fits() -> Vec<u8> {
    let cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                   16",
        "NAXIS   =                    2",
        "NAXIS1  =                    8",
        "NAXIS2  =                    8",
        "END",
    ];
    let mut out = Vec::new();
    for c in cards {
        out.extend_from_slice(format!("{c:<80}").as_bytes());
    }
    out.resize(2880, b' ');
    let mut data: Vec<u8> = (0..64u16).flat_map(|v| v.to_be_bytes()).collect();
    data.resize(2880, 0);
    out.extend(data);
    out
}

const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::PUT,
    Method::POST,
    Method::DELETE,
    Method::OPTIONS,
    Method::PATCH,
];

/// Sends the request `data` describes; Err for a 500 or no answer (a panic propagates).
pub fn exercise(data: &[u8]) -> Result<(), String> {
    let Some((&flags, rest)) = data.split_first() else {
        return Ok(());
    };
    let w = world();
    let (target, rest) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return Ok(());
    };
    let target = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("/{target}")
    };
    let mut builder = Request::builder()
        .method(METHODS[flags as usize % METHODS.len()].clone())
        .uri(target.as_str());
    let mut body = rest;
    for _ in 0..16 {
        let Some(i) = body.iter().position(|&b| b == b'\n') else {
            break;
        };
        let line = &body[..i];
        body = &body[i + 1..];
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            builder = builder.header(name, value);
        }
    }
    if flags & 0x80 != 0 {
        builder = builder.header("authorization", format!("Bearer {}", w.token));
    }
    let body = body[..body.len().min(64 * 1024)].to_vec();
    let Ok(request) = builder.body(Body::from(body)) else {
        return Ok(());
    };
    let router = w.router.clone();
    w.rt.block_on(async move {
        let answered = tokio::time::timeout(Duration::from_secs(20), async move {
            let response = tower::ServiceExt::oneshot(router, request)
                .await
                .expect("the router is infallible");
            let status = response.status();
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            (status, body)
        })
        .await;
        let Ok((status, body)) = answered else {
            return Err(format!("no answer within 20 s for {target}"));
        };
        if status == http::StatusCode::INTERNAL_SERVER_ERROR {
            return Err(format!(
                "500 for {target}: {:?}",
                body.map(|b| String::from_utf8_lossy(&b).into_owned())
            ));
        }
        Ok(())
    })
}
